//! A shard's keep-alive pool for one provider: idle sockets, a connection cap, connect.
//!
//! At most [`MAX_CONNECTING`] new connections are being opened at once; further
//! checkouts queue on the pool (and take a socket another request released, if one
//! comes first). A burst of clients then cannot overflow a provider's accept backlog
//! with SYNs whose retransmits would fail the connects and trip a healthy target.
//!
//! The pool lives on one shard and is never shared across threads. A checked-out
//! connection is owned by [`PooledConn`]; dropping it closes the socket and frees its
//! slot, [`PooledConn::release`] hands it back for reuse.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use rustls::pki_types::ServerName;

use super::stream::{IdleState, TlsConnector, UpstreamStream};

/// Where a pool connects to.
#[derive(Clone)]
pub struct Endpoint {
    pub addrs: Arc<[SocketAddr]>,
    pub tls: Option<TlsTarget>,
}

/// TLS settings for an https provider: the shard's connector and the SNI name.
#[derive(Clone)]
pub struct TlsTarget {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no address known for the provider's host")]
    NoAddress,
    #[error("connect timed out")]
    Timeout,
    #[error("connect failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("connection limit reached and no connection freed in time")]
    LimitReached,
}

struct Idle {
    stream: UpstreamStream,
    since: Instant,
}

/// New connections one pool (one provider on one shard) opens at once.
pub const MAX_CONNECTING: usize = 16;

/// Whether a checkout may open a new connection now: under the connection cap and
/// under the cap on connects in flight.
fn may_connect(open: usize, max: usize, connecting: usize) -> bool {
    open < max && connecting < MAX_CONNECTING
}

struct Inner {
    endpoint: RefCell<Endpoint>,
    idle: RefCell<Vec<Idle>>,
    open: Cell<usize>,
    /// Connects in flight (each also holds one `open` slot).
    connecting: Cell<usize>,
    max: usize,
    idle_timeout: Duration,
    waiters: RefCell<Waiters>,
    next_addr: Cell<usize>,
}

impl Inner {
    fn free_slot(&self) {
        self.open.set(self.open.get().saturating_sub(1));
        self.waiters.borrow_mut().wake_one();
    }
}

/// Checkouts waiting for a connection, oldest first. A waiter that gives up (its
/// deadline passed, its request was cancelled) leaves the queue at once, so a freed
/// connection always wakes one that is still waiting.
#[derive(Default)]
struct Waiters {
    queue: VecDeque<(u64, Waker)>,
    next_id: u64,
}

impl Waiters {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Queues `id` (or refreshes its waker, keeping its place).
    fn register(&mut self, id: u64, waker: &Waker) {
        match self.queue.iter_mut().find(|(w, _)| *w == id) {
            Some((_, existing)) => existing.clone_from(waker),
            None => self.queue.push_back((id, waker.clone())),
        }
    }

    fn remove(&mut self, id: u64) {
        self.queue.retain(|(w, _)| *w != id);
    }

    fn wake_one(&mut self) {
        if let Some((_, waker)) = self.queue.pop_front() {
            waker.wake();
        }
    }
}

/// Takes a waiter out of the queue however its wait ends.
struct WaiterGuard<'a> {
    waiters: &'a RefCell<Waiters>,
    id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut waiters = self.waiters.borrow_mut();
        waiters.remove(self.id);
        // A wake-up meant for us that we no longer need goes to the next in line.
        waiters.wake_one();
    }
}

/// One provider's connections on one shard.
#[derive(Clone)]
pub struct Pool {
    inner: Rc<Inner>,
}

/// A connection taken from the pool. `reused` says whether it carried an earlier
/// request (and so may have been closed by the peer meanwhile).
pub struct PooledConn {
    stream: Option<UpstreamStream>,
    pool: Rc<Inner>,
    pub reused: bool,
}

impl Pool {
    pub fn new(endpoint: Endpoint, max: usize, idle_timeout: Duration) -> Self {
        Pool {
            inner: Rc::new(Inner {
                endpoint: RefCell::new(endpoint),
                idle: RefCell::new(Vec::new()),
                open: Cell::new(0),
                connecting: Cell::new(0),
                max: max.max(1),
                idle_timeout,
                waiters: RefCell::new(Waiters::default()),
                next_addr: Cell::new(0),
            }),
        }
    }

    /// Points the pool at new addresses (DNS changed); idle sockets to old ones close.
    pub fn set_endpoint(&self, endpoint: Endpoint) {
        let changed = *self.inner.endpoint.borrow().addrs != *endpoint.addrs;
        *self.inner.endpoint.borrow_mut() = endpoint;
        if changed {
            self.close_idle_where(|_| true);
        }
    }

    pub fn open_count(&self) -> usize {
        self.inner.open.get()
    }

    pub fn idle_count(&self) -> usize {
        self.inner.idle.borrow().len()
    }

    /// Closes idle sockets unused for longer than the idle timeout.
    pub fn evict_idle(&self, now: Instant) {
        let timeout = self.inner.idle_timeout;
        self.close_idle_where(|idle| now.saturating_duration_since(idle.since) >= timeout);
    }

    fn close_idle_where(&self, mut expired: impl FnMut(&Idle) -> bool) {
        let mut closed = 0;
        self.inner.idle.borrow_mut().retain(|idle| {
            let keep = !expired(idle);
            closed += usize::from(!keep);
            keep
        });
        for _ in 0..closed {
            self.inner.free_slot();
        }
    }

