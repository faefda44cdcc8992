//! One HTTP/1.1 exchange with a provider: send the request, read the response head,
//! then hand out the body piece by piece.
//!
//! A request written to a reused keep-alive socket that dies before the first
//! response byte is sent again, once, on a fresh socket: that is the pool's
//! staleness, not the provider's failure, and it is never reported as one.

use std::time::{Duration, Instant};

use monoio::time::timeout_at;

use super::pool::{ConnectError, Pool, PooledConn};
use crate::bufio::{consume, read_more, write_all};
use crate::bufpool;
use crate::http::chunked::ChunkedDecoder;
use crate::http::response::{parse_response_head, BodyFraming, ResponseHead};

/// Largest response head accepted from a provider.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("no response head before the first-byte deadline")]
    FirstByteTimeout,
    #[error("the provider did not take the request body before its deadline")]
    SendTimeout,
    #[error("provider closed the connection before answering")]
    ClosedBeforeResponse,
    #[error("sending the request failed: {0}")]
    Send(std::io::Error),
    #[error("reading the response failed: {0}")]
    Receive(std::io::Error),
    #[error("malformed response from provider: {0}")]
    Malformed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("no body bytes within the between-chunks timeout")]
    Stalled,
    #[error("provider closed the connection mid-body")]
    Truncated,
    #[error("reading the body failed: {0}")]
    Io(std::io::Error),
    #[error("malformed chunked body: {0}")]
    Malformed(String),
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
}

