//! The AWS event-stream binary framing (`application/vnd.amazon.eventstream`):
//! an incremental decoder that turns arbitrary byte splits into checked messages.
//!
//! A message is a 12-byte prelude (total length, headers length, CRC32 of the
//! first 8 bytes), typed headers, a payload and a CRC32 of everything before it.

/// Bytes of the prelude (two lengths and their CRC).
const PRELUDE: usize = 12;
/// Prelude plus the trailing message CRC: the smallest possible message.
const MIN_MESSAGE: usize = PRELUDE + 4;
/// Largest message accepted; a bigger length is treated as corrupt framing.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// One header value, by the wire's type tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Vec<u8>),
    String(String),
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One decoded, CRC-checked message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Vec<u8>,
}

impl Message {
    /// The value of a string header such as `:event-type`.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }
}

/// Why the byte stream is not valid event-stream framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("event-stream message of {0} bytes is outside the accepted size")]
    BadLength(u32),
    #[error("event-stream prelude CRC mismatch")]
    PreludeCrc,
    #[error("event-stream message CRC mismatch")]
    MessageCrc,
    #[error("event-stream headers are malformed: {0}")]
    Header(&'static str),
}

/// Incremental decoder: push bytes as they arrive, take whole messages out.
/// After an error it stays failed and keeps returning that error.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Start of the first message not yet handed out. The bytes before it are
    /// dropped once per drain, not once per message: moving the rest of the
    /// buffer after every message made a push of many small ones quadratic.
    pos: usize,
    failed: Option<FrameError>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet handed out as messages: after a drain, at most
    /// one incomplete message (so at most [`MAX_MESSAGE_BYTES`]).
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete message; `None` until enough bytes have arrived.
    pub fn next_message(&mut self) -> Option<Result<Message, FrameError>> {
        if let Some(error) = &self.failed {
            return Some(Err(error.clone()));
        }
        let total = match self.message_len() {
            Some(Ok(total)) => total,
            Some(Err(error)) => return Some(Err(self.fail(error))),
            None => return self.compact(),
        };
        let Some(frame) = self.buf.get(self.pos..self.pos + total) else {
            return self.compact();
        };
        let result = decode(frame);
        self.pos += total;
        Some(result.map_err(|error| self.fail(error)))
    }

    /// Drops the messages already handed out; `None`, for "wait for more bytes".
    fn compact(&mut self) -> Option<Result<Message, FrameError>> {
        self.buf.drain(..self.pos);
        self.pos = 0;
        None
    }

    /// The checked total length of the buffered message, once its prelude is here.
    fn message_len(&self) -> Option<Result<usize, FrameError>> {
        let prelude = self.buf.get(self.pos..)?.get(..PRELUDE)?;
        let total = be_u32(&prelude[0..4]);
        let len = total as usize;
        if !(MIN_MESSAGE..=MAX_MESSAGE_BYTES).contains(&len) {
            return Some(Err(FrameError::BadLength(total)));
        }
        if crc32fast::hash(&prelude[..8]) != be_u32(&prelude[8..12]) {
            return Some(Err(FrameError::PreludeCrc));
        }
        Some(Ok(len))
    }

    fn fail(&mut self, error: FrameError) -> FrameError {
        self.buf = Vec::new();
        self.pos = 0;
        self.failed = Some(error.clone());
        error
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(word)
}

/// Decodes one whole message whose prelude was already checked.
fn decode(frame: &[u8]) -> Result<Message, FrameError> {
    let body_end = frame.len() - 4;
    if crc32fast::hash(&frame[..body_end]) != be_u32(&frame[body_end..]) {
        return Err(FrameError::MessageCrc);
    }
    let headers_len = be_u32(&frame[4..8]) as usize;
    let headers_end = PRELUDE
        .checked_add(headers_len)
        .filter(|end| *end <= body_end)
        .ok_or(FrameError::Header("headers run past the message"))?;
    Ok(Message {
        headers: decode_headers(&frame[PRELUDE..headers_end])?,
        payload: frame[headers_end..body_end].to_vec(),
    })
}

/// A cursor over header bytes that fails instead of reading past the end.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.bytes.len() < n {
            return Err(FrameError::Header("header truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn sized(&mut self) -> Result<&'a [u8], FrameError> {
        let len = u16::from_be_bytes(self.array()?);
        self.take(usize::from(len))
    }
}

