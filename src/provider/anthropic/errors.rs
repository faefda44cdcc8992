//! Anthropic's errors: their statuses and `error.type`s mapped onto the failure
//! taxonomy, and their bodies rewritten in OpenAI's error shape.
//!
//! Anthropic answers `{"type":"error","error":{"type":"overloaded_error",
//! "message":"Overloaded"},"request_id":".."}`, with the same `error` object in a
//! 200 stream's `event: error`.

use serde_json::json;

use super::wire::{ErrorDetail, ErrorEnvelope};
use crate::outcome::FailureClass;

fn parse(body: &[u8]) -> ErrorDetail {
    serde_json::from_slice::<ErrorEnvelope>(body)
        .map(|e| e.error)
        .unwrap_or_default()
}

fn mentions(error: &ErrorDetail, needles: &[&str]) -> bool {
    let message = error.message.to_ascii_lowercase();
    needles.iter().any(|n| message.contains(n))
}

/// "prompt is too long: 208310 tokens > 200000 maximum", or prompt plus
/// `max_tokens` over the window.
fn is_context_length(error: &ErrorDetail) -> bool {
    error.kind == "invalid_request_error"
        && mentions(
            error,
            &[
                "prompt is too long",
                "exceed context limit",
                "context window",
            ],
        )
}

fn is_content_policy(error: &ErrorDetail) -> bool {
    mentions(
        error,
        &["content filtering", "content policy", "usage policy"],
    )
}

fn is_overloaded(error: &ErrorDetail) -> bool {
    matches!(error.kind.as_str(), "overloaded_error" | "rate_limit_error")
}

/// A non-2xx answer's class from its status and error body.
pub fn classify_status(status: u16, body: &[u8]) -> FailureClass {
    let error = parse(body);
    match status {
        429 | 529 => FailureClass::Overloaded,
        _ if is_overloaded(&error) => FailureClass::Overloaded,
        408 | 500..=599 => FailureClass::Server,
        400..=499 if is_context_length(&error) => FailureClass::ContextLength,
        400..=499 if is_content_policy(&error) => FailureClass::ContentPolicy,
        400..=499 => FailureClass::Client,
        _ => FailureClass::Server,
    }
}

/// An error event inside a 200 stream (its `data`).
pub fn classify_stream_error(data: &str) -> FailureClass {
    let error = parse(data.as_bytes());
    if is_overloaded(&error) {
        FailureClass::Overloaded
    } else if is_context_length(&error) {
        FailureClass::ContextLength
    } else if is_content_policy(&error) {
        FailureClass::ContentPolicy
    } else {
        FailureClass::Server
    }
}

/// OpenAI's `error.type` for an Anthropic error type.
fn openai_type(kind: &str, status: u16) -> &str {
    match kind {
        "api_error" => "server_error",
        "" if status >= 500 => "server_error",
        "" => "invalid_request_error",
        other => other,
    }
}

/// Rewrites an Anthropic error body as `{"error":{"message","type","param","code"}}`,
/// keeping the message (a body that is not Anthropic's JSON becomes the message).
pub fn translate_error(status: u16, body: &[u8]) -> Vec<u8> {
    let mut error = parse(body);
    if error.message.is_empty() {
        let text = String::from_utf8_lossy(body);
        error.message = text.chars().take(1000).collect();
    }
    let code = if is_context_length(&error) {
        "context_length_exceeded"
    } else {
        openai_type(&error.kind, status)
    };
    let value = json!({"error": {
        "message": error.message,
        "type": openai_type(&error.kind, status),
        "param": null,
        "code": code,
    }});
    value.to_string().into_bytes()
}
