//! Response heads: parsing what an upstream answers (client side) and writing the
//! heads the gateway sends — responses to clients and requests to upstreams.

use super::{
    framing_of, keep_alive_of, push_decimal, push_field, push_header, Fields, Framing, HeadError,
    MAX_HEADERS,
};

/// How an upstream response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: response to HEAD, 1xx, 204, 304.
    None,
    ContentLength(u64),
    Chunked,
    /// No length given: the body ends when the upstream closes the connection.
    UntilClose,
}

/// A parsed upstream response head; the body starts at `head_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Fields,
    pub framing: BodyFraming,
    /// Whether the connection may be reused; always false with `UntilClose`.
    pub keep_alive: bool,
    pub head_len: usize,
}

impl ResponseHead {
    /// First value of the header with this (lower-case) name.
    pub fn header(&self, lowercase_name: &str) -> Option<&[u8]> {
        self.headers.get(lowercase_name)
    }
}

/// Parses a response head from the start of `buf`.
///
/// `request_was_head`: a response to HEAD has no body. 1xx, 204, 304 have none either.
/// Caller skips 1xx (e.g. 100 Continue) itself and parses again. `Ok(None)` and the
/// size limit behave as in [`super::parse_request_head`].
pub fn parse_response_head(
    buf: &[u8],
    max_header_bytes: usize,
    request_was_head: bool,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let parsed = resp.parse(buf);
    let Some(head_len) = super::complete_head_len(parsed, buf.len(), max_header_bytes)? else {
        return Ok(None);
    };
    let (Some(status), Some(minor_version)) = (resp.code, resp.version) else {
        return Err(HeadError::Malformed(httparse::Error::Status));
    };
    let headers = &*resp.headers;
    let has_no_body = request_was_head || status < 200 || status == 204 || status == 304;
    let framing = if has_no_body {
        BodyFraming::None
    } else {
        match framing_of(headers)? {
            Framing::Absent => BodyFraming::UntilClose,
            Framing::Length(n) => BodyFraming::ContentLength(n),
            Framing::Chunked => BodyFraming::Chunked,
        }
    };
    let keep_alive = framing != BodyFraming::UntilClose && keep_alive_of(minor_version, headers);
    Ok(Some(ResponseHead {
        status,
        headers: Fields::from_parsed(headers),
        framing,
        keep_alive,
        head_len,
    }))
}

/// The body length a written head announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLen {
    Fixed(usize),
    Chunked,
}

/// Writes "HTTP/1.1 {status} {reason}\r\n", the headers, `content-length` or
/// `transfer-encoding: chunked`, `connection: close` when !keep_alive, and the blank
/// line. 1xx, 204 and 304 get no framing header (they have no body). CR/LF inside
/// names and values are written as spaces.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &[u8])],
    body: BodyLen,
    keep_alive: bool,
) {
    write_status_line(out, status);
    for (name, value) in headers {
        push_header(out, name, value);
    }
    finish_response_head(out, status, body, keep_alive);
}

/// Appends "HTTP/1.1 {status} {reason}\r\n".
pub(crate) fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends the framing and connection headers and the blank line ending a head.
pub(crate) fn finish_response_head(
    out: &mut Vec<u8>,
    status: u16,
    body: BodyLen,
    keep_alive: bool,
) {
    let bodiless = status < 200 || status == 204 || status == 304;
    match body {
        _ if bodiless => {}
        BodyLen::Fixed(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n as u64);
            out.extend_from_slice(b"\r\n");
        }
        BodyLen::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes "{method} {path} HTTP/1.1\r\nhost: {host}\r\n" + headers +
/// "content-length: {n}\r\n\r\n" (the upstream request).
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &[u8])],
    content_length: usize,
) {
    push_field(out, method.as_bytes());
    out.push(b' ');
    push_field(out, path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_header(out, "host", host.as_bytes());
    for (name, value) in headers {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"content-length: ");
    push_decimal(out, content_length as u64);
    out.extend_from_slice(b"\r\n\r\n");
}

/// The standard reason phrase of a status code ("Unknown" for unregistered codes).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        529 => "Site Overloaded",
        _ => "Unknown",
    }
}

