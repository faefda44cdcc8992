//! Content codings of provider answers (`content-encoding`): which ones the
//! gateway can undo, and undoing them within a size limit.
//!
//! The gateway asks every provider for `identity`; this is for the ones that
//! compress anyway (or sit behind a proxy that does). gzip and deflate are decoded
//! with the output capped, so a small compressed body cannot expand into
//! gigabytes; anything else (`br`, `zstd`, stacked codings) is refused, never
//! relayed as if it were plain JSON.

use std::io::Read;

use flate2::bufread::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

/// A coding the gateway can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Deflate,
}

/// Why an encoded body cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("provider answered with content-encoding `{0}`, which the gateway does not decode (it asks for identity)")]
    Unsupported(String),
    #[error("decoded body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body is not valid {coding}: {reason}")]
    Corrupt {
        coding: &'static str,
        reason: String,
    },
}

/// Longest coding name quoted back in an error (the value is the provider's).
const MAX_NAME: usize = 40;

impl Coding {
    /// Reads a `content-encoding` value: absent, empty or `identity` is
    /// [`Coding::Identity`]; a list with more than one real coding is refused.
    pub fn parse(value: Option<&[u8]>) -> Result<Coding, DecodeError> {
        let Some(value) = value else {
            return Ok(Coding::Identity);
        };
        let mut codings = value
            .split(|b| *b == b',')
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"));
        let coding = match (codings.next(), codings.next()) {
            (None, _) => return Ok(Coding::Identity),
            (Some(coding), None) => coding,
            (Some(_), Some(_)) => {
                return Err(DecodeError::Unsupported(printable(value.trim_ascii())))
            }
        };
        if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            Ok(Coding::Gzip)
        } else if coding.eq_ignore_ascii_case(b"deflate") {
            Ok(Coding::Deflate)
        } else {
            Err(DecodeError::Unsupported(printable(coding)))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// The provider's coding name, made safe to quote in an error body.
fn printable(value: &[u8]) -> String {
    value
        .iter()
        .take(MAX_NAME)
        .map(|&b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b',' | b' ' => {
                char::from(b)
            }
            _ => '?',
        })
        .collect()
}

/// Undoes `coding` on `body`, failing as soon as the output would pass `limit`
/// bytes; the buffer holding the output never grows past `limit` either.
/// Identity hands `body` back untouched.
pub fn decode(coding: Coding, body: Vec<u8>, limit: usize) -> Result<Vec<u8>, DecodeError> {
    match coding {
        Coding::Identity => Ok(body),
        Coding::Gzip => read_capped(MultiGzDecoder::new(&body[..]), coding, limit),
        // RFC 9110 deflate is zlib-wrapped; some servers send raw deflate instead.
        Coding::Deflate if has_zlib_header(&body) => {
            read_capped(ZlibDecoder::new(&body[..]), coding, limit)
        }
        Coding::Deflate => read_capped(DeflateDecoder::new(&body[..]), coding, limit),
    }
}

/// Whether `body` starts with a zlib header (RFC 1950: method 8, check bits).
fn has_zlib_header(body: &[u8]) -> bool {
    match body {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

fn read_capped(
    mut reader: impl Read,
    coding: Coding,
    limit: usize,
) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    // Every pass appends at least one byte and the total is capped: bounded.
    loop {
        let n = reader.read(&mut chunk).map_err(|e| DecodeError::Corrupt {
            coding: coding.as_str(),
            reason: e.to_string(),
        })?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        crate::bufio::reserve_capped(&mut out, n, limit);
        out.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn parses_codings() {
        let ok = |v: &[u8]| Coding::parse(Some(v)).unwrap();
        assert_eq!(Coding::parse(None).unwrap(), Coding::Identity);
        assert_eq!(ok(b""), Coding::Identity);
        assert_eq!(ok(b"identity"), Coding::Identity);
        assert_eq!(ok(b" GZIP "), Coding::Gzip);
        assert_eq!(ok(b"x-gzip"), Coding::Gzip);
        assert_eq!(ok(b"identity, gzip"), Coding::Gzip);
        assert_eq!(ok(b"Deflate"), Coding::Deflate);
        let refused = |v: &[u8]| Coding::parse(Some(v)).unwrap_err().to_string();
        assert!(refused(b"br").contains("`br`"));
        assert!(refused(b"zstd").contains("`zstd`"));
        assert!(refused(b"gzip, gzip").contains("`gzip, gzip`"));
        assert!(refused(b"gzip, br").contains("`gzip, br`"));
        assert!(refused(b"x\r\n\"y").contains("`x???y`"));
    }

    #[test]
    fn decodes_gzip_zlib_and_raw_deflate() {
        let text = b"{\"hello\":\"world\"}".repeat(100);
        assert_eq!(decode(Coding::Gzip, gzip(&text), 1 << 20).unwrap(), text);
        let two_members = [gzip(b"ab"), gzip(b"cd")].concat();
        assert_eq!(decode(Coding::Gzip, two_members, 10).unwrap(), b"abcd");
        let mut z = ZlibEncoder::new(Vec::new(), Compression::fast());
        z.write_all(&text).unwrap();
        assert_eq!(
            decode(Coding::Deflate, z.finish().unwrap(), 1 << 20).unwrap(),
            text
        );
        let mut raw = DeflateEncoder::new(Vec::new(), Compression::fast());
        raw.write_all(&text).unwrap();
        assert_eq!(
            decode(Coding::Deflate, raw.finish().unwrap(), 1 << 20).unwrap(),
            text
        );
        assert_eq!(decode(Coding::Identity, text.clone(), 1).unwrap(), text);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 64 << 10);
        assert_eq!(
            decode(Coding::Gzip, bomb, 1 << 20),
            Err(DecodeError::TooLarge { limit: 1 << 20 })
        );
        let exact = gzip(&[7u8; 1000]);
        assert_eq!(decode(Coding::Gzip, exact, 1000).unwrap().len(), 1000);
    }

    #[test]
    fn corrupt_and_truncated_bodies_fail() {
        let text = b"some text that compresses".repeat(50);
        let whole = gzip(&text);
        let cut = whole[..whole.len() - 6].to_vec();
        assert!(matches!(
            decode(Coding::Gzip, cut, 1 << 20),
            Err(DecodeError::Corrupt { coding: "gzip", .. })
        ));
        assert!(decode(Coding::Gzip, b"plain json".to_vec(), 1 << 20).is_err());
    }
}
