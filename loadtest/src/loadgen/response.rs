//! One HTTP/1.1 exchange on a keep-alive client connection: write the request, parse
//! the response head with httparse, read the body (content-length, chunked or
//! until close) and feed it to SSE accounting when asked.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::chunked::{ChunkError, ChunkedDecoder};
use super::sse::SseTracker;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
/// Free space guaranteed before each read.
const READ_SPACE: usize = 16 * 1024;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed before the response completed")]
    Closed,
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid content-length")]
    BadLength,
    #[error("malformed chunked body: {0}")]
    Chunked(#[from] ChunkError),
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The parts of a response head the load generator cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    len: usize,
    status: u16,
    body: BodyKind,
    keep_alive: bool,
    target: Option<String>,
    attempts: Option<u32>,
    continued: bool,
}

/// A received response.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    /// The body arrived whole.
    pub complete: bool,
    /// The connection can carry the next request.
    pub reusable: bool,
    /// `x-switchyard-target`.
    pub target: Option<String>,
    /// `x-switchyard-attempts`: upstream attempts the gateway made for it.
    pub attempts: Option<u32>,
    /// `x-switchyard-continued: true`.
    pub continued: bool,
    /// SSE accounting, when asked for and the status is 2xx.
    pub sse: Option<SseTracker>,
}