/// Parses `Retry-After`: delta-seconds (whole or fractional) or an HTTP date
/// (relative to `now`). Absurd values are capped at a day; callers cap further.
pub fn parse_retry_after(value: &[u8], now: std::time::SystemTime) -> Option<std::time::Duration> {
    use std::time::Duration;
    let text = std::str::from_utf8(value).ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8 * 1024;

    fn parse(buf: &[u8], head: bool) -> ResponseHead {
        parse_response_head(buf, MAX, head).unwrap().unwrap()
    }

    #[test]
    fn parses_framings() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Req: a\r\n\r\nhello";
        let r = parse(buf, false);
        assert_eq!(r.status, 200);
        assert_eq!(r.framing, BodyFraming::ContentLength(5));
        assert!(r.keep_alive);
        assert_eq!(r.head_len, buf.len() - 5);
        assert_eq!(r.header("x-req"), Some(&b"a"[..]));
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(r.framing, BodyFraming::Chunked);
        let r = parse(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",
            false,
        );
        assert_eq!(r.framing, BodyFraming::UntilClose);
        assert!(!r.keep_alive);
    }

    #[test]
    fn bodiless_responses() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
        assert_eq!(r.framing, BodyFraming::None);
        assert!(r.keep_alive);
        for status in ["100 Continue", "204 No Content", "304 Not Modified"] {
            let buf = format!("HTTP/1.1 {status}\r\n\r\n");
            assert_eq!(parse(buf.as_bytes(), false).framing, BodyFraming::None);
        }
    }

    #[test]
    fn keep_alive_by_version() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            false,
        );
        assert!(!r.keep_alive);
        let r = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(!r.keep_alive);
        let r = parse(
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
            false,
        );
        assert!(r.keep_alive);
    }

    #[test]
    fn incomplete_errors_and_limits() {
        assert_eq!(
            parse_response_head(b"HTTP/1.1 200 OK\r\n", MAX, false),
            Ok(None)
        );
        assert_eq!(
            parse_response_head(b"HTTP/1.1 200 OK\r\n", 10, false),
            Err(HeadError::TooLarge)
        );
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            parse_response_head(buf, MAX, false),
            Err(HeadError::LengthAndEncoding)
        );
        let buf = b"HTTP/1.1 2000 OK\r\n\r\n";
        assert!(matches!(
            parse_response_head(buf, MAX, false),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn writes_response_heads() {
        let mut out = Vec::new();
        let hdrs: [(&str, &[u8]); 1] = [("x-request-id", b"abc")];
        write_response_head(&mut out, 200, &hdrs, BodyLen::Fixed(42), true);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nx-request-id: abc\r\ncontent-length: 42\r\n\r\n"
        );
        out.clear();
        write_response_head(&mut out, 503, &[], BodyLen::Chunked, false);
        assert_eq!(
            out,
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        out.clear();
        write_response_head(&mut out, 204, &[], BodyLen::Fixed(0), true);
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
        let reparsed = parse(&out, false);
        assert_eq!(reparsed.status, 204);
    }

    #[test]
    fn writes_request_heads() {
        let mut out = Vec::new();
        let hdrs: [(&str, &[u8]); 1] = [("authorization", b"Bearer k")];
        write_request_head(
            &mut out,
            "POST",
            "/v1/chat/completions",
            "api.openai.com",
            &hdrs,
            17,
        );
        assert_eq!(
            out,
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: api.openai.com\r\nauthorization: Bearer k\r\ncontent-length: 17\r\n\r\n"
        );
        let req = crate::http::parse_request_head(&out, MAX).unwrap().unwrap();
        assert_eq!(req.body, crate::http::RequestBody::ContentLength(17));
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(599), "Unknown");
    }
    #[test]
    fn retry_after_forms() {
        use std::time::{Duration, SystemTime};
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after(b"7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(b" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(later.as_bytes(), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(past.as_bytes(), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(b"soon", now), None);
    }
}
