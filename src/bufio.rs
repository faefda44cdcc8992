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
