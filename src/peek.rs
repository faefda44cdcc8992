//! A non-blocking look at what a socket holds: nothing, data, or the peer's EOF.
//!
//! Used where no read is in flight on the socket (an idle pooled upstream, a client
//! waiting for its answer), so the kernel's view is the whole truth.

use std::io;
use std::os::fd::RawFd;

/// What is waiting on a socket right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    Nothing,
    Data,
    Eof,
    Error,
}

/// Peeks one byte without waiting or consuming it.
pub fn peek(fd: RawFd) -> Pending {
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer we own, on a socket fd its owner keeps open for the
    // duration of the call; MSG_PEEK leaves the byte in place.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Pending::Eof,
        n if n > 0 => Pending::Data,
        _ if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => Pending::Nothing,
        _ => Pending::Error,
    }
}
