//! A request's id: the client's own `x-request-id` when it is short and
//! printable, else one the shard makes. Held inline and copied, never
//! allocated: it travels with every request into logs, traces, the upstream
//! head and the answer's head.

use std::fmt;

/// The longest client-supplied id kept; a longer one is replaced.
pub const MAX_REQUEST_ID: usize = 128;

/// Hex digits of a generated id: 8 of the process's prefix, 2 of the shard,
/// 12 of its sequence.
const GENERATED_LEN: usize = 22;

/// A request id of at most [`MAX_REQUEST_ID`] ASCII bytes.
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    bytes: [u8; MAX_REQUEST_ID],
}

impl RequestId {
    /// The client's id, if it is one the gateway keeps: 1 to
    /// [`MAX_REQUEST_ID`] bytes of letters, digits and `-_.:`.
    pub fn from_client(id: &[u8]) -> Option<RequestId> {
        let acceptable = !id.is_empty()
            && id.len() <= MAX_REQUEST_ID
            && id
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b));
        acceptable.then(|| RequestId::of_ascii(id))
    }

    /// A generated id: the process's random `prefix`, the low byte of the
    /// `shard` and its `seq`, as 22 lower-case hex digits.
    pub fn generated(prefix: u32, shard: u8, seq: u64) -> RequestId {
        let mut id = RequestId::empty();
        id.push_hex(u64::from(prefix), 8);
        id.push_hex(u64::from(shard), 2);
        id.push_hex(seq, 12);
        debug_assert_eq!(usize::from(id.len), GENERATED_LEN);
        id
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `from_client`, hex digits in
        // `generated`), so this never fails.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    fn empty() -> RequestId {
        RequestId {
            len: 0,
            bytes: [0; MAX_REQUEST_ID],
        }
    }

    fn of_ascii(id: &[u8]) -> RequestId {
        let mut out = RequestId::empty();
        out.bytes[..id.len()].copy_from_slice(id);
        out.len = id.len() as u8;
        out
    }

    /// Appends the low `digits` hex digits of `n`, zero-padded, lower case
    /// (what `{:0width$x}` writes for a value that fits).
    fn push_hex(&mut self, n: u64, digits: u32) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for shift in (0..digits).rev() {
            let nibble = (n >> (shift * 4)) & 0xf;
            self.bytes[usize::from(self.len)] = HEX[nibble as usize];
            self.len += 1;
        }
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::empty()
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for RequestId {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_match_the_formatter() {
        for (prefix, shard, seq) in [
            (0u32, 0u8, 0u64),
            (0xdead_beef, 0xab, 7),
            (1, 255, 0xffff_ffff_ffff),
        ] {
            let id = RequestId::generated(prefix, shard, seq);
            assert_eq!(id.as_str(), format!("{prefix:08x}{shard:02x}{seq:012x}"));
        }
    }

    #[test]
    fn client_ids_are_kept_only_when_short_and_printable() {
        let longest = "a".repeat(MAX_REQUEST_ID);
        for (id, kept) in [
            ("req-1_a.b:c", true),
            (longest.as_str(), true),
            ("", false),
            ("has space", false),
            ("new\r\nline", false),
            ("ünicode", false),
        ] {
            let got = RequestId::from_client(id.as_bytes());
            assert_eq!(
                got.map(|g| g.to_string()),
                kept.then(|| id.to_string()),
                "{id:?}"
            );
        }
        let too_long = "a".repeat(MAX_REQUEST_ID + 1);
        assert!(RequestId::from_client(too_long.as_bytes()).is_none());
    }
}
