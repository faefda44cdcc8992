//! Property tests over everything that reads bytes or JSON from outside: the HTTP
//! codec (request and response heads, chunked bodies), the SSE parser, each
//! provider's stream decoder (AWS event-stream included), the config loader and
//! the request/response translators.
//!
//! Beyond "never panics", each property states what must hold for *any* input:
//! feeding bytes split anywhere gives the same result as feeding them whole,
//! encoders and parsers round-trip, nothing a parser returns or keeps is larger
//! than what it was given, and translators' successes are well-formed JSON.
//!
//! Every property runs a fixed number of cases (the suite must stay fast in debug
//! builds on two cores) and persists no failures, so CI writes no files. A failure
//! prints its minimal input; that input then becomes a plain unit test beside the
//! code it broke.

mod codec;
mod config;
mod json;
mod sse;
mod streams;
mod translate;

use proptest::test_runner::Config;

/// The runner settings of every property here: `cases` cases (unless
/// `PROPTEST_CASES` asks for a deeper run by hand), no regression files.
pub fn cases(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        // Shrinking is bounded too, so a failure is reported in bounded time.
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

/// Cuts `0..len` into consecutive non-empty ranges at the given cut points (taken
/// modulo `len + 1`, so any `usize` is a valid cut).
pub fn pieces(len: usize, cuts: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    points.extend([0, len]);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| w[0]..w[1]).collect()
}

/// Applies byte-level damage to `bytes`: each `(position, op)` either flips bits,
/// deletes a byte, or inserts one of the bytes that framing cares about.
pub fn damage(bytes: &mut Vec<u8>, edits: &[(usize, u8)]) {
    const INTERESTING: &[u8] = b"\r\n:; \t,{}\"\\0\x00\xff";
    for &(position, op) in edits {
        let at = position % (bytes.len() + 1);
        match op % 3 {
            0 if at < bytes.len() => bytes[at] ^= op | 1,
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.insert(at, INTERESTING[usize::from(op) % INTERESTING.len()]),
        }
    }
}

/// Bytes that print as an escaped byte string in failure reports.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Bytes {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

#[test]
fn pieces_cover_the_input_in_order() {
    assert_eq!(pieces(0, &[]), Vec::<std::ops::Range<usize>>::new());
    assert_eq!(pieces(5, &[3, 3, 0, 11]), vec![0..3, 3..5]);
    let mut bytes = b"ab".to_vec();
    damage(&mut bytes, &[(0, 1), (9, 2)]);
    assert_eq!(bytes, b"b:".to_vec());
}
