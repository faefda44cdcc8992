//! The OpenAI Responses API as a client dialect: its shapes translated to and
//! from the gateway's internal chat completions ones, with no I/O of its own.
//!
//! A Responses request becomes an OpenAI chat body once ([`request`]), keeping
//! the request fields a `response` object echoes ([`Echo`]); what goes back is
//! written in the Responses shapes at the few places the chat path writes to the
//! client, chosen by `Dialect::Responses` on the response's `Meta`:
//!
//! - whole answers: `chat.completion` → `response` ([`response`]); errors stay
//!   OpenAI-shaped (what Responses clients parse);
//! - streams: each relayed chunk → Responses events ([`stream`], by the relay's
//!   `Output`), and a failure after commit → `response.failed` then `error`.
//!
//! Stateful features (stored responses, conversations, background runs, stored
//! prompts) cannot be served from chat completions: [`stateful`] names them so
//! the endpoint can refuse them (or, later, route them to a native target).

pub mod request;
pub mod response;
pub mod stream;

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod tests;

pub use request::{stateful, to_chat_body, Echo, RequestError, Stateful, Translated};
pub use response::shape_answer;
pub use stream::EventTranslator;

/// Prefix of every response id the gateway issues for a translated response.
pub const ID_PREFIX: &str = "resp_sy";

/// A new id: `prefix` then 32 random hex digits.
pub(crate) fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

/// Seconds since the Unix epoch (a response's `created_at`).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
