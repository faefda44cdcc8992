//! Anthropic Messages response → OpenAI `chat.completion`: text blocks joined into
//! `content`, `tool_use` blocks into `tool_calls`, stop reasons and usage mapped.

use serde_json::{json, Value};

use super::wire::{ContentBlock, MessagesResponse, Usage};
use crate::provider::TranslateError;

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and reasons added later.
        _ => "stop",
    }
}

/// OpenAI's `usage` object for Anthropic token counts.
pub fn usage_json(usage: &Usage) -> Value {
    let prompt = usage.prompt_tokens();
    let completion = usage.output_tokens.unwrap_or(0);
    let mut value = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
    });
    if let Some(cached) = usage.cache_read_input_tokens {
        value["prompt_tokens_details"] = json!({ "cached_tokens": cached });
    }
    value
}

/// Translates a non-streaming answer; `created` is the Unix time to report.
pub fn translate(body: &[u8], created: u64) -> Result<Vec<u8>, TranslateError> {
    let message: MessagesResponse =
        serde_json::from_slice(body).map_err(|e| TranslateError::Response(e.to_string()))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in &message.content {
        match block {
            ContentBlock::Text { text: piece } => text.push_str(piece),
            ContentBlock::ToolUse { id, name, input } => tool_calls.push(json!({
                "id": id,
                "type": "function",
                "function": { "name": name, "arguments": input.to_string() },
            })),
            _ => {}
        }
    }
    let mut reply = json!({ "role": "assistant", "content": text });
    if !tool_calls.is_empty() {
        if text.is_empty() {
            reply["content"] = Value::Null;
        }
        reply["tool_calls"] = Value::Array(tool_calls);
    }
    let completion = json!({
        "id": message.id,
        "object": "chat.completion",
        "created": created,
        "model": message.model,
        "choices": [{
            "index": 0,
            "message": reply,
            "logprobs": null,
            "finish_reason": message.stop_reason.as_deref().map(finish_reason).unwrap_or("stop"),
        }],
        "usage": usage_json(&message.usage),
    });
    serde_json::to_vec(&completion).map_err(|e| TranslateError::Response(e.to_string()))
}
