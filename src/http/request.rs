//! Parsing a client's request head (server side): method, target, headers, and the
//! body framing and connection semantics they imply.

use super::{framing_of, keep_alive_of, Fields, Framing, HeadError, MAX_HEADERS};

/// The request method; anything outside the common set is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Other,
}

impl Method {
    /// Maps a method token (case-sensitive, as HTTP defines it).
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// The method's token; `Other` has none and reads `"OTHER"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Other => "OTHER",
        }
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// No `Content-Length` and no `Transfer-Encoding`: no body.
    Empty,
    /// Exactly this many bytes follow the head (`Content-Length: 0` stays `ContentLength(0)`).
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`; decode with [`super::ChunkedDecoder`].
    Chunked,
}

/// A parsed request head; the body (and any pipelined request) starts at `head_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The request-target as sent, e.g. `/v1/chat/completions?x=1`.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header names lower-cased, in the order sent.
    pub headers: Fields,
    pub body: RequestBody,
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// HTTP/1.1 `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Bytes of the buffer the head occupies.
    pub head_len: usize,
}

impl RequestHead {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path)
    }

    /// First value of the header with this (lower-case) name.
    pub fn header(&self, lowercase_name: &str) -> Option<&[u8]> {
        self.headers.get(lowercase_name)
    }
}

/// What a connection keeps between requests so the next head is parsed into
/// the last one's storage: once it is large enough, a head costs no allocation.
#[derive(Debug, Default)]
pub struct HeadStorage {
    target: String,
    headers: Fields,
}

/// Storage larger than this (a head far over the usual ~1 KiB) is not kept, so an
/// idle connection holds no more than this for its next head.
const MAX_KEPT_BYTES: usize = 4 * 1024;

impl HeadStorage {
    /// Takes back a served head's storage, emptied (dropped instead when large).
    pub fn recycle(&mut self, head: RequestHead) {
        if head.target.capacity() + head.headers.capacity() > MAX_KEPT_BYTES {
            *self = HeadStorage::default();
            return;
        }
        self.target = head.target;
        self.target.clear();
        self.headers = head.headers;
        self.headers.clear();
    }
}

/// Parses a request head from the start of `buf` (into fresh storage; see
/// [`parse_request_head_into`]).
pub fn parse_request_head(
    buf: &[u8],
    max_header_bytes: usize,
) -> Result<Option<RequestHead>, HeadError> {
    parse_request_head_into(buf, max_header_bytes, &mut HeadStorage::default())
}

/// Parses a request head from the start of `buf`, into `storage`'s buffers
/// when it completes.
///
/// `Ok(None)`: incomplete, read more. `Err(HeadError::TooLarge)` when the head is
/// still incomplete at `max_header_bytes`, is longer than that, or has more than
/// [`MAX_HEADERS`] lines. Ambiguous body framing is rejected (see [`HeadError`]).
pub fn parse_request_head_into(
    buf: &[u8],
    max_header_bytes: usize,
    storage: &mut HeadStorage,
) -> Result<Option<RequestHead>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let parsed = req.parse(buf);
    let Some(head_len) = super::complete_head_len(parsed, buf.len(), max_header_bytes)? else {
        return Ok(None);
    };
    // httparse fills method, path and version on a complete parse.
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HeadError::Malformed(httparse::Error::Token));
    };
    let headers = &*req.headers;
    let body = match framing_of(headers)? {
        Framing::Absent => RequestBody::Empty,
        Framing::Length(n) => RequestBody::ContentLength(n),
        Framing::Chunked => RequestBody::Chunked,
    };
    let mut owned_target = std::mem::take(&mut storage.target);
    owned_target.push_str(target);
    let mut fields = std::mem::take(&mut storage.headers);
    fields.extend_parsed(headers);
    Ok(Some(RequestHead {
        method: Method::from_token(method),
        target: owned_target,
        minor_version,
        keep_alive: keep_alive_of(minor_version, headers),
        expect_continue: minor_version >= 1 && expects_continue(headers),
        headers: fields,
        body,
        head_len,
    }))
}

