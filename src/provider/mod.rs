//! Provider kinds behind one interface, [`Adapter`]: how to address, authenticate
//! and understand each provider.
//!
//! The gateway speaks OpenAI's chat format on both sides of its core. [`prepare`]
//! picks a provider's adapter once, by its kind, and [`PreparedProvider`] holds it;
//! the request path only calls its methods and never asks which kind a target is:
//!
//! - [`Adapter::encode`] builds one attempt's request (path with the target's
//!   query, headers, body). OpenAI and OpenAI-compatible providers share one
//!   pass-through adapter ([`openai::PassThrough`]): the client's body with the
//!   model rewritten and the prepared path and headers (the hot path: no JSON tree
//!   is built, nothing prepared is copied). The other kinds translate.
//! - [`Adapter::whole_answer`], [`Adapter::error_answer`] and
//!   [`Adapter::event_source`] turn the provider's answers back into OpenAI's
//!   shapes; [`Adapter::is_event_stream`] tells its streaming format apart.
//! - [`Adapter::classify_status`] and [`Adapter::classify_stream_error`] map its
//!   errors onto the failure taxonomy of [`crate::outcome`].
//! - [`Adapter::accepts_prefill`] says whether it continues a final assistant
//!   message.
//!
//! Each kind's adapter lives in its module: [`openai`], [`azure`], [`anthropic`],
//! [`gemini`], [`bedrock`].

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub(crate) mod chat_request;
pub mod gemini;
pub mod openai;
pub mod secrets;

use std::borrow::Cow;

use crate::config::{Provider, ProviderKind};
use crate::http::sse::{SseError, SseEvent, SseParser};
use crate::outcome::FailureClass;
use crate::wire::ChatBody;

pub use secrets::Secrets;

pub use crate::wire::Api;

/// The APIs a provider serves in their own shape, besides the chat completions
/// every kind takes (decided once per provider, by kind and config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Serves {
    pub completions: bool,
    /// `responses: true` on the provider (OpenAI's own default).
    pub responses: bool,
    pub count_tokens: bool,
}

impl Serves {
    /// Whether an attempt may send `api` to this provider as it is.
    pub fn serves(self, api: Api) -> bool {
        match api {
            Api::ChatCompletions | Api::Embeddings => true,
            Api::Completions => self.completions,
            Api::Responses => self.responses,
            Api::CountTokens => self.count_tokens,
        }
    }
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

/// One provider kind's side of the gateway: what the request path asks of a
/// target's provider, without knowing its kind.
pub trait Adapter: std::fmt::Debug + Sync {
    /// The provider request for one attempt: its path (with the target's query),
    /// the kind's headers (auth and the provider's configured ones) and its body.
    /// The caller writes the HTTP head around them.
    fn encode<'a>(&self, parts: &RequestParts<'a>) -> Result<Outbound<'a>, TranslateError>;

    /// A 2xx whole answer as the client gets it: its content type and an OpenAI-
    /// shaped body for `api`, from the provider's `content_type` and `body`.
    fn whole_answer(
        &self,
        api: Api,
        model: &str,
        content_type: Vec<u8>,
        body: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<u8>), TranslateError>;

    /// A non-2xx answer's content type and OpenAI-shaped error body, keeping the
    /// provider's message (clients of the gateway parse OpenAI's shape).
    fn error_answer(&self, status: u16, content_type: Vec<u8>, body: Vec<u8>)
        -> (Vec<u8>, Vec<u8>);

    /// Classifies a non-2xx answer from the status and (bounded) error body.
    fn classify_status(&self, status: u16, body: &[u8]) -> FailureClass;

    /// Classifies an error event found inside a 200 event stream.
    fn classify_stream_error(&self, data: &str) -> FailureClass;

    /// Whether a 2xx answer with this content type is the kind's streaming format
    /// (server-sent events unless the kind says otherwise).
    fn is_event_stream(&self, content_type: &[u8]) -> bool {
        content_type.starts_with(b"text/event-stream")
    }

    /// The event source for a streaming answer serving `model`.
    fn event_source(&self, model: &str) -> Box<dyn EventSource>;

    /// Whether the kind accepts an assistant message as the last message and
    /// continues it (prefill). OpenAI-style chat APIs do not: they answer it as a
    /// new turn, so continuation uses the instruction style there.
    fn accepts_prefill(&self) -> bool {
        false
    }

    /// The APIs besides chat `provider` takes in their own shape.
    fn serves(&self, _provider: &Provider) -> Serves {
        Serves::default()
    }
}

/// The adapter of `kind`; [`prepare`] picks it once per provider.
pub fn adapter(kind: ProviderKind) -> &'static dyn Adapter {
    match kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => &openai::PassThrough,
        ProviderKind::Azure => &azure::Azure,
        ProviderKind::Anthropic => &anthropic::Anthropic,
        ProviderKind::Gemini => &gemini::Gemini,
        ProviderKind::Bedrock => &bedrock::Bedrock,
    }
}

/// The content type of every translated answer.
pub(crate) const JSON: &[u8] = b"application/json";

/// Per-provider request settings, computed once per config.
#[derive(Debug, Clone)]
pub struct PreparedProvider {
    pub name: String,
    /// The provider kind's side of every request and answer.
    pub adapter: &'static dyn Adapter,
    /// Value of the `host` header.
    pub host_header: String,
    /// Base path of the provider URL, without a trailing slash.
    pub base_path: String,
    /// Request path for chat completions (pass-through kinds).
    pub chat_path: String,
    /// Request path for embeddings (pass-through kinds).
    pub embeddings_path: String,
    /// Request paths for legacy completions and the Responses API (pass-through
    /// kinds that serve them).
    pub completions_path: String,
    pub responses_path: String,
    /// The APIs besides chat this provider takes in their own shape.
    pub serves: Serves,
    /// Auth and configured extra headers, sent on every request (pass-through
    /// kinds; the others build their own per request).
    pub headers: Vec<(String, String)>,
}

