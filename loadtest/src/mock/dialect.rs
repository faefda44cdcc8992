//! The provider dialects the mock speaks, chosen by request path, and the error
//! bodies each one sends for a status (injected faults and rejected requests alike).
//!
//! | dialect | error body | extra header |
//! |---|---|---|
//! | OpenAI, Azure | `{"error":{"message","type","param","code"}}` | |
//! | Anthropic | `{"type":"error","error":{"type","message"}}` (529 `overloaded_error`, 429 `rate_limit_error`, 5xx `api_error`) | |
//! | Gemini | `{"error":{"code","message","status"}}` (429 `RESOURCE_EXHAUSTED`, 503 `UNAVAILABLE`, 500 `INTERNAL`) | |
//! | Bedrock | `{"message"}` | `x-amzn-errortype: ThrottlingException` (429), `ServiceUnavailableException` (503), ... |
//!
//! A prefill refused by the `reject_prefill` continuation mode is answered 400 with
//! the provider's own wording ([`write_prefill_rejected`]).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::answer::PrefillRejected;
use super::openai;
use super::wire::{push_json_str, push_u64};

/// A provider API shape the mock answers in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`.
    OpenAi,
    /// `{prefix}/v1/messages`.
    Anthropic,
    /// `{prefix}/models/{model}:generateContent` and friends.
    Gemini,
    /// `{prefix}/model/{modelId}/converse` and `/converse-stream`.
    Bedrock,
    /// `{prefix}/openai/deployments/{deployment}/chat/completions?api-version=...`.
    Azure,
}

impl Dialect {
    /// A short lower-case name (`openai`, `anthropic`, `gemini`, `bedrock`, `azure`).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "gemini",
            Dialect::Bedrock => "bedrock",
            Dialect::Azure => "azure",
        }
    }

    /// The `after_chunks` of a stream fault that strikes a text stream of this
    /// dialect right after `k` words were sent (`k` ≥ 1 for Gemini, whose first
    /// event already carries a word). Stream faults count every event (SSE event or
    /// event-stream frame) written after the head:
    ///
    /// - OpenAI, Azure: role delta, then one event per word → `1 + k`.
    /// - Anthropic: `message_start`, `content_block_start`, `ping`, then one
    ///   `content_block_delta` per word → `3 + k`.
    /// - Gemini: one chunk per word → `k`.
    /// - Bedrock: `messageStart`, then one `contentBlockDelta` per word → `1 + k`.
    pub fn after_words(self, k: usize) -> usize {
        match self {
            Dialect::OpenAi | Dialect::Azure | Dialect::Bedrock => 1 + k,
            Dialect::Anthropic => 3 + k,
            Dialect::Gemini => k,
        }
    }
}

