//! One client connection: read requests in order (keep-alive, pipelining), enforce
//! the size and time limits, answer each one before reading the next.
//!
//! Malformed input is answered with an OpenAI-shaped error and the connection is
//! closed when its framing can no longer be trusted; nothing here panics on input.

use std::rc::Rc;
use std::time::Instant;

use monoio::io::{AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::timeout_at;

use crate::bufio::{consume, read_more};
use crate::config::Limits;
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{parse_request_head, RequestBody, RequestHead};
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

pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream) {
    let _open = Gauge::up(&shard.open_connections);
    let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(8 * 1024);
    loop {
        let limits = shard.table().config.limits;
        let head = match read_head(&shard, &mut stream, &mut buf, &limits).await {
            Ok(head) => head,
            Err(ReadError::Closed) => return,
            Err(ReadError::Reply(error)) => {
                return reply_and_close(&shard, &mut stream, out, &error, Dialect::OpenAi).await
            }
        };
        let _active = Gauge::up(&shard.active_requests);
        let started = Instant::now();
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
            &head,
            &body,
            keep_alive,
            started,
            &mut stream,
            &mut out,
        )
        .await;
        if served.is_err() || !keep_alive {
            return;
        }
    }
}

async fn reply_and_close(
    shard: &Shard,
    stream: &mut TcpStream,
    mut out: Vec<u8>,
    error: &ApiError,
    dialect: Dialect,
) {
    shard.metrics.borrow_mut().record_bad_request(error.status);
    out.clear();
    let meta = Meta {
        request_id: shard.next_request_id(),
        keep_alive: false,
        dialect,
        ..Meta::default()
    };
    meta.write_error(&mut out, error, &[]);
    let _ = crate::bufio::write_all(stream, out).await;
    let _ = stream.shutdown().await;
}

/// Reads the next request head. Waiting for its first byte is bounded by the idle
/// timeout (then the connection just closes); a started head must complete within
/// the request timeout (else 408).
async fn read_head(
    shard: &Shard,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> Result<RequestHead, ReadError> {
    let mut request_deadline: Option<Instant> = None;
    loop {
        match parse_request_head(buf, limits.max_header_bytes) {
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
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: &RequestHead,
    limits: &Limits,
    started: Instant,
) -> Result<Vec<u8>, ReadError> {
    let deadline = started + limits.request_timeout;
    let max = limits.max_body_bytes;
    match head.body {
        RequestBody::Empty | RequestBody::ContentLength(0) => Ok(Vec::new()),
        RequestBody::ContentLength(n) if n > max as u64 => Err(too_large(max)),
        RequestBody::ContentLength(n) => {
            let n = n as usize;
            if head.expect_continue && buf.len() < n {
                send_continue(stream).await?;
            }
            while buf.len() < n {
                fill(stream, buf, deadline).await?;
            }
            let rest = buf.split_off(n);
            Ok(std::mem::replace(buf, rest))
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
                    return Ok(body);
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

async fn send_continue(stream: &mut TcpStream) -> Result<(), ReadError> {
    let (res, _) = stream
        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec())
        .await;
    res.map(|_| ()).map_err(|_| ReadError::Closed)
}

async fn fill(
    stream: &mut TcpStream,
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
