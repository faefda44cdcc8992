//! The chunked transfer coding, both directions: an incremental decoder that accepts
//! input split at any byte, and a chunk encoder.

/// Longest accepted chunk-size line, extensions and CRLF included.
pub const MAX_SIZE_LINE: usize = 4096;
/// Most bytes of trailer section accepted (and skipped) after the last chunk.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// The terminating zero-size chunk with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Why a chunked body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// The chunk-size line is not `1*HEXDIG [ext] CRLF` or overflows 64 bits.
    #[error("invalid chunk size line")]
    InvalidSize,
    /// The chunk-size line is longer than [`MAX_SIZE_LINE`].
    #[error("chunk size line too long")]
    SizeLineTooLong,
    /// Chunk data is not followed by CRLF.
    #[error("chunk data not terminated by CRLF")]
    MissingCrlf,
    /// The trailer section is malformed or longer than [`MAX_TRAILER_BYTES`].
    #[error("invalid or oversized chunked trailer section")]
    InvalidTrailers,
}

/// What one [`ChunkedDecoder::decode`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes consumed; bytes after them were not looked at.
    pub consumed: usize,
    /// The last chunk and the trailers are complete.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line (partially held in `line`).
    SizeLine,
    /// Copying chunk data; this many bytes left.
    Data(u64),
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Saw CR at the start of a trailer line: the LF ends the message.
    FinalLf,
    /// Inside a trailer field line, skipping to its LF.
    TrailerLine,
    Done,
}

/// Incremental decoder of one chunked message body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of a chunk-size line split across calls.
    line: Vec<u8>,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeLine,
            line: Vec::new(),
            trailer_bytes: 0,
        }
    }

    /// Whether the whole message (last chunk and trailers) has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending payload bytes to `out`. Returns how many input
    /// bytes were consumed and whether the last chunk and trailers are complete
    /// (message done; bytes after it belong to the next message and are NOT consumed).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, ChunkedError> {
        let mut consumed = 0;
        while consumed < input.len() && self.state != State::Done {
            let rest = input.get(consumed..).unwrap_or_default();
            consumed += self.step(rest, out)?;
        }
        Ok(Progress {
            consumed,
            done: self.is_done(),
        })
    }

    /// Advances the state machine on non-empty `input`; returns bytes consumed (> 0).
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        let Some(&byte) = input.first() else {
            return Ok(0);
        };
        match self.state {
            State::SizeLine => self.size_line(input),
            State::Data(left) => Ok(self.data(left, input, out)),
            State::DataCr => self.expect(byte, b'\r', State::DataLf),
            State::DataLf => self.expect(byte, b'\n', State::SizeLine),
            State::TrailerStart => self.trailer_start(byte),
            State::FinalLf => self.expect(byte, b'\n', State::Done),
            State::TrailerLine => self.trailer_line(input),
            State::Done => Ok(0),
        }
    }

    fn expect(&mut self, byte: u8, want: u8, next: State) -> Result<usize, ChunkedError> {
        if byte != want {
            return Err(match self.state {
                State::FinalLf => ChunkedError::InvalidTrailers,
                _ => ChunkedError::MissingCrlf,
            });
        }
        self.state = next;
        Ok(1)
    }

    fn data(&mut self, left: u64, input: &[u8], out: &mut Vec<u8>) -> usize {
        let take = usize::try_from(left).map_or(input.len(), |l| l.min(input.len()));
        out.extend_from_slice(input.get(..take).unwrap_or_default());
        let left = left - take as u64;
        self.state = if left == 0 {
            State::DataCr
        } else {
            State::Data(left)
        };
        take
    }

    /// Consumes size-line bytes up to and including its LF, buffering a line that is
    /// split across calls.
    fn size_line(&mut self, input: &[u8]) -> Result<usize, ChunkedError> {
        let Some(lf) = input.iter().position(|&b| b == b'\n') else {
            self.buffer_line(input)?;
            return Ok(input.len());
        };
        let taken = lf + 1;
        let whole = input.get(..taken).unwrap_or_default();
        let size = if self.line.is_empty() {
            check_line_len(taken)?;
            parse_size_line(whole)?
        } else {
            self.buffer_line(whole)?;
            let size = parse_size_line(&self.line)?;
            self.line.clear();
            size
        };
        self.state = if size == 0 {
            State::TrailerStart
        } else {
            State::Data(size)
        };
        Ok(taken)
    }

    fn buffer_line(&mut self, bytes: &[u8]) -> Result<(), ChunkedError> {
        check_line_len(self.line.len() + bytes.len())?;
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn trailer_start(&mut self, byte: u8) -> Result<usize, ChunkedError> {
        self.count_trailer(1)?;
        self.state = match byte {
            b'\r' => State::FinalLf,
            b'\n' => return Err(ChunkedError::InvalidTrailers),
            _ => State::TrailerLine,
        };
        Ok(1)
    }

    fn trailer_line(&mut self, input: &[u8]) -> Result<usize, ChunkedError> {
        let (taken, ended) = match input.iter().position(|&b| b == b'\n') {
            Some(lf) => (lf + 1, true),
            None => (input.len(), false),
        };
        self.count_trailer(taken)?;
        if ended {
            self.state = State::TrailerStart;
        }
        Ok(taken)
    }

    fn count_trailer(&mut self, n: usize) -> Result<(), ChunkedError> {
        self.trailer_bytes += n;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ChunkedError::InvalidTrailers);
        }
        Ok(())
    }
}

