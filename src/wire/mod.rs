//! The OpenAI wire shapes the gateway speaks internally, read by both the proxy
//! and the providers: the chat request body view ([`body`]) and the token usage
//! that completions and stream chunks report ([`usage`]).

pub mod body;
pub mod usage;

pub use body::ChatBody;
pub use usage::Usage;
