//! The client-facing side of a shard: its `SO_REUSEPORT` listener, the accept loop,
//! and one task per client connection.

pub mod conn;
pub mod dispatch;

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use crate::log::Level;
use crate::shard::stop::StopSignal;
use crate::shard::Shard;

/// Binds `count` listeners on the same address with `SO_REUSEPORT`, so the kernel
/// spreads connections across shards. Port 0 resolves once and all share it.
pub fn bind_listeners(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let mut listeners = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nodelay(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&bound.into())?;
        socket.listen(4096)?;
        let listener: std::net::TcpListener = socket.into();
        bound = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok((listeners, bound))
}

/// Accepts until `stop`; each connection gets its own task on this shard.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, stop: Rc<StopSignal>) {
    loop {
        let accepted = monoio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait() => return,
        };
        let (stream, _peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                crate::event!(Level::Warn, "accept failed", shard = shard.id, error = e);
                monoio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
        };
        let limit = shard.table().config.limits.max_connections;
        if shard.open_connections.get() >= limit {
            // Over the per-shard connection limit: close at once rather than queue.
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        monoio::spawn(conn::serve(shard.clone(), stream));
    }
}
