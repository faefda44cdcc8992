//! Proxying one client request: the phases between a parsed request and its answer
//! (the attempt loop, streaming, continuation, and the gateway's response headers),
//! with a room for each client dialect: OpenAI chat ([`chat`]), Anthropic
//! Messages ([`anthropic`] for its shapes, [`messages`] for its endpoint) and
//! OpenAI Responses ([`responses`] for its shapes, [`responses_endpoint`] for its
//! endpoint).

pub mod anthropic;
pub mod chat;
pub mod continuation;
pub mod headers;
pub mod messages;
pub mod respond;
pub mod responses;
pub mod responses_endpoint;
pub mod stream;