/// A client connection with its read buffer.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_addr(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(READ_SPACE),
        })
    }

    /// Sends `request` and reads the whole response.
    pub(crate) async fn exchange(
        &mut self,
        request: Rc<Vec<u8>>,
        want_sse: bool,
    ) -> Result<Response, ExchangeError> {
        let (res, _) = self.stream.write_all(request).await;
        res?;
        let head = self.read_head().await?;
        let success = (200..300).contains(&head.status);
        let mut sse = (want_sse && success).then(SseTracker::default);
        let body = self.read_body(head.body, sse.as_mut()).await;
        if let Some(t) = sse.as_mut() {
            t.finish(Instant::now());
        }
        let complete = body.is_ok();
        Ok(Response {
            status: head.status,
            complete,
            reusable: complete && head.keep_alive && head.body != BodyKind::UntilClose,
            target: head.target,
            attempts: head.attempts,
            continued: head.continued,
            sse,
        })
    }

    /// Reads until a final (non-1xx) response head has arrived and removes it from the buffer.
    async fn read_head(&mut self) -> Result<Head, ExchangeError> {
        loop {
            if let Some(head) = parse_head(&self.buf)? {
                self.buf.drain(..head.len);
                if head.status >= 200 {
                    return Ok(head);
                }
                continue;
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(ExchangeError::HeadTooLarge);
            }
            self.fill().await?;
        }
    }

    async fn read_body(
        &mut self,
        kind: BodyKind,
        mut sse: Option<&mut SseTracker>,
    ) -> Result<(), ExchangeError> {
        let mut feed = |bytes: &[u8]| {
            if let Some(t) = sse.as_deref_mut() {
                t.feed(bytes, Instant::now());
            }
        };
        match kind {
            BodyKind::Empty => Ok(()),
            BodyKind::Length(n) => self.read_length(n, &mut feed).await,
            BodyKind::Chunked => self.read_chunked(&mut feed).await,
            BodyKind::UntilClose => self.read_until_close(&mut feed).await,
        }
    }

    async fn read_length(
        &mut self,
        mut left: u64,
        feed: &mut impl FnMut(&[u8]),
    ) -> Result<(), ExchangeError> {
        loop {
            let take = usize::try_from(left).map_or(self.buf.len(), |l| l.min(self.buf.len()));
            feed(&self.buf[..take]);
            self.buf.drain(..take);
            left -= take as u64;
            if left == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    async fn read_chunked(&mut self, feed: &mut impl FnMut(&[u8])) -> Result<(), ExchangeError> {
        let mut decoder = ChunkedDecoder::new();
        loop {
            let progress = decoder.decode(&self.buf, &mut *feed)?;
            self.buf.drain(..progress.consumed);
            if progress.done {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    async fn read_until_close(
        &mut self,
        feed: &mut impl FnMut(&[u8]),
    ) -> Result<(), ExchangeError> {
        loop {
            feed(&self.buf);
            self.buf.clear();
            match self.fill().await {
                Ok(()) => {}
                Err(ExchangeError::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends at least one byte from the socket to the buffer.
    async fn fill(&mut self) -> Result<(), ExchangeError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.reserve(READ_SPACE);
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, slice) = self.stream.read(buf.slice_mut(len..cap)).await;
        self.buf = slice.into_inner();
        match res? {
            0 => Err(ExchangeError::Closed),
            _ => Ok(()),
        }
    }
}

/// Parses a response head at the start of `buf`; `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ExchangeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(buf).map_err(ExchangeError::Head)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = res.code.unwrap_or_default();
    let mut head = Head {
        len,
        status,
        body: BodyKind::UntilClose,
        keep_alive: res.version == Some(1),
        target: None,
        attempts: None,
        continued: false,
    };
    let mut length = None;
    let mut chunked = false;
    for h in res.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        match h.name.to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(value.parse::<u64>().map_err(|_| ExchangeError::BadLength)?)
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().ends_with("chunked"),
            "connection" => head.keep_alive = connection_keeps_alive(value, head.keep_alive),
            "x-switchyard-target" => head.target = Some(value.to_string()),
            // A malformed count is ignored rather than failing the request: the
            // header is diagnostics, not part of the response the client uses.
            "x-switchyard-attempts" => head.attempts = value.parse().ok(),
            "x-switchyard-continued" => head.continued = value.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    head.body = match (status, chunked, length) {
        (100..=199 | 204 | 304, _, _) => BodyKind::Empty,
        (_, true, _) => BodyKind::Chunked,
        (_, false, Some(n)) => BodyKind::Length(n),
        (_, false, None) => BodyKind::UntilClose,
    };
    Ok(Some(head))
}

fn connection_keeps_alive(value: &str, default: bool) -> bool {
    let has = |token: &str| {
        value
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if has("close") {
        false
    } else {
        default || has("keep-alive")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        parse_head(text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn parses_length_chunked_and_close_delimited_heads() {
        let h = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 12\r\nx-switchyard-target: mock-a\r\n\r\nrest",
        );
        assert_eq!(h.attempts, None);
        assert_eq!(
            (h.status, h.body, h.keep_alive),
            (200, BodyKind::Length(12), true)
        );
        assert_eq!(h.target.as_deref(), Some("mock-a"));
        assert_eq!(
            h.len,
            "HTTP/1.1 200 OK\r\ncontent-length: 12\r\nx-switchyard-target: mock-a\r\n\r\n".len()
        );
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Switchyard-Continued: true\r\n\r\n",
        );
        assert_eq!((h.body, h.continued), (BodyKind::Chunked, true));
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-switchyard-attempts: 2\r\n\r\n");
        assert_eq!(h.attempts, Some(2));
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-switchyard-attempts: x\r\n\r\n");
        assert_eq!(h.attempts, None);
        let h = head("HTTP/1.1 503 Busy\r\nconnection: close\r\n\r\n");
        assert_eq!(
            (h.status, h.body, h.keep_alive),
            (503, BodyKind::UntilClose, false)
        );
        let h = head("HTTP/1.0 204 No Content\r\n\r\n");
        assert_eq!((h.body, h.keep_alive), (BodyKind::Empty, false));
    }

    #[test]
    fn partial_and_malformed_heads() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
            .unwrap()
            .is_none());
        assert!(matches!(
            parse_head(b"NOT HTTP\r\n\r\n"),
            Err(ExchangeError::Head(_))
        ));
        let bad = parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n");
        assert!(matches!(bad, Err(ExchangeError::BadLength)));
    }
}
