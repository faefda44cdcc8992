//! `POST /v1/messages`: the Anthropic Messages API's entry point.
//!
//! Anthropic SDK users point `base_url` at the gateway. Their request is
//! translated once into the gateway's internal OpenAI chat body (see
//! [`super::anthropic`]) and then routed through the same attempt loop as
//! `/v1/chat/completions` (routing by `model`, retries, failover, breakers, stream
//! continuation), answering in Anthropic's shapes ([`Dialect::Anthropic`]).

use std::rc::Rc;

use crate::downstream::ClientStream;

use super::anthropic::to_chat_body;
use super::chat::{self, Incoming};
use super::respond::Dialect;
use crate::shard::Shard;

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
            let message = e.to_string();
            return chat::refuse_unreadable(shard, req, Dialect::Anthropic, message, client, out)
                .await;
        }
    };
    let translated = Incoming {
        body: &body,
        request_id: req.request_id,
        dialect: Dialect::Anthropic,
        echo: None,
        ..*req
    };
    chat::handle(shard, &translated, client, out).await
}
