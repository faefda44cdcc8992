//! The HTTP/1.1 codec: request heads with their body framing, response heads, the
//! head writers and the chunked coding.
//!
//! The codec is fed whatever the socket delivered so far, so the central property
//! is incremental equivalence: a prefix of a head is "incomplete" until the whole
//! head is there, and then the answer is the one the whole input gives. On damaged
//! input the answers must at least never change their mind: once a prefix is an
//! error or a head, every longer prefix gives the same kind of answer.

use proptest::prelude::*;
use switchyard::http::{
    encode_chunk, parse_request_head, parse_response_head, write_request_head, write_response_head,
    BodyFraming, BodyLen, ChunkedDecoder, ChunkedError, HeadError, Method, RequestBody, LAST_CHUNK,
};

use crate::{cases, damage, pieces};

const MAX_HEAD: usize = 8 * 1024;

/// A header value httparse accepts: visible ASCII, obs-text, and inner SP/HTAB
/// (the generator trims the ends, as the parser does).
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        8 => 0x21u8..=0x7e,
        1 => Just(b' '),
        1 => Just(b'\t'),
        1 => 0x80u8..=0xff,
    ];
    prop::collection::vec(byte, 0..32).prop_map(|v| v.trim_ascii().to_vec())
}

/// A header name token that is none of the headers the codec interprets.
fn plain_header_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9!#$%&'*+.^_`|~-]{0,15}".prop_filter("interpreted header", |n| {
        let n = n.to_ascii_lowercase();
        !matches!(
            n.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "expect"
        )
    })
}

