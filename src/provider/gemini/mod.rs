//! Google's Gemini (Generative Language API): OpenAI chat and embeddings requests
//! translated to `generateContent` / `streamGenerateContent?alt=sse` /
//! `batchEmbedContents`, and Gemini's answers, streams and errors translated back.
//!
//! Gemini authenticates with `x-goog-api-key`. It has no prefill: a final `model`
//! turn is context, so [`Adapter::accepts_prefill`] is false for this kind.

mod embeddings;
mod error;
mod request;
mod response;
mod schema;
mod stream;

pub use error::{classify_status, classify_stream_error, translate_error};
pub use stream::GeminiStream;

use super::{
    append_query, percent_encode, Adapter, Api, EventSource, Outbound, RequestParts,
    TranslateError, JSON,
};
use crate::outcome::FailureClass;

/// Gemini's adapter: requests, answers, streams and errors translated.
#[derive(Debug)]
pub struct Gemini;

impl Adapter for Gemini {
    fn encode<'a>(&self, parts: &RequestParts<'a>) -> Result<Outbound<'a>, TranslateError> {
        translate_request(parts)
    }

    fn whole_answer(
        &self,
        api: Api,
        model: &str,
        _content_type: Vec<u8>,
        body: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<u8>), TranslateError> {
        Ok((JSON.to_vec(), translate_response(api, model, &body)?))
    }

    fn error_answer(
        &self,
        status: u16,
        _content_type: Vec<u8>,
        body: Vec<u8>,
    ) -> (Vec<u8>, Vec<u8>) {
        (JSON.to_vec(), translate_error(status, body))
    }

    fn classify_status(&self, status: u16, body: &[u8]) -> FailureClass {
        classify_status(status, body)
    }

    fn classify_stream_error(&self, data: &str) -> FailureClass {
        classify_stream_error(data)
    }

    fn event_source(&self, model: &str) -> Box<dyn EventSource> {
        Box::new(GeminiStream::new(model))
    }
}

/// Builds the Gemini request for one attempt.
pub fn translate_request(parts: &RequestParts<'_>) -> Result<Outbound<'static>, TranslateError> {
    let key = parts
        .provider
        .api_key
        .as_deref()
        .ok_or_else(|| TranslateError::Request("gemini provider has no api_key".into()))?;
    let mut headers = Vec::with_capacity(parts.provider.headers.len() + 1);
    headers.push(("x-goog-api-key".to_string(), key.to_string()));
    headers.extend(parts.provider.headers.iter().cloned());
    let resource = model_resource(parts.model);
    let base = &parts.prepared.base_path;
    let (method, body) = match parts.api {
        Api::ChatCompletions if parts.chat.stream => (
            "streamGenerateContent?alt=sse",
            request::translate(parts.body)?,
        ),
        Api::ChatCompletions => ("generateContent", request::translate(parts.body)?),
        Api::Embeddings => (
            "batchEmbedContents",
            embeddings::translate_request(parts.body, &resource)?,
        ),
        api => return Err(TranslateError::Unsupported(api.as_str())),
    };
    let mut path = format!("{base}/{resource}:{method}");
    append_query(&mut path, parts.query);
    Ok(Outbound {
        path: path.into(),
        headers: headers.into(),
        body,
    })
}

/// Turns a Gemini success body into OpenAI's shape for `api`.
pub fn translate_response(api: Api, model: &str, body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    match api {
        Api::ChatCompletions => response::translate(body, model, &Stamp::now()),
        Api::Embeddings => embeddings::translate_response(body, model),
        api => Err(TranslateError::Unsupported(api.as_str())),
    }
}

/// `models/{model}`, unless the target already names a full resource
/// (`models/...`, `tunedModels/...`).
fn model_resource(model: &str) -> String {
    let (collection, name) = ["models/", "tunedModels/"]
        .iter()
        .find_map(|prefix| model.strip_prefix(prefix).map(|rest| (*prefix, rest)))
        .unwrap_or(("models/", model));
    let mut out = String::with_capacity(collection.len() + name.len());
    out.push_str(collection);
    percent_encode(name, &mut out);
    out
}

/// Identity of one translated completion: its `id` and `created` time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stamp {
    pub id: String,
    pub created: u64,
}