fn expects_continue(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("expect")
            && h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 8 * 1024;

    fn parse(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        parse_request_head(buf, MAX)
    }

    fn parse_ok(buf: &[u8]) -> RequestHead {
        parse(buf).unwrap().unwrap()
    }

    #[test]
    fn recycled_storage_parses_the_same_and_keeps_nothing_stale() {
        let first = b"POST /a?x=1 HTTP/1.1\r\nHost: gw\r\nX-One: 1\r\nX-Two: 2\r\nContent-Length: 0\r\n\r\n";
        let second = b"GET /b HTTP/1.1\r\nHost: other\r\n\r\n";
        let mut storage = HeadStorage::default();
        let head = parse_request_head_into(first, 8192, &mut storage)
            .unwrap()
            .unwrap();
        assert_eq!(head.headers.len(), 4);
        storage.recycle(head);
        let again = parse_request_head_into(second, 8192, &mut storage)
            .unwrap()
            .unwrap();
        assert_eq!(again, parse_ok(second));
        assert_eq!(again.target, "/b");
        assert_eq!(again.header("x-one"), None);
        // An incomplete head leaves the storage as it was.
        assert_eq!(
            parse_request_head_into(b"GET / HT", 8192, &mut storage),
            Ok(None)
        );
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(6000));
        let head = parse_request_head_into(big.as_bytes(), 8192, &mut storage)
            .unwrap()
            .unwrap();
        storage.recycle(head);
        assert_eq!(
            storage.headers.capacity(),
            0,
            "a large head's storage is not kept"
        );
    }

    #[test]
    fn parses_a_post_with_body_and_pipelined_bytes() {
        let buf = b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\n";
        let head = parse_ok(buf);
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.target, "/v1/chat/completions?x=1");
        assert_eq!(head.path(), "/v1/chat/completions");
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.body, RequestBody::ContentLength(2));
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
        assert_eq!(&buf[head.head_len..head.head_len + 2], b"{}");
        assert_eq!(head.header("content-type"), Some(&b"application/json"[..]));
        assert_eq!(head.headers.iter().next().map(|(n, _)| n), Some("host"));
        assert_eq!(head.header("x-missing"), None);
    }

    #[test]
    fn methods_and_versions() {
        for (token, m) in [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("PATCH", Method::Patch),
            ("PROPFIND", Method::Other),
        ] {
            let buf = format!("{token} / HTTP/1.0\r\n\r\n");
            let head = parse_ok(buf.as_bytes());
            assert_eq!(head.method, m);
            assert_eq!(head.minor_version, 0);
            assert!(!head.keep_alive);
            assert_eq!(head.body, RequestBody::Empty);
            if m != Method::Other {
                assert_eq!(m.as_str(), token);
            }
        }
    }

    #[test]
    fn connection_and_expect() {
        let head = parse_ok(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!head.keep_alive);
        let head = parse_ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(head.keep_alive);
        let head =
            parse_ok(b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
        assert!(head.expect_continue);
        let head =
            parse_ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(!head.expect_continue);
    }

    #[test]
    fn chunked_body() {
        let head = parse_ok(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(head.body, RequestBody::Chunked);
    }

    #[test]
    fn incomplete_and_too_large() {
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let long = format!("GET / HTTP/1.1\r\nx-pad: {}\r\n", "a".repeat(MAX));
        assert_eq!(parse(long.as_bytes()), Err(HeadError::TooLarge));
        let complete_but_long = format!("GET / HTTP/1.1\r\nx-pad: {}\r\n\r\n", "a".repeat(40));
        assert_eq!(
            parse_request_head(complete_but_long.as_bytes(), 40),
            Err(HeadError::TooLarge)
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let buf = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse_request_head(buf.as_bytes(), 1 << 20),
            Err(HeadError::TooLarge)
        );
        let exactly: String = (0..MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let buf = format!("GET / HTTP/1.1\r\n{exactly}\r\n");
        assert_eq!(parse_ok(buf.as_bytes()).headers.len(), MAX_HEADERS);
    }

    #[test]
    fn rejects_smuggling_and_garbage() {
        let cases: [(&[u8], HeadError); 6] = [
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::LengthAndEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                HeadError::ConflictingContentLength,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                HeadError::InvalidContentLength,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                HeadError::UnsupportedTransferEncoding,
            ),
            (
                b"GET / HTTP/2.0\r\n\r\n",
                HeadError::Malformed(httparse::Error::Version),
            ),
            (
                b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
                HeadError::Malformed(httparse::Error::HeaderName),
            ),
        ];
        for (buf, want) in cases {
            assert_eq!(
                parse(buf),
                Err(want.clone()),
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n")
                .map(|_| ())
                .unwrap_err()
                .status(),
            501
        );
    }

    fn arb_head() -> impl Strategy<Value = String> {
        let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "FOO"]);
        let header = ("[a-zA-Z][a-zA-Z0-9-]{0,15}", "[ -~]{0,40}").prop_filter(
            "no framing headers",
            |(n, _)| {
                let n = n.to_ascii_lowercase();
                n != "content-length" && n != "transfer-encoding"
            },
        );
        let framing = prop::option::of(prop_oneof![
            (0u64..1_000_000).prop_map(|n| format!("Content-Length: {n}")),
            Just("Transfer-Encoding: chunked".to_owned()),
        ]);
        (
            method,
            "/[a-z0-9/._?=&-]{0,60}",
            0u8..2,
            prop::collection::vec(header, 0..12),
            framing,
        )
            .prop_map(|(m, path, minor, headers, framing)| {
                let mut s = format!("{m} {path} HTTP/1.{minor}\r\n");
                for (n, v) in headers {
                    s.push_str(&format!("{n}: {}\r\n", v.trim()));
                }
                if let Some(f) = framing {
                    s.push_str(&f);
                    s.push_str("\r\n");
                }
                s.push_str("\r\n");
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn byte_at_a_time_matches_whole(head in arb_head(), tail in prop::collection::vec(any::<u8>(), 0..8)) {
            let mut buf = head.clone().into_bytes();
            buf.extend_from_slice(&tail);
            let whole = parse(&buf).unwrap().unwrap();
            prop_assert_eq!(whole.head_len, head.len());
            for end in 0..head.len() {
                prop_assert_eq!(parse(&buf[..end]), Ok(None), "prefix of {}", end);
            }
            prop_assert_eq!(parse(&buf[..head.len()]), Ok(Some(whole)));
        }
    }
}
