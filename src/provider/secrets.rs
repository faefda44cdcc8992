//! The gateway's own provider credentials, found and blanked out of what a
//! provider sends back before the gateway relays it.
//!
//! A provider that quotes the request it got (some do in 401 messages, and a
//! misconfigured proxy may reflect whole heads) would otherwise hand the gateway's
//! key to every client. A provider's secrets are its `api_key`, its AWS keys and
//! session token, and the value of every header configured for it (provider and
//! target `headers`, the same values `/admin/config` redacts), collected once per
//! config when the routing table is built. Scrubbing is one SIMD substring search
//! per secret over the body, and copies only when something was found.

use memchr::memmem::Finder;

use crate::config::{Provider, Target};

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not searched for: blanking them would corrupt
/// ordinary text (`true`, `2023-06-01`-style versions are longer, but no real
/// credential is this short).
pub const MIN_SECRET_LEN: usize = 8;

/// One provider's secrets, ready to search for.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Longest first, so a value that contains another is replaced whole.
    finders: Vec<Finder<'static>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} values)", self.finders.len())
    }
}

impl Secrets {
    /// Secrets from raw values; short, empty and repeated ones are dropped.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Secrets {
        let mut values: Vec<&str> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        values.dedup();
        Secrets {
            finders: values
                .into_iter()
                .map(|v| Finder::new(v.as_bytes()).into_owned())
                .collect(),
        }
    }

    /// The secrets of `provider`, with the headers of its `targets` (every
    /// target of any route that uses it).
    pub fn of_provider<'a>(
        provider: &'a Provider,
        targets: impl Iterator<Item = &'a Target>,
    ) -> Secrets {
        let aws = provider.aws.iter().flat_map(|aws| {
            [
                Some(&aws.access_key_id),
                Some(&aws.secret_access_key),
                aws.session_token.as_ref(),
            ]
            .into_iter()
            .flatten()
        });
        let headers = provider
            .headers
            .iter()
            .chain(targets.flat_map(|t| t.headers.iter()))
            .flat_map(|(_, value)| header_secrets(value));
        Secrets::new(
            provider
                .api_key
                .iter()
                .chain(aws)
                .map(String::as_str)
                .chain(headers),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.finders.is_empty()
    }

    /// `body` with every secret replaced by [`REDACTED`]; `body` itself when
    /// none occurs (the common case costs the searches, no copy).
    pub fn scrub(&self, mut body: Vec<u8>) -> Vec<u8> {
        for finder in &self.finders {
            if finder.find(&body).is_some() {
                body = replace_all(&body, finder);
            }
        }
        body
    }

    /// [`Secrets::scrub`] for text (reasons quoted into the gateway's errors).
    pub fn scrub_str(&self, text: String) -> String {
        if self.is_empty() {
            return text;
        }
        // Secrets are whole UTF-8 strings replaced by ASCII: the result is UTF-8.
        String::from_utf8(self.scrub(text.into_bytes()))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// A configured header value is a secret whole, and so is its last word
/// (`Bearer <token>`: a provider may quote the token alone).
fn header_secrets(value: &str) -> impl Iterator<Item = &str> {
    let token = value.rsplit(' ').next().filter(|t| t.len() != value.len());
    std::iter::once(value).chain(token)
}

fn replace_all(body: &[u8], finder: &Finder<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut cursor = 0;
    for start in finder.find_iter(body) {
        // find_iter yields non-overlapping matches in order.
        out.extend_from_slice(&body[cursor..start]);
        out.extend_from_slice(REDACTED.as_bytes());
        cursor = start + finder.needle().len();
    }
    out.extend_from_slice(&body[cursor..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_longest_first() {
        let secrets = Secrets::new(["sk-abcdefgh", "Bearer sk-abcdefgh", "short"]);
        let body = b"a Bearer sk-abcdefgh b sk-abcdefghsk-abcdefgh short".to_vec();
        assert_eq!(
            String::from_utf8(secrets.scrub(body)).unwrap(),
            "a [redacted] b [redacted][redacted] short"
        );
    }

    #[test]
    fn untouched_when_absent_or_empty() {
        let body = b"nothing to see".to_vec();
        let ptr = body.as_ptr();
        let scrubbed = Secrets::new(["sk-abcdefgh"]).scrub(body);
        assert_eq!(scrubbed.as_ptr(), ptr, "no copy without a match");
        assert!(Secrets::new(["", "1234567"]).is_empty());
        assert_eq!(Secrets::default().scrub_str("x".into()), "x");
    }

    #[test]
    fn text_stays_utf8() {
        let secrets = Secrets::new(["clé-secrète-✓"]);
        assert_eq!(
            secrets.scrub_str("é clé-secrète-✓ é".into()),
            "é [redacted] é"
        );
    }

    #[test]
    fn header_values_and_their_tokens() {
        let found: Vec<&str> = header_secrets("Bearer tok-123456789").collect();
        assert_eq!(found, ["Bearer tok-123456789", "tok-123456789"]);
        let found: Vec<&str> = header_secrets("plainvalue").collect();
        assert_eq!(found, ["plainvalue"]);
    }

    #[test]
    fn debug_never_shows_values() {
        let shown = format!("{:?}", Secrets::new(["sk-abcdefgh"]));
        assert!(!shown.contains("sk-"), "{shown}");
    }
}