    /// A reused idle connection when one is fresh enough, else a new one once the
    /// connection cap allows. `fresh` forces a new socket (after a stale pooled one).
    pub async fn checkout(
        &self,
        connect_timeout: Duration,
        fresh: bool,
    ) -> Result<PooledConn, ConnectError> {
        let deadline = Instant::now() + connect_timeout;
        let waiter = WaiterGuard {
            waiters: &self.inner.waiters,
            id: self.inner.waiters.borrow_mut().new_id(),
        };
        let ready = poll_fn(|cx| {
            if !fresh {
                if let Some(conn) = self.take_idle() {
                    return Poll::Ready(Some(conn));
                }
            } else if self.inner.open.get() >= self.inner.max {
                self.close_idle_where(|_| true);
            }
            if may_connect(
                self.inner.open.get(),
                self.inner.max,
                self.inner.connecting.get(),
            ) {
                return Poll::Ready(None);
            }
            self.inner
                .waiters
                .borrow_mut()
                .register(waiter.id, cx.waker());
            Poll::Pending
        });
        let reused = monoio::time::timeout_at(deadline.into(), ready)
            .await
            .map_err(|_| ConnectError::LimitReached)?;
        drop(waiter);
        if let Some(conn) = reused {
            return Ok(conn);
        }
        self.inner.open.set(self.inner.open.get() + 1);
        // From here the slot is ours; a failed connect must give it back.
        let slot = SlotGuard {
            pool: self.inner.clone(),
            filled: false,
        };
        let connecting = ConnectingGuard::new(&self.inner);
        let stream = monoio::time::timeout_at(deadline.into(), self.connect()).await;
        drop(connecting);
        let stream = stream.map_err(|_| ConnectError::Timeout)??;
        Ok(slot.into_conn(stream))
    }

    /// The most recently used idle socket that is fresh and clean. One the peer
    /// wrote to (or closed) while it sat idle is closed, never handed out: those
    /// bytes would be read as the next request's answer.
    fn take_idle(&self) -> Option<PooledConn> {
        let now = Instant::now();
        loop {
            let mut idle = self.inner.idle.borrow_mut().pop()?;
            let fresh = now.saturating_duration_since(idle.since) < self.inner.idle_timeout;
            if fresh && idle.stream.idle_state() == IdleState::Clean {
                return Some(PooledConn {
                    stream: Some(idle.stream),
                    pool: self.inner.clone(),
                    reused: true,
                });
            }
            self.inner.free_slot();
        }
    }

    async fn connect(&self) -> Result<UpstreamStream, ConnectError> {
        let endpoint = self.inner.endpoint.borrow().clone();
        if endpoint.addrs.is_empty() {
            return Err(ConnectError::NoAddress);
        }
        let start = self.inner.next_addr.get();
        self.inner.next_addr.set(start.wrapping_add(1));
        let mut last_error = None;
        for i in 0..endpoint.addrs.len() {
            let addr = endpoint.addrs[(start + i) % endpoint.addrs.len()];
            match TcpStream::connect_addr(addr).await {
                Ok(tcp) => return finish_connect(tcp, endpoint.tls).await,
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.map_or(ConnectError::NoAddress, ConnectError::Io))
    }
}

async fn finish_connect(
    tcp: TcpStream,
    tls: Option<TlsTarget>,
) -> Result<UpstreamStream, ConnectError> {
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(UpstreamStream::Plain(tcp));
    };
    let stream = tls
        .connector
        .connect(tls.server_name, tcp)
        .await
        .map_err(|e| ConnectError::Tls(e.to_string()))?;
    Ok(UpstreamStream::Tls(Box::new(stream)))
}

/// Counts one connect in flight; when it ends (however), the next queued checkout
/// may start its own.
struct ConnectingGuard<'a> {
    pool: &'a Inner,
}

impl<'a> ConnectingGuard<'a> {
    fn new(pool: &'a Inner) -> Self {
        pool.connecting.set(pool.connecting.get() + 1);
        ConnectingGuard { pool }
    }
}

impl Drop for ConnectingGuard<'_> {
    fn drop(&mut self) {
        self.pool
            .connecting
            .set(self.pool.connecting.get().saturating_sub(1));
        self.pool.waiters.borrow_mut().wake_one();
    }
}

/// Holds a reserved connection slot until a socket fills it; dropped unfilled (a
/// failed or timed-out connect), it frees the slot.
struct SlotGuard {
    pool: Rc<Inner>,
    filled: bool,
}

impl SlotGuard {
    fn into_conn(mut self, stream: UpstreamStream) -> PooledConn {
        self.filled = true;
        PooledConn {
            stream: Some(stream),
            pool: self.pool.clone(),
            reused: false,
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if !self.filled {
            self.pool.free_slot();
        }
    }
}

impl PooledConn {
    pub fn stream(&mut self) -> &mut UpstreamStream {
        self.stream
            .as_mut()
            .expect("stream present until release or drop")
    }

    /// Returns the socket to the pool for the next request. Whether the peer wrote
    /// anything more is checked once, when it is taken out again ([`Pool::checkout`]).
    pub fn release(mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        self.pool.idle.borrow_mut().push(Idle {
            stream,
            since: Instant::now(),
        });
        self.pool.waiters.borrow_mut().wake_one();
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if self.stream.take().is_some() {
            self.pool.free_slot();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_are_bounded_by_the_cap_and_by_those_in_flight() {
        // (open, max, connecting) → may open a new connection
        let cases = [
            (0, 256, 0, true),
            (255, 256, 0, true),
            (256, 256, 0, false),
            (20, 256, MAX_CONNECTING - 1, true),
            (20, 256, MAX_CONNECTING, false),
            (0, 1, 0, true),
            (1, 1, 0, false),
        ];
        for (open, max, connecting, want) in cases {
            assert_eq!(
                may_connect(open, max, connecting),
                want,
                "open {open} max {max} connecting {connecting}"
            );
        }
    }
}
