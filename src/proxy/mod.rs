//! Proxying one client request: the phases between a parsed request and its answer
//! (body inspection, the attempt loop, streaming, and the gateway's response headers).

pub mod body;
pub mod chat;
pub mod continuation;
pub mod messages;
pub mod respond;
pub mod stream;
