//! The gateway's header policy: which of the client's request headers reach the
//! provider, and which of the provider's answer headers reach the client.
//!
//! Forwarding is decided per (route, target) once, at config load
//! ([`Forwarding::resolve`]): the kind's defaults (`anthropic-beta` and
//! `anthropic-version` to Anthropic, `openai-beta` to OpenAI-shaped kinds,
//! `traceparent`/`tracestate` everywhere), the route's `forward_headers.allow`,
//! less its `deny`. Whatever the lists say, [`never_forwarded`] headers (every
//! kind's credentials and signing headers, hop-by-hop and framing headers, the
//! gateway's own) never leave the client's request. On the request path only a
//! case-insensitive compare against the short resolved lists runs.
//!
//! Returned headers ([`returned`]): the provider's rate-limit headers come back
//! renamed under `x-switchyard-upstream-ratelimit-*` (plain `x-ratelimit-*` is
//! reserved for the caller's own key), its request id as
//! `x-switchyard-upstream-request-id`; both bounded in count and length.

use std::time::{Duration, Instant};

use crate::config::{ForwardHeaders, ProviderKind};
use crate::http::response::ResponseHead;
use crate::http::Fields;
use smallvec::SmallVec;

/// Most client headers forwarded on one upstream request.
pub const MAX_FORWARDED: usize = 32;
/// Most bytes (names and values) of client headers forwarded on one request.
pub const MAX_FORWARDED_BYTES: usize = 8 * 1024;
/// Longest client `user-agent` appended to the gateway's.
pub const MAX_CLIENT_USER_AGENT: usize = 256;
/// Most provider headers returned on one answer.
pub const MAX_RETURNED: usize = 16;
/// Longest provider header value returned (longer ones are dropped, not cut).
pub const MAX_RETURNED_VALUE: usize = 256;

/// The gateway's own `user-agent`.
pub const OUR_USER_AGENT: &str = concat!("switchyard/", env!("CARGO_PKG_VERSION"));

/// Headers of one upstream request, by reference, on the stack up to the
/// usual count (auth, a few forwarded, the gateway's own): listing them costs
/// no allocation.
pub type HeaderList<'a> = SmallVec<[(&'a str, &'a [u8]); 16]>;

/// An upstream `user-agent` value: the gateway's and the client's, at most
/// [`MAX_CLIENT_USER_AGENT`] bytes of it, so always on the stack.
pub type UserAgent = SmallVec<[u8; OUR_USER_AGENT.len() + 1 + MAX_CLIENT_USER_AGENT]>;

/// Exact names never forwarded, with why.
const NEVER: &[(&str, &str)] = &[
    (
        "authorization",
        "it carries credentials; the provider gets its own",
    ),
    (
        "x-api-key",
        "it carries credentials; the provider gets its own",
    ),
    (
        "api-key",
        "it carries credentials; the provider gets its own",
    ),
    (
        "x-goog-api-key",
        "it carries credentials; the provider gets its own",
    ),
    ("proxy-authorization", "it carries credentials"),
    ("cookie", "it carries the client's session"),
    (
        "host",
        "it is hop-by-hop or framing; the gateway writes its own",
    ),
    (
        "connection",
        "it is hop-by-hop or framing; the gateway writes its own",
    ),
    (
        "keep-alive",
        "it is hop-by-hop or framing; the gateway writes its own",
    ),
    (
        "te",
        "it is hop-by-hop or framing; the gateway writes its own",
    ),
    (
        "trailer",
        "it is hop-by-hop or framing; the gateway writes its own",
    ),
    (
        "transfer-encoding",
        "it is hop-by-hop or framing; the gateway writes its own",
    ),
    (
        "upgrade",
        "it is hop-by-hop or framing; the gateway writes its own",
    ),
    (
        "content-length",
        "it is hop-by-hop or framing; the gateway writes its own",
    ),
    (
        "content-type",
        "it is hop-by-hop or framing; the gateway writes its own",
    ),
    (
        "content-encoding",
        "it is hop-by-hop or framing; the gateway writes its own",
    ),
    (
        "accept-encoding",
        "it is hop-by-hop or framing; the gateway writes its own",
    ),
    (
        "expect",
        "it is hop-by-hop or framing; the gateway writes its own",
    ),
    ("x-request-id", "the gateway sends its own request id"),
];

