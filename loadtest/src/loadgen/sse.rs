//! Accounting of one SSE response stream: events, first content token, `[DONE]`,
//! error events and continuation markers — without keeping the stream.

use std::time::Instant;

/// Lines longer than this are dropped and the stream is marked errored.
const MAX_LINE: usize = 1 << 20;
/// Most content text kept per stream (see [`SseTracker::text`]).
const MAX_TEXT: usize = 64 * 1024;

/// What has been seen so far on one stream, fed with body bytes as they arrive.
#[derive(Debug, Default)]
pub(crate) struct SseTracker {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    error_event: bool,
    /// Events dispatched (including `[DONE]`).
    pub events: u64,
    /// Saw `data: [DONE]`.
    pub done: bool,
    /// Saw an error event (`event: error` or `"error"` in the data) or a malformed line.
    pub error: bool,
    /// Saw an event mentioning `x_switchyard` (a continuation marker).
    pub continued: bool,
    /// When the first event with non-empty `choices[0].delta.content` arrived.
    pub first_token: Option<Instant>,
    /// Every `choices[0].delta.content` of the stream, concatenated: the text the
    /// client received (at most [`MAX_TEXT`] bytes).
    pub text: String,
    /// The text went past [`MAX_TEXT`] and was cut there.
    pub text_overflow: bool,
}

impl SseTracker {
    /// Processes body bytes that arrived at `now`.
    pub(crate) fn feed(&mut self, bytes: &[u8], now: Instant) {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let Some(content) = piece.strip_suffix(b"\n") else {
                self.buffer_partial(piece);
                continue;
            };
            if self.line.is_empty() {
                self.line_done(content, now);
            } else {
                self.buffer_partial(content);
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, now);
            }
        }
    }

    /// The body ended: an unterminated last line or event still counts.
    pub(crate) fn finish(&mut self, now: Instant) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, now);
        }
        self.dispatch(now);
    }

    fn buffer_partial(&mut self, bytes: &[u8]) {
        if self.line.len() + bytes.len() > MAX_LINE {
            self.error = true;
            self.line.clear();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn line_done(&mut self, line: &[u8], now: Instant) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return self.dispatch(now);
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(0) => return, // comment
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.error_event = value == b"error",
            _ => {}
        }
    }

    fn dispatch(&mut self, now: Instant) {
        if self.has_data || self.error_event {
            self.events += 1;
            let data = self.data.as_slice();
            self.done |= data == b"[DONE]";
            self.error |= self.error_event || contains(data, b"\"error\"");
            self.continued |= contains(data, b"x_switchyard");
            if let Some(piece) = content(data) {
                if self.first_token.is_none() {
                    self.first_token = Some(now);
                }
                if self.text.len() + piece.len() > MAX_TEXT {
                    self.text_overflow = true;
                } else {
                    self.text.push_str(&piece);
                }
            }
        }
        self.data.clear();
        self.has_data = false;
        self.error_event = false;
    }
}

/// The non-empty `choices[0].delta.content` of a chat chunk, if it has one.
fn content(data: &[u8]) -> Option<String> {
    if !contains(data, b"\"content\"") {
        return None;
    }
    let mut v = serde_json::from_slice::<serde_json::Value>(data).ok()?;
    match v.pointer_mut("/choices/0/delta/content")?.take() {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str =
        r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
    const TOKEN: &str = r#"data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#;

    fn feed_in_pieces(text: &str, piece: usize) -> SseTracker {
        let mut t = SseTracker::default();
        let now = Instant::now();
        for part in text.as_bytes().chunks(piece) {
            t.feed(part, now);
        }
        t.finish(now);
        t
    }

    #[test]
    fn complete_stream_in_any_split() {
        let text = format!("{ROLE}\n\n{TOKEN}\r\n\r\n: keepalive\n\n{TOKEN}\n\ndata: [DONE]\n\n");
        for piece in [1, 5, 64, text.len()] {
            let t = feed_in_pieces(&text, piece);
            assert_eq!(
                (t.events, t.done, t.error, t.continued),
                (4, true, false, false),
                "piece {piece}"
            );
            assert!(t.first_token.is_some());
            assert_eq!(t.text, "HiHi");
        }
    }

    #[test]
    fn empty_content_is_not_a_first_token() {
        let t = feed_in_pieces(&format!("{ROLE}\n\n"), 8);
        assert!(t.first_token.is_none());
    }

    #[test]
    fn error_events_and_continuations_are_seen() {
        let t = feed_in_pieces("event: error\ndata: {\"message\":\"x\"}\n\n", 3);
        assert!(t.error && !t.done);
        let t = feed_in_pieces("data: {\"error\":{\"message\":\"overloaded\"}}\n\n", 7);
        assert!(t.error);
        let t = feed_in_pieces(
            "data: {\"x_switchyard\":{\"continued\":true}}\n\ndata: [DONE]",
            7,
        );
        assert!(t.continued && t.done && !t.error);
    }

    #[test]
    fn overlong_line_marks_the_stream_errored() {
        let mut t = SseTracker::default();
        let blob = vec![b'a'; MAX_LINE / 2 + 1];
        t.feed(&blob, Instant::now());
        t.feed(&blob, Instant::now());
        assert!(t.error);
    }
}