enum BodyState {
    Remaining(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

/// A provider's response whose head has arrived and whose body is still on the wire.
pub struct Response {
    pub head: ResponseHead,
    conn: PooledConn,
    buf: Vec<u8>,
    state: BodyState,
}

/// How long each phase of one exchange may take.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeDeadlines {
    pub connect: Duration,
    /// Bounds the upload too: a provider that stops reading gets this long from the
    /// first byte written, never past `total`.
    pub first_byte: Duration,
    /// When the response head must have arrived.
    pub first_byte_at: Instant,
    /// The request's own deadline.
    pub total: Instant,
}

/// Sends `request` (head and body, already encoded) and waits for the response head
/// until `first_byte_at`. The request buffer is handed back for reuse (an empty one
/// when the upload timed out and took the buffer with it).
pub async fn exchange(
    pool: &Pool,
    request: Vec<u8>,
    deadlines: ExchangeDeadlines,
) -> (Result<Response, ExchangeError>, Vec<u8>) {
    let mut request = request;
    let mut fresh = false;
    loop {
        let mut conn = match pool.checkout(deadlines.connect, fresh).await {
            Ok(conn) => conn,
            Err(e) => return (Err(e.into()), request),
        };
        let retry_if_stale = conn.reused && !fresh;
        let upload_deadline = deadlines.total.min(Instant::now() + deadlines.first_byte);
        let upload = timeout_at(upload_deadline.into(), write_all(conn.stream(), request)).await;
        let Ok((sent, buf)) = upload else {
            // The write was cancelled with the socket; it is never reused.
            return (Err(ExchangeError::SendTimeout), Vec::new());
        };
        request = buf;
        if let Err(e) = sent {
            if retry_if_stale {
                fresh = true;
                continue;
            }
            return (Err(ExchangeError::Send(e)), request);
        }
        match read_head(conn, deadlines.first_byte_at).await {
            Err(HeadFailure::NothingReceived) if retry_if_stale => fresh = true,
            Err(failure) => return (Err(failure.into()), request),
            Ok(response) => return (Ok(response), request),
        }
    }
}

enum HeadFailure {
    /// EOF or reset before a single response byte: maybe a stale socket.
    NothingReceived,
    Timeout,
    Io(std::io::Error),
    Malformed(String),
}

impl From<HeadFailure> for ExchangeError {
    fn from(failure: HeadFailure) -> Self {
        match failure {
            HeadFailure::NothingReceived => ExchangeError::ClosedBeforeResponse,
            HeadFailure::Timeout => ExchangeError::FirstByteTimeout,
            HeadFailure::Io(e) => ExchangeError::Receive(e),
            HeadFailure::Malformed(m) => ExchangeError::Malformed(m),
        }
    }
}

async fn read_head(mut conn: PooledConn, deadline: Instant) -> Result<Response, HeadFailure> {
    let mut buf = bufpool::take(crate::bufio::READ_CHUNK);
    let mut received_any = false;
    loop {
        match parse_response_head(&buf, MAX_RESPONSE_HEAD, false) {
            Err(e) => return Err(HeadFailure::Malformed(e.to_string())),
            Ok(Some(head)) if (100..200).contains(&head.status) => {
                consume(&mut buf, head.head_len);
                continue;
            }
            Ok(Some(head)) => {
                consume(&mut buf, head.head_len);
                let state = body_state(&head.framing);
                return Ok(Response {
                    head,
                    conn,
                    buf,
                    state,
                });
            }
            Ok(None) => {}
        }
        if Instant::now() >= deadline {
            return Err(HeadFailure::Timeout);
        }
        let read = timeout_at(deadline.into(), read_more(conn.stream(), buf)).await;
        let (res, returned) = read.map_err(|_| HeadFailure::Timeout)?;
        buf = returned;
        match res {
            Ok(0) if !received_any => return Err(HeadFailure::NothingReceived),
            Ok(0) => {
                return Err(HeadFailure::Malformed(
                    "connection closed inside the response head".into(),
                ))
            }
            Ok(_) => received_any = true,
            Err(e) if !received_any && is_reset(&e) => return Err(HeadFailure::NothingReceived),
            Err(e) => return Err(HeadFailure::Io(e)),
        }
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

fn body_state(framing: &BodyFraming) -> BodyState {
    match framing {
        BodyFraming::None | BodyFraming::ContentLength(0) => BodyState::Done,
        BodyFraming::ContentLength(n) => BodyState::Remaining(*n),
        BodyFraming::Chunked => BodyState::Chunked(ChunkedDecoder::new()),
        BodyFraming::UntilClose => BodyState::UntilClose,
    }
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }

    pub fn body_done(&self) -> bool {
        matches!(self.state, BodyState::Done)
    }

    /// Appends the next decoded body bytes to `out`, waiting for the socket at most
    /// until `deadline`. Returns `Ok(false)` once the body is complete.
    pub async fn read_chunk(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<bool, BodyError> {
        loop {
            let before = out.len();
            self.decode_buffered(out)?;
            if self.body_done() {
                return Ok(false);
            }
            if out.len() > before {
                return Ok(true);
            }
            self.fill(deadline).await?;
        }
    }

    /// Reads the whole remaining body, failing past `limit` bytes.
    pub async fn read_to_end(
        &mut self,
        limit: usize,
        stall: std::time::Duration,
        deadline: Instant,
    ) -> Result<Vec<u8>, BodyError> {
        let mut body = Vec::new();
        loop {
            let read_deadline = deadline.min(Instant::now() + stall);
            if !self.read_chunk(&mut body, read_deadline).await? {
                return Ok(body);
            }
            if body.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
        }
    }

    /// Returns the connection to the pool when the exchange ended cleanly.
    pub fn finish(self) {
        if self.body_done() && self.head.keep_alive && self.buf.is_empty() {
            self.conn.release();
        }
        bufpool::give(self.buf);
    }

    fn decode_buffered(&mut self, out: &mut Vec<u8>) -> Result<(), BodyError> {
        match &mut self.state {
            BodyState::Done => {}
            BodyState::UntilClose => {
                out.extend_from_slice(&self.buf);
                self.buf.clear();
            }
            BodyState::Remaining(left) => {
                let take = (*left).min(self.buf.len() as u64) as usize;
                out.extend_from_slice(&self.buf[..take]);
                consume(&mut self.buf, take);
                *left -= take as u64;
                if *left == 0 {
                    self.state = BodyState::Done;
                }
            }
            BodyState::Chunked(decoder) => {
                let progress = decoder
                    .decode(&self.buf, out)
                    .map_err(|e| BodyError::Malformed(e.to_string()))?;
                consume(&mut self.buf, progress.consumed);
                if progress.done {
                    self.state = BodyState::Done;
                }
            }
        }
        Ok(())
    }

    async fn fill(&mut self, deadline: Instant) -> Result<(), BodyError> {
        // Checked here, not only by the timer: on the legacy driver a socket that
        // always has data ready completes every read before the timer is polled.
        if Instant::now() >= deadline {
            return Err(BodyError::Stalled);
        }
        let buf = std::mem::take(&mut self.buf);
        let read = timeout_at(deadline.into(), read_more(self.conn.stream(), buf)).await;
        let (res, buf) = read.map_err(|_| BodyError::Stalled)?;
        self.buf = buf;
        match res {
            Ok(0) if matches!(self.state, BodyState::UntilClose) => {
                self.state = BodyState::Done;
                self.head.keep_alive = false;
                Ok(())
            }
            Ok(0) => Err(BodyError::Truncated),
            Ok(_) => Ok(()),
            Err(e) => Err(BodyError::Io(e)),
        }
    }
}
