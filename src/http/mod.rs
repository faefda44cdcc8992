//! The HTTP/1.1 codec: bytes in, parsed heads and decoded bodies out; heads,
//! chunks and events appended to a `Vec<u8>` on the way back. No I/O lives here.
//!
//! Both the server side (client requests) and the client side (upstream responses)
//! use it. Everything that decides how a message body is framed, and so everything
//! that request smuggling could exploit, is decided in this module, once, strictly:
//! [`framing_of`] is the single place that reads `Content-Length` and
//! `Transfer-Encoding`.

pub mod chunked;
pub mod encoding;
pub mod error;
pub mod fields;
pub mod request;
pub mod response;
pub mod sse;

pub use chunked::{encode_chunk, ChunkedDecoder, ChunkedError, Progress, LAST_CHUNK};
pub use error::ApiError;
pub use fields::Fields;
pub use request::{
    parse_request_head, parse_request_head_into, HeadStorage, Method, RequestBody, RequestHead,
};
pub use response::{
    parse_response_head, reason_phrase, write_request_head, write_response_head, BodyFraming,
    BodyLen, ResponseHead,
};
pub use sse::{is_done_marker, write_event, SseError, SseEvent, SseParser};

/// The most header lines one head may carry; more is treated as [`HeadError::TooLarge`].
pub const MAX_HEADERS: usize = 100;

/// Why a request or response head could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head is longer than the configured limit or has too many header lines.
    #[error("request header fields too large")]
    TooLarge,
    /// The bytes are not an HTTP/1.x head.
    #[error("malformed HTTP head: {0}")]
    Malformed(httparse::Error),
    /// Both `Content-Length` and `Transfer-Encoding` are present.
    #[error("both Content-Length and Transfer-Encoding are present")]
    LengthAndEncoding,
    /// `Content-Length` is not a plain decimal number (or overflows).
    #[error("invalid Content-Length header")]
    InvalidContentLength,
    /// Several `Content-Length` values that disagree.
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// A `Transfer-Encoding` other than exactly `chunked`.
    #[error("unsupported Transfer-Encoding (only \"chunked\" is accepted)")]
    UnsupportedTransferEncoding,
}

impl HeadError {
    /// The status a server answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::UnsupportedTransferEncoding => 501,
            _ => 400,
        }
    }
}

/// How a head says its body is delimited, before status/method rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Neither `Content-Length` nor `Transfer-Encoding`.
    Absent,
    Length(u64),
    Chunked,
}

/// Reads the framing headers of a head, rejecting every ambiguous combination.
pub(crate) fn framing_of(headers: &[httparse::Header<'_>]) -> Result<Framing, HeadError> {
    let mut length: Option<u64> = None;
    let mut encodings = 0usize;
    let mut chunked = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(merge_content_length(length, h.value)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            encodings += 1;
            chunked = h.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        }
    }
    match (length, encodings) {
        (Some(_), 1..) => Err(HeadError::LengthAndEncoding),
        (None, 1) if chunked => Ok(Framing::Chunked),
        (None, 1..) => Err(HeadError::UnsupportedTransferEncoding),
        (Some(n), 0) => Ok(Framing::Length(n)),
        (None, 0) => Ok(Framing::Absent),
    }
}

/// Folds one `Content-Length` field value (possibly a list like `42, 42`) into the
/// value seen so far; every element must be the same decimal number.
fn merge_content_length(seen: Option<u64>, value: &[u8]) -> Result<u64, HeadError> {
    let mut current = seen;
    for element in value.split(|&b| b == b',') {
        let n = parse_decimal(element.trim_ascii()).ok_or(HeadError::InvalidContentLength)?;
        match current {
            Some(prev) if prev != n => return Err(HeadError::ConflictingContentLength),
            _ => current = Some(n),
        }
    }
    current.ok_or(HeadError::InvalidContentLength)
}

/// Parses 1*DIGIT into a `u64`; `None` on anything else or on overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Whether the connection persists after this message, from its version and its
/// `Connection` tokens: HTTP/1.1 unless `close`, HTTP/1.0 only with `keep-alive`.
pub(crate) fn keep_alive_of(minor_version: u8, headers: &[httparse::Header<'_>]) -> bool {
    let mut close = false;
    let mut keep_alive = false;
    let connection = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"));
    for h in connection {
        for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            close |= token.eq_ignore_ascii_case(b"close");
            keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    !close && (minor_version >= 1 || keep_alive)
}

/// Appends the decimal form of `n` without going through `fmt`.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends the lower-case hexadecimal form of `n` without going through `fmt`.
pub(crate) fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends a head field (header name/value, method, path), turning CR and LF into
/// spaces so that no caller-supplied value can inject lines into a head.
pub(crate) fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    // memchr's vectorised scan: a byte-by-byte one was the largest single cost of
    // writing a head (callgrind).
    if memchr::memchr2(b'\r', b'\n', bytes).is_none() {
        out.extend_from_slice(bytes);
        return;
    }
    out.extend(bytes.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        other => other,
    }));
}

