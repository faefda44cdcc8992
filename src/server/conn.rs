//! One client connection: read requests in order (keep-alive, pipelining), enforce
//! the size and time limits, answer each one before reading the next.
//!
//! Malformed input is answered with an OpenAI-shaped error and the connection is
//! closed when its framing can no longer be trusted; nothing here panics on input.

use std::rc::Rc;
use std::time::Instant;

use crate::downstream::ClientStream;
use monoio::time::timeout_at;

use super::dispatch::KeyMemo;
use crate::bufio::{consume, read_more};
use crate::config::Limits;
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{parse_request_head_into, HeadStorage, RequestBody, RequestHead};
use crate::http::ApiError;
use crate::proxy::respond::{Dialect, Meta};
use crate::shard::Shard;

/// Counts a value up for as long as the guard lives.
struct Gauge<'a>(&'a std::cell::Cell<usize>);

impl<'a> Gauge<'a> {
    fn up(cell: &'a std::cell::Cell<usize>) -> Self {
        cell.set(cell.get() + 1);
        Gauge(cell)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

enum ReadError {
    /// Clean end: EOF between requests, idle timeout, or shutdown.
    Closed,
    /// Answer this and close.
    Reply(ApiError),
}

pub async fn serve(shard: Rc<Shard>, stream: monoio::net::TcpStream) {
    let limits = shard.table().config.limits;
    let mut stream = ClientStream::new(stream, limits.client_write_timeout);
    let _open = Gauge::up(&shard.open_connections);
    let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut storage = HeadStorage::default();
    let mut keys = KeyMemo::default();
    loop {
        let limits = shard.table().config.limits;
        stream.set_write_timeout(limits.client_write_timeout);
        let head = match read_head(&shard, &mut stream, &mut buf, &limits, &mut storage).await {
            Ok(head) => head,
            Err(ReadError::Closed) => return,
            Err(ReadError::Reply(error)) => {
                return reply_and_close(&shard, &mut stream, out, &error, Dialect::OpenAi).await
            }
        };
        let _active = Gauge::up(&shard.active_requests);
        shard.note_request();
        let started = Instant::now();
        let admitted = match super::dispatch::admit(&shard, &head, &mut keys) {
            Ok(admitted) => admitted,
            Err(mut rejected) => {
                // Refused on its head: a small body already on its way is skipped
                // so the connection lives on; any other is never read, and the
                // connection ends after the answer.
                let skipped = skip_small_body(&mut stream, &mut buf, &head, &limits).await;
                let keep_alive = head.keep_alive && skipped && shard.draining.get().is_none();
                rejected.set_keep_alive(keep_alive);
                let answered =
                    super::dispatch::answer_rejected(&shard, &mut stream, &mut out, &rejected)
                        .await;
                if answered.is_ok() && keep_alive {
                    storage.recycle(head);
                    continue;
                }
                return linger_close(&mut stream).await;
            }
        };
        let body = match read_body(&mut stream, &mut buf, &head, &limits, started).await {
            Ok(body) => body,
            Err(ReadError::Closed) => return,
            Err(ReadError::Reply(error)) => {
                let dialect = super::dispatch::dialect_of(head.path());
                return reply_and_close(&shard, &mut stream, out, &error, dialect).await;
            }
        };
        let keep_alive = head.keep_alive && shard.draining.get().is_none();
        let served = super::dispatch::dispatch(
            &shard,
            admitted,
            &head,
            body.bytes(&buf),
            keep_alive,
            started,
            &mut stream,
            &mut out,
        )
        .await;
        if served.is_err() || !keep_alive {
            return;
        }
        body.consume(&mut buf);
        storage.recycle(head);
    }
}

async fn reply_and_close(
    shard: &Shard,
    stream: &mut ClientStream,
    mut out: Vec<u8>,
    error: &ApiError,
    dialect: Dialect,
) {
    shard.record_bad_request(error);
    out.clear();
    let meta = Meta {
        request_id: shard.next_request_id(),
        keep_alive: false,
        dialect,
        ..Meta::default()
    };
    meta.write_error(&mut out, error, &[]);
    let _ = stream.write_all(out).await;
    let _ = stream.shutdown().await;
}

/// Largest body of a refused request that is read and dropped to keep the
/// connection; anything bigger (or chunked, or waiting for `100 Continue`) closes it.
const MAX_SKIPPED_BODY: u64 = 64 * 1024;

/// Reads past the small body of a refused request without keeping it. `false` when
/// the body is not worth reading (the connection must then close).
async fn skip_small_body(
    stream: &mut ClientStream,
    buf: &mut Vec<u8>,
    head: &RequestHead,
    limits: &Limits,
) -> bool {
    let n = match head.body {
        RequestBody::Empty => return true,
        RequestBody::ContentLength(n) if n <= MAX_SKIPPED_BODY && !head.expect_continue => n,
        _ => return false,
    };
    let deadline = Instant::now() + limits.request_timeout;
    while (buf.len() as u64) < n {
        if fill(stream, buf, deadline).await.is_err() {
            return false;
        }
    }
    consume(buf, n as usize);
    true
}

/// Ends a connection whose request body will not be read: the answer is out, the
/// write side closes, and what the client still sends is read and dropped for a
/// moment (bounded in time and bytes) so that closing does not reset the
/// connection before the client has read the answer.
async fn linger_close(stream: &mut ClientStream) {
    const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
    const MAX_DISCARD: usize = 1024 * 1024;
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + LINGER;
    let mut discarded = 0;
    let mut scratch = Vec::with_capacity(crate::bufio::READ_CHUNK);
    while discarded < MAX_DISCARD {
        scratch.clear();
        let read = timeout_at(deadline.into(), read_more(stream, scratch)).await;
        let Ok((Ok(n), returned)) = read else { return };
        if n == 0 {
            return;
        }
        discarded += n;
        scratch = returned;
    }
}

/// Bodies up to this size that arrived with their head are served from the
/// connection's buffer rather than taking it over.
const SMALL_BODY: usize = 64 * 1024;

/// Where a request's body is.
enum Body {
    /// The first `n` bytes of the connection's buffer (the usual small request,
    /// read with its head): served in place and consumed after the answer, so
    /// the buffer keeps its capacity and the body is never copied.
    Buffered(usize),
    Owned(Vec<u8>),
}

impl Body {
    fn bytes<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        match self {
            Body::Buffered(n) => &buf[..*n],
            Body::Owned(owned) => owned,
        }
    }

    /// Drops a buffered body from the connection's buffer once it is answered.
    fn consume(self, buf: &mut Vec<u8>) {
        if let Body::Buffered(n) = self {
            consume(buf, n);
        }
    }
}

/// Reads the next request head. Waiting for its first byte is bounded by the idle
/// timeout (then the connection just closes); a started head must complete within
/// the request timeout (else 408).
async fn read_head(
    shard: &Shard,
    stream: &mut ClientStream,
    buf: &mut Vec<u8>,
    limits: &Limits,
    storage: &mut HeadStorage,
) -> Result<RequestHead, ReadError> {
    let mut request_deadline: Option<Instant> = None;
    loop {
        match parse_request_head_into(buf, limits.max_header_bytes, storage) {
            Ok(Some(head)) => {
                consume(buf, head.head_len);
                return Ok(head);
            }
            Ok(None) => {}
            Err(e) => return Err(ReadError::Reply(ApiError::from(&e))),
        }
        if buf.is_empty() && shard.draining.get().is_some() {
            return Err(ReadError::Closed);
        }
        let deadline = match request_deadline {
            Some(d) => d,
            None if buf.is_empty() => Instant::now() + limits.idle_timeout,
            None => *request_deadline.insert(Instant::now() + limits.request_timeout),
        };
        let (res, returned) =
            match timeout_at(deadline.into(), read_more(stream, std::mem::take(buf))).await {
                Ok(pair) => pair,
                Err(_) if request_deadline.is_none() => return Err(ReadError::Closed),
                Err(_) => {
                    return Err(ReadError::Reply(ApiError::request_timeout(
                        "the request head did not arrive in time",
                    )))
                }
            };
        *buf = returned;
        match res {
            Ok(0) | Err(_) => return Err(ReadError::Closed),
            Ok(_) if request_deadline.is_none() => {
                request_deadline = Some(Instant::now() + limits.request_timeout)
            }
            Ok(_) => {}
        }
    }
}

async fn read_body(
    stream: &mut ClientStream,
    buf: &mut Vec<u8>,
    head: &RequestHead,
    limits: &Limits,
    started: Instant,
) -> Result<Body, ReadError> {
    let deadline = started + limits.request_timeout;
    let max = limits.max_body_bytes;
    match head.body {
        RequestBody::Empty | RequestBody::ContentLength(0) => Ok(Body::Buffered(0)),
        RequestBody::ContentLength(n) if n > max as u64 => Err(too_large(max)),
        RequestBody::ContentLength(n) => {
            let n = n as usize;
            // A small body already in the connection's buffer stays there: handing
            // the buffer itself over cost every request a fresh one, copying the
            // body out an allocation and a copy.
            if buf.len() >= n && n <= SMALL_BODY {
                return Ok(Body::Buffered(n));
            }
            // The length is known (and within the limit): one allocation with room
            // for the last read, instead of doubling up to twice the body.
            buf.reserve_exact(n.saturating_sub(buf.len()) + crate::bufio::READ_CHUNK);
            if head.expect_continue && buf.len() < n {
                send_continue(stream).await?;
            }
            while buf.len() < n {
                fill(stream, buf, deadline).await?;
            }
            let rest = buf.split_off(n);
            Ok(Body::Owned(std::mem::replace(buf, rest)))
        }
        RequestBody::Chunked => {
            if head.expect_continue && buf.is_empty() {
                send_continue(stream).await?;
            }
            let mut decoder = ChunkedDecoder::new();
            let mut body = Vec::new();
            loop {
                let progress = decoder.decode(buf, &mut body).map_err(|e| {
                    ReadError::Reply(ApiError::bad_request(format!(
                        "malformed chunked body: {e}"
                    )))
                })?;
                consume(buf, progress.consumed);
                if body.len() > max {
                    return Err(too_large(max));
                }
                if progress.done {
                    return Ok(Body::Owned(body));
                }
                fill(stream, buf, deadline).await?;
            }
        }
    }
}

fn too_large(max: usize) -> ReadError {
    ReadError::Reply(ApiError::payload_too_large(format!(
        "request body exceeds the limit of {max} bytes"
    )))
}

async fn send_continue(stream: &mut ClientStream) -> Result<(), ReadError> {
    let (res, _) = stream
        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec())
        .await;
    res.map_err(|_| ReadError::Closed)
}

async fn fill(
    stream: &mut ClientStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), ReadError> {
    let (res, returned) = timeout_at(deadline.into(), read_more(stream, std::mem::take(buf)))
        .await
        .map_err(|_| {
            ReadError::Reply(ApiError::request_timeout(
                "the request body did not arrive in time",
            ))
        })?;
    *buf = returned;
    match res {
        Ok(0) | Err(_) => Err(ReadError::Closed),
        Ok(_) => Ok(()),
    }
}
