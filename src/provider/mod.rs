//! Provider kinds: how to address, authenticate and understand each provider.
//!
//! The gateway speaks OpenAI's chat format on both sides of its core. OpenAI and
//! OpenAI-compatible providers are passed through with the model rewritten (the hot
//! path: no JSON tree is built). Other kinds translate: [`translate_request`] turns
//! the OpenAI body into the provider's request, [`translate_response`] and
//! [`event_source`] turn its answers back into OpenAI's shapes, and the classifiers
//! map its errors onto the failure taxonomy of [`crate::outcome`].

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub(crate) mod chat_request;
pub mod gemini;
pub mod openai;
pub mod secrets;

use crate::config::{Provider, ProviderKind};
use crate::http::sse::{SseError, SseEvent, SseParser};
use crate::outcome::FailureClass;
use crate::wire::ChatBody;

pub use secrets::Secrets;

/// Which OpenAI API a proxied request calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    ChatCompletions,
    Embeddings,
}

/// Kinds whose wire format is OpenAI's: bodies pass through with the model rewritten.
pub fn passes_through(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::OpenAi | ProviderKind::OpenAiCompatible)
}

/// A request or answer that cannot be expressed in the other format.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TranslateError {
    #[error("request cannot be translated for this provider: {0}")]
    Request(String),
    #[error("provider answer cannot be translated: {0}")]
    Response(String),
    #[error("{0} is not offered by this provider kind")]
    Unsupported(&'static str),
}

/// Per-provider request settings, computed once per config.
#[derive(Debug, Clone)]
pub struct PreparedProvider {
    pub name: String,
    pub kind: ProviderKind,
    /// Value of the `host` header.
    pub host_header: String,
    /// Base path of the provider URL, without a trailing slash.
    pub base_path: String,
    /// Request path for chat completions (pass-through kinds).
    pub chat_path: String,
    /// Request path for embeddings (pass-through kinds).
    pub embeddings_path: String,
    /// Auth and configured extra headers, sent on every request.
    pub headers: Vec<(String, String)>,
}

/// Prepares `provider` for the request path: host header, pass-through paths and
/// headers (translating kinds build their own per request).
pub fn prepare(provider: &Provider) -> PreparedProvider {
    openai::prepare(provider)
}

/// Everything a translating kind needs to build one attempt's request.
pub struct RequestParts<'a> {
    pub provider: &'a Provider,
    pub prepared: &'a PreparedProvider,
    pub api: Api,
    /// The target's model name (what the provider should run).
    pub model: &'a str,
    /// The client's OpenAI-format body (its own `model` not yet rewritten).
    pub body: &'a [u8],
    pub chat: &'a ChatBody,
    /// The target's extra query parameters. Kinds that sign requests put them in
    /// the path themselves (see [`signs_requests`]); for the others the caller
    /// appends them.
    pub query: &'a [(String, String)],
    /// Wall-clock time, for request signing.
    pub now: std::time::SystemTime,
}

/// A provider request built by a translating kind. `path` includes any query.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Builds the provider's request for kinds that do not pass through.
pub fn translate_request(parts: &RequestParts<'_>) -> Result<Outbound, TranslateError> {
    match parts.provider.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => Err(TranslateError::Unsupported(
            "translation of a pass-through kind",
        )),
        ProviderKind::Azure => azure::translate_request(parts),
        ProviderKind::Anthropic => anthropic::translate_request(parts),
        ProviderKind::Gemini => gemini::translate_request(parts),
        ProviderKind::Bedrock => bedrock::translate_request(parts),
    }
}

/// Turns a provider's non-streaming success body into OpenAI's shape.
pub fn translate_response(
    kind: ProviderKind,
    api: Api,
    model: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, TranslateError> {
    let _ = (api, model);
    match kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => Ok(body),
        // Azure answers in OpenAI's shapes.
        ProviderKind::Azure => Ok(body),
        ProviderKind::Anthropic => anthropic::translate_response(api, &body),
        ProviderKind::Gemini => gemini::translate_response(api, model, &body),
        ProviderKind::Bedrock => bedrock::translate_response(api, model, &body),
    }
}

