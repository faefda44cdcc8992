//! One upstream socket, plain TCP or TLS, behind a single type the pool can hold,
//! and the check that decides whether an idle socket may carry another request.
//!
//! TLS is rustls driven directly over the monoio socket rather than through an
//! adapter crate: the pool must see everything the peer sent while the socket sat
//! idle — raw records not yet decrypted, plaintext not yet read, a close_notify —
//! to tell a harmless protocol record (a late NewSessionTicket, a KeyUpdate) from
//! bytes that would otherwise be read as the next client's answer.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use crate::bufio::{consume, read_more};
use crate::peek::{peek, Pending};

/// Most raw bytes taken off an idle socket while checking it.
const MAX_IDLE_DRAIN: usize = 64 * 1024;

/// A connected upstream socket.
pub enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// What an idle socket holds from its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleState {
    /// Nothing but protocol records: safe to send the next request on.
    Clean,
    /// Application bytes, EOF, an alert or an error: never reuse it.
    Dirty,
}

impl UpstreamStream {
    /// Whether this idle socket may carry another request. Never blocks: it looks at
    /// what the kernel (and rustls) already hold, nothing more.
    pub fn idle_state(&mut self) -> IdleState {
        match self {
            UpstreamStream::Plain(tcp) => match peek(tcp.as_raw_fd()) {
                Pending::Nothing => IdleState::Clean,
                Pending::Data | Pending::Eof | Pending::Error => IdleState::Dirty,
            },
            UpstreamStream::Tls(tls) => tls.idle_state(),
        }
    }
}

/// Reads what the kernel holds for `tcp` into `buf` without waiting.
fn drain_nonblocking(tcp: &TcpStream, buf: &mut Vec<u8>) -> Pending {
    let mut got = Pending::Nothing;
    while buf.len() < MAX_IDLE_DRAIN {
        buf.reserve(crate::bufio::READ_CHUNK);
        let spare = buf.spare_capacity_mut();
        // SAFETY: `spare` is owned, writable capacity of `buf`; the kernel writes at
        // most `spare.len()` bytes and we mark only what it wrote as initialised.
        let n = unsafe {
            libc::recv(
                tcp.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => return Pending::Eof,
            n if n > 0 => {
                // SAFETY: the kernel initialised the first `n` spare bytes.
                unsafe { buf.set_len(buf.len() + n as usize) };
                got = Pending::Data;
            }
            _ if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => return got,
            _ => return Pending::Error,
        }
    }
    got
}

/// Client TLS settings: one rustls config per shard (and per private CA).
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
}

impl From<Arc<rustls::ClientConfig>> for TlsConnector {
    fn from(config: Arc<rustls::ClientConfig>) -> Self {
        TlsConnector { config }
    }
}

/// Why a TLS handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the server closed the connection during the handshake")]
    Eof,
}

impl TlsConnector {
    /// Runs the client handshake on `tcp`.
    pub async fn connect(
        &self,
        name: ServerName<'static>,
        tcp: TcpStream,
    ) -> Result<TlsStream, HandshakeError> {
        let conn = ClientConnection::new(self.config.clone(), name)?;
        let mut stream = TlsStream {
            tcp,
            conn,
            incoming: Vec::new(),
            outgoing: Vec::new(),
        };
        while stream.conn.is_handshaking() {
            stream.flush_tls().await?;
            if stream.conn.is_handshaking() && stream.conn.wants_read() {
                if !stream.read_socket().await? {
                    return Err(HandshakeError::Eof);
                }
                stream.feed().map_err(unwrap_rustls)?;
            }
        }
        stream.flush_tls().await?;
        Ok(stream)
    }
}

/// A rustls error that travelled inside an `io::Error` is a handshake failure in its
/// own words (e.g. `invalid peer certificate: UnknownIssuer`).
fn unwrap_rustls(error: io::Error) -> HandshakeError {
    let is_rustls = error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if !is_rustls {
        return HandshakeError::Io(error);
    }
    match error
        .into_inner()
        .map(|inner| inner.downcast::<rustls::Error>())
    {
        Some(Ok(e)) => HandshakeError::Rustls(*e),
        _ => HandshakeError::Eof,
    }
}

/// A client TLS connection over a monoio socket.
pub struct TlsStream {
    tcp: TcpStream,
    conn: ClientConnection,
    /// Raw bytes read from the socket that rustls has not taken yet.
    incoming: Vec<u8>,
    /// Scratch for records on their way out.
    outgoing: Vec<u8>,
}