fn decode_headers(bytes: &[u8]) -> Result<Vec<(String, HeaderValue)>, FrameError> {
    let mut cursor = Cursor { bytes };
    let mut headers = Vec::new();
    // Each header takes at least 2 bytes, so this loop ends within bytes.len() / 2 turns.
    while !cursor.bytes.is_empty() {
        let name_len = cursor.array::<1>()?[0];
        let name = std::str::from_utf8(cursor.take(usize::from(name_len))?)
            .map_err(|_| FrameError::Header("header name is not UTF-8"))?
            .to_string();
        headers.push((name, decode_value(&mut cursor)?));
    }
    Ok(headers)
}

fn decode_value(cursor: &mut Cursor<'_>) -> Result<HeaderValue, FrameError> {
    let value = match cursor.array::<1>()?[0] {
        0 => HeaderValue::Bool(true),
        1 => HeaderValue::Bool(false),
        2 => HeaderValue::Byte(i8::from_be_bytes(cursor.array()?)),
        3 => HeaderValue::Short(i16::from_be_bytes(cursor.array()?)),
        4 => HeaderValue::Int(i32::from_be_bytes(cursor.array()?)),
        5 => HeaderValue::Long(i64::from_be_bytes(cursor.array()?)),
        6 => HeaderValue::Bytes(cursor.sized()?.to_vec()),
        7 => HeaderValue::String(
            std::str::from_utf8(cursor.sized()?)
                .map_err(|_| FrameError::Header("string header is not UTF-8"))?
                .to_string(),
        ),
        8 => HeaderValue::Timestamp(i64::from_be_bytes(cursor.array()?)),
        9 => HeaderValue::Uuid(cursor.array()?),
        _ => return Err(FrameError::Header("unknown header type")),
    };
    Ok(value)
}

/// Test-only encoder: builds frames the way AWS sends them.
/// Writing event-stream messages, the way AWS sends them: for the unit and property
/// tests of the decoder.
pub mod encode {
    use super::HeaderValue;