/// Name prefixes never forwarded, with why.
const NEVER_PREFIX: &[(&str, &str)] = &[
    ("x-amz-", "AWS signing headers are the gateway's to sign"),
    (
        "x-switchyard-",
        "the gateway's own headers are never forwarded",
    ),
];

/// Why `name` (lower-case) is never forwarded, or `None` when it may be.
pub fn never_forwarded(name: &str) -> Option<&'static str> {
    if let Some((_, why)) = NEVER.iter().find(|(n, _)| name.eq_ignore_ascii_case(n)) {
        return Some(why);
    }
    NEVER_PREFIX
        .iter()
        .find(|(p, _)| starts_with_ignore_case(name, p))
        .map(|(_, why)| *why)
}

/// Why an allow entry (a name, or a prefix ending in `*`) can never be honoured:
/// it names a never-forwarded header, or a prefix wholly inside a never-forwarded one.
pub fn never_allowed(entry: &str) -> Option<&'static str> {
    match entry.strip_suffix('*') {
        None => never_forwarded(entry),
        Some(prefix) => NEVER_PREFIX
            .iter()
            .find(|(p, _)| starts_with_ignore_case(prefix, p))
            .map(|(_, why)| *why),
    }
}

/// Whether `entry` is a header name (token characters), optionally ending in `*`.
pub fn valid_entry(entry: &str) -> bool {
    let name = entry.strip_suffix('*').unwrap_or(entry);
    // `*` only as the last character (a prefix), never inside.
    !name.is_empty() && name.bytes().all(|b| b != b'*' && is_token_byte(b))
}

fn is_token_byte(b: u8) -> bool {
    BYTE_CLASSES[usize::from(b)] & TOKEN != 0
}

/// What each byte may be in a head: [`TOKEN`] (a name), [`VALUE`] (a value).
/// A table, because these checks run over every returned provider header's
/// name and value (a chain of comparisons per byte was ~1.5k instructions
/// per request, callgrind).
const BYTE_CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        let token = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        let value = byte == b'\t' || byte == b' ' || (byte >= 0x21 && byte <= 0x7e) || byte >= 0x80;
        classes[b] = if token { TOKEN } else { 0 } | if value { VALUE } else { 0 };
        b += 1;
    }
    classes
};
const TOKEN: u8 = 1;
const VALUE: u8 = 2;

fn starts_with_ignore_case(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// One resolved name: exact, or a prefix (from a trailing `*`). Stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    Exact(String),
    Prefix(String),
}

impl Name {
    fn parse(entry: &str) -> Name {
        let lower = entry.to_ascii_lowercase();
        match lower.strip_suffix('*') {
            Some(prefix) => Name::Prefix(prefix.to_string()),
            None => Name::Exact(lower),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Name::Exact(n) => name.eq_ignore_ascii_case(n),
            Name::Prefix(p) => starts_with_ignore_case(name, p),
        }
    }
}

/// One (route, target)'s forwarding policy, resolved at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// Forwarded when sent (the kind's defaults and the route's allow list).
    allow: Vec<Name>,
    /// Never forwarded by this route (wins over `allow`).
    deny: Vec<Name>,
    /// Whether the client's `user-agent` is appended to the gateway's.
    user_agent: bool,
}

impl Default for Forwarding {
    /// Forwards nothing and appends no client user-agent.
    fn default() -> Self {
        Forwarding {
            allow: Vec::new(),
            deny: Vec::new(),
            user_agent: false,
        }
    }
}

/// The names every target of `kind` gets from the client by default.
pub fn defaults(kind: ProviderKind) -> &'static [&'static str] {
    match kind {
        ProviderKind::Anthropic => &[
            "anthropic-beta",
            "anthropic-version",
            "traceparent",
            "tracestate",
        ],
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Azure => {
            &["openai-beta", "traceparent", "tracestate"]
        }
        ProviderKind::Gemini | ProviderKind::Bedrock => &["traceparent", "tracestate"],
    }
}

