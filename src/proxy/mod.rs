//! Proxying one client request: the phases between a parsed request and its answer
//! (the attempt loop, streaming, continuation, and the gateway's response headers),
//! with a room for each client dialect: OpenAI chat ([`chat`]) and Anthropic
//! Messages ([`anthropic`] for its shapes, [`messages`] for its endpoint).

pub mod anthropic;
pub mod chat;
pub mod continuation;
pub mod headers;
pub mod messages;
pub mod respond;
pub mod stream;
