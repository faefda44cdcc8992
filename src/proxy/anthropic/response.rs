//! Whole answers in Anthropic's shapes: an OpenAI `chat.completion` becomes a
//! Messages API `message`, and OpenAI-shaped errors (the gateway's own and the
//! providers' re-shaped ones) become `{"type":"error","error":{...}}`.
//!
//! `finish_reason` → `stop_reason`: `stop` → `end_turn`, `length` → `max_tokens`,
//! `tool_calls` / `function_call` → `tool_use`, `content_filter` → `refusal` (the
//! Messages API's stop reason for a response the model declined or that a safety
//! filter ended); anything else (or none) → `end_turn`. OpenAI does not say which
//! stop sequence matched, so `stop_sequence` is always `null`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::wire::Usage;

/// An OpenAI answer that cannot be shown as an Anthropic `message`.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("the upstream answer is not a chat completion: {0}")]
pub struct ResponseError(pub String);

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<CompletionToolCall>,
}

#[derive(Deserialize)]
struct CompletionToolCall {
    #[serde(default)]
    id: String,
    function: CompletionFunction,
}

#[derive(Deserialize)]
struct CompletionFunction {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Serialize)]
struct Message<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<ContentBlock>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    usage: MessageUsage,
}

/// A content block of an answer.
#[derive(Serialize, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

/// `usage` of a `message`.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct MessageUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl From<Option<Usage>> for MessageUsage {
    fn from(usage: Option<Usage>) -> Self {
        let usage = usage.unwrap_or_default();
        MessageUsage {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
        }
    }
}

/// The Anthropic `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// `msg_…` from an OpenAI completion id (`chatcmpl-abc` → `msg_abc`).
pub fn message_id(completion_id: &str) -> String {
    let stem = completion_id
        .strip_prefix("chatcmpl-")
        .or_else(|| completion_id.strip_prefix("msg_"))
        .unwrap_or(completion_id);
    if stem.is_empty() {
        format!("msg_{:016x}", fastrand::u64(..))
    } else {
        format!("msg_{stem}")
    }
}

/// A tool call's `arguments` as the `input` object. Empty arguments are `{}`;
/// arguments that are not JSON are kept as a string rather than lost.
pub fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
}

/// Translates an OpenAI `chat.completion` body into an Anthropic `message` body.
pub fn message_from_completion(body: &[u8]) -> Result<Vec<u8>, ResponseError> {
    let completion: Completion =
        serde_json::from_slice(body).map_err(|e| ResponseError(e.to_string()))?;
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ResponseError("no choices".into()))?;
    let mut content = Vec::new();
    if let Some(message) = choice.message {
        let text = message
            .content
            .filter(|t| !t.is_empty())
            .or(message.refusal.filter(|r| !r.is_empty()));
        if let Some(text) = text {
            content.push(ContentBlock::Text { text });
        }
        content.extend(
            message
                .tool_calls
                .into_iter()
                .map(|call| ContentBlock::ToolUse {
                    input: tool_input(&call.function.arguments),
                    id: call.id,
                    name: call.function.name,
                }),
        );
    }
    if content.is_empty() {
        // Clients index `content[0]`; an empty answer is one empty text block.
        content.push(ContentBlock::Text {
            text: String::new(),
        });
    }
    let message = Message {
        id: message_id(&completion.id),
        kind: "message",
        role: "assistant",
        model: &completion.model,
        content,
        stop_reason: stop_reason(choice.finish_reason.as_deref()),
        stop_sequence: None,
        usage: completion.usage.into(),
    };
    serde_json::to_vec(&message).map_err(|e| ResponseError(e.to_string()))
}

/// The Anthropic error `type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
    /// The gateway's list of upstream attempts, when it has one (an extension the
    /// SDKs ignore but people debugging read).
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<&'a Value>,
}

/// An Anthropic error body with `message`.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    encode_error(error_type(status), message, None)
}

