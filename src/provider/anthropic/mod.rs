//! Anthropic (Messages API) as a provider kind: OpenAI chat requests are sent as
//! `POST {base}/v1/messages` with `x-api-key` and `anthropic-version`, and the
//! answers, streams and errors are turned back into OpenAI's shapes.
//!
//! The wire types live in [`wire`]; each direction has its own module.

pub mod errors;
pub mod request;
pub mod response;
pub mod stream;
pub mod wire;

use std::time::{SystemTime, UNIX_EPOCH};

use super::{
    append_query, Adapter, Api, EventSource, Outbound, RequestParts, Serves, TranslateError, JSON,
};
use crate::outcome::FailureClass;

pub use errors::{classify_status, classify_stream_error, translate_error};

/// Anthropic's adapter: Messages requests, answers and streams translated, and
/// prefill (a final assistant message is continued).
#[derive(Debug)]
pub struct Anthropic;

impl Adapter for Anthropic {
    fn encode<'a>(&self, parts: &RequestParts<'a>) -> Result<Outbound<'a>, TranslateError> {
        translate_request(parts)
    }

    fn whole_answer(
        &self,
        api: Api,
        _model: &str,
        _content_type: Vec<u8>,
        body: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<u8>), TranslateError> {
        Ok((JSON.to_vec(), translate_response(api, &body)?))
    }

    fn error_answer(
        &self,
        status: u16,
        _content_type: Vec<u8>,
        body: Vec<u8>,
    ) -> (Vec<u8>, Vec<u8>) {
        (JSON.to_vec(), translate_error(status, &body))
    }

    fn classify_status(&self, status: u16, body: &[u8]) -> FailureClass {
        classify_status(status, body)
    }

    fn classify_stream_error(&self, data: &str) -> FailureClass {
        classify_stream_error(data)
    }

    fn event_source(&self, model: &str) -> Box<dyn EventSource> {
        Box::new(event_source(model))
    }

    fn accepts_prefill(&self) -> bool {
        true
    }

    fn serves(&self, _provider: &crate::config::Provider) -> Serves {
        Serves {
            count_tokens: true,
            ..Serves::default()
        }
    }
}

/// The Messages endpoint under `base_path` (a base URL that already ends in
/// `/v1` is accepted too).
pub fn messages_path(base_path: &str) -> String {
    let base = base_path.trim_end_matches('/');
    match base.strip_suffix("/v1") {
        Some(root) => format!("{root}/v1/messages"),
        None => format!("{base}/v1/messages"),
    }
}

/// `x-api-key`, `anthropic-version` (unless configured) and the provider's headers.
pub fn headers(api_key: Option<&str>, configured: &[(String, String)]) -> Vec<(String, String)> {
    let mut headers = Vec::with_capacity(configured.len() + 2);
    if let Some(key) = api_key {
        headers.push(("x-api-key".to_string(), key.to_string()));
    }
    let has_version = configured
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("anthropic-version"));
    if !has_version {
        headers.push((
            "anthropic-version".to_string(),
            wire::API_VERSION.to_string(),
        ));
    }
    headers.extend(configured.iter().cloned());
    headers
}

/// Builds the Messages request for one attempt: a chat completion translated, or
/// a count_tokens request (already in Anthropic's shape) with its model rewritten.
pub fn translate_request(parts: &RequestParts<'_>) -> Result<Outbound<'static>, TranslateError> {
    let (mut path, body) = match parts.api {
        Api::ChatCompletions => {
            let request = request::translate(parts.body, parts.model)?;
            let body =
                serde_json::to_vec(&request).map_err(|e| TranslateError::Request(e.to_string()))?;
            (messages_path(&parts.prepared.base_path), body)
        }
        Api::CountTokens => {
            let mut body = Vec::with_capacity(parts.body.len() + 64);
            parts
                .chat
                .rewrite_for(parts.api, parts.body, parts.model, &mut body);
            let path = messages_path(&parts.prepared.base_path) + "/count_tokens";
            (path, body)
        }
        api => return Err(TranslateError::Unsupported(api.as_str())),
    };
    append_query(&mut path, parts.query);
    let headers = headers(parts.provider.api_key.as_deref(), &parts.provider.headers);
    Ok(Outbound {
        path: path.into(),
        headers: headers.into(),
        body,
    })
}

/// Translates a non-streaming Messages answer into a `chat.completion`; a
/// count_tokens answer is the client's own shape and passes as it is.
pub fn translate_response(api: Api, body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    match api {
        Api::ChatCompletions => response::translate(body, unix_now()),
        Api::CountTokens => Ok(body.to_vec()),
        api => Err(TranslateError::Unsupported(api.as_str())),
    }
}

/// The stream decoder for an answer from `model`.
pub fn event_source(model: &str) -> stream::MessageStream {
    stream::MessageStream::new(model, unix_now())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
