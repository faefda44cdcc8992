//! Owned-buffer reads for monoio: append to a `Vec<u8>` without overwriting what it holds.
//!
//! monoio's completion-based I/O takes buffers by value; a plain `read(vec)` writes
//! from index 0. Every reader in switchyard goes through [`read_more`] so buffers grow
//! and compact in one place.

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::AsyncReadRent;

/// Smallest free space offered to the kernel on each read.
pub const READ_CHUNK: usize = 16 * 1024;

/// Reads once, appending to `buf`. Returns the number of bytes read (0 = EOF).
pub async fn read_more<S: AsyncReadRent>(
    stream: &mut S,
    mut buf: Vec<u8>,
) -> (std::io::Result<usize>, Vec<u8>) {
    if buf.capacity() - buf.len() < READ_CHUNK {
        buf.reserve(READ_CHUNK);
    }
    let len = buf.len();
    let cap = buf.capacity();
    let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
    (res, slice.into_inner())
}

/// Makes room for `additional` more bytes in `buf` without letting its capacity
/// pass `cap`: amortised doubling below it, exact at it. A buffer filled up to a
/// limit this way never allocates past the limit. The caller has checked that
/// `buf.len() + additional <= cap`.
pub fn reserve_capped(buf: &mut Vec<u8>, additional: usize, cap: usize) {
    let needed = buf.len() + additional;
    if needed <= buf.capacity() {
        return;
    }
    let target = (buf.capacity() * 2).max(READ_CHUNK).min(cap).max(needed);
    buf.reserve_exact(target - buf.len());
}

/// Drops the first `n` bytes of `buf`, keeping the rest (pipelined data) in place.
pub fn consume(buf: &mut Vec<u8>, n: usize) {
    if n >= buf.len() {
        buf.clear();
    } else {
        buf.drain(..n);
    }
}

/// Writes all of `buf` and hands it back unchanged.
pub async fn write_all<S: monoio::io::AsyncWriteRent>(
    stream: &mut S,
    buf: Vec<u8>,
) -> (std::io::Result<()>, Vec<u8>) {
    use monoio::io::AsyncWriteRentExt;
    if buf.bytes_init() == 0 {
        return (Ok(()), buf);
    }
    let (res, buf) = stream.write_all(buf).await;
    (res.map(|_| ()), buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_growth_never_passes_the_cap() {
        let cap = 100_000;
        let mut buf = Vec::new();
        for piece in [1usize, 5000, 17_000, 30_000, 40_000, 7_999] {
            reserve_capped(&mut buf, piece, cap);
            buf.resize(buf.len() + piece, 0);
            assert!(buf.capacity() <= cap, "{} > {cap}", buf.capacity());
        }
        assert_eq!(buf.len(), 100_000);
    }
}
