//! Incremental decoding of a `transfer-encoding: chunked` response body.

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// Why a chunked body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkError {
    #[error("chunk-size line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("invalid chunk size")]
    BadSize,
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// How far one `decode` call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Input bytes used; the rest must be offered again with more data appended.
    pub consumed: usize,
    /// The terminating zero chunk and trailers have been read.
    pub done: bool,
}

/// A chunked-body decoder fed with whatever bytes have arrived.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        ChunkedDecoder { state: State::Size }
    }

    /// Decodes as much of `input` as possible, passing chunk data to `sink`.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<Progress, ChunkError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            let used = match self.state {
                State::Done => {
                    return Ok(Progress {
                        consumed: pos,
                        done: true,
                    })
                }
                State::Size | State::Trailer => self.line(rest)?,
                State::Data(left) => self.data(rest, left, &mut sink),
                State::DataEnd => self.data_end(rest)?,
            };
            match used {
                Some(n) => pos += n,
                None => {
                    return Ok(Progress {
                        consumed: pos,
                        done: false,
                    })
                }
            }
        }
    }

    /// A size or trailer line; `None` until the whole line has arrived.
    fn line(&mut self, rest: &[u8]) -> Result<Option<usize>, ChunkError> {
        let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
            return if rest.len() > MAX_LINE {
                Err(ChunkError::LineTooLong)
            } else {
                Ok(None)
            };
        };
        let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
        self.state = match self.state {
            State::Size => match parse_size(line)? {
                0 => State::Trailer,
                n => State::Data(n),
            },
            _ if line.is_empty() => State::Done,
            other => other,
        };
        Ok(Some(nl + 1))
    }

    fn data(&mut self, rest: &[u8], left: u64, sink: &mut impl FnMut(&[u8])) -> Option<usize> {
        if rest.is_empty() {
            return None;
        }
        let take = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
        sink(&rest[..take]);
        let left = left - take as u64;
        self.state = if left == 0 {
            State::DataEnd
        } else {
            State::Data(left)
        };
        Some(take)
    }

    fn data_end(&mut self, rest: &[u8]) -> Result<Option<usize>, ChunkError> {
        let used = match rest {
            [] | [b'\r'] => return Ok(None),
            [b'\r', b'\n', ..] => 2,
            [b'\n', ..] => 1,
            _ => return Err(ChunkError::MissingCrlf),
        };
        self.state = State::Size;
        Ok(Some(used))
    }
}

fn parse_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.split(|b| *b == b';').next().unwrap_or_default();
    let digits = std::str::from_utf8(digits)
        .map_err(|_| ChunkError::BadSize)?
        .trim();
    if digits.is_empty() || digits.len() > 15 {
        return Err(ChunkError::BadSize);
    }
    u64::from_str_radix(digits, 16).map_err(|_| ChunkError::BadSize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut dec = ChunkedDecoder::new();
        let (mut out, mut pending) = (Vec::new(), Vec::new());
        for part in input.chunks(piece) {
            pending.extend_from_slice(part);
            let p = dec.decode(&pending, |d| out.extend_from_slice(d))?;
            pending.drain(..p.consumed);
            if p.done {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    #[test]
    fn decodes_whole_and_split_bodies() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for piece in [1, 2, 3, 7, body.len()] {
            let (out, done) = decode_in_pieces(body, piece).unwrap();
            assert_eq!(
                (out.as_slice(), done),
                (&b"hello, world"[..], true),
                "piece {piece}"
            );
        }
    }

    #[test]
    fn incomplete_body_is_not_done() {
        let (out, done) = decode_in_pieces(b"5\r\nhel", 4).unwrap();
        assert_eq!((out.as_slice(), done), (&b"hel"[..], false));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode_in_pieces(b"zz\r\n", 4), Err(ChunkError::BadSize));
        assert_eq!(
            decode_in_pieces(b"2\r\nabX", 8),
            Err(ChunkError::MissingCrlf)
        );
        assert_eq!(
            decode_in_pieces(&[b'1'; 5000], 5000),
            Err(ChunkError::LineTooLong)
        );
        assert_eq!(
            decode_in_pieces(b"ffffffffffffffffff\r\n", 64),
            Err(ChunkError::BadSize)
        );
    }
}
