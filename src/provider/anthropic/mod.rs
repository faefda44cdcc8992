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

use super::{Api, Outbound, RequestParts, TranslateError};

pub use errors::{classify_status, classify_stream_error, translate_error};

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

/// Builds the Messages request for one attempt (chat completions only).
pub fn translate_request(parts: &RequestParts<'_>) -> Result<Outbound, TranslateError> {
    if parts.api != Api::ChatCompletions {
        return Err(TranslateError::Unsupported("embeddings"));
    }
    let request = request::translate(parts.body, parts.model)?;
    let body = serde_json::to_vec(&request).map_err(|e| TranslateError::Request(e.to_string()))?;
    Ok(Outbound {
        path: messages_path(&parts.prepared.base_path),
        headers: headers(parts.provider.api_key.as_deref(), &parts.provider.headers),
        body,
    })
}

/// Translates a non-streaming Messages answer into a `chat.completion`.
pub fn translate_response(api: Api, body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    if api != Api::ChatCompletions {
        return Err(TranslateError::Unsupported("embeddings"));
    }
    response::translate(body, unix_now())
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