impl Forwarding {
    /// The policy for a target of `kind` on a route with `config`. Entries that
    /// name never-forwarded headers are refused at load; they are skipped here too.
    pub fn resolve(kind: ProviderKind, config: &ForwardHeaders) -> Forwarding {
        let deny: Vec<Name> = config.deny.iter().map(|d| Name::parse(d)).collect();
        let allow = defaults(kind)
            .iter()
            .copied()
            .chain(config.allow.iter().map(String::as_str))
            .filter(|entry| never_allowed(entry).is_none())
            .map(Name::parse)
            .collect();
        let user_agent = !deny.iter().any(|d| d.matches("user-agent"));
        Forwarding {
            allow,
            deny,
            user_agent,
        }
    }

    /// Whether a client header `name` is forwarded (`user-agent` never is as
    /// such: [`Forwarding::user_agent`] appends it).
    pub fn forwards(&self, name: &str) -> bool {
        // The allow list is short and most client headers are on none of the
        // lists: asking it first spares them the longer checks.
        if !self.allow.iter().any(|a| a.matches(name)) {
            return false;
        }
        if self.deny.iter().any(|d| d.matches(name)) {
            return false;
        }
        !name.eq_ignore_ascii_case("user-agent") && never_forwarded(name).is_none()
    }

    /// The client's headers this policy forwards, in the client's order, within
    /// [`MAX_FORWARDED`] headers and [`MAX_FORWARDED_BYTES`] bytes (the rest are
    /// dropped). A repeated name is forwarded once (its first value).
    pub fn select<'h>(&self, client: &'h Fields) -> HeaderList<'h> {
        let mut out = HeaderList::new();
        let mut bytes = 0;
        for (name, value) in client.iter() {
            if out.len() == MAX_FORWARDED {
                break;
            }
            if !self.forwards(name) || out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                continue;
            }
            let size = name.len() + value.len();
            if bytes + size > MAX_FORWARDED_BYTES {
                continue;
            }
            bytes += size;
            out.push((name, value));
        }
        out
    }

    /// The `user-agent` the provider gets: the gateway's, with the client's
    /// (trimmed, cut to [`MAX_CLIENT_USER_AGENT`] bytes) appended when sent and
    /// not denied.
    pub fn user_agent(&self, client: Option<&[u8]>) -> UserAgent {
        let client = client
            .filter(|_| self.user_agent)
            .map(|c| {
                let c = c.trim_ascii();
                &c[..c.len().min(MAX_CLIENT_USER_AGENT)]
            })
            .filter(|c| !c.is_empty() && c.iter().all(|&b| valid_value_byte(b)));
        let mut ua = UserAgent::from_slice(OUR_USER_AGENT.as_bytes());
        if let Some(client) = client {
            ua.push(b' ');
            ua.extend_from_slice(client);
        }
        ua
    }
}

/// The forwarded headers with the gateway's own `traceparent` (its request
/// span, when traced) in place of the client's, or added when the client sent
/// none: the provider's spans then hang under the gateway's. Only where the
/// policy forwards `traceparent` (`allowed`).
pub fn with_traceparent<'a>(
    mut forwarded: HeaderList<'a>,
    ours: Option<&'a [u8]>,
    allowed: bool,
) -> HeaderList<'a> {
    let Some(ours) = ours.filter(|_| allowed) else {
        return forwarded;
    };
    match forwarded
        .iter_mut()
        .find(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
    {
        Some((_, value)) => *value = ours,
        None => forwarded.push(("traceparent", ours)),
    }
    forwarded
}

/// A byte a header value may carry (visible ASCII, space, tab, obs-text).
fn valid_value_byte(b: u8) -> bool {
    BYTE_CLASSES[usize::from(b)] & VALUE != 0
}

