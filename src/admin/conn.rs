//! One admin connection's I/O under deadlines: the whole request (head and body)
//! must arrive within [`REQUEST_DEADLINE`] and the reply must be taken within
//! [`WRITE_DEADLINE`], however slowly the peer dribbles bytes.
//!
//! Blocking std sockets with a per-call timeout recomputed from the deadline, so
//! each read or write waits at most what is left of the whole budget.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::http::request::{parse_request_head, RequestBody, RequestHead};
use crate::http::HeadError;

/// Longest request head the admin listener reads.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest body accepted (and discarded: admin requests take no body).
pub const MAX_BODY_BYTES: u64 = 64 * 1024;
/// Head and body together must arrive within this, from accept.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The peer must take the whole reply within this.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// Why no request could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the request did not arrive within {0:?}")]
    Deadline(Duration),
    #[error("the peer closed the connection")]
    Closed,
    #[error("malformed request: {0}")]
    Malformed(#[from] HeadError),
    #[error("chunked request bodies are not accepted")]
    Chunked,
    #[error("request body of {0} bytes exceeds {MAX_BODY_BYTES}")]
    TooLarge(u64),
    #[error(transparent)]
    Io(std::io::Error),
}

/// Why a reply was not fully written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the reply was not taken within {0:?}")]
    Deadline(Duration),
    #[error("the peer closed the connection")]
    Closed,
    #[error(transparent)]
    Io(std::io::Error),
}

/// What is left until `deadline`, or `None` once it has passed (a zero timeout
/// would mean "block forever" to the socket API, so it is never passed on).
fn left(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

fn timed_out(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// One read that waits at most until `deadline`.
fn read_by(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    deadline: Instant,
) -> Result<usize, ReadError> {
    loop {
        let wait = left(deadline).ok_or(ReadError::Deadline(REQUEST_DEADLINE))?;
        stream.set_read_timeout(Some(wait)).map_err(ReadError::Io)?;
        match stream.read(chunk) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => return Err(ReadError::Deadline(REQUEST_DEADLINE)),
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Reads one request head and discards its (size-capped) body, all by `deadline`.
/// The body is drained rather than left unread so closing the socket afterwards
/// does not reset the connection before the peer has read the reply.
pub fn read_request(stream: &mut TcpStream, deadline: Instant) -> Result<RequestHead, ReadError> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head = loop {
        if let Some(head) = parse_request_head(&buf, MAX_HEAD_BYTES)? {
            break head;
        }
        let n = read_by(stream, &mut chunk, deadline)?;
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let body = match head.body {
        RequestBody::Empty => 0,
        RequestBody::Chunked => return Err(ReadError::Chunked),
        RequestBody::ContentLength(n) if n > MAX_BODY_BYTES => return Err(ReadError::TooLarge(n)),
        RequestBody::ContentLength(n) => n,
    };
    // Bounded by MAX_BODY_BYTES and by the deadline (each read takes >= 1 byte).
    let mut unread = body.saturating_sub((buf.len() - head.head_len) as u64);
    while unread > 0 {
        let n = read_by(stream, &mut chunk, deadline)?;
        unread = unread.saturating_sub(n as u64);
    }
    Ok(head)
}

/// How long a closing connection keeps reading what the peer still sends.
const LINGER: Duration = Duration::from_secs(1);

/// Ends the connection after a reply: our side is shut first (the peer reads the
/// reply, then EOF), then whatever the peer still sends is read and dropped for
/// at most [`LINGER`]. Closing with unread bytes would reset the connection and
/// could destroy the reply before the peer has read it (a 408 to a client still
/// sending, a 400 to one whose body was refused).
pub fn close_gracefully(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut chunk = [0u8; 4096];
    // Ends at EOF, on any error, or at the deadline.
    while read_by(stream, &mut chunk, deadline).is_ok() {}
}

/// Writes all of `bytes` by `deadline`.
pub fn write_by(stream: &mut TcpStream, bytes: &[u8], deadline: Instant) -> Result<(), WriteError> {
    let mut rest = bytes;
    // Each pass writes at least one byte or ends: bounded by the length and the deadline.
    while !rest.is_empty() {
        let wait = left(deadline).ok_or(WriteError::Deadline(WRITE_DEADLINE))?;
        stream
            .set_write_timeout(Some(wait))
            .map_err(WriteError::Io)?;
        match stream.write(rest) {
            Ok(0) => return Err(WriteError::Closed),
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => return Err(WriteError::Deadline(WRITE_DEADLINE)),
            Err(e) => return Err(WriteError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connected pair on 127.0.0.1: (client side, server side).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn reads_a_head_and_drains_its_body() {
        let (mut client, mut server) = pair();
        client
            .write_all(b"POST /admin/reload HTTP/1.1\r\ncontent-length: 5\r\n\r\nab")
            .unwrap();
        client.write_all(b"cde").unwrap();
        let head = read_request(&mut server, Instant::now() + Duration::from_secs(2)).unwrap();
        assert_eq!(head.path(), "/admin/reload");
    }

    #[test]
    fn a_dribbled_head_ends_at_the_deadline() {
        let (mut client, mut server) = pair();
        client.write_all(b"GET /metrics HTTP/1.1\r\nx-a: ").unwrap();
        let started = Instant::now();
        let error = read_request(&mut server, started + Duration::from_millis(200)).unwrap_err();
        assert!(matches!(error, ReadError::Deadline(_)), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_peer_that_never_reads_ends_the_write_at_the_deadline() {
        let (_client, mut server) = pair();
        // Far more than the socket buffers hold, so the write must block.
        let reply = vec![b'x'; 64 * 1024 * 1024];
        let started = Instant::now();
        let error =
            write_by(&mut server, &reply, started + Duration::from_millis(300)).unwrap_err();
        assert!(matches!(error, WriteError::Deadline(_)), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_graceful_close_lets_the_peer_read_the_reply_then_eof() {
        let (mut client, mut server) = pair();
        client.write_all(b"still sending").unwrap();
        write_by(
            &mut server,
            b"reply",
            Instant::now() + Duration::from_secs(2),
        )
        .unwrap();
        let started = Instant::now();
        close_gracefully(&mut server);
        assert!(started.elapsed() < Duration::from_secs(3));
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"reply");
    }

    #[test]
    fn bodies_over_the_cap_and_chunked_bodies_are_refused() {
        let (mut client, mut server) = pair();
        let head = format!(
            "POST /x HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        client.write_all(head.as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        assert!(matches!(
            read_request(&mut server, deadline),
            Err(ReadError::TooLarge(_))
        ));
        let (mut client, mut server) = pair();
        client
            .write_all(b"POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n")
            .unwrap();
        assert!(matches!(
            read_request(&mut server, deadline),
            Err(ReadError::Chunked)
        ));
    }
}
