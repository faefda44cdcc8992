//! The SSE parser: events survive any segmentation (UTF-8 split mid-character
//! included), arbitrary bytes give the same answers whole or split, nothing it
//! yields or keeps is larger than its input, and the writer round-trips.

use proptest::prelude::*;
use switchyard::http::{write_event, SseError, SseEvent, SseParser};

use crate::{cases, damage, pieces};

/// Upper bound on `next_event` calls per push: each call that returns an event
/// consumes at least one line, so a parser that keeps answering past the number
/// of bytes it was given is stuck.
fn drain(parser: &mut SseParser, pushed: usize, into: &mut Vec<Result<SseEvent, SseError>>) {
    for _ in 0..=pushed + 1 {
        match parser.next_event() {
            None => return,
            Some(Err(e)) => {
                into.push(Err(e));
                return;
            }
            Some(Ok(event)) => into.push(Ok(event)),
        }
    }
    panic!("parser kept answering after {pushed} bytes");
}

/// All results for `wire` arriving in the given pieces, up to the first error
/// (errors are sticky, so the first one ends the stream).
fn parse_pieces(wire: &[u8], cuts: &[usize]) -> (Vec<Result<SseEvent, SseError>>, SseParser) {
    let mut parser = SseParser::new();
    let mut got = Vec::new();
    for range in pieces(wire.len(), cuts) {
        let len = range.len();
        parser.push(&wire[range]);
        drain(&mut parser, len, &mut got);
        if matches!(got.last(), Some(Err(_))) {
            break;
        }
        assert!(
            parser.buffered_len() <= wire.len(),
            "holds more than it was given"
        );
    }
    (got, parser)
}

fn event_size(e: &SseEvent) -> usize {
    e.data.len() + e.event.as_ref().map_or(0, String::len) + e.id.as_ref().map_or(0, String::len)
}

/// A field value without line breaks (any other Unicode, multi-byte included).
fn field() -> impl Strategy<Value = String> {
    "[^\r\n]{0,16}"
}

#[derive(Debug, Clone)]
struct GenEvent {
    event: Option<String>,
    data: Vec<String>,
    id: Option<String>,
    /// Extra lines a server may send inside an event: comments, retry, unknown.
    noise: Vec<u8>,
    /// Write `data:x` rather than `data: x` where that means the same.
    compact: bool,
    /// Put the data lines before the other fields.
    data_first: bool,
}

impl GenEvent {
    fn expected(&self) -> SseEvent {
        SseEvent {
            event: self.event.clone().filter(|e| !e.is_empty()),
            data: self.data.join("\n"),
            id: self.id.clone().filter(|id| !id.contains('\0')),
        }
    }

    fn lines(&self) -> Vec<String> {
        let mut fields = Vec::new();
        for &n in &self.noise {
            fields.push(match n % 4 {
                0 => ": keep-alive".to_owned(),
                1 => "retry: 1000".to_owned(),
                2 => "unknown: field".to_owned(),
                _ => ":".to_owned(),
            });
        }
        if let Some(e) = &self.event {
            fields.push(format!("event: {e}"));
        }
        if let Some(id) = &self.id {
            fields.push(format!("id: {id}"));
        }
        // Data lines keep their relative order; the other fields go before or after.
        let data = self.data.iter().map(|d| {
            // A value starting with a space needs the separator space written.
            if self.compact && !d.starts_with(' ') {
                format!("data:{d}")
            } else {
                format!("data: {d}")
            }
        });
        let mut lines: Vec<String> = if self.data_first {
            data.chain(fields).collect()
        } else {
            fields.into_iter().chain(data).collect()
        };
        lines.push(String::new());
        lines
    }
}