fn check_line_len(len: usize) -> Result<(), ChunkedError> {
    if len > MAX_SIZE_LINE {
        return Err(ChunkedError::SizeLineTooLong);
    }
    Ok(())
}

/// Parses one complete size line (ending in LF). httparse accepts an empty size and
/// a bare LF inside extensions; both are rejected here.
fn parse_size_line(line: &[u8]) -> Result<u64, ChunkedError> {
    if !line.first().is_some_and(u8::is_ascii_hexdigit) {
        return Err(ChunkedError::InvalidSize);
    }
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((n, size))) if n == line.len() => Ok(size),
        _ => Err(ChunkedError::InvalidSize),
    }
}

/// Appends one chunk, `{len:x}\r\n{data}\r\n`; empty data writes nothing (an empty
/// chunk would end the message; use [`LAST_CHUNK`] for that).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    out.reserve(data.len() + 20);
    super::push_hex(out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Progress), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let p = d.decode(input, &mut out)?;
        Ok((out, p))
    }

    #[test]
    fn encodes_chunks() {
        let mut out = Vec::new();
        encode_chunk(b"hello world, this is 26 b", &mut out);
        encode_chunk(b"", &mut out);
        assert_eq!(out, b"19\r\nhello world, this is 26 b\r\n");
    }

    #[test]
    fn decodes_with_extensions_trailers_and_next_message() {
        let input = b"5;name=val\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\nx-other: 2\r\n\r\nGET /";
        let (out, p) = decode_all(input).unwrap();
        assert_eq!(out, b"hello0123456789");
        assert!(p.done);
        assert_eq!(&input[p.consumed..], b"GET /");
    }

    #[test]
    fn done_decoder_consumes_nothing() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert!(d.decode(LAST_CHUNK, &mut out).unwrap().done);
        assert!(d.is_done());
        let p = d.decode(b"1\r\na\r\n", &mut out).unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: 0,
                done: true
            }
        );
        assert!(out.is_empty());
    }

    #[test]
    fn incomplete_is_not_done() {
        let (out, p) = decode_all(b"5\r\nhel").unwrap();
        assert_eq!(out, b"hel");
        assert_eq!(
            p,
            Progress {
                consumed: 6,
                done: false
            }
        );
        let (_, p) = decode_all(b"0\r\n\r").unwrap();
        assert!(!p.done);
    }

    #[test]
    fn rejects_bad_size_lines() {
        for bad in [
            &b"\r\n"[..],
            b" 5\r\nhello\r\n",
            b"g\r\n",
            b"5 5\r\n",
            b"5\n",
            b"5;ext\nmore\r\n",
            b"-1\r\n",
            b"10000000000000000\r\n",
        ] {
            assert_eq!(decode_all(bad), Err(ChunkedError::InvalidSize), "{bad:?}");
        }
        let (_, p) = decode_all(b"ffffffffffffffff\r\nab").unwrap();
        assert_eq!(p.consumed, 20);
    }

    #[test]
    fn rejects_long_size_line_even_when_split() {
        let mut line = b"1;".to_vec();
        line.extend_from_slice(&vec![b'x'; MAX_SIZE_LINE]);
        assert_eq!(decode_all(&line), Err(ChunkedError::SizeLineTooLong));
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let (a, b) = line.split_at(10);
        d.decode(a, &mut out).unwrap();
        assert_eq!(d.decode(b, &mut out), Err(ChunkedError::SizeLineTooLong));
    }

    #[test]
    fn rejects_missing_crlf_and_bad_trailers() {
        assert_eq!(decode_all(b"3\r\nabcX"), Err(ChunkedError::MissingCrlf));
        assert_eq!(decode_all(b"3\r\nabc\rX"), Err(ChunkedError::MissingCrlf));
        assert_eq!(decode_all(b"0\r\n\n"), Err(ChunkedError::InvalidTrailers));
        assert_eq!(decode_all(b"0\r\n\rX"), Err(ChunkedError::InvalidTrailers));
        let mut huge = b"0\r\n".to_vec();
        huge.extend_from_slice(&vec![b'a'; MAX_TRAILER_BYTES + 1]);
        assert_eq!(decode_all(&huge), Err(ChunkedError::InvalidTrailers));
    }

    /// Splits `len` into pieces at the given (unsorted, possibly repeated) cut points.
    fn pieces(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
        points.push(0);
        points.push(len);
        points.sort_unstable();
        points.dedup();
        points.windows(2).map(|w| (w[0], w[1])).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever arrives and however it is split, the decoder holds at most one
        /// size line and counts at most the trailer cap: its state is bounded by
        /// the caps, not by the input.
        #[test]
        fn held_state_stays_within_the_caps(
            start in prop::sample::select(vec![&b""[..], b"0\r\n", b"3\r\nabc\r\n", b"1;"]),
            filler in prop::sample::select(vec![b'a', b'1', b';', b' ', b'\r', b'\n', b'=']),
            len in 0usize..(MAX_SIZE_LINE + MAX_TRAILER_BYTES + 64),
            sprinkled in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            piece in 1usize..700,
        ) {
            let mut input = start.to_vec();
            input.resize(start.len() + len, filler);
            for (at, byte) in sprinkled {
                let at = at % input.len().max(1);
                if let Some(b) = input.get_mut(at) {
                    *b = byte;
                }
            }
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            for part in input.chunks(piece) {
                let result = d.decode(part, &mut out);
                prop_assert!(d.line.len() <= MAX_SIZE_LINE);
                // Trailers are counted, not kept; the count passes the cap only
                // in the call that fails for it.
                prop_assert!(result.is_err() || d.trailer_bytes <= MAX_TRAILER_BYTES);
                prop_assert!(out.len() <= input.len());
                if !matches!(result, Ok(Progress { done: false, .. })) {
                    break;
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn roundtrip_split_anywhere(
            payload in prop::collection::vec(any::<u8>(), 0..2048),
            chunk_cuts in prop::collection::vec(any::<usize>(), 0..16),
            feed_cuts in prop::collection::vec(any::<usize>(), 0..32),
            trailers in any::<bool>(),
            next in prop::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut wire = Vec::new();
            for (a, b) in pieces(payload.len(), &chunk_cuts) {
                encode_chunk(&payload[a..b], &mut wire);
            }
            if trailers {
                wire.extend_from_slice(b"0\r\nx-t: 1\r\n\r\n");
            } else {
                wire.extend_from_slice(LAST_CHUNK);
            }
            let message_len = wire.len();
            wire.extend_from_slice(&next);

            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let mut total = 0;
            let mut done = false;
            for (a, b) in pieces(wire.len(), &feed_cuts) {
                // Unconsumed bytes are offered again with the next piece, as a caller would.
                let p = d.decode(&wire[total..b], &mut out).unwrap();
                prop_assert!(a >= total);
                total += p.consumed;
                done = p.done;
                if done { break; }
            }
            prop_assert!(done);
            prop_assert_eq!(total, message_len);
            prop_assert_eq!(&wire[total..], &next[..]);
            prop_assert_eq!(out, payload);
        }
    }
}
