//! The OpenAI wire shapes the gateway speaks internally, read by both the proxy
//! and the providers: the chat request body view ([`body`]) and the token usage
//! that completions and stream chunks report ([`usage`]), and which API a body is
//! for ([`Api`]).

pub mod body;
pub mod usage;

pub use body::ChatBody;
pub use usage::Usage;

/// Which provider API one attempt calls. Chat completions are what every kind
/// translates to; the others pass through, in the client's own shape, only to the
/// kinds that serve them (`provider::Serves`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    ChatCompletions,
    Embeddings,
    /// OpenAI's legacy `/v1/completions`.
    Completions,
    /// OpenAI's Responses API (`/v1/responses`), passed through natively.
    Responses,
    /// Anthropic's `/v1/messages/count_tokens`.
    CountTokens,
}

impl Api {
    /// Whether a request to this API may ask for a stream.
    pub fn streams(self) -> bool {
        matches!(
            self,
            Api::ChatCompletions | Api::Completions | Api::Responses
        )
    }

    /// The API's name in errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat completions",
            Api::Embeddings => "embeddings",
            Api::Completions => "legacy completions (/v1/completions)",
            Api::Responses => "the Responses API (/v1/responses)",
            Api::CountTokens => "token counting (/v1/messages/count_tokens)",
        }
    }
}