impl Stamp {
    /// A fresh random id, stamped now (Gemini's `responseId` replaces it when sent).
    pub fn now() -> Stamp {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Stamp {
            id: format!(
                "chatcmpl-{:016x}{:08x}",
                fastrand::u64(..),
                fastrand::u32(..)
            ),
            created,
        }
    }

    /// Uses Gemini's `responseId` when the answer has one.
    pub fn with_response_id(&self, response_id: Option<&str>) -> Stamp {
        match response_id.filter(|id| !id.is_empty()) {
            Some(id) => Stamp {
                id: format!("chatcmpl-{id}"),
                created: self.created,
            },
            None => self.clone(),
        }
    }

    /// A tool call id derived from the completion id: the same answer always
    /// yields the same ids, and ids differ between completions.
    pub fn call_id(&self, candidate: u32, call: u32) -> String {
        let suffix = self.id.strip_prefix("chatcmpl-").unwrap_or(&self.id);
        format!("call_{suffix}_{candidate}_{call}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BaseUrl, Provider, ProviderKind};
    use crate::wire::ChatBody;
    use std::time::Duration;

    fn provider() -> Provider {
        Provider {
            name: "gemini".into(),
            kind: ProviderKind::Gemini,
            base_url: BaseUrl {
                tls: true,
                host: "generativelanguage.googleapis.com".into(),
                port: 443,
                path: "/v1beta".into(),
            },
            api_key: Some("g-key".into()),
            headers: vec![("x-team".into(), "search".into())],
            max_connections: 8,
            pool_idle_timeout: Duration::from_secs(90),
            api_version: None,
            responses: false,
            quota: Default::default(),
            region: None,
            aws: None,
            ca_file: None,
        }
    }

    fn outbound(
        provider: &Provider,
        api: Api,
        body: &[u8],
    ) -> Result<Outbound<'static>, TranslateError> {
        let prepared = crate::provider::prepare(provider);
        let chat = ChatBody::parse(body).expect("valid body");
        translate_request(&RequestParts {
            provider,
            prepared: &prepared,
            api,
            model: "gemini-2.0-flash",
            body,
            chat: &chat,
            query: &[],
            now: std::time::SystemTime::now(),
        })
    }

    #[test]
    fn chat_paths_and_headers() {
        let chat = br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#;
        let out = outbound(&provider(), Api::ChatCompletions, chat).unwrap();
        assert_eq!(out.path, "/v1beta/models/gemini-2.0-flash:generateContent");
        assert_eq!(
            out.headers,
            vec![
                ("x-goog-api-key".to_string(), "g-key".to_string()),
                ("x-team".to_string(), "search".to_string())
            ]
        );
        let body: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        );
        let stream =
            br#"{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let out = outbound(&provider(), Api::ChatCompletions, stream).unwrap();
        assert_eq!(
            out.path,
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        );
        let embed = br#"{"model":"embed","input":"hi"}"#;
        let out = outbound(&provider(), Api::Embeddings, embed).unwrap();
        assert_eq!(
            out.path,
            "/v1beta/models/gemini-2.0-flash:batchEmbedContents"
        );
    }

    #[test]
    fn missing_key_is_a_request_error() {
        let mut keyless = provider();
        keyless.api_key = None;
        let chat = br#"{"model":"chat","messages":[]}"#;
        let err = outbound(&keyless, Api::ChatCompletions, chat).unwrap_err();
        assert!(matches!(err, TranslateError::Request(_)));
    }

    #[test]
    fn model_resources() {
        assert_eq!(
            model_resource("gemini-2.0-flash"),
            "models/gemini-2.0-flash"
        );
        assert_eq!(model_resource("models/gemini-pro"), "models/gemini-pro");
        assert_eq!(model_resource("tunedModels/my-1"), "tunedModels/my-1");
        assert_eq!(model_resource("a b/c"), "models/a%20b%2Fc");
    }

    #[test]
    fn stamps() {
        let stamp = Stamp {
            id: "chatcmpl-x".into(),
            created: 7,
        };
        assert_eq!(stamp.call_id(0, 2), "call_x_0_2");
        let with = stamp.with_response_id(Some("abc"));
        assert_eq!(with.id, "chatcmpl-abc");
        assert_eq!(stamp.with_response_id(Some("")), stamp);
        assert!(Stamp::now().id.starts_with("chatcmpl-"));
    }
}