/// Appends `name: value\r\n`.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    push_field(out, name.as_bytes());
    out.extend_from_slice(b": ");
    push_field(out, value);
    out.extend_from_slice(b"\r\n");
}

/// The length of a complete head from an httparse result, applying the size
/// limit: `Ok(None)` means incomplete (read more), an incomplete head already at
/// `max_header_bytes` or a complete one longer than that is `TooLarge`.
pub(crate) fn complete_head_len(
    parsed: Result<httparse::Status<usize>, httparse::Error>,
    buffered: usize,
    max_header_bytes: usize,
) -> Result<Option<usize>, HeadError> {
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buffered >= max_header_bytes => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e)),
    };
    if head_len > max_header_bytes {
        return Err(HeadError::TooLarge);
    }
    Ok(Some(head_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr<'a>(name: &'a str, value: &'a [u8]) -> httparse::Header<'a> {
        httparse::Header { name, value }
    }

    #[test]
    fn head_error_statuses() {
        assert_eq!(HeadError::TooLarge.status(), 431);
        assert_eq!(HeadError::UnsupportedTransferEncoding.status(), 501);
        assert_eq!(HeadError::LengthAndEncoding.status(), 400);
        assert_eq!(HeadError::InvalidContentLength.status(), 400);
        assert_eq!(HeadError::ConflictingContentLength.status(), 400);
        assert_eq!(HeadError::Malformed(httparse::Error::Token).status(), 400);
        assert!(HeadError::Malformed(httparse::Error::Token)
            .to_string()
            .contains("invalid token"));
    }

    #[test]
    fn framing_rules() {
        let f = |hs: &[httparse::Header<'_>]| framing_of(hs);
        assert_eq!(f(&[]), Ok(Framing::Absent));
        assert_eq!(
            f(&[hdr("Content-Length", b" 12 ")]),
            Ok(Framing::Length(12))
        );
        assert_eq!(f(&[hdr("content-length", b"7, 7")]), Ok(Framing::Length(7)));
        let same = [hdr("content-length", b"7"), hdr("Content-Length", b"7")];
        assert_eq!(f(&same), Ok(Framing::Length(7)));
        let differ = [hdr("content-length", b"7"), hdr("content-length", b"8")];
        assert_eq!(f(&differ), Err(HeadError::ConflictingContentLength));
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"1e3",
            b"0x10",
            b"99999999999999999999",
            b"1,",
        ] {
            let h = [hdr("content-length", bad)];
            assert_eq!(f(&h), Err(HeadError::InvalidContentLength), "{bad:?}");
        }
        assert_eq!(
            f(&[hdr("Transfer-Encoding", b"Chunked")]),
            Ok(Framing::Chunked)
        );
        for bad in [&b"gzip, chunked"[..], b"identity", b"chunked, chunked", b""] {
            let h = [hdr("transfer-encoding", bad)];
            assert_eq!(
                f(&h),
                Err(HeadError::UnsupportedTransferEncoding),
                "{bad:?}"
            );
        }
        let twice = [
            hdr("transfer-encoding", b"chunked"),
            hdr("transfer-encoding", b"chunked"),
        ];
        assert_eq!(f(&twice), Err(HeadError::UnsupportedTransferEncoding));
        let both = [
            hdr("transfer-encoding", b"chunked"),
            hdr("content-length", b"3"),
        ];
        assert_eq!(f(&both), Err(HeadError::LengthAndEncoding));
    }

    #[test]
    fn keep_alive_rules() {
        assert!(keep_alive_of(1, &[]));
        assert!(!keep_alive_of(0, &[]));
        assert!(!keep_alive_of(1, &[hdr("Connection", b"Close")]));
        assert!(keep_alive_of(0, &[hdr("connection", b"Keep-Alive")]));
        assert!(!keep_alive_of(
            0,
            &[hdr("connection", b"keep-alive, close")]
        ));
        assert!(!keep_alive_of(
            1,
            &[hdr("x", b"y"), hdr("connection", b"upgrade , close")]
        ));
    }

    #[test]
    fn number_writers() {
        for n in [0u64, 7, 10, 255, 65_536, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            out.clear();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
    }

    #[test]
    fn decimal_parser() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"1 2"), None);
    }

    #[test]
    fn fields_cannot_inject_lines() {
        let mut out = Vec::new();
        push_header(&mut out, "x-a", b"1\r\nset-cookie: evil");
        assert_eq!(out, b"x-a: 1  set-cookie: evil\r\n");
    }
}
