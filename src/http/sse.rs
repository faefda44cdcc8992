//! Server-Sent Events: an incremental parser for upstream event streams (WHATWG
//! event-stream rules) and the writer for the events the gateway sends.

/// Most bytes one event may occupy while it is assembled (data, event type, id and
/// the incomplete line being read).
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` type; `None` when absent or empty (i.e. "message").
    pub event: Option<String>,
    /// The `data:` lines joined with "\n".
    pub data: String,
    /// The `id:` given inside this event (not carried over from earlier events).
    pub id: Option<String>,
}

/// Why an event stream could not be parsed; the parser stays failed afterwards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("server-sent event larger than {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    #[error("server-sent event field is not valid UTF-8")]
    InvalidUtf8,
    /// A provider's own stream framing (not SSE) could not be read.
    #[error("malformed provider stream: {0}")]
    Framing(String),
    /// A provider's stream opened more of something (tool calls, choices) than one
    /// answer may hold: what a decoder keeps per answer is capped like any buffer.
    #[error("provider stream has more than {limit} {what} in one answer")]
    TooMany { what: &'static str, limit: usize },
}

/// The event being assembled from field lines.
#[derive(Debug, Default)]
struct Pending {
    data: String,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
}

impl Pending {
    fn size(&self) -> usize {
        let len = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.data.len() + len(&self.event) + len(&self.id)
    }

    /// Applies one line; returns the event when the line is blank and data was seen.
    fn apply(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        let (name, value) = split_field(line);
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(utf8(value)?);
                self.has_data = true;
            }
            b"event" => self.event = Some(utf8(value)?.to_owned()),
            b"id" if !value.contains(&0) => self.id = Some(utf8(value)?.to_owned()),
            // Comments (empty name), `retry` and unknown fields are ignored.
            _ => {}
        }
        if self.size() > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge);
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let taken = std::mem::take(self);
        if !taken.has_data {
            return None;
        }
        Some(SseEvent {
            event: taken.event.filter(|e| !e.is_empty()),
            data: taken.data,
            id: taken.id,
        })
    }
}

/// Splits `name: value` (one optional space after the colon); no colon means the
/// whole line is the name and the value is empty.
fn split_field(line: &[u8]) -> (&[u8], &[u8]) {
    let Some(colon) = memchr::memchr(b':', line) else {
        return (line, &[]);
    };
    let (name, rest) = line.split_at(colon);
    let value = rest.get(1..).unwrap_or_default();
    (name, value.strip_prefix(b" ").unwrap_or(value))
}

fn utf8(bytes: &[u8]) -> Result<&str, SseError> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| SseError::InvalidUtf8)
}

/// Incremental event-stream parser: push bytes split anywhere, pull whole events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// Start of the first line not yet applied.
    pos: usize,
    /// `buf[pos..scanned]` is known to hold no line terminator.
    scanned: usize,
    /// The last line ended with CR: an LF right after it is part of that break.
    skip_lf: bool,
    bom_checked: bool,
    pending: Pending,
    failed: Option<SseError>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes; no parsing happens until [`SseParser::next_event`].
    /// Ignored once the parser has failed.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            self.scanned = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, in order; `None` when more bytes are needed. After an
    /// error every call returns that error again.
    pub fn next_event(&mut self) -> Option<Result<SseEvent, SseError>> {
        if let Some(err) = &self.failed {
            return Some(Err(err.clone()));
        }
        match self.advance() {
            Ok(Some(event)) => Some(Ok(event)),
            Ok(None) => None,
            Err(err) => {
                self.fail(err.clone());
                Some(Err(err))
            }
        }
    }

    /// Takes back a dispatched event's data buffer for the next event to be
    /// assembled in (one allocation per event fewer on a long stream). A large
    /// one (a rare big event) is freed rather than held for the stream's life.
    pub fn recycle(&mut self, event: SseEvent) {
        let reusable = event.data.capacity() <= crate::bufpool::MAX_KEPT_CAPACITY;
        if reusable && self.pending.data.capacity() == 0 && self.failed.is_none() {
            let mut data = event.data;
            data.clear();
            self.pending.data = data;
        }
    }

    /// Bytes held: unprocessed input plus the partly assembled event.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.pos + self.pending.size()
    }

    fn advance(&mut self) -> Result<Option<SseEvent>, SseError> {
        while let Some((start, end)) = self.next_line() {
            let line = self.buf.get(start..end).unwrap_or_default();
            if let Some(event) = self.pending.apply(line)? {
                return Ok(Some(event));
            }
        }
        if self.buf.len() - self.pos + self.pending.size() > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge);
        }
        self.compact();
        Ok(None)
    }

    /// The range of the next complete line (terminator excluded), advancing past it.
    fn next_line(&mut self) -> Option<(usize, usize)> {
        if !self.bom_checked && !self.skip_bom() {
            return None;
        }
        if self.skip_lf {
            let next = *self.buf.get(self.pos)?;
            self.skip_lf = false;
            if next == b'\n' {
                self.pos += 1;
            }
        }
        let from = self.scanned.max(self.pos);
        let tail = self.buf.get(from..).unwrap_or_default();
        // memchr's vectorised scan: a byte-by-byte one was a fifth of the cost of
        // relaying an event (callgrind).
        let Some(offset) = memchr::memchr2(b'\n', b'\r', tail) else {
            self.scanned = self.buf.len();
            return None;
        };
        let end = from + offset;
        self.skip_lf = tail.get(offset) == Some(&b'\r');
        let start = self.pos;
        self.pos = end + 1;
        self.scanned = self.pos;
        Some((start, end))
    }

    /// Drops a leading byte-order mark; false while too few bytes arrived to tell.
    fn skip_bom(&mut self) -> bool {
        let head = self
            .buf
            .get(..BOM.len().min(self.buf.len()))
            .unwrap_or_default();
        if head.len() < BOM.len() && BOM.starts_with(head) {
            return false;
        }
        if head == BOM {
            self.pos = BOM.len();
        }
        self.bom_checked = true;
        true
    }

    fn compact(&mut self) {
        if self.pos == 0 {
            return;
        }
        self.buf.drain(..self.pos);
        self.scanned = self.scanned.saturating_sub(self.pos);
        self.pos = 0;
    }

    fn fail(&mut self, err: SseError) {
        self.failed = Some(err);
        self.buf = Vec::new();
        self.pos = 0;
        self.scanned = 0;
        self.pending = Pending::default();
    }
}

/// Whether an event's data is the OpenAI end-of-stream marker `[DONE]`.
pub fn is_done_marker(data: &str) -> bool {
    data.trim() == "[DONE]"
}

/// Appends one event: "event: x\n" (when given), one "data: " line per line of
/// `data` (LF, CRLF and CR all split lines), then the blank line. Line breaks inside
/// `event` are written as spaces.
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    out.reserve(data.len() + 16);
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        super::push_field(out, name.as_bytes());
        out.push(b'\n');
    }
    let mut rest = data.as_bytes();
    loop {
        let Some(i) = memchr::memchr2(b'\n', b'\r', rest) else {
            push_data_line(out, rest);
            break;
        };
        push_data_line(out, rest.get(..i).unwrap_or_default());
        let crlf = rest.get(i..i + 2) == Some(b"\r\n");
        rest = rest.get(i + if crlf { 2 } else { 1 }..).unwrap_or_default();
    }
    out.push(b'\n');
}

/// Appends one event as one HTTP chunk (`frame` is scratch). An event whose data
/// is one line (the usual chunk) is written straight into `out`, its framed length
/// known up front; others are assembled in `frame` first.
pub fn write_event_chunk(out: &mut Vec<u8>, frame: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if memchr::memchr2(b'\n', b'\r', data.as_bytes()).is_some() {
        frame.clear();
        write_event(frame, event, data);
        super::chunked::encode_chunk(frame, out);
        return;
    }
    // `push_field` keeps the name's length (line breaks become spaces).
    let name_line = event.map_or(0, |name| "event: ".len() + name.len() + 1);
    let len = name_line + "data: ".len() + data.len() + "\n\n".len();
    out.reserve(len + 20);
    super::push_hex(out, len as u64);
    out.extend_from_slice(b"\r\n");
    write_event(out, event, data);
    out.extend_from_slice(b"\r\n");
}

fn push_data_line(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(line);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(event: Option<&str>, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: id.map(str::to_owned),
        }
    }

    fn drain(p: &mut SseParser) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for _ in 0..100_000 {
            match p.next_event() {
                Some(r) => events.push(r.unwrap()),
                None => return events,
            }
        }
        panic!("parser did not run dry");
    }

    fn parse_all(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        p.push(input);
        drain(&mut p)
    }

    #[test]
    fn parses_fields_and_comments() {
        let input = b": keep-alive\n\nevent: delta\nid: 7\nretry: 100\ndata: {\"a\":1}\ndata:second\ndata\n\n";
        assert_eq!(
            parse_all(input),
            vec![ev(Some("delta"), "{\"a\":1}\nsecond\n", Some("7"))]
        );
    }

    #[test]
    fn an_event_chunk_is_the_event_framed_as_one_chunk() {
        let table = [
            (None, "{\"a\":1}"),
            (Some("response.output_text.delta"), "{\"delta\":\"x\"}"),
            (Some("two\nlines"), "[DONE]"),
            (None, ""),
            (Some("e"), "a\nb\r\nc\rd"),
        ];
        for (event, data) in table {
            let mut expected = Vec::new();
            let mut framed = Vec::new();
            write_event(&mut framed, event, data);
            super::super::chunked::encode_chunk(&framed, &mut expected);
            let (mut out, mut frame) = (b"before".to_vec(), Vec::new());
            write_event_chunk(&mut out, &mut frame, event, data);
            assert_eq!(
                out.strip_prefix(b"before"),
                Some(&expected[..]),
                "{event:?} {data:?}"
            );
        }
    }

    #[test]
    fn a_recycled_event_lends_its_buffer_to_the_next_and_nothing_else() {
        let mut p = SseParser::new();
        p.push(b"data: first event\n\n");
        let first = p.next_event().unwrap().unwrap();
        let room = first.data.capacity();
        p.recycle(first);
        p.push(b"data: 2nd\n\n");
        let second = p.next_event().unwrap().unwrap();
        assert_eq!(second, ev(None, "2nd", None));
        assert_eq!(second.data.capacity(), room);
    }

    #[test]
    fn only_one_leading_space_is_stripped() {
        assert_eq!(parse_all(b"data:  x \n\n"), vec![ev(None, " x ", None)]);
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        let input = b"event: ping\nid: 1\n\ndata: a\n\n";
        assert_eq!(parse_all(input), vec![ev(None, "a", None)]);
    }

    #[test]
    fn empty_event_type_is_none_and_nul_ids_are_ignored() {
        assert_eq!(
            parse_all(b"event:\nid: a\0b\ndata: x\n\n"),
            vec![ev(None, "x", None)]
        );
    }

    #[test]
    fn all_line_endings() {
        let input = b"data: a\r\ndata: b\rdata: c\n\rdata: d\r\r\n";
        assert_eq!(
            parse_all(input),
            vec![ev(None, "a\nb\nc", None), ev(None, "d", None)]
        );
    }

    #[test]
    fn cr_and_lf_split_across_pushes_are_one_break() {
        let mut p = SseParser::new();
        p.push(b"data: a\r");
        assert_eq!(p.next_event(), None);
        p.push(b"\ndata: b\r");
        assert_eq!(p.next_event(), None);
        p.push(b"\n\r");
        assert_eq!(p.next_event(), Some(Ok(ev(None, "a\nb", None))));
        p.push(b"\ndata: c\n\n");
        assert_eq!(drain(&mut p), vec![ev(None, "c", None)]);
        assert_eq!(p.buffered_len(), 0);
    }

    #[test]
    fn incomplete_event_waits() {
        let mut p = SseParser::new();
        p.push(b"data: part");
        assert_eq!(p.next_event(), None);
        assert_eq!(p.buffered_len(), 10);
        p.push(b"ial\n");
        assert_eq!(p.next_event(), None);
        p.push(b"\n");
        assert_eq!(p.next_event(), Some(Ok(ev(None, "partial", None))));
        assert_eq!(p.next_event(), None);
    }

    #[test]
    fn leading_bom_is_skipped_even_when_split() {
        let mut p = SseParser::new();
        p.push(b"\xEF\xBB");
        assert_eq!(p.next_event(), None);
        p.push(b"\xBFdata: x\n\n");
        assert_eq!(drain(&mut p), vec![ev(None, "x", None)]);
    }

    #[test]
    fn invalid_utf8_fails_for_good() {
        let mut p = SseParser::new();
        p.push(b"data: \xFF\n\n");
        assert_eq!(p.next_event(), Some(Err(SseError::InvalidUtf8)));
        p.push(b"data: ok\n\n");
        assert_eq!(p.next_event(), Some(Err(SseError::InvalidUtf8)));
        assert_eq!(p.buffered_len(), 0);
    }

    #[test]
    fn oversized_event_is_rejected() {
        let mut p = SseParser::new();
        let line = vec![b'x'; 64 * 1024];
        let mut result = None;
        for _ in 0..(MAX_EVENT_BYTES / line.len() + 2) {
            p.push(b"data: ");
            p.push(&line);
            p.push(b"\n");
            if let Some(r) = p.next_event() {
                result = Some(r);
                break;
            }
        }
        assert_eq!(result, Some(Err(SseError::TooLarge)));
        let mut p = SseParser::new();
        p.push(&vec![b'x'; MAX_EVENT_BYTES + 1]);
        assert_eq!(p.next_event(), Some(Err(SseError::TooLarge)));
    }

    #[test]
    fn writes_events() {
        let mut out = Vec::new();
        write_event(&mut out, Some("error"), "a\nb\r\nc\rd");
        assert_eq!(out, b"event: error\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
        out.clear();
        write_event(&mut out, None, "");
        assert_eq!(out, b"data: \n\n");
        assert_eq!(parse_all(&out), vec![ev(None, "", None)]);
        out.clear();
        write_event(&mut out, Some("x\ny"), "[DONE]");
        assert_eq!(out, b"event: x y\ndata: [DONE]\n\n");
    }

    #[test]
    fn done_marker() {
        assert!(is_done_marker("[DONE]"));
        assert!(is_done_marker(" [DONE]\n"));
        assert!(!is_done_marker("{\"done\":true}"));
    }

    /// An event plus how to serialise it.
    #[derive(Debug, Clone)]
    struct Case {
        event: SseEvent,
        comment: bool,
        retry: bool,
        dataless_block: bool,
        compact_colon: bool,
    }

    fn arb_case() -> impl Strategy<Value = Case> {
        let data = prop::collection::vec("[ -~]{0,30}", 1..4).prop_map(|lines| lines.join("\n"));
        let event = (
            prop::option::of("[a-z_.]{1,12}"),
            data,
            prop::option::of("[a-z0-9]{1,8}"),
        )
            .prop_map(|(event, data, id)| SseEvent { event, data, id });
        (
            event,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(event, comment, retry, dataless_block, compact_colon)| Case {
                    event,
                    comment,
                    retry,
                    dataless_block,
                    compact_colon,
                },
            )
    }

    /// Serialises lines, cycling through the given line endings. An empty line after
    /// a CR must not end in a lone LF (that would read as one CRLF break).
    fn serialise(cases: &[Case], endings: &[u8]) -> Vec<u8> {
        let mut lines: Vec<String> = Vec::new();
        for c in cases {
            if c.dataless_block {
                lines.extend([
                    "event: ignored".to_owned(),
                    "id: zzz".to_owned(),
                    String::new(),
                ]);
            }
            if c.comment {
                lines.push(": keep-alive".to_owned());
            }
            if let Some(e) = &c.event.event {
                lines.push(format!("event: {e}"));
            }
            if let Some(id) = &c.event.id {
                lines.push(format!("id:{id}"));
            }
            if c.retry {
                lines.push("retry: 3000".to_owned());
            }
            for d in c.event.data.split('\n') {
                let compact = c.compact_colon && !d.starts_with(' ');
                lines.push(if compact {
                    format!("data:{d}")
                } else {
                    format!("data: {d}")
                });
            }
            lines.push(String::new());
        }
        let mut out = Vec::new();
        let mut prev_cr = false;
        for (i, line) in lines.iter().enumerate() {
            out.extend_from_slice(line.as_bytes());
            let mut ending: &[u8] =
                match endings.get(i % endings.len().max(1)).copied().unwrap_or(0) % 3 {
                    0 => b"\n",
                    1 => b"\r\n",
                    _ => b"\r",
                };
            if prev_cr && line.is_empty() && ending == b"\n" {
                ending = b"\r\n";
            }
            prev_cr = ending == b"\r";
            out.extend_from_slice(ending);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn roundtrip_any_split(
            cases in prop::collection::vec(arb_case(), 0..8),
            endings in prop::collection::vec(any::<u8>(), 1..8),
            cuts in prop::collection::vec(any::<usize>(), 0..16),
        ) {
            let wire = serialise(&cases, &endings);
            let want: Vec<SseEvent> = cases.iter().map(|c| c.event.clone()).collect();

            let mut p = SseParser::new();
            let mut got = Vec::new();
            for &b in &wire {
                p.push(&[b]);
                got.extend(drain(&mut p));
            }
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(p.buffered_len(), 0);

            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.extend([0, wire.len()]);
            points.sort_unstable();
            let mut p = SseParser::new();
            let mut got = Vec::new();
            for w in points.windows(2) {
                p.push(&wire[w[0]..w[1]]);
                got.extend(drain(&mut p));
            }
            prop_assert_eq!(&got, &want);

            let mut out = Vec::new();
            for e in &want {
                write_event(&mut out, e.event.as_deref(), &e.data);
            }
            let written: Vec<SseEvent> = parse_all(&out);
            let no_ids: Vec<SseEvent> = want.iter().map(|e| SseEvent { id: None, ..e.clone() }).collect();
            prop_assert_eq!(written, no_ids);
        }
    }
}