fn gen_event() -> impl Strategy<Value = GenEvent> {
    (
        prop::option::of(field()),
        prop::collection::vec(field(), 1..4),
        prop::option::of(field()),
        prop::collection::vec(any::<u8>(), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(event, data, id, noise, compact, data_first)| GenEvent {
            event,
            data,
            id,
            noise,
            compact,
            data_first,
        })
}

/// Joins lines with the given endings (LF, CRLF or CR). An empty line after a
/// lone CR must not be ended by LF alone: CR LF is one break, not two.
fn serialise(lines: &[String], endings: &[u8], bom: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if bom {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    let mut after_cr = false;
    for (i, line) in lines.iter().enumerate() {
        out.extend_from_slice(line.as_bytes());
        let mut ending: &[u8] = match endings[i % endings.len()] % 3 {
            0 => b"\n",
            1 => b"\r\n",
            _ => b"\r",
        };
        if after_cr && line.is_empty() && ending == b"\n" {
            ending = b"\r\n";
        }
        after_cr = ending == b"\r";
        out.extend_from_slice(ending);
    }
    out
}

proptest! {
    #![proptest_config(cases(256))]

    /// Serialised events (any Unicode, comments, retry and unknown fields, any
    /// line endings, a BOM) come back as exactly those events, in order, however
    /// the bytes are split, and nothing is left buffered.
    #[test]
    fn events_survive_any_segmentation(
        events in prop::collection::vec(gen_event(), 0..6),
        endings in prop::collection::vec(any::<u8>(), 1..6),
        bom in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
    ) {
        let lines: Vec<String> = events.iter().flat_map(GenEvent::lines).collect();
        let wire = serialise(&lines, &endings, bom);
        let want: Vec<Result<SseEvent, SseError>> = events.iter().map(|e| Ok(e.expected())).collect();
        let (got, parser) = parse_pieces(&wire, &cuts);
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(parser.buffered_len(), 0);
        let every_byte: Vec<usize> = (0..wire.len()).collect();
        let (got, _) = parse_pieces(&wire, &every_byte);
        prop_assert_eq!(got, want);
    }

    /// Arbitrary and damaged streams: no panic; split anywhere, the parser gives
    /// the same events and the same first error as fed whole; no event is larger
    /// than the input, and it never holds more than it was given.
    #[test]
    fn arbitrary_bytes_parse_the_same_whole_or_split(
        events in prop::collection::vec(gen_event(), 0..4),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        noise in prop::collection::vec(prop_oneof![
            Just(b'\r'), Just(b'\n'), Just(b':'), Just(b' '), Just(b'd'), Just(b'\xEF'),
            Just(b'\xBB'), Just(b'\xBF'), any::<u8>(),
        ], 0..128),
        use_noise in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
    ) {
        let wire = if use_noise {
            noise
        } else {
            let lines: Vec<String> = events.iter().flat_map(GenEvent::lines).collect();
            let mut wire = serialise(&lines, &[0, 1, 2], false);
            damage(&mut wire, &edits);
            wire
        };
        let (whole, _) = parse_pieces(&wire, &[]);
        let (split, _) = parse_pieces(&wire, &cuts);
        prop_assert_eq!(&split, &whole);
        for event in whole.iter().flatten() {
            prop_assert!(event_size(event) <= wire.len());
        }
    }

    /// What the gateway writes reads back as the data it meant (its CR, CRLF and
    /// LF all become line breaks) and the event name (line breaks as spaces).
    #[test]
    fn written_events_parse_back(
        written in prop::collection::vec((prop::option::of("\\PC{0,12}|[\r\n ]{0,3}"), "(\\PC|[\r\n]){0,40}"), 1..5),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let mut wire = Vec::new();
        for (event, data) in &written {
            write_event(&mut wire, event.as_deref(), data);
        }
        let want: Vec<Result<SseEvent, SseError>> = written
            .iter()
            .map(|(event, data)| {
                let event = event.as_ref().map(|e| e.replace(['\r', '\n'], " "));
                // The parser strips one space after `event:`; the writer adds it.
                Ok(SseEvent {
                    event: event.filter(|e| !e.is_empty()),
                    data: data.replace("\r\n", "\n").replace('\r', "\n"),
                    id: None,
                })
            })
            .collect();
        let (got, _) = parse_pieces(&wire, &cuts);
        prop_assert_eq!(got, want);
    }
}
