//! An OpenAI `chat.completion` built from a Converse answer, and the mappings the
//! stream shares (AWS Bedrock API reference: ConverseOutput, StopReason, TokenUsage).

use serde::Deserialize;
use serde_json::{json, Value};

use crate::provider::TranslateError;

/// Converse's `stopReason` as an OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Converse `TokenUsage` as OpenAI `usage`. Counts come from the provider: the
/// total saturates rather than overflows.
pub fn usage(usage: &TokenUsage) -> Value {
    let sum = usage.input_tokens.saturating_add(usage.output_tokens);
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens.unwrap_or(sum),
    })
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub total_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse {
    output: ConverseOutput,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct ConverseOutput {
    message: OutputMessage,
}

#[derive(Deserialize)]
struct OutputMessage {
    #[serde(default)]
    content: Vec<Value>,
}

/// An OpenAI `chat.completion` body for a Converse answer.
pub fn response_body(
    model: &str,
    id: &str,
    created: u64,
    body: &[u8],
) -> Result<Vec<u8>, TranslateError> {
    let answer: ConverseResponse = serde_json::from_slice(body)
        .map_err(|e| TranslateError::Response(format!("converse answer: {e}")))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in &answer.output.message.content {
        if let Some(piece) = block.get("text").and_then(Value::as_str) {
            text.push_str(piece);
        } else if let Some(tool) = block.get("toolUse") {
            tool_calls.push(tool_call(tool));
        }
    }
    let mut message = json!({ "role": "assistant", "content": (!text.is_empty()).then_some(text) });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let finish = finish_reason(answer.stop_reason.as_deref().unwrap_or("end_turn"));
    let out = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
        "usage": usage(&answer.usage.unwrap_or_default()),
    });
    serde_json::to_vec(&out).map_err(|e| TranslateError::Response(e.to_string()))
}

fn tool_call(tool: &Value) -> Value {
    let arguments = tool
        .get("input")
        .map_or_else(|| "{}".to_string(), Value::to_string);
    json!({
        "id": tool.get("toolUseId").cloned().unwrap_or(Value::Null),
        "type": "function",
        "function": { "name": tool.get("name").cloned().unwrap_or(Value::Null), "arguments": arguments },
    })
}
