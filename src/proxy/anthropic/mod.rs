//! The Anthropic Messages API as a client dialect: its shapes translated to and
//! from the gateway's internal OpenAI ones, with no I/O of its own.
//!
//! A Messages request becomes an OpenAI chat body once ([`request`]); what goes
//! back is written in Anthropic's shapes at the few places the chat path writes to
//! the client, chosen by `Dialect::Anthropic` on the response's `Meta` (the proxy's
//! `respond`):
//!
//! - whole answers: `chat.completion` → `message`, errors → Anthropic errors
//!   ([`response`], via `shape_answer` and `error_body`);
//! - streams: each relayed OpenAI chunk → Anthropic events ([`stream`], by the
//!   relay's `Output`), and a failure after commit → an `error` event.

pub mod request;
pub mod response;
pub mod stream;

use crate::http::ApiError;

pub use request::{to_chat_body, RequestError};
pub use stream::EventTranslator;

/// The status and Anthropic-shaped JSON body of a whole answer whose body is
/// OpenAI-shaped: a 2xx `chat.completion` becomes a `message` (an untranslatable
/// one a 502 `api_error`), anything else an error.
pub(crate) fn shape_answer(status: u16, body: &[u8]) -> (u16, Vec<u8>) {
    if !(200..300).contains(&status) {
        return (status, response::error_from_upstream(status, body));
    }
    match response::message_from_completion(body) {
        Ok(message) => (status, message),
        Err(e) => (502, response::error_body(502, &e.to_string())),
    }
}

/// The Anthropic body of one of the gateway's own errors.
pub(crate) fn error_body(error: &ApiError) -> Vec<u8> {
    response::error_body(error.status, &error.message)
}