fn encode_error(kind: &str, message: &str, attempts: Option<&Value>) -> Vec<u8> {
    let envelope = ErrorEnvelope {
        kind: "error",
        error: ErrorBody {
            kind,
            message,
            attempts,
        },
    };
    // Strings and an already-parsed value always serialise.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// Re-shapes an error body (OpenAI's shape, an Anthropic one, or anything else)
/// as an Anthropic error for `status`, keeping its message and attempt list.
pub fn error_from_upstream(status: u16, body: &[u8]) -> Vec<u8> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(rename = "type", default)]
        kind: Option<String>,
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(rename = "type", default)]
        kind: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        attempts: Option<Value>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        // Already Anthropic's shape: keep its own error type.
        Ok(Envelope {
            kind: Some(outer),
            error,
        }) if outer == "error" => encode_error(
            error.kind.as_deref().unwrap_or(error_type(status)),
            error.message.as_deref().unwrap_or(""),
            error.attempts.as_ref(),
        ),
        Ok(Envelope { error, .. }) => {
            let message = error
                .message
                .unwrap_or_else(|| format!("upstream answered HTTP {status}"));
            encode_error(error_type(status), &message, error.attempts.as_ref())
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("upstream answered HTTP {status}")
            } else {
                let cut = text.char_indices().nth(1000).map_or(text.len(), |(i, _)| i);
                text[..cut].to_string()
            };
            encode_error(error_type(status), &message, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(completion: Value) -> Value {
        let body = message_from_completion(completion.to_string().as_bytes()).expect("translates");
        serde_json::from_slice(&body).expect("json")
    }

    #[test]
    fn text_completion() {
        let v = message(json!({
            "id": "chatcmpl-abc", "object": "chat.completion", "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        }));
        assert_eq!(
            v,
            json!({
                "id": "msg_abc", "type": "message", "role": "assistant", "model": "gpt-4o",
                "content": [{"type": "text", "text": "Hello"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 7, "output_tokens": 3}
            })
        );
    }

    #[test]
    fn tool_call_completion() {
        let v = message(json!({
            "id": "x", "model": "m",
            "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "noop", "arguments": ""}}
            ]}, "finish_reason": "tool_calls"}]
        }));
        assert_eq!(
            v["content"],
            json!([
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "noop", "input": {}}
            ])
        );
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["id"], "msg_x");
        assert_eq!(v["usage"], json!({"input_tokens": 0, "output_tokens": 0}));
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(stop_reason(Some("stop")), "end_turn");
        assert_eq!(stop_reason(Some("length")), "max_tokens");
        assert_eq!(stop_reason(Some("tool_calls")), "tool_use");
        assert_eq!(stop_reason(Some("content_filter")), "refusal");
        assert_eq!(stop_reason(None), "end_turn");
    }

    #[test]
    fn bad_completions() {
        assert!(message_from_completion(b"nope").is_err());
        assert!(message_from_completion(br#"{"choices":[]}"#).is_err());
        let empty =
            message(json!({"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]}));
        assert_eq!(empty["content"], json!([{"type": "text", "text": ""}]));
        assert!(empty["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_")));
    }

    #[test]
    fn errors() {
        let v: Value = serde_json::from_slice(&error_from_upstream(
            503,
            br#"{"error":{"message":"all down","type":"upstream_error","code":"x","attempts":[{"target":"a"}]}}"#,
        ))
        .unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "all down", "attempts": [{"target": "a"}]}})
        );
        let v: Value = serde_json::from_slice(&error_from_upstream(
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#,
        ))
        .unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert_eq!(v["error"]["message"], "busy");
        let v: Value =
            serde_json::from_slice(&error_from_upstream(502, b"<html>bad</html>")).unwrap();
        assert_eq!(
            v["error"],
            json!({"type": "api_error", "message": "<html>bad</html>"})
        );
        let v: Value = serde_json::from_slice(&error_body(401, "no key")).unwrap();
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(error_type(400), "invalid_request_error");
        assert_eq!(error_type(404), "not_found_error");
        assert_eq!(error_type(504), "api_error");
        assert_eq!(error_type(429), "rate_limit_error");
    }
}
