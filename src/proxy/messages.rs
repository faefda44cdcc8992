//! The Anthropic Messages API as a client dialect: `POST /v1/messages`.
//!
//! Anthropic SDK users point `base_url` at the gateway. Their request is
//! translated once into the gateway's internal OpenAI chat body ([`request`]) and
//! then routed through the same attempt loop as `/v1/chat/completions` (routing by
//! `model`, retries, failover, breakers, stream continuation). What goes back is
//! written in Anthropic's shapes at the few places the loop writes to the client,
//! chosen by [`Dialect::Anthropic`] on the response's [`Meta`]:
//!
//! - whole answers: `chat.completion` → `message`, errors → Anthropic errors
//!   ([`response`], via [`Meta::write_answer`] and [`Meta::write_error`]);
//! - streams: each relayed OpenAI chunk → Anthropic events ([`stream`], via the
//!   relay's [`crate::proxy::stream::Output`]), and a failure after commit → an
//!   `error` event.

pub mod request;
pub mod response;
pub mod stream;

use std::rc::Rc;

use crate::downstream::ClientStream;

use super::chat::{self, Incoming};
use super::respond::{Dialect, Meta};
use crate::http::ApiError;
use crate::shard::Shard;

pub use request::{to_chat_body, RequestError};
pub use stream::EventTranslator;

/// Serves one Messages API request on `client`: translates the body, then hands it
/// to the chat attempt loop answering in Anthropic's shapes. An `Err` means the
/// client is gone.
pub async fn handle(
    shard: &Rc<Shard>,
    req: &Incoming<'_>,
    client: &mut ClientStream,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let body = match to_chat_body(req.body) {
        Ok(body) => body,
        Err(e) => {
            let meta = Meta {
                request_id: req.request_id.clone(),
                keep_alive: req.keep_alive,
                dialect: Dialect::Anthropic,
                ..Meta::default()
            };
            shard.record_bad_request(400);
            meta.write_error(out, &ApiError::bad_request(e.to_string()), &[]);
            let (res, buf) = client.write_all(std::mem::take(out)).await;
            *out = buf;
            out.clear();
            return res;
        }
    };
    let translated = Incoming {
        body: &body,
        request_id: req.request_id.clone(),
        dialect: Dialect::Anthropic,
        ..*req
    };
    chat::handle(shard, &translated, client, out).await
}

/// Writes a whole answer in Anthropic's shape: a 2xx `chat.completion` becomes a
/// `message` (an untranslatable one a 502 `api_error`), anything else an error.
pub(crate) fn write_answer(
    meta: &Meta,
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    extra: &[(&str, &[u8])],
) {
    let (status, body) = shape_answer(status, body);
    meta.write_full(out, status, b"application/json", &body, extra);
}

/// The status and Anthropic-shaped JSON body of a whole answer whose body is
/// OpenAI-shaped (see [`write_answer`]).
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
