//! The client's socket: every write bounded by a deadline, and a watch for the
//! client hanging up while the gateway waits on a provider for it.
//!
//! A client that stops reading must not hold an upstream connection (or a shard's
//! memory) for longer than the gateway allows: each write waits at most
//! `limits.client_write_timeout`, and never past the cap set while an upstream is
//! held on the client's behalf (the request's total deadline). An expired write is
//! the client's doing, reported as [`std::io::ErrorKind::TimedOut`].

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::buf::{IoBufMut, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::peek::{peek, Pending};

/// How long an exchange runs before [`ClientStream::hung_up`] starts watching the
/// socket. Most answers come sooner, and arming a poll on the client's socket
/// for every request, then cancelling it, was two of the six io_uring operations
/// a proxied request cost; a client that leaves is noticed this much later, which
/// for a model's answer (hundreds of milliseconds and up) changes nothing.
pub const HANG_UP_WATCH_AFTER: Duration = Duration::from_millis(10);

/// A client connection.
pub struct ClientStream {
    tcp: TcpStream,
    write_timeout: Duration,
    /// No write may wait past this (set while an upstream is held for the client).
    cap: Option<Instant>,
}

impl ClientStream {
    pub fn new(tcp: TcpStream, write_timeout: Duration) -> Self {
        ClientStream {
            tcp,
            write_timeout,
            cap: None,
        }
    }

    pub fn set_write_timeout(&mut self, timeout: Duration) {
        self.write_timeout = timeout;
    }

    /// Bounds every write until [`ClientStream::clear_cap`] by `cap`.
    pub fn set_cap(&mut self, cap: Instant) {
        self.cap = Some(cap);
    }

    pub fn clear_cap(&mut self) {
        self.cap = None;
    }

    /// Writes all of `buf` within the write deadline and hands it back. On expiry
    /// the buffer is gone with the cancelled write (the connection is finished
    /// anyway) and an empty one comes back.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        if buf.is_empty() {
            return (Ok(()), buf);
        }
        let mut deadline = Instant::now() + self.write_timeout;
        if let Some(cap) = self.cap {
            deadline = deadline.min(cap);
        }
        match monoio::time::timeout_at(deadline.into(), self.tcp.write_all(buf)).await {
            Ok((res, buf)) => (res.map(|_| ()), buf),
            Err(_) => (
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not read its answer in time",
                )),
                Vec::new(),
            ),
        }
    }

    /// Half-closes the write side.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.tcp.shutdown().await
    }

    /// Resolves when the client has hung up (EOF or an error on its socket),
    /// watched from [`HANG_UP_WATCH_AFTER`] on. Bytes waiting to be read are a
    /// pipelined request, not a hang-up: then it never resolves, and a write is
    /// what will notice a client that left.
    pub async fn hung_up(&self) {
        monoio::time::sleep(HANG_UP_WATCH_AFTER).await;
        loop {
            if self.tcp.readable(false).await.is_err() {
                return;
            }
            match peek(self.tcp.as_raw_fd()) {
                // A readiness that went away again: keep watching.
                Pending::Nothing => continue,
                Pending::Eof | Pending::Error => return,
                Pending::Data => std::future::pending::<()>().await,
            }
        }
    }
}

impl AsyncReadRent for ClientStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.tcp.read(buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.tcp.readv(buf).await
    }
}
