//! `POST /v1/responses`: the OpenAI Responses API's entry point.
//!
//! Responses SDK users point `base_url` at the gateway. A stateless request is
//! translated once into the gateway's internal OpenAI chat body (see
//! [`super::responses`]) and routed through the same attempt loop as
//! `/v1/chat/completions` (routing by `model`, retries, failover, breakers, stream
//! continuation), answering in the Responses API's shapes
//! ([`Dialect::Responses`]). A stateful request (stored responses, conversations,
//! background runs, stored prompts) is refused with a 400: translated targets
//! keep no state. The client's original body stays in `req.body`, so a later
//! native target could be handed it untranslated.

use std::rc::Rc;

use crate::downstream::ClientStream;

use super::chat::{self, Incoming};
use super::respond::{Dialect, Meta};
use super::responses::{stateful, to_chat_body, RequestError};
use crate::http::ApiError;
use crate::shard::Shard;

/// Serves one Responses API request on `client`: refuses stateful features,
/// translates the body, then hands it to the chat attempt loop answering in the
/// Responses shapes. An `Err` means the client is gone.
pub async fn handle(
    shard: &Rc<Shard>,
    req: &Incoming<'_>,
    client: &mut ClientStream,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let translated = match stateful(req.body) {
        Some(feature) => Err(RequestError::Stateful(feature)),
        None => to_chat_body(req.body),
    };
    let translated = match translated {
        Ok(translated) => translated,
        Err(e) => return refuse(shard, req, &e, client, out).await,
    };
    let incoming = Incoming {
        body: &translated.chat,
        request_id: req.request_id.clone(),
        dialect: Dialect::Responses,
        echo: Some(Rc::new(translated.echo)),
        ..*req
    };
    chat::handle(shard, &incoming, client, out).await
}

/// A request the gateway cannot serve: a 400 `invalid_request_error` saying why.
async fn refuse(
    shard: &Shard,
    req: &Incoming<'_>,
    error: &RequestError,
    client: &mut ClientStream,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let meta = Meta {
        request_id: req.request_id.clone(),
        keep_alive: req.keep_alive,
        dialect: Dialect::Responses,
        ..Meta::default()
    };
    shard.record_bad_request(400);
    meta.write_error(out, &ApiError::bad_request(error.to_string()), &[]);
    let (res, buf) = client.write_all(std::mem::take(out)).await;
    *out = buf;
    out.clear();
    res
}
