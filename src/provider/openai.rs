//! OpenAI and OpenAI-compatible servers (vLLM, Ollama, Groq, Together, ...):
//! pass-through requests with a bearer key, and OpenAI's error shapes.

use std::borrow::Cow;

use serde::Deserialize;

use super::{
    append_query, Adapter, Api, EventSource, Outbound, PreparedProvider, RequestParts, Serves,
    TranslateError,
};
use crate::config::Provider;
use crate::http::sse::SseParser;
use crate::outcome::FailureClass;

/// The adapter of the kinds whose wire format is OpenAI's: bodies pass through
/// with the model rewritten, answers and errors unchanged.
#[derive(Debug)]
pub struct PassThrough;

impl Adapter for PassThrough {
    /// The client's body with the model rewritten (no JSON tree is built), the
    /// prepared path and headers borrowed; only a target query copies the path.
    fn encode<'a>(&self, parts: &RequestParts<'a>) -> Result<Outbound<'a>, TranslateError> {
        let prepared = parts.prepared;
        let mut body = crate::bufpool::take(parts.body.len() + 64);
        parts
            .chat
            .rewrite_for(parts.api, parts.body, parts.model, &mut body);
        let path = match parts.api {
            Api::ChatCompletions => &prepared.chat_path,
            Api::Embeddings => &prepared.embeddings_path,
            Api::Completions => &prepared.completions_path,
            Api::Responses if prepared.serves.responses => &prepared.responses_path,
            api => return Err(TranslateError::Unsupported(api.as_str())),
        };
        let mut path = Cow::Borrowed(path.as_str());
        if !parts.query.is_empty() {
            append_query(path.to_mut(), parts.query);
        }
        Ok(Outbound {
            path,
            headers: Cow::Borrowed(&prepared.headers),
            body,
        })
    }

    fn whole_answer(
        &self,
        _api: Api,
        _model: &str,
        content_type: Vec<u8>,
        body: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<u8>), TranslateError> {
        Ok((content_type, body))
    }

    fn error_answer(
        &self,
        _status: u16,
        content_type: Vec<u8>,
        body: Vec<u8>,
    ) -> (Vec<u8>, Vec<u8>) {
        (content_type, body)
    }

    fn classify_status(&self, status: u16, body: &[u8]) -> FailureClass {
        classify_status(status, body)
    }

    fn classify_stream_error(&self, data: &str) -> FailureClass {
        classify_stream_error(data)
    }

    fn event_source(&self, _model: &str) -> Box<dyn EventSource> {
        Box::new(SseParser::new())
    }

    fn serves(&self, provider: &Provider) -> Serves {
        Serves {
            completions: true,
            responses: provider.responses,
            count_tokens: false,
        }
    }
}

/// The host header, base path, and the pass-through paths and bearer headers of
/// `provider`, served by `adapter` (see [`super::prepare`]).
pub fn prepare(provider: &Provider, adapter: &'static dyn Adapter) -> PreparedProvider {
    let url = &provider.base_url;
    let default_port = if url.tls { 443 } else { 80 };
    let host_header = if url.port == default_port {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let mut headers = Vec::with_capacity(provider.headers.len() + 1);
    if let Some(key) = &provider.api_key {
        headers.push(("authorization".to_string(), format!("Bearer {key}")));
    }
    headers.extend(provider.headers.iter().cloned());
    PreparedProvider {
        name: provider.name.clone(),
        adapter,
        host_header,
        base_path: url.path.clone(),
        chat_path: format!("{}/chat/completions", url.path),
        embeddings_path: format!("{}/embeddings", url.path),
        completions_path: format!("{}/completions", url.path),
        responses_path: format!("{}/responses", url.path),
        serves: adapter.serves(provider),
        headers,
    }
}

#[derive(Deserialize, Default)]
struct ErrorEnvelope {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
}

impl ErrorDetail {
    fn code_str(&self) -> &str {
        self.code.as_ref().and_then(|c| c.as_str()).unwrap_or("")
    }

    fn mentions(&self, needle: &str) -> bool {
        self.code_str().contains(needle)
            || self.kind.as_deref().unwrap_or("").contains(needle)
            || self
                .message
                .as_deref()
                .unwrap_or("")
                .to_ascii_lowercase()
                .contains(needle)
    }
}

fn parse_error(body: &[u8]) -> ErrorDetail {
    serde_json::from_slice::<ErrorEnvelope>(body)
        .map(|e| e.error)
        .unwrap_or_default()
}

/// OpenAI's statuses and error codes mapped onto the taxonomy.
pub fn classify_status(status: u16, body: &[u8]) -> FailureClass {
    match status {
        429 | 529 => FailureClass::Overloaded,
        500..=599 => FailureClass::Server,
        408 => FailureClass::Server,
        400..=499 => classify_client_error(&parse_error(body)),
        _ => FailureClass::Server,
    }
}

fn classify_client_error(error: &ErrorDetail) -> FailureClass {
    if error.code_str() == "context_length_exceeded" || error.mentions("maximum context length") {
        return FailureClass::ContextLength;
    }
    if error.mentions("content_filter")
        || error.mentions("content_policy")
        || error.mentions("safety")
    {
        return FailureClass::ContentPolicy;
    }
    FailureClass::Client
}

/// An `{"error": {...}}` event inside a 200 stream.
pub fn classify_stream_error(data: &str) -> FailureClass {
    let error = parse_error(data.as_bytes());
    if error.mentions("overloaded") || error.mentions("rate_limit") || error.mentions("capacity") {
        return FailureClass::Overloaded;
    }
    if error.mentions("context_length") {
        return FailureClass::ContextLength;
    }
    FailureClass::Server
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(classify_status(429, b""), FailureClass::Overloaded);
        assert_eq!(classify_status(529, b""), FailureClass::Overloaded);
        assert_eq!(classify_status(503, b"{}"), FailureClass::Server);
        assert_eq!(classify_status(401, b"{}"), FailureClass::Client);
        assert_eq!(classify_status(404, b"not json"), FailureClass::Client);
    }

    #[test]
    fn context_length_is_recognised() {
        let body = br#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        assert_eq!(classify_status(400, body), FailureClass::ContextLength);
    }

    #[test]
    fn content_policy_is_recognised() {
        let body = br#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","code":"content_policy_violation"}}"#;
        assert_eq!(classify_status(400, body), FailureClass::ContentPolicy);
    }

    #[test]
    fn stream_errors() {
        let overloaded = r#"{"error":{"message":"Overloaded","type":"overloaded_error"}}"#;
        assert_eq!(classify_stream_error(overloaded), FailureClass::Overloaded);
        assert_eq!(
            classify_stream_error(r#"{"error":{"message":"boom"}}"#),
            FailureClass::Server
        );
    }
}
