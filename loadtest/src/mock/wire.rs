//! Byte-level writers for the mock's HTTP/1.1 responses: status heads (with the
//! provider's rate-limit and request-id headers), chunked framing, JSON string
//! escaping, integers and RFC 3339 times, all appended to a reused `Vec<u8>`.

use std::time::{SystemTime, UNIX_EPOCH};

/// How the response body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `content-length: n` followed by exactly `n` bytes.
    Length(usize),
    /// `transfer-encoding: chunked`; the body follows as chunks.
    Chunked,
}

/// A response head about to be written.
pub(crate) struct Head<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub framing: Framing,
    pub keep_alive: bool,
    pub provider: &'a str,
    pub retry_after: Option<u64>,
    /// One more header (e.g. Bedrock's `x-amzn-errortype`).
    pub extra: Option<(&'a str, &'a str)>,
    pub limits: Limits,
}

/// The rate-limit and request-id headers of a provider answer, in the style of
/// the provider; the number is the request's sequence number (`req_mock_{n}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limits {
    /// Control answers and requests the mock could not read.
    None,
    /// `x-ratelimit-*` and `x-request-id` (OpenAI, Azure, and every other
    /// non-Anthropic dialect).
    OpenAi(u64),
    /// `anthropic-ratelimit-*` (resets a minute ahead) and `request-id`.
    Anthropic(u64),
}

/// Precomputed so the hot path only copies bytes; the id's digits follow.
const OPENAI_LIMITS: &[u8] = b"\r\nx-ratelimit-limit-requests: 10000\r\nx-ratelimit-remaining-requests: 9999\r\nx-ratelimit-reset-requests: 6ms\r\nx-ratelimit-limit-tokens: 1000000\r\nx-ratelimit-remaining-tokens: 999000\r\nx-ratelimit-reset-tokens: 60ms\r\nx-request-id: req_mock_";
const ANTHROPIC_REQUESTS: &[u8] = b"\r\nanthropic-ratelimit-requests-limit: 1000\r\nanthropic-ratelimit-requests-remaining: 999\r\nanthropic-ratelimit-requests-reset: ";
const ANTHROPIC_TOKENS: &[u8] = b"\r\nanthropic-ratelimit-tokens-limit: 100000\r\nanthropic-ratelimit-tokens-remaining: 99000\r\nanthropic-ratelimit-tokens-reset: ";
/// How far ahead the Anthropic reset times lie.
const RESET_SECS: u64 = 60;

/// Appends the headers of `limits` (each preceded by CRLF).
fn push_limits(out: &mut Vec<u8>, limits: Limits) {
    match limits {
        Limits::None => {}
        Limits::OpenAi(id) => {
            out.extend_from_slice(OPENAI_LIMITS);
            push_u64(out, id);
        }
        Limits::Anthropic(id) => {
            out.extend_from_slice(b"\r\nrequest-id: req_mock_");
            push_u64(out, id);
            let reset = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                + RESET_SECS;
            out.extend_from_slice(ANTHROPIC_REQUESTS);
            push_rfc3339(out, reset);
            out.extend_from_slice(ANTHROPIC_TOKENS);
            push_rfc3339(out, reset);
        }
    }
}

/// Appends `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC), by the
/// civil-from-days algorithm (no allocation, no time zone database).
pub(crate) fn push_rfc3339(out: &mut Vec<u8>, secs: u64) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    push_u64(out, year);
    for (sep, n) in [
        (b'-', month),
        (b'-', day),
        (b'T', rem / 3600),
        (b':', rem / 60 % 60),
        (b':', rem % 60),
    ] {
        out.push(sep);
        out.push(b'0' + (n / 10 % 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    }
    out.push(b'Z');
}

/// Appends the status line and headers, ending with the blank line.
pub(crate) fn write_head(out: &mut Vec<u8>, head: &Head<'_>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(head.status));
    out.push(b' ');
    out.extend_from_slice(reason(head.status).as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(head.content_type.as_bytes());
    match head.framing {
        Framing::Length(len) => {
            out.extend_from_slice(b"\r\ncontent-length: ");
            push_u64(out, len as u64);
        }
        Framing::Chunked => out.extend_from_slice(b"\r\ntransfer-encoding: chunked"),
    }
    if let Some(secs) = head.retry_after {
        out.extend_from_slice(b"\r\nretry-after: ");
        push_u64(out, secs);
    }
    if let Some((name, value)) = head.extra {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    if !head.keep_alive {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\nx-mock-provider: ");
    out.extend_from_slice(head.provider.as_bytes());
    push_limits(out, head.limits);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends one chunk of a chunked body (`len\r\ndata\r\n`); empty data is skipped
/// because an empty chunk would end the body.
pub(crate) fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    push_hex(out, data.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk that ends a chunked body.
pub(crate) fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Appends `s` as a quoted JSON string.
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_json_escaped(out, s);
    out.push(b'"');
}

/// Appends the JSON string escape of `s`, without quotes.
pub(crate) fn push_json_escaped(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
}

/// Appends the decimal digits of `n`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn push_hex(out: &mut Vec<u8>, mut n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The reason phrase for the status codes the mock is likely to send.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_chunks() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, 18_446_744_073_709_551_615);
        assert_eq!(out, b"0 18446744073709551615");
        out.clear();
        write_chunk(&mut out, &[b'x'; 26]);
        write_chunk(&mut out, b"");
        write_last_chunk(&mut out);
        assert_eq!(&out[..4], b"1a\r\n");
        assert!(out.ends_with(b"x\r\n0\r\n\r\n"));
    }

    #[test]
    fn rfc3339_times() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_764_654_245, "2025-12-02T05:44:05Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ] {
            let mut out = Vec::new();
            push_rfc3339(&mut out, secs);
            assert_eq!(String::from_utf8(out).expect("ascii"), want, "{secs}");
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = Vec::new();
        push_json_str(&mut out, "a\"b\\c\nd\u{1}é");
        let back: String = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }
}