/// The upstream request's headers, in order: the adapter's (auth; a default it
/// set itself, like Anthropic's `anthropic-version`, gives way to a forwarded
/// one), the target's, the forwarded client headers (unless the provider or
/// target config sets the same name: configured headers win), then `user-agent`
/// (unless configured).
pub fn merge<'a>(
    own: &'a [(String, String)],
    configured: &[(String, String)],
    target: &'a [(String, String)],
    forwarded: &[(&'a str, &'a [u8])],
    user_agent: &'a [u8],
) -> HeaderList<'a> {
    let set_by = |list: &[(String, String)], name: &str| {
        list.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let forwarded: HeaderList = forwarded
        .iter()
        .copied()
        .filter(|(name, _)| !set_by(configured, name) && !set_by(target, name))
        .collect();
    let replaced = |name: &str| {
        !set_by(configured, name) && forwarded.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let mut headers = HeaderList::new();
    headers.extend(
        own.iter()
            .filter(|(name, _)| !replaced(name))
            .chain(target)
            .map(|(k, v)| (k.as_str(), v.as_bytes())),
    );
    headers.extend(forwarded);
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
    {
        headers.push(("user-agent", user_agent));
    }
    headers
}

/// Names under which a provider sends its request id.
const REQUEST_IDS: &[&str] = &[
    "x-request-id",
    "request-id",
    "apim-request-id",
    "x-amzn-requestid",
];

/// Prefixes of a provider's rate-limit headers, each returned as
/// `x-switchyard-upstream-ratelimit-<suffix>`.
const RATELIMIT_PREFIXES: &[&str] = &["x-ratelimit-", "anthropic-ratelimit-"];

/// The returned name of a provider's rate-limit header.
const RETURNED_RATELIMIT: &str = "x-switchyard-upstream-ratelimit-";
/// The returned name of a provider's request id.
pub const RETURNED_REQUEST_ID: &str = "x-switchyard-upstream-request-id";

/// The provider's answer headers the client gets back, renamed, held in one
/// buffer (a request path that returns eight rate-limit headers should not make
/// sixteen allocations for them).
pub type Returned = Fields;

/// The provider's answer headers the client gets back, renamed: rate limits and
/// the (first) request id, within [`MAX_RETURNED`] headers; a value longer than
/// [`MAX_RETURNED_VALUE`] or with bytes no header may carry is dropped.
pub fn returned(head: &ResponseHead) -> Returned {
    let mut out = Returned::default();
    for (name, value) in head.headers.iter() {
        if out.len() == MAX_RETURNED {
            break;
        }
        let Some(renamed) = returned_name(name) else {
            continue;
        };
        if value.len() > MAX_RETURNED_VALUE || !value.iter().all(|&b| valid_value_byte(b)) {
            continue;
        }
        if out.has_name_parts(&renamed) {
            continue;
        }
        if out.is_empty() {
            // Room for a provider's usual set (OpenAI's six rate limits and an id).
            out = Returned::with_capacity(384, 8);
        }
        out.push_parts(&renamed, value);
    }
    out
}

/// What a provider header `name` (lower-case) is returned as, if it is: the
/// parts of the new name.
fn returned_name(name: &str) -> Option<[&str; 2]> {
    if REQUEST_IDS.contains(&name) {
        return Some([RETURNED_REQUEST_ID, ""]);
    }
    let suffix = RATELIMIT_PREFIXES
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))?;
    let valid = !suffix.is_empty() && suffix.len() <= 64 && suffix.bytes().all(is_token_byte);
    valid.then_some([RETURNED_RATELIMIT, suffix])
}

/// `x-switchyard-overhead-ms`: the gateway's own time on a request, in ms with
/// three decimals — from `started` (the request read) to `now` (its response
/// head written), less `waited` (on providers and retry backoff); never negative.
pub fn push_overhead_ms(out: &mut Vec<u8>, started: Instant, waited: Duration, now: Instant) {
    let own = now
        .saturating_duration_since(started)
        .saturating_sub(waited);
    let micros = (own.as_nanos() + 500) / 1000;
    let micros = u64::try_from(micros).unwrap_or(u64::MAX);
    crate::http::push_decimal(out, micros / 1000);
    let frac = micros % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
