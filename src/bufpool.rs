//! Byte buffers recycled on their shard: a request's upstream head and body, the
//! provider's response bytes and a whole answer each take a buffer here and give
//! it back when done, so a steady stream of requests allocates none of them.
//!
//! The free list is thread-local: every shard is one thread, so it is the
//! shard's own, with no locking and nothing shared. A taken buffer is always
//! empty (its old bytes are never visible, whoever they belonged to); a given
//! one is kept only while the list is short and the buffer is not large, so a
//! burst of big answers leaves at most [`MAX_KEPT`] × [`MAX_KEPT_CAPACITY`]
//! bytes behind.

use std::cell::RefCell;

/// Most buffers kept per shard (a few per request in flight on it is enough for
/// the common case; the rest are freed as usual).
pub const MAX_KEPT: usize = 32;
/// Largest buffer kept; a bigger one (a large answer) is freed.
pub const MAX_KEPT_CAPACITY: usize = 64 * 1024;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes: a recycled one when
/// the shard has one, else a new one.
pub fn take(capacity: usize) -> Vec<u8> {
    let recycled = FREE.try_with(|free| free.borrow_mut().pop()).ok().flatten();
    let Some(mut buf) = recycled else {
        return Vec::with_capacity(capacity);
    };
    debug_assert!(buf.is_empty());
    buf.reserve(capacity);
    buf
}

/// Hands `buf` back for reuse; its bytes are dropped here.
pub fn give(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_KEPT_CAPACITY {
        return;
    }
    buf.clear();
    // try_with: the thread's list may be gone while the thread exits.
    let _ = FREE.try_with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < MAX_KEPT {
            free.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a fresh thread, so the pool starts empty.
    fn on_fresh_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().expect("test thread");
    }

    #[test]
    fn a_given_buffer_comes_back_empty() {
        on_fresh_thread(|| {
            let mut buf = take(100);
            buf.extend_from_slice(b"another client's answer");
            let address = buf.as_ptr();
            give(buf);
            let again = take(10);
            assert_eq!(again.as_ptr(), address, "recycled");
            assert!(again.is_empty());
            assert!(again.capacity() >= 100);
        });
    }

    #[test]
    fn a_taken_buffer_has_the_room_asked_for() {
        on_fresh_thread(|| {
            give(Vec::with_capacity(16));
            assert!(take(4096).capacity() >= 4096);
        });
    }

    #[test]
    fn large_buffers_and_a_full_list_are_not_kept() {
        on_fresh_thread(|| {
            give(Vec::with_capacity(MAX_KEPT_CAPACITY + 1));
            assert_eq!(FREE.with(|f| f.borrow().len()), 0);
            for _ in 0..MAX_KEPT + 5 {
                give(Vec::with_capacity(64));
            }
            assert_eq!(FREE.with(|f| f.borrow().len()), MAX_KEPT);
        });
    }
}
