//! The `encode` and `echo_request` faults' bodies: answers compressed although
//! nobody asked for it, and error messages that quote the request (credentials
//! included), as misbehaving providers send them.

use std::io::Write;

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

use super::dialect::{self, Dialect, ErrorHeader};

/// Replaces `body` with its `encoding` form: gzip, or zlib-wrapped deflate. Other
/// labels leave the bytes as they are (the fault only lies about them).
pub(crate) fn encode_in_place(encoding: &str, body: &mut Vec<u8>) {
    let encoded = match encoding {
        "gzip" | "x-gzip" => {
            let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
            encoder.write_all(body).and_then(|()| encoder.finish())
        }
        "deflate" => {
            let mut encoder = ZlibEncoder::new(Vec::new(), Compression::fast());
            encoder.write_all(body).and_then(|()| encoder.finish())
        }
        _ => return,
    };
    // Writing into a Vec cannot fail; keep the plain body if it somehow did.
    if let Ok(encoded) = encoded {
        *body = encoded;
    }
}

/// Appends `dialect`'s error body for `status` whose message is the request
/// head, verbatim.
pub(crate) fn write_echo(
    dialect: Dialect,
    out: &mut Vec<u8>,
    status: u16,
    head: &[u8],
    name: &str,
) -> ErrorHeader {
    let message = format!("rejected request: {}", String::from_utf8_lossy(head));
    dialect::write_error(dialect, out, status, Some(&message), name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_and_deflate_round_trip() {
        let mut gz = b"hello hello hello".to_vec();
        encode_in_place("gzip", &mut gz);
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, "hello hello hello");
        let mut z = b"abc".to_vec();
        encode_in_place("deflate", &mut z);
        let mut back = String::new();
        flate2::read::ZlibDecoder::new(&z[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, "abc");
        let mut br = b"same".to_vec();
        encode_in_place("br", &mut br);
        assert_eq!(br, b"same");
    }
}
