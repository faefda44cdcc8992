//! Bedrock's exceptions on the failure taxonomy, and as OpenAI error bodies.
//!
//! A Bedrock error answer is `{"message": "..."}` (sometimes with `__type`); its
//! exception name travels in `x-amzn-errortype`, which classification does not
//! see, so the name comes from `__type` when present and from the status
//! otherwise (the Converse reference lists one status per exception).

use serde::Deserialize;
use serde_json::json;

use crate::outcome::FailureClass;

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default, alias = "Message")]
    message: Option<String>,
    #[serde(default, rename = "__type")]
    kind: Option<String>,
}

/// What one Bedrock error answer says.
struct Exception {
    name: String,
    message: String,
}

fn parse(status: u16, body: &[u8]) -> Exception {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let name = parsed
        .kind
        .as_deref()
        .map(short_name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| name_for_status(status))
        .to_string();
    let message = parsed
        .message
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    Exception { name, message }
}

/// `com.amazon.coral.service#ValidationException:http://...` → `ValidationException`.
fn short_name(raw: &str) -> &str {
    let after_hash = raw.rsplit('#').next().unwrap_or(raw);
    after_hash.split(':').next().unwrap_or(after_hash)
}

fn name_for_status(status: u16) -> &'static str {
    match status {
        400 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    }
}

/// Whether a validation message says the input does not fit the model.
fn is_context_length(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "input is too long",
        "prompt is too long",
        "too many input tokens",
        "too many tokens",
        "context limit",
        "context length",
        "context window",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

fn classify(name: &str, status: u16, message: &str) -> FailureClass {
    let name = name.to_ascii_lowercase();
    if name.starts_with("throttling") || name.starts_with("servicequotaexceeded") || status == 429 {
        return FailureClass::Overloaded;
    }
    if status >= 500 || matches!(status, 408 | 424) {
        return FailureClass::Server;
    }
    if name.starts_with("validation") && is_context_length(message) {
        return FailureClass::ContextLength;
    }
    FailureClass::Client
}

/// Classifies a non-2xx Bedrock answer from its status and body.
pub fn classify_status(status: u16, body: &[u8]) -> FailureClass {
    let exception = parse(status, body);
    classify(&exception.name, status, &exception.message)
}

/// Classifies the `{"error":{"type","message"}}` event made from a stream exception.
pub fn classify_stream_error(data: &str) -> FailureClass {
    let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
    let field = |name: &str| {
        value
            .pointer(&format!("/error/{name}"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (name, message) = (field("type"), field("message"));
    if name.to_ascii_lowercase().starts_with("validation") {
        return classify(&name, 400, &message);
    }
    match classify(&name, 500, &message) {
        FailureClass::Overloaded => FailureClass::Overloaded,
        _ => FailureClass::Server,
    }
}

/// An OpenAI-shaped error body keeping Bedrock's message and exception name.
pub fn translate_error(status: u16, body: Vec<u8>) -> Vec<u8> {
    let exception = parse(status, &body);
    let class = classify(&exception.name, status, &exception.message);
    let (kind, code) = match class {
        FailureClass::ContextLength => ("invalid_request_error", "context_length_exceeded"),
        FailureClass::Overloaded => ("rate_limit_error", exception.name.as_str()),
        FailureClass::Server => ("server_error", exception.name.as_str()),
        _ => ("invalid_request_error", exception.name.as_str()),
    };
    let out = json!({
        "error": { "message": exception.message, "type": kind, "param": null, "code": code }
    });
    serde_json::to_vec(&out).unwrap_or(body)
}