    fn push_value(out: &mut Vec<u8>, value: &HeaderValue) {
        let sized = |out: &mut Vec<u8>, tag: u8, bytes: &[u8]| {
            out.push(tag);
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        match value {
            HeaderValue::Bool(true) => out.push(0),
            HeaderValue::Bool(false) => out.push(1),
            HeaderValue::Byte(v) => out.extend_from_slice(&[2, v.to_be_bytes()[0]]),
            HeaderValue::Short(v) => {
                out.push(3);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Int(v) => {
                out.push(4);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Long(v) => {
                out.push(5);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Bytes(v) => sized(out, 6, v),
            HeaderValue::String(v) => sized(out, 7, v.as_bytes()),
            HeaderValue::Timestamp(v) => {
                out.push(8);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Uuid(v) => {
                out.push(9);
                out.extend_from_slice(v);
            }
        }
    }

    /// The wire form of `headers` (name length, name, typed value each).
    pub fn headers<N: AsRef<str>>(headers: &[(N, HeaderValue)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in headers {
            let name = name.as_ref();
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            push_value(&mut out, value);
        }
        out
    }

    /// A frame with correct lengths and CRCs around whatever header bytes it is given.
    pub fn frame(headers: &[u8], payload: &[u8]) -> Vec<u8> {
        let total = 16 + headers.len() + payload.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        let prelude_crc = crc32fast::hash(&out);
        out.extend_from_slice(&prelude_crc.to_be_bytes());
        out.extend_from_slice(headers);
        out.extend_from_slice(payload);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    pub fn message(headers: &[(&str, HeaderValue)], payload: &[u8]) -> Vec<u8> {
        frame(&self::headers(headers), payload)
    }

    /// An `event` message as Bedrock sends one.
    pub fn event(event_type: &str, payload: &str) -> Vec<u8> {
        message(
            &[
                (":event-type", HeaderValue::String(event_type.into())),
                (
                    ":content-type",
                    HeaderValue::String("application/json".into()),
                ),
                (":message-type", HeaderValue::String("event".into())),
            ],
            payload.as_bytes(),
        )
    }

    /// An `exception` message as Bedrock sends one.
    pub fn exception(exception_type: &str, message: &str) -> Vec<u8> {
        let payload = serde_json::json!({ "message": message }).to_string();
        self::message(
            &[
                (
                    ":exception-type",
                    HeaderValue::String(exception_type.into()),
                ),
                (
                    ":content-type",
                    HeaderValue::String("application/json".into()),
                ),
                (":message-type", HeaderValue::String("exception".into())),
            ],
            payload.as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::encode;
    use super::*;

    fn every_type() -> Vec<(&'static str, HeaderValue)> {
        vec![
            ("t", HeaderValue::Bool(true)),
            ("f", HeaderValue::Bool(false)),
            ("b", HeaderValue::Byte(-3)),
            ("s", HeaderValue::Short(-300)),
            ("i", HeaderValue::Int(70_000)),
            ("l", HeaderValue::Long(-1 << 40)),
            ("y", HeaderValue::Bytes(vec![0, 1, 255])),
            (
                ":event-type",
                HeaderValue::String("contentBlockDelta".into()),
            ),
            ("ts", HeaderValue::Timestamp(1_700_000_000_000)),
            ("u", HeaderValue::Uuid([7; 16])),
        ]
    }

    fn expected(headers: &[(&str, HeaderValue)], payload: &[u8]) -> Message {
        Message {
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn round_trip_split_at_every_byte() {
        let headers = every_type();
        let first = encode::message(&headers, br#"{"delta":{"text":"hi"}}"#);
        let second = encode::message(&[], b"");
        let stream: Vec<u8> = [first.clone(), second.clone()].concat();
        for split in 0..=stream.len() {
            let mut decoder = Decoder::new();
            let mut got = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                decoder.push(part);
                while let Some(message) = decoder.next_message() {
                    got.push(message.expect("valid frame"));
                }
            }
            assert_eq!(
                got,
                vec![
                    expected(&headers, br#"{"delta":{"text":"hi"}}"#),
                    expected(&[], b"")
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn byte_by_byte_feed() {
        let frame = encode::event("messageStop", r#"{"stopReason":"end_turn"}"#);
        let mut decoder = Decoder::new();
        let mut got = Vec::new();
        for byte in &frame {
            decoder.push(std::slice::from_ref(byte));
            if let Some(message) = decoder.next_message() {
                got.push(message.expect("valid frame"));
            }
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].header_str(":event-type"), Some("messageStop"));
        assert_eq!(got[0].header_str(":missing"), None);
    }

    fn decode_all(bytes: &[u8]) -> Option<Result<Message, FrameError>> {
        let mut decoder = Decoder::new();
        decoder.push(bytes);
        decoder.next_message()
    }

    #[test]
    fn corrupt_message_crc_is_detected() {
        let mut frame = encode::event("messageStart", r#"{"role":"assistant"}"#);
        let payload_byte = frame.len() - 6;
        frame[payload_byte] ^= 0x01;
        assert_eq!(decode_all(&frame), Some(Err(FrameError::MessageCrc)));
    }

    #[test]
    fn corrupt_prelude_is_detected_and_sticks() {
        let mut frame = encode::event("messageStart", r#"{"role":"assistant"}"#);
        frame[9] ^= 0x80;
        let mut decoder = Decoder::new();
        decoder.push(&frame);
        assert_eq!(decoder.next_message(), Some(Err(FrameError::PreludeCrc)));
        decoder.push(&encode::event("messageStop", "{}"));
        assert_eq!(decoder.next_message(), Some(Err(FrameError::PreludeCrc)));
    }

    #[test]
    fn absurd_lengths_are_rejected_before_buffering() {
        let mut frame = Vec::new();
        frame.extend_from_slice(&u32::MAX.to_be_bytes());
        frame.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&frame);
        frame.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(
            decode_all(&frame),
            Some(Err(FrameError::BadLength(u32::MAX)))
        );
        let mut short = 8u32.to_be_bytes().to_vec();
        short.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&short);
        short.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(decode_all(&short), Some(Err(FrameError::BadLength(8))));
    }

    #[test]
    fn headers_longer_than_message_are_rejected() {
        let mut frame = encode::message(&[], b"abc");
        frame[4..8].copy_from_slice(&100u32.to_be_bytes());
        let crc = crc32fast::hash(&frame[..8]);
        frame[8..12].copy_from_slice(&crc.to_be_bytes());
        let end = frame.len() - 4;
        let crc = crc32fast::hash(&frame[..end]);
        frame[end..].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_all(&frame),
            Some(Err(FrameError::Header(_)))
        ));
    }

    /// Many small messages arriving in one push are each handed out without
    /// moving the rest of the buffer (that made one push cost quadratic time).
    #[test]
    fn many_messages_in_one_push() {
        let frame = encode::message(&[], b"");
        let count = 1 << 16;
        let mut decoder = Decoder::new();
        decoder.push(&frame.repeat(count));
        let mut decoded = 0;
        for _ in 0..=count {
            match decoder.next_message() {
                Some(message) => {
                    assert_eq!(message, Ok(Message::default()));
                    decoded += 1;
                }
                None => break,
            }
        }
        assert_eq!(decoded, count);
        assert_eq!(decoder.buffered_len(), 0);
    }

    #[test]
    fn incomplete_input_waits() {
        let frame = encode::event("metadata", "{}");
        assert_eq!(decode_all(&frame[..5]), None);
        assert_eq!(decode_all(&frame[..frame.len() - 1]), None);
    }
}