/// Why a provider request body cannot be answered (400 in the dialect's shape).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("invalid JSON body: {0}")]
    Json(#[from] serde_json::Error),
    /// A field the provider requires is missing or invalid.
    #[error("{0}")]
    Field(&'static str),
    /// The conversation ends with an assistant message and the mock's
    /// continuation mode is `reject_prefill`.
    #[error("assistant message prefill is not supported")]
    Prefill,
}

impl From<PrefillRejected> for BodyError {
    fn from(_: PrefillRejected) -> Self {
        BodyError::Prefill
    }
}

/// OpenAI-compatible providers' answer to a trailing assistant message.
pub(crate) const OPENAI_PREFILL_REJECTED: &str = r#"{"error":{"message":"Assistant message prefill is not supported: the final message must be a user or tool message.","type":"invalid_request_error","param":"messages","code":"invalid_request_error"}}"#;
/// Anthropic's answer to a trailing assistant message.
pub(crate) const ANTHROPIC_PREFILL_REJECTED: &str = r#"{"type":"error","error":{"type":"invalid_request_error","message":"This model does not support assistant message prefill. The conversation must end with a user message."}}"#;

/// Appends the 400 body `dialect` sends for a refused prefill (OpenAI and Azure,
/// Anthropic; the others, which never refuse one, get their usual 400 shape).
pub(crate) fn write_prefill_rejected(
    dialect: Dialect,
    out: &mut Vec<u8>,
    name: &str,
) -> ErrorHeader {
    match dialect {
        Dialect::OpenAi | Dialect::Azure => {
            out.extend_from_slice(OPENAI_PREFILL_REJECTED.as_bytes());
            None
        }
        Dialect::Anthropic => {
            out.extend_from_slice(ANTHROPIC_PREFILL_REJECTED.as_bytes());
            None
        }
        _ => write_error(
            dialect,
            out,
            400,
            Some(&BodyError::Prefill.to_string()),
            name,
        ),
    }
}

/// A response header that names the error (Bedrock's `x-amzn-errortype`).
pub(crate) type ErrorHeader = Option<(&'static str, &'static str)>;

/// Appends the error body `dialect` sends with `status`; `message` `None` uses the
/// provider's usual wording for the common statuses (the mock's own otherwise).
pub(crate) fn write_error(
    dialect: Dialect,
    out: &mut Vec<u8>,
    status: u16,
    message: Option<&str>,
    name: &str,
) -> ErrorHeader {
    let message = match message {
        Some(m) => Cow::Borrowed(m),
        None => usual_message(dialect, status)
            .map_or_else(|| Cow::Owned(injected(name, status)), Cow::Borrowed),
    };
    match dialect {
        Dialect::OpenAi | Dialect::Azure => {
            openai::write_error(out, &message, openai::error_type(status));
            None
        }
        Dialect::Anthropic => {
            write_anthropic_error(out, anthropic_type(status), &message);
            None
        }
        Dialect::Gemini => {
            write_gemini_error(out, status, &message);
            None
        }
        Dialect::Bedrock => {
            out.extend_from_slice(b"{\"message\":");
            push_json_str(out, &message);
            out.push(b'}');
            Some(("x-amzn-errortype", bedrock_exception(status)))
        }
    }
}

fn injected(name: &str, status: u16) -> String {
    format!("mock {name}: injected status {status}")
}

/// What the real provider says for its common failure statuses.
fn usual_message(dialect: Dialect, status: u16) -> Option<&'static str> {
    match (dialect, status) {
        (Dialect::Anthropic, 529) => Some("Overloaded"),
        (Dialect::Anthropic, 500) => Some("Internal server error"),
        (Dialect::Gemini, 429) => Some("Resource has been exhausted"),
        (Dialect::Gemini, 503) => Some("The model is overloaded. Please try again later."),
        (Dialect::Gemini, 500) => Some("An internal error has occurred."),
        (Dialect::Bedrock, 429) => Some("Too many requests"),
        (Dialect::Bedrock, 503) => Some("Bedrock is unable to process your request."),
        (Dialect::Bedrock, 500) => Some("The server encountered an internal error."),
        _ => None,
    }
}

/// Appends `{"type":"error","error":{"type":kind,"message":message}}`.
pub(crate) fn write_anthropic_error(out: &mut Vec<u8>, kind: &str, message: &str) {
    out.extend_from_slice(b"{\"type\":\"error\",\"error\":{\"type\":");
    push_json_str(out, kind);
    out.extend_from_slice(b",\"message\":");
    push_json_str(out, message);
    out.extend_from_slice(b"}}");
}

/// Anthropic's error `type` for an HTTP status.
pub(crate) fn anthropic_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Appends `{"error":{"code":status,"message":message,"status":STATUS}}`.
pub(crate) fn write_gemini_error(out: &mut Vec<u8>, status: u16, message: &str) {
    out.extend_from_slice(b"{\"error\":{\"code\":");
    push_u64(out, u64::from(status));
    out.extend_from_slice(b",\"message\":");
    push_json_str(out, message);
    out.extend_from_slice(b",\"status\":");
    push_json_str(out, gemini_status(status));
    out.extend_from_slice(b"}}");
}

/// The google.rpc status name for an HTTP status.
pub(crate) fn gemini_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// The Bedrock exception name (`x-amzn-errortype`) for an HTTP status.
pub(crate) fn bedrock_exception(status: u16) -> &'static str {
    match status {
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        500..=599 => "InternalServerException",
        _ => "ValidationException",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn error(dialect: Dialect, status: u16) -> (Value, ErrorHeader) {
        let mut out = Vec::new();
        let header = write_error(dialect, &mut out, status, None, "m");
        (serde_json::from_slice(&out).expect("error JSON"), header)
    }

    #[test]
    fn error_shapes_per_dialect() {
        let (v, h) = error(Dialect::Anthropic, 529);
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert_eq!((v["type"].as_str(), h), (Some("error"), None));
        assert_eq!(
            error(Dialect::Anthropic, 503).0["error"]["type"],
            "api_error"
        );
        let (v, _) = error(Dialect::Gemini, 429);
        assert_eq!(
            (v["error"]["code"].as_u64(), v["error"]["status"].as_str()),
            (Some(429), Some("RESOURCE_EXHAUSTED"))
        );
        let (v, h) = error(Dialect::Bedrock, 429);
        assert_eq!(v["message"], "Too many requests");
        assert_eq!(h, Some(("x-amzn-errortype", "ThrottlingException")));
        let (v, _) = error(Dialect::Azure, 500);
        assert_eq!(v["error"]["message"], "mock m: injected status 500");
        assert_eq!(Dialect::Anthropic.after_words(2), 5);
    }
}
