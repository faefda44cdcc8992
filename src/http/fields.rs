//! A head's header fields kept in one buffer: every name and value copied into
//! one byte vector, with their positions beside it (inline up to
//! [`INLINE_FIELDS`] fields), so a parsed head costs one allocation when short
//! and two however many headers it has (it was two per header).

use std::ops::Range;

use smallvec::SmallVec;

/// Fields whose positions are held inline: the returned provider headers and
/// a key's rate-limit headers fit, and most short heads. Not more: every
/// `Fields` carries this room, and moving 16 of them through the attempt's
/// futures cost more instructions (+0.6k per request, callgrind) than the
/// allocation it saved.
pub const INLINE_FIELDS: usize = 8;

/// Header fields in the order they were added; names as given (parsed heads
/// store them lower-cased), values as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    text: Vec<u8>,
    spans: SmallVec<[Span; INLINE_FIELDS]>,
}

/// One field: the name is `text[start..middle]`, the value `text[middle..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    middle: u32,
    end: u32,
}

impl Span {
    fn name(self) -> Range<usize> {
        self.start as usize..self.middle as usize
    }

    fn value(self) -> Range<usize> {
        self.middle as usize..self.end as usize
    }
}

impl Fields {
    /// Copies httparse's headers, names lower-cased: exactly one allocation for
    /// the bytes (and one for the positions past [`INLINE_FIELDS`] fields).
    pub fn from_parsed(headers: &[httparse::Header<'_>]) -> Fields {
        let mut fields = Fields::default();
        fields.extend_parsed(headers);
        fields
    }

    /// Appends httparse's headers, names lower-cased, growing at most once (not
    /// at all when a recycled list is large enough).
    pub fn extend_parsed(&mut self, headers: &[httparse::Header<'_>]) {
        let bytes = headers.iter().map(|h| h.name.len() + h.value.len()).sum();
        self.text.reserve(bytes);
        self.spans.reserve(headers.len());
        for h in headers {
            let start = self.text.len();
            self.push(h.name, h.value);
            self.text[start..start + h.name.len()].make_ascii_lowercase();
        }
    }

    /// Bytes the list can hold before it grows.
    pub fn capacity(&self) -> usize {
        self.text.capacity()
    }

    /// Drops every field, keeping the capacity (for reuse).
    pub fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
    }

    /// Empty, with room for `fields` fields of `bytes` bytes in all.
    pub fn with_capacity(bytes: usize, fields: usize) -> Fields {
        Fields {
            text: Vec::with_capacity(bytes),
            spans: SmallVec::with_capacity(fields),
        }
    }

    /// Appends one field.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.push_parts(&[name], value);
    }

    /// Appends one field whose value `write` appends (a number, say, written in
    /// place rather than formatted into a string first).
    pub fn push_with(&mut self, name: &str, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.text.len();
        self.text.extend_from_slice(name.as_bytes());
        let middle = self.text.len();
        write(&mut self.text);
        self.spans.push(Span {
            start: start as u32,
            middle: middle as u32,
            end: self.text.len() as u32,
        });
    }

    /// Appends one field whose name is the concatenation of `name`'s parts.
    pub fn push_parts(&mut self, name: &[&str], value: &[u8]) {
        let start = self.text.len();
        for part in name {
            self.text.extend_from_slice(part.as_bytes());
        }
        let middle = self.text.len();
        self.text.extend_from_slice(value);
        // A head is capped far below 4 GiB (max_header_bytes), so u32 positions hold.
        self.spans.push(Span {
            start: start as u32,
            middle: middle as u32,
            end: self.text.len() as u32,
        });
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The fields, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.spans.iter().map(|&span| self.field(span))
    }

    /// First value of the field with this name, compared without case (as
    /// bytes: a lookup runs for every header the gateway reads, so it skips the
    /// UTF-8 view).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let name = name.as_bytes();
        self.spans
            .iter()
            .find(|span| self.text[span.name()].eq_ignore_ascii_case(name))
            .map(|&span| &self.text[span.value()])
    }

    /// Whether a field's name is exactly the concatenation of `name`'s parts.
    pub fn has_name_parts(&self, name: &[&str]) -> bool {
        let wanted: usize = name.iter().map(|part| part.len()).sum();
        self.spans.iter().any(|&span| {
            let stored = &self.text[span.name()];
            stored.len() == wanted && {
                let mut rest = stored;
                name.iter().all(|part| {
                    let (head, tail) = rest.split_at(part.len());
                    rest = tail;
                    head == part.as_bytes()
                })
            }
        })
    }

    /// The fields as owned pairs (for comparisons in tests and diagnostics).
    pub fn to_pairs(&self) -> Vec<(String, Vec<u8>)> {
        self.iter()
            .map(|(name, value)| (name.to_string(), value.to_vec()))
            .collect()
    }

    fn field(&self, span: Span) -> (&str, &[u8]) {
        let name = &self.text[span.name()];
        // SAFETY: a name range only ever covers bytes copied whole from `&str`s
        // (`push_parts`, `push_with`, `from_parsed`), and lower-casing ASCII in
        // place keeps them UTF-8; nothing else writes `text` or `spans`. Checking
        // again on every iteration was a measurable share of a request.
        let name = unsafe { std::str::from_utf8_unchecked(name) };
        (name, &self.text[span.value()])
    }
}

/// Fields from (name, value) pairs, names kept as given.
impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Fields {
        let mut fields = Fields::default();
        for (name, value) in pairs {
            fields.push(name.as_ref(), value.as_ref());
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_names_are_lower_cased_and_order_kept() {
        let raw = [
            httparse::Header {
                name: "Content-Type",
                value: b"application/json",
            },
            httparse::Header {
                name: "X-Stainless-OS",
                value: b"Linux",
            },
            httparse::Header {
                name: "content-type",
                value: b"text/plain",
            },
        ];
        let fields = Fields::from_parsed(&raw);
        let pairs: Vec<(&str, &[u8])> = fields.iter().collect();
        assert_eq!(
            pairs,
            [
                ("content-type", &b"application/json"[..]),
                ("x-stainless-os", b"Linux"),
                ("content-type", b"text/plain"),
            ]
        );
        assert_eq!(fields.get("Content-Type"), Some(&b"application/json"[..]));
        assert_eq!(fields.get("x-missing"), None);
        assert_eq!(fields.len(), 3);
    }

    #[test]
    fn names_from_parts_are_found_whole_only() {
        let mut fields = Fields::default();
        fields.push_parts(&["x-ratelimit-", "remaining"], b"10");
        assert!(fields.has_name_parts(&["x-ratelimit-", "remaining"]));
        assert!(fields.has_name_parts(&["x-ratelimit-remaining", ""]));
        assert!(!fields.has_name_parts(&["x-ratelimit-", "remain"]));
        assert!(!fields.has_name_parts(&["x-ratelimit-", "remainingx"]));
        assert_eq!(
            fields.to_pairs(),
            [("x-ratelimit-remaining".to_string(), b"10".to_vec())]
        );
    }

    #[test]
    fn an_empty_list_has_nothing() {
        let fields = Fields::from_parsed(&[]);
        assert!(fields.is_empty());
        assert_eq!(fields.iter().count(), 0);
    }
}