impl TlsStream {
    /// Writes every record rustls has queued.
    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.outgoing.clear();
            self.conn.write_tls(&mut self.outgoing)?;
            let (res, buf) = self.tcp.write_all(std::mem::take(&mut self.outgoing)).await;
            self.outgoing = buf;
            res?;
        }
        Ok(())
    }

    /// Reads once from the socket unless raw bytes are already waiting. `Ok(false)`
    /// on EOF (rustls is told, so a missing close_notify is seen as truncation).
    async fn read_socket(&mut self) -> io::Result<bool> {
        if !self.incoming.is_empty() {
            return Ok(true);
        }
        let (res, buf) = read_more(&mut self.tcp, std::mem::take(&mut self.incoming)).await;
        self.incoming = buf;
        if res? == 0 {
            self.conn.read_tls(&mut io::empty())?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Hands waiting raw bytes to rustls (as many as it takes now) and decrypts them.
    fn feed(&mut self) -> io::Result<()> {
        let mut rest = &self.incoming[..];
        let taken = self.conn.read_tls(&mut rest)?;
        consume(&mut self.incoming, taken);
        self.conn
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(())
    }

    /// Decrypted bytes into `dst`, reading the socket as needed. `Ok(0)` after the
    /// peer's close_notify; an EOF without one is `UnexpectedEof`.
    async fn read_plain(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(dst) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.read_socket().await? {
                // rustls now knows of the EOF: a close_notify reads as 0, anything
                // else as a truncation.
                return match self.conn.reader().read(dst) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    }
                    other => other,
                };
            }
            self.feed()?;
        }
    }

    /// Queues as much of `src` as rustls accepts and sends it.
    async fn write_plain(&mut self, src: &[u8]) -> io::Result<usize> {
        self.flush_tls().await?;
        let n = self.conn.writer().write(src)?;
        self.flush_tls().await?;
        Ok(n)
    }

    fn idle_state(&mut self) -> IdleState {
        match drain_nonblocking(&self.tcp, &mut self.incoming) {
            Pending::Eof | Pending::Error => return IdleState::Dirty,
            Pending::Nothing | Pending::Data => {}
        }
        // Decrypt everything that arrived; records that carry no data (tickets,
        // key updates) leave no plaintext behind and the socket stays usable.
        while !self.incoming.is_empty() {
            let before = self.incoming.len();
            if self.feed().is_err() || self.incoming.len() == before {
                return IdleState::Dirty;
            }
        }
        if !self.incoming.is_empty() {
            return IdleState::Dirty;
        }
        let mut byte = [0u8; 1];
        match self.conn.reader().read(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => IdleState::Clean,
            _ => IdleState::Dirty,
        }
    }
}

impl AsyncReadRent for UpstreamStream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.read(buf).await,
            UpstreamStream::Tls(s) => {
                // SAFETY: `buf` owns `bytes_total()` writable bytes at `write_ptr()`
                // for as long as we hold it; rustls only writes into them, and only
                // the `n` bytes it reports are marked initialised.
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), buf.bytes_total()) };
                match s.read_plain(dst).await {
                    Ok(n) => {
                        // SAFETY: rustls wrote the first `n` bytes.
                        unsafe { buf.set_init(n) };
                        (Ok(n), buf)
                    }
                    Err(e) => (Err(e), buf),
                }
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the iovec's first buffer is valid while we hold `buf`.
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read(raw).await.0,
            None => Ok(0),
        };
        if let Ok(n) = n {
            // SAFETY: `read` initialised `n` bytes of the first buffer.
            unsafe { buf.set_init(n) };
        }
        (n, buf)
    }
}

impl AsyncWriteRent for UpstreamStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.write(buf).await,
            UpstreamStream::Tls(s) => {
                // SAFETY: `buf` holds `bytes_init()` initialised bytes at `read_ptr()`.
                let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
                let res = s.write_plain(src).await;
                (res, buf)
            }
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: the iovec's first buffer is valid while we hold `buf`.
        let n = match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => self.write(raw).await.0,
            None => Ok(0),
        };
        (n, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.flush().await,
            UpstreamStream::Tls(s) => s.flush_tls().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.shutdown().await,
            UpstreamStream::Tls(s) => {
                s.conn.send_close_notify();
                s.flush_tls().await?;
                s.tcp.shutdown().await
            }
        }
    }
}
