//! Amazon Bedrock's Converse API: chat requests signed with SigV4 and sent to
//! `/model/{modelId}/converse[-stream]`, answers and event streams turned back
//! into OpenAI's shapes.
//!
//! Submodules: [`sigv4`] signs, [`convert`] builds the request body, [`response`]
//! reads answers, [`eventstream`] frames the binary stream, [`stream`] maps its
//! events to OpenAI chunks and [`errors`] classifies Bedrock's exceptions.

pub mod convert;
pub mod errors;
pub mod eventstream;
pub mod response;
pub mod sigv4;
pub mod stream;

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Adapter, Api, EventSource, Outbound, RequestParts, TranslateError, JSON};
use crate::outcome::FailureClass;

pub use errors::{classify_status, classify_stream_error, translate_error};

/// Bedrock's adapter: signed Converse requests (the target's query is signed
/// with them), answers and binary event streams translated, and prefill.
#[derive(Debug)]
pub struct Bedrock;

impl Adapter for Bedrock {
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

    /// ConverseStream answers in AWS's binary event-stream framing.
    fn is_event_stream(&self, content_type: &[u8]) -> bool {
        content_type.starts_with(b"application/vnd.amazon.eventstream")
    }

    fn event_source(&self, model: &str) -> Box<dyn EventSource> {
        event_source(model)
    }

    fn accepts_prefill(&self) -> bool {
        true
    }
}

/// SigV4 service name of bedrock-runtime.
const SERVICE: &str = "bedrock";

/// The signed Converse (or ConverseStream) request for one attempt.
pub fn translate_request(parts: &RequestParts<'_>) -> Result<Outbound<'static>, TranslateError> {
    if parts.api != Api::ChatCompletions {
        return Err(TranslateError::Unsupported(parts.api.as_str()));
    }
    let body = convert::request_body(parts.body)?;
    let path = request_path(&parts.prepared.base_path, parts.model, parts.chat.stream);
    let mut query = String::new();
    super::append_query(&mut query, parts.query);
    let query = query.trim_start_matches('?');
    let mut headers = auth_headers(parts, &path, query, &body)?;
    headers.extend(parts.provider.headers.iter().cloned());
    let path = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    Ok(Outbound {
        path: path.into(),
        headers: headers.into(),
        body,
    })
}

/// `{base}/model/{modelId}/converse[-stream]`, the model id percent-encoded as one
/// segment (`:` → `%3A`, and ARNs' `/` → `%2F`).
pub fn request_path(base_path: &str, model: &str, stream: bool) -> String {
    let mut path = String::with_capacity(base_path.len() + model.len() + 32);
    path.push_str(base_path);
    path.push_str("/model/");
    super::percent_encode(model, &mut path);
    path.push_str(if stream {
        "/converse-stream"
    } else {
        "/converse"
    });
    path
}

/// SigV4 headers over host, content-type, x-amz-date (and the session token);
/// a provider with only `api_key` uses Bedrock's bearer API keys instead.
fn auth_headers(
    parts: &RequestParts<'_>,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<Vec<(String, String)>, TranslateError> {
    let provider = parts.provider;
    let Some(credentials) = provider.aws.as_ref() else {
        return match &provider.api_key {
            Some(key) => Ok(vec![("authorization".into(), format!("Bearer {key}"))]),
            None => Err(TranslateError::Request(
                "bedrock needs AWS credentials".into(),
            )),
        };
    };
    let region = provider
        .region
        .as_deref()
        .ok_or_else(|| TranslateError::Request("bedrock needs a region".into()))?;
    let amz_date = sigv4::amz_date(parts.now);
    let mut signed: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("host", &parts.prepared.host_header),
        ("x-amz-date", &amz_date),
    ];
    if let Some(token) = &credentials.session_token {
        signed.push(("x-amz-security-token", token));
    }
    let request = sigv4::Request {
        method: "POST",
        path,
        query,
        headers: &signed,
        payload: body,
    };
    let scope = sigv4::Scope {
        region,
        service: SERVICE,
    };
    let authorization = sigv4::authorization(credentials, scope, &amz_date, &request);
    let mut headers = vec![
        ("authorization".to_string(), authorization),
        ("x-amz-date".to_string(), amz_date.clone()),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".to_string(), token.clone()));
    }
    Ok(headers)
}

/// An OpenAI `chat.completion` for a Converse answer.
pub fn translate_response(api: Api, model: &str, body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    if api != Api::ChatCompletions {
        return Err(TranslateError::Unsupported(api.as_str()));
    }
    response::response_body(model, &completion_id(), unix_now(), body)
}

/// The OpenAI-chunk event source for a ConverseStream answer.
pub fn event_source(model: &str) -> Box<dyn EventSource> {
    Box::new(stream::ConverseEvents::new(
        model,
        completion_id(),
        unix_now(),
    ))
}

/// Bedrock bodies carry no completion id; the gateway makes one.
fn completion_id() -> String {
    format!("chatcmpl-bedrock-{:016x}", fastrand::u64(..))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