/// Writes `name` in one of three casings (header names are case-insensitive).
fn cased(name: &str, casing: u8) -> String {
    match casing % 3 {
        0 => name.to_ascii_lowercase(),
        1 => name.to_ascii_uppercase(),
        _ => name
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next().map_or(String::new(), |f| {
                    f.to_ascii_uppercase().to_string() + c.as_str()
                })
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

#[derive(Debug, Clone)]
enum GenFraming {
    None,
    /// A Content-Length, written `repeats` times (identical repeats are allowed).
    Length {
        body: Vec<u8>,
        repeats: u8,
    },
    /// Chunked, the body cut into chunks at the given points.
    Chunked {
        body: Vec<u8>,
        cuts: Vec<usize>,
    },
}

/// One generated request and what parsing it must report.
#[derive(Debug, Clone)]
struct GenRequest {
    method: &'static str,
    target: String,
    minor: u8,
    headers: Vec<(String, Vec<u8>)>,
    framing: GenFraming,
    connection: Option<&'static str>,
    expect_continue: bool,
    casing: u8,
}

impl GenRequest {
    /// The head and the encoded body.
    fn render(&self) -> (Vec<u8>, Vec<u8>) {
        let mut head =
            format!("{} {} HTTP/1.{}\r\n", self.method, self.target, self.minor).into_bytes();
        let mut line = |name: &str, value: &[u8]| {
            head.extend_from_slice(cased(name, self.casing).as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        };
        for (name, value) in &self.headers {
            line(name, value);
        }
        if let Some(connection) = self.connection {
            line("connection", connection.as_bytes());
        }
        if self.expect_continue {
            line("expect", b"100-continue");
        }
        let mut body = Vec::new();
        match &self.framing {
            GenFraming::None => {}
            GenFraming::Length { body: b, repeats } => {
                for _ in 0..=(*repeats % 3) {
                    line("content-length", b.len().to_string().as_bytes());
                }
                body.extend_from_slice(b);
            }
            GenFraming::Chunked { body: b, cuts } => {
                line("transfer-encoding", b"chunked");
                for range in pieces(b.len(), cuts) {
                    encode_chunk(&b[range], &mut body);
                }
                body.extend_from_slice(LAST_CHUNK);
            }
        }
        head.extend_from_slice(b"\r\n");
        (head, body)
    }

    fn body(&self) -> &[u8] {
        match &self.framing {
            GenFraming::None => &[],
            GenFraming::Length { body, .. } | GenFraming::Chunked { body, .. } => body,
        }
    }

    fn expected_body(&self) -> RequestBody {
        match &self.framing {
            GenFraming::None => RequestBody::Empty,
            GenFraming::Length { body, .. } => RequestBody::ContentLength(body.len() as u64),
            GenFraming::Chunked { .. } => RequestBody::Chunked,
        }
    }

    fn expected_keep_alive(&self) -> bool {
        match self.connection {
            Some(c) if c.to_ascii_lowercase().contains("close") => false,
            Some(c) if c.to_ascii_lowercase().contains("keep-alive") => true,
            _ => self.minor == 1,
        }
    }
}

fn gen_request() -> impl Strategy<Value = GenRequest> {
    let method = prop::sample::select(vec![
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND",
    ]);
    let body = prop::collection::vec(any::<u8>(), 0..48);
    let framing = prop_oneof![
        Just(GenFraming::None),
        (body.clone(), any::<u8>())
            .prop_map(|(body, repeats)| GenFraming::Length { body, repeats }),
        (body, prop::collection::vec(any::<usize>(), 0..6))
            .prop_map(|(body, cuts)| GenFraming::Chunked { body, cuts }),
    ];
    let connection = prop::option::of(prop::sample::select(vec![
        "close",
        "Close",
        "keep-alive",
        "Keep-Alive, Upgrade",
        "upgrade",
        "te, close",
    ]));
    (
        method,
        "/[a-zA-Z0-9/._~%!$&'()*+,;=:@?-]{0,40}",
        0u8..2,
        prop::collection::vec((plain_header_name(), header_value()), 0..10),
        framing,
        connection,
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(
            |(method, target, minor, headers, framing, connection, expect_continue, casing)| {
                GenRequest {
                    method,
                    target,
                    minor,
                    headers,
                    framing,
                    connection,
                    expect_continue,
                    casing,
                }
            },
        )
}

/// What a server reads from one connection: each request's head and decoded body,
/// with the bytes arriving in the given pieces. Bounded: every turn of the loop
/// either consumes buffered bytes or takes the next piece.
fn read_connection(
    wire: &[u8],
    cuts: &[usize],
) -> Result<Vec<(switchyard::http::RequestHead, Vec<u8>)>, String> {
    let mut arrivals = pieces(wire.len(), cuts).into_iter();
    let mut buf: Vec<u8> = Vec::new();
    let mut requests = Vec::new();
    let mut more = |buf: &mut Vec<u8>| match arrivals.next() {
        Some(range) => {
            buf.extend_from_slice(&wire[range]);
            true
        }
        None => false,
    };
    loop {
        let head = loop {
            match parse_request_head(&buf, MAX_HEAD).map_err(|e| e.to_string())? {
                Some(head) => break head,
                None if more(&mut buf) => continue,
                None if buf.is_empty() => return Ok(requests),
                None => return Err(format!("incomplete head at the end: {buf:?}")),
            }
        };
        buf.drain(..head.head_len);
        let mut body = Vec::new();
        match head.body {
            RequestBody::Empty => {}
            RequestBody::ContentLength(n) => {
                let n = n as usize;
                while buf.len() < n {
                    if !more(&mut buf) {
                        return Err("body cut short".into());
                    }
                }
                body.extend(buf.drain(..n));
            }
            RequestBody::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                loop {
                    let progress = decoder.decode(&buf, &mut body).map_err(|e| e.to_string())?;
                    buf.drain(..progress.consumed);
                    if progress.done {
                        break;
                    }
                    if !more(&mut buf) {
                        return Err("chunked body cut short".into());
                    }
                }
            }
        }
        requests.push((head, body));
    }
}

/// Parses every prefix of `buf` and checks that the answers never change their
/// mind: once a head, always that head (and it fits in the prefix); once an
/// error, always an error.
fn check_prefixes<T: PartialEq + std::fmt::Debug>(
    buf: &[u8],
    parse: impl Fn(&[u8]) -> Result<Option<T>, HeadError>,
    head_len: impl Fn(&T) -> usize,
) -> Result<(), TestCaseError> {
    let mut settled: Option<Result<T, HeadError>> = None;
    for end in 0..=buf.len() {
        let now = parse(&buf[..end]);
        match (&settled, now) {
            (None, Ok(None)) => {}
            (None, Ok(Some(head))) => {
                prop_assert!(head_len(&head) <= end, "head longer than its input");
                settled = Some(Ok(head));
            }
            (None, Err(e)) => settled = Some(Err(e)),
            (Some(Ok(first)), now) => {
                prop_assert_eq!(
                    now.as_ref().ok().and_then(Option::as_ref),
                    Some(first),
                    "at {}",
                    end
                )
            }
            (Some(Err(first)), now) => {
                prop_assert!(now.is_err(), "{:?} at {} after {:?}", now, end, first)
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(128))]

    /// A valid request is "incomplete" at every proper prefix of its head, then
    /// reports exactly what was written.
    #[test]
    fn request_head_is_incomplete_until_whole_then_as_written(
        request in gen_request(),
        tail in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let (head, body) = request.render();
        let mut buf = head.clone();
        buf.extend_from_slice(&body);
        buf.extend_from_slice(&tail);
        for end in 0..head.len() {
            prop_assert_eq!(parse_request_head(&buf[..end], MAX_HEAD), Ok(None), "prefix {}", end);
        }
        let parsed = parse_request_head(&buf, MAX_HEAD).unwrap().unwrap();
        prop_assert_eq!(parse_request_head(&head, MAX_HEAD), Ok(Some(parsed.clone())));
        prop_assert_eq!(parsed.head_len, head.len());
        prop_assert_eq!(parsed.method, Method::from_token(request.method));
        prop_assert_eq!(&parsed.target, &request.target);
        prop_assert_eq!(parsed.minor_version, request.minor);
        prop_assert_eq!(parsed.body, request.expected_body());
        prop_assert_eq!(parsed.keep_alive, request.expected_keep_alive());
        prop_assert_eq!(parsed.expect_continue, request.expect_continue && request.minor == 1);
        for (name, value) in &request.headers {
            let found = parsed.headers.iter().any(|(n, v)| *n == name.to_ascii_lowercase() && v == value);
            prop_assert!(found, "header {} missing", name);
        }
        prop_assert!(parsed.headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
    }

    /// Pipelined requests with Content-Length, chunked and no bodies, delivered in
    /// arbitrary pieces, read back as exactly the requests and bodies sent.
    #[test]
    fn pipelined_requests_read_back_whatever_the_segmentation(
        requests in prop::collection::vec(gen_request(), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let mut wire = Vec::new();
        for request in &requests {
            let (head, body) = request.render();
            wire.extend_from_slice(&head);
            wire.extend_from_slice(&body);
        }
        let read = read_connection(&wire, &cuts).map_err(TestCaseError::fail)?;
        prop_assert_eq!(read.len(), requests.len());
        for ((head, body), request) in read.iter().zip(&requests) {
            prop_assert_eq!(&head.target, &request.target);
            prop_assert_eq!(head.body, request.expected_body());
            prop_assert_eq!(&body[..], request.body());
        }
    }

    /// Damaged requests and plain noise: no panic, and prefixes never disagree.
    #[test]
    fn request_head_prefixes_agree_on_damaged_input(
        request in gen_request(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        noise in prop::collection::vec(any::<u8>(), 0..64),
        max in prop_oneof![Just(MAX_HEAD), 16usize..200],
        use_noise in any::<bool>(),
    ) {
        let buf = if use_noise {
            noise
        } else {
            let (mut head, body) = request.render();
            head.extend_from_slice(&body);
            damage(&mut head, &edits);
            head
        };
        check_prefixes(&buf, |b| parse_request_head(b, max), |h| h.head_len)?;
        if buf.len() >= max {
            prop_assert!(!matches!(parse_request_head(&buf, max), Ok(None)), "incomplete past the limit");
        }
    }

    /// Generated responses: incomplete at every proper prefix, then the framing
    /// the status and headers imply.
    #[test]
    fn response_head_is_incomplete_until_whole_then_as_written(
        status in prop_oneof![100u16..104, 200u16..600],
        minor in 0u8..2,
        headers in prop::collection::vec((plain_header_name(), header_value()), 0..8),
        framing in 0u8..3,
        length in 0u64..1_000_000,
        close in any::<bool>(),
        request_was_head in any::<bool>(),
        casing in any::<u8>(),
    ) {
        let mut head = format!("HTTP/1.{minor} {status} Whatever Reason\r\n").into_bytes();
        for (name, value) in &headers {
            head.extend_from_slice(format!("{}: ", cased(name, casing)).as_bytes());
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        match framing {
            0 => {}
            1 => head.extend_from_slice(format!("{}: {length}\r\n", cased("content-length", casing)).as_bytes()),
            _ => head.extend_from_slice(format!("{}: chunked\r\n", cased("transfer-encoding", casing)).as_bytes()),
        }
        if close {
            head.extend_from_slice(b"Connection: close\r\n");
        }
        head.extend_from_slice(b"\r\n");
        for end in 0..head.len() {
            prop_assert_eq!(parse_response_head(&head[..end], MAX_HEAD, request_was_head), Ok(None));
        }
        let parsed = parse_response_head(&head, MAX_HEAD, request_was_head).unwrap().unwrap();
        prop_assert_eq!(parsed.status, status);
        prop_assert_eq!(parsed.head_len, head.len());
        let bodiless = request_was_head || status < 200 || status == 204 || status == 304;
        let want = match framing {
            _ if bodiless => BodyFraming::None,
            0 => BodyFraming::UntilClose,
            1 => BodyFraming::ContentLength(length),
            _ => BodyFraming::Chunked,
        };
        prop_assert_eq!(parsed.framing, want);
        let reusable = !close && minor == 1 && want != BodyFraming::UntilClose;
        prop_assert_eq!(parsed.keep_alive, reusable);
    }

    /// Damaged responses and noise: no panic, and prefixes never disagree.
    #[test]
    fn response_head_prefixes_agree_on_damaged_input(
        mut buf in prop_oneof![
            Just(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello".to_vec()),
            Just(b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 2\r\n\r\n0\r\n\r\n".to_vec()),
            Just(b"HTTP/1.0 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\n\r\n".to_vec()),
            prop::collection::vec(any::<u8>(), 0..64),
        ],
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        request_was_head in any::<bool>(),
        max in prop_oneof![Just(MAX_HEAD), 16usize..80],
    ) {
        damage(&mut buf, &edits);
        check_prefixes(&buf, |b| parse_response_head(b, max, request_was_head), |h| h.head_len)?;
    }

    /// The heads the gateway writes parse back to what it meant, whatever bytes
    /// (CR and LF included) the values carry.
    #[test]
    fn written_heads_parse_back(
        status in 100u16..600,
        headers in prop::collection::vec(
            (plain_header_name(), prop::collection::vec(prop_oneof![
                8 => 0x20u8..=0x7e, 1 => Just(b'\r'), 1 => Just(b'\n'), 1 => 0x80u8..=0xff,
            ], 0..24)),
            0..8,
        ),
        chunked in any::<bool>(),
        length in 0usize..100_000,
        keep_alive in any::<bool>(),
        method in "[A-Z]{1,8}",
        path in "/[a-zA-Z0-9/._~%?=&-]{0,30}",
        host in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
    ) {
        let refs: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let sanitised = |v: &[u8]| -> Vec<u8> {
            v.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }).collect::<Vec<u8>>().trim_ascii().to_vec()
        };

        let mut out = Vec::new();
        let body = if chunked { BodyLen::Chunked } else { BodyLen::Fixed(length) };
        write_response_head(&mut out, status, &refs, body, keep_alive);
        let parsed = parse_response_head(&out, 1 << 20, false).unwrap().unwrap();
        prop_assert_eq!(parsed.status, status);
        prop_assert_eq!(parsed.head_len, out.len());
        let bodiless = status < 200 || status == 204 || status == 304;
        let want = match body {
            _ if bodiless => BodyFraming::None,
            BodyLen::Fixed(n) => BodyFraming::ContentLength(n as u64),
            BodyLen::Chunked => BodyFraming::Chunked,
        };
        prop_assert_eq!(parsed.framing, want);
        prop_assert_eq!(parsed.keep_alive, keep_alive);
        for ((name, value), (got_name, got_value)) in headers.iter().zip(parsed.headers.iter()) {
            let (want_name, want_value) = (name.to_ascii_lowercase(), sanitised(value));
            prop_assert_eq!(want_name.as_str(), got_name);
            prop_assert_eq!(want_value.as_slice(), got_value);
        }

        let mut out = Vec::new();
        write_request_head(&mut out, &method, &path, &host, &refs, length);
        let parsed = parse_request_head(&out, 1 << 20).unwrap().unwrap();
        prop_assert_eq!(&parsed.target, &path);
        prop_assert_eq!(parsed.header("host"), Some(host.as_bytes()));
        prop_assert_eq!(parsed.body, RequestBody::ContentLength(length as u64));
        prop_assert_eq!(parsed.headers.len(), headers.len() + 2);
    }
}

/// Decodes `wire` in one call: the payload, and either the progress or the error.
fn decode_whole(wire: &[u8]) -> (Vec<u8>, Result<(usize, bool), ChunkedError>) {
    let mut out = Vec::new();
    let result = ChunkedDecoder::new()
        .decode(wire, &mut out)
        .map(|p| (p.consumed, p.done));
    (out, result)
}

/// Decodes `wire` arriving in pieces, offering unconsumed bytes again with the next
/// piece as a reader does.
fn decode_split(wire: &[u8], cuts: &[usize]) -> (Vec<u8>, Result<(usize, bool), ChunkedError>) {
    let mut decoder = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    for range in pieces(wire.len(), cuts) {
        match decoder.decode(&wire[consumed..range.end], &mut out) {
            Ok(progress) => {
                consumed += progress.consumed;
                if progress.done {
                    return (out, Ok((consumed, true)));
                }
            }
            Err(e) => return (out, Err(e)),
        }
    }
    (out, Ok((consumed, decoder.is_done())))
}

/// A chunked body written the many legal ways: hex in either case with leading
/// zeros, chunk extensions, trailer fields.
fn chunked_wire(payload: &[u8], cuts: &[usize], style: &[u8], trailers: &[String]) -> Vec<u8> {
    let mut wire = Vec::new();
    for (i, range) in pieces(payload.len(), cuts).into_iter().enumerate() {
        let s = style.get(i % style.len().max(1)).copied().unwrap_or(0);
        let mut size = format!("{:x}", range.len());
        if s & 1 == 1 {
            size = size.to_ascii_uppercase();
        }
        if s & 2 == 2 {
            size.insert_str(0, "00");
        }
        wire.extend_from_slice(size.as_bytes());
        if s & 4 == 4 {
            wire.extend_from_slice(b";name=value;flag");
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&payload[range]);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n");
    for trailer in trailers {
        wire.extend_from_slice(trailer.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    wire
}

proptest! {
    #![proptest_config(cases(256))]

    /// Every legal spelling of a chunked body decodes to its payload, stopping
    /// exactly at its end, whatever the segmentation.
    #[test]
    fn chunked_bodies_decode_to_their_payload(
        payload in prop::collection::vec(any::<u8>(), 0..1024),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        style in prop::collection::vec(any::<u8>(), 1..6),
        trailers in prop::collection::vec("[a-z-]{1,10}: [ -~]{0,20}", 0..3),
        feed in prop::collection::vec(any::<usize>(), 0..24),
        next in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut wire = chunked_wire(&payload, &cuts, &style, &trailers);
        let end = wire.len();
        wire.extend_from_slice(&next);
        let (out, result) = decode_split(&wire, &feed);
        prop_assert_eq!(result, Ok((end, true)));
        prop_assert_eq!(out, payload);
    }

    /// On damaged bodies and noise: no panic; fed in pieces, the decoder says
    /// exactly what it says fed whole (same payload, same stop or same error);
    /// it never yields more payload than it consumed.
    #[test]
    fn chunked_decoding_is_split_invariant_on_damaged_input(
        payload in prop::collection::vec(any::<u8>(), 0..256),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        style in prop::collection::vec(any::<u8>(), 1..4),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        noise in prop::collection::vec(prop_oneof![
            Just(b'0'), Just(b'a'), Just(b'F'), Just(b'\r'), Just(b'\n'), Just(b';'), any::<u8>(),
        ], 0..128),
        use_noise in any::<bool>(),
        feed in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let wire = if use_noise {
            noise
        } else {
            let mut wire = chunked_wire(&payload, &cuts, &style, &[]);
            damage(&mut wire, &edits);
            wire
        };
        let whole = decode_whole(&wire);
        let split = decode_split(&wire, &feed);
        prop_assert_eq!(&split, &whole);
        if let (out, Ok((consumed, _))) = &whole {
            prop_assert!(*consumed <= wire.len());
            prop_assert!(out.len() <= *consumed);
        }
    }
}