/// Prepares `provider` for the request path: its adapter, host header, and the
/// pass-through paths and headers.
pub fn prepare(provider: &Provider) -> PreparedProvider {
    openai::prepare(provider, adapter(provider.kind))
}

/// Everything an adapter needs to build one attempt's request.
pub struct RequestParts<'a> {
    pub provider: &'a Provider,
    pub prepared: &'a PreparedProvider,
    pub api: Api,
    /// The target's model name (what the provider should run).
    pub model: &'a str,
    /// The client's OpenAI-format body (its own `model` not yet rewritten).
    pub body: &'a [u8],
    pub chat: &'a ChatBody,
    /// The target's extra query parameters, which [`Adapter::encode`] puts in the
    /// path (kinds that sign requests before signing).
    pub query: &'a [(String, String)],
    /// Wall-clock time, for request signing.
    pub now: std::time::SystemTime,
}

/// One attempt's provider request. `path` includes any query; the pass-through
/// kinds borrow the prepared path and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound<'a> {
    pub path: Cow<'a, str>,
    pub headers: Cow<'a, [(String, String)]>,
    pub body: Vec<u8>,
}

/// A stream of OpenAI `chat.completion.chunk` events decoded from a provider's
/// streaming body, fed as bytes arrive.
pub trait EventSource {
    fn push(&mut self, bytes: &[u8]);
    /// The next complete event, in order; `None` until more bytes arrive.
    fn next_event(&mut self) -> Option<Result<SseEvent, SseError>>;
    /// Hands back an event the caller is done with, so a source may assemble the
    /// next one in its buffers instead of allocating new ones.
    fn recycle(&mut self, _event: SseEvent) {}
}

impl EventSource for SseParser {
    fn push(&mut self, bytes: &[u8]) {
        SseParser::push(self, bytes);
    }

    fn next_event(&mut self) -> Option<Result<SseEvent, SseError>> {
        SseParser::next_event(self)
    }

    fn recycle(&mut self, event: SseEvent) {
        SseParser::recycle(self, event);
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

    const PROVIDERS: &str = "\
providers:
  openai: { kind: openai, base_url: https://api.openai.com/v1, api_key: k }
  compatible: { kind: openai-compatible, base_url: http://127.0.0.1:9/v1 }
  azure: { kind: azure, base_url: https://r.openai.azure.com, api_key: k }
  anthropic: { kind: anthropic, base_url: https://api.anthropic.com, api_key: k }
  gemini: { kind: gemini, base_url: https://generativelanguage.googleapis.com/v1beta, api_key: k }
  bedrock:
    kind: bedrock
    base_url: https://bedrock-runtime.us-east-1.amazonaws.com
    region: us-east-1
    aws_access_key_id: AKIDEXAMPLE
    aws_secret_access_key: secret
routes:
  - name: r
    targets: [{ provider: openai, model: m }]
";

    /// Every kind's request carries the target's query in its path; pass-through
    /// kinds borrow the prepared path and headers unless a query forces a copy.
    #[test]
    fn every_adapter_encodes_path_query_headers_and_body() {
        let config = crate::config::load_str(PROVIDERS, "t.yaml", &|_| None).expect("config");
        let body = br#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let chat = ChatBody::parse(body).expect("chat body");
        let query = [("x".to_string(), "a b".to_string())];
        // Each kind's bare path; the query comes after any of its own.
        let expected = [
            ("openai", "/v1/chat/completions"),
            ("compatible", "/v1/chat/completions"),
            (
                "azure",
                "/openai/deployments/m/chat/completions?api-version=2024-10-21",
            ),
            ("anthropic", "/v1/messages"),
            ("gemini", "/v1beta/models/m:streamGenerateContent?alt=sse"),
            ("bedrock", "/model/m/converse-stream"),
        ];
        for (provider, (name, path)) in config.providers.iter().zip(expected) {
            assert_eq!(provider.name, name);
            let prepared = prepare(provider);
            let mut parts = RequestParts {
                provider,
                prepared: &prepared,
                api: Api::ChatCompletions,
                model: "m",
                body,
                chat: &chat,
                query: &query,
                now: std::time::SystemTime::UNIX_EPOCH,
            };
            let out = prepared.adapter.encode(&parts).expect(name);
            let separator = if path.contains('?') { '&' } else { '?' };
            assert_eq!(out.path, format!("{path}{separator}x=a%20b"), "{name}");
            let sent: serde_json::Value = serde_json::from_slice(&out.body).expect(name);
            assert!(sent.is_object(), "{name}");
            parts.query = &[];
            let bare = prepared.adapter.encode(&parts).expect(name);
            assert_eq!(bare.path, path, "{name}");
            let passes = matches!(
                provider.kind,
                ProviderKind::OpenAi | ProviderKind::OpenAiCompatible
            );
            assert_eq!(matches!(bare.path, Cow::Borrowed(_)), passes, "{name}");
            assert_eq!(matches!(bare.headers, Cow::Borrowed(_)), passes, "{name}");
            if passes {
                assert_eq!(bare.headers, prepared.headers);
                assert_eq!(sent["model"], "m");
            }
        }
    }

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