/// Turns a provider's error body into an OpenAI-shaped error body, keeping the
/// provider's message (clients of the gateway parse OpenAI's shape).
pub fn translate_error(kind: ProviderKind, status: u16, body: Vec<u8>) -> Vec<u8> {
    let _ = status;
    match kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Azure => body,
        ProviderKind::Anthropic => anthropic::translate_error(status, &body),
        ProviderKind::Gemini => gemini::translate_error(status, body),
        ProviderKind::Bedrock => bedrock::translate_error(status, body),
    }
}

/// A stream of OpenAI `chat.completion.chunk` events decoded from a provider's
/// streaming body, fed as bytes arrive.
pub trait EventSource {
    fn push(&mut self, bytes: &[u8]);
    /// The next complete event, in order; `None` until more bytes arrive.
    fn next_event(&mut self) -> Option<Result<SseEvent, SseError>>;
}

impl EventSource for SseParser {
    fn push(&mut self, bytes: &[u8]) {
        SseParser::push(self, bytes);
    }

    fn next_event(&mut self) -> Option<Result<SseEvent, SseError>> {
        SseParser::next_event(self)
    }
}

/// The event source for a streaming answer of `kind` serving `model`.
pub fn event_source(kind: ProviderKind, model: &str) -> Box<dyn EventSource> {
    let _ = model;
    match kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Azure => {
            Box::new(SseParser::new())
        }
        ProviderKind::Anthropic => Box::new(anthropic::event_source(model)),
        ProviderKind::Gemini => Box::new(gemini::GeminiStream::new(model)),
        ProviderKind::Bedrock => bedrock::event_source(model),
    }
}

/// Whether a 2xx answer with this content type is the kind's streaming format.
pub fn is_event_stream(kind: ProviderKind, content_type: &[u8]) -> bool {
    match kind {
        ProviderKind::Bedrock => content_type.starts_with(b"application/vnd.amazon.eventstream"),
        _ => content_type.starts_with(b"text/event-stream"),
    }
}

/// Kinds whose request signature covers the query: they append target query
/// parameters before signing instead of the caller appending them after.
pub fn signs_requests(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::Bedrock)
}

/// Whether a provider kind accepts an assistant message as the last message and
/// continues it (prefill). OpenAI-style chat APIs do not: they answer it as a new
/// turn, so continuation uses the instruction style there. Anthropic does.
pub fn accepts_prefill(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::Anthropic | ProviderKind::Bedrock)
}

/// Classifies a non-2xx answer from the status and (bounded) error body.
pub fn classify_status(kind: ProviderKind, status: u16, body: &[u8]) -> FailureClass {
    match kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
            openai::classify_status(status, body)
        }
        ProviderKind::Azure => azure::classify_status(status, body),
        ProviderKind::Anthropic => anthropic::classify_status(status, body),
        ProviderKind::Gemini => gemini::classify_status(status, body),
        ProviderKind::Bedrock => bedrock::classify_status(status, body),
    }
}

/// Classifies an error event found inside a 200 event stream.
pub fn classify_stream_error(kind: ProviderKind, data: &str) -> FailureClass {
    match kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Azure => {
            openai::classify_stream_error(data)
        }
        ProviderKind::Anthropic => anthropic::classify_stream_error(data),
        ProviderKind::Gemini => gemini::classify_stream_error(data),
        ProviderKind::Bedrock => bedrock::classify_stream_error(data),
    }
}

/// Appends `query` to `path`, percent-encoding names and values.
pub fn append_query(path: &mut String, query: &[(String, String)]) {
    for (i, (name, value)) in query.iter().enumerate() {
        let separator = if i == 0 && !path.contains('?') {
            '?'
        } else {
            '&'
        };
        path.push(separator);
        percent_encode(name, path);
        path.push('=');
        percent_encode(value, path);
    }
}

/// RFC 3986 unreserved characters stay, everything else is `%XX`.
pub fn percent_encode(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_encoded_and_appended() {
        let mut path = "/v1/chat".to_string();
        append_query(
            &mut path,
            &[
                ("api-version".into(), "2024-10-21".into()),
                ("a b".into(), "x&y".into()),
            ],
        );
        assert_eq!(path, "/v1/chat?api-version=2024-10-21&a%20b=x%26y");
        let mut with = "/p?x=1".to_string();
        append_query(&mut with, &[("y".into(), "2".into())]);
        assert_eq!(with, "/p?x=1&y=2");
    }
}
