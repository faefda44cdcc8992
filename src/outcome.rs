//! The failure taxonomy: what one attempt against one target turned out to be.
//!
//! Classification drives everything downstream: whether the same target is retried,
//! whether the request falls back to the next target, whether the target's health
//! suffers, and what the client finally sees. Provider kinds produce these
//! (see `provider`), the attempt loop acts on them (see `route`), and the health
//! windows count them (see `health`).

use std::time::Duration;

/// Why an attempt did not produce a usable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// TCP connect refused/timed out, DNS or TLS handshake failure.
    Connect,
    /// A reused keep-alive socket turned out dead before any response byte.
    StalePooled,
    /// 429, Anthropic 529, `overloaded_error`, rate limited.
    Overloaded,
    /// 500, 502, 503, 504 and other 5xx.
    Server,
    /// No first byte (or first content token) within the first-byte timeout, or no
    /// first content token within `timeouts.first_token` (streams).
    FirstByteTimeout,
    /// Stream went silent for longer than the between-chunks timeout.
    Stall,
    /// The provider rejected the request as too long for the model's context.
    ContextLength,
    /// The provider refused the content (moderation / safety / content filter).
    ContentPolicy,
    /// Any other 4xx: the request itself is wrong; not the provider's fault.
    Client,
    /// Reset, error event or malformed framing after bytes reached the client.
    MidStream,
    /// Ended by the gateway's own limits, not by the provider: its connection cap to
    /// the provider was full, or the request's total deadline ran out (a slow client).
    Local,
}

impl FailureClass {
    /// Every class, in a fixed order (used to index per-class counters).
    pub const ALL: [FailureClass; 11] = [
        FailureClass::Connect,
        FailureClass::StalePooled,
        FailureClass::Overloaded,
        FailureClass::Server,
        FailureClass::FirstByteTimeout,
        FailureClass::Stall,
        FailureClass::ContextLength,
        FailureClass::ContentPolicy,
        FailureClass::Client,
        FailureClass::MidStream,
        FailureClass::Local,
    ];

    /// Stable index into [`FailureClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Short snake_case name used in metrics, logs and client error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Connect => "connect",
            FailureClass::StalePooled => "stale_pooled",
            FailureClass::Overloaded => "overloaded",
            FailureClass::Server => "server_error",
            FailureClass::FirstByteTimeout => "first_byte_timeout",
            FailureClass::Stall => "stall",
            FailureClass::ContextLength => "context_length",
            FailureClass::ContentPolicy => "content_policy",
            FailureClass::Client => "client_error",
            FailureClass::MidStream => "mid_stream",
            FailureClass::Local => "local_limit",
        }
    }

    /// Whether this outcome says something about the target's health.
    /// Client-caused errors, stale pooled sockets and the gateway's own limits do not.
    pub fn counts_against_health(self) -> bool {
        !matches!(
            self,
            FailureClass::StalePooled
                | FailureClass::Local
                | FailureClass::Client
                | FailureClass::ContextLength
                | FailureClass::ContentPolicy
        )
    }
}

/// The classified result of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(FailureClass),
}

/// A classified failure together with what the provider told us about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    /// HTTP status the provider answered with, if it answered at all.
    pub status: Option<u16>,
    /// `Retry-After` the provider asked for, already parsed.
    pub retry_after: Option<Duration>,
}
