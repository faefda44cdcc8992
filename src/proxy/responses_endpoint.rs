//! `POST /v1/responses`: the OpenAI Responses API's entry point.
//!
//! Responses SDK users point `base_url` at the gateway. The request goes through
//! the same attempt loop as `/v1/chat/completions` (routing by `model`, retries,
//! failover, breakers, stream failover): targets whose provider serves the
//! Responses API (`responses: true`) get the client's body as it is and answer
//! as they do; the others get its translation onto chat completions (see
//! [`super::responses`]), answered in the Responses API's shapes
//! ([`Dialect::Responses`]). A stateful request (stored responses,
//! conversations, background runs, stored prompts) goes to one native target
//! only and is never retried on another; a route with none refuses it with a
//! 400, as it refuses what has no translation (built-in tools).

use std::rc::Rc;

use crate::downstream::ClientStream;

use super::chat::{self, Api, Incoming, NativeBody};
use super::respond::Dialect;
use super::responses::{stateful, to_chat_body, RequestError, Stateful};
use crate::shard::Shard;

/// Serves one Responses API request on `client`. Targets serving the Responses
/// API natively get the client's body as it is; the others its translation onto
/// chat completions, answered in the Responses shapes. A request with no
/// translation (a built-in tool, a stateful feature) can still be served by a
/// native target; only a `previous_response_id` the gateway itself issued (from
/// a translated answer) is refused here, since no provider knows it. An `Err`
/// means the client is gone.
pub async fn handle(
    shard: &Rc<Shard>,
    req: &Incoming<'_>,
    client: &mut ClientStream,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let stateful = stateful(req.body);
    if let Some(state @ Stateful::PreviousResponse { translated: true }) = &stateful {
        let message = RequestError::Stateful(state.clone()).to_string();
        return chat::refuse_unreadable(shard, req, Dialect::Responses, message, client, out).await;
    }
    let translated = to_chat_body(req.body);
    let untranslatable = translated.as_ref().err().map(ToString::to_string);
    let stateful = stateful.as_ref().map(Stateful::message);
    let (body, echo) = match &translated {
        Ok(translated) => (&translated.chat[..], Some(Rc::new(translated.echo.clone()))),
        // Routed by its own `model`; sent only to native targets.
        Err(_) => (req.body, None),
    };
    let native = NativeBody {
        api: Api::Responses,
        body: req.body,
        stateful: stateful.as_deref(),
        untranslatable: untranslatable.as_deref(),
    };
    let incoming = Incoming {
        body,
        request_id: req.request_id,
        dialect: Dialect::Responses,
        native: Some(native),
        echo,
        ..*req
    };
    chat::handle(shard, &incoming, client, out).await
}
