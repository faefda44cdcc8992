//! A Gemini `GenerateContentResponse` as an OpenAI `chat.completion`, and the
//! pieces of it (candidate parts, finish reasons, usage) the stream reuses.
//!
//! A prompt Gemini blocks (`promptFeedback.blockReason`, no candidates) is not a
//! provider failure: it becomes one choice with empty content and
//! `finish_reason: "content_filter"`, as OpenAI answers filtered prompts.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{Stamp, TranslateError};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub response_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate {
    #[serde(default)]
    pub content: Option<CandidateContent>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub index: Option<u32>,
}

#[derive(Deserialize, Default)]
pub(super) struct CandidateContent {
    #[serde(default)]
    pub parts: Vec<Part>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Part {
    #[serde(default)]
    pub text: Option<String>,
    /// A thought summary, not part of the answer.
    #[serde(default)]
    pub thought: bool,
    #[serde(default, alias = "function_call")]
    pub function_call: Option<FunctionCall>,
}

#[derive(Deserialize, Default)]
pub(super) struct FunctionCall {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub args: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromptFeedback {
    #[serde(default)]
    pub block_reason: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u64,
    #[serde(default)]
    pub candidates_token_count: u64,
    #[serde(default)]
    pub thoughts_token_count: u64,
    #[serde(default)]
    pub cached_content_token_count: u64,
    #[serde(default)]
    pub total_token_count: u64,
}

impl GenerateResponse {
    pub fn parse(body: &[u8]) -> Result<GenerateResponse, TranslateError> {
        serde_json::from_slice(body).map_err(|e| TranslateError::Response(e.to_string()))
    }

    /// The prompt was blocked: there is no candidate to answer with.
    pub fn prompt_blocked(&self) -> bool {
        self.candidates.is_empty()
            && self
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some())
    }
}

/// What one candidate (or one streamed piece of it) says.
pub(super) struct Said {
    pub text: String,
    pub tool_calls: Vec<Value>,
}

/// Text (thoughts left out) and tool calls of `candidate`; tool calls are
/// numbered from `first_call` and get ids from `stamp`.
pub(super) fn said(candidate: &Candidate, index: u32, stamp: &Stamp, first_call: u32) -> Said {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let parts = candidate.content.iter().flat_map(|c| c.parts.iter());
    for part in parts.filter(|p| !p.thought) {
        if let Some(piece) = &part.text {
            text.push_str(piece);
        }
        if let Some(call) = &part.function_call {
            let n = first_call + tool_calls.len() as u32;
            let id = call.id.clone().unwrap_or_else(|| stamp.call_id(index, n));
            let args = call.args.clone().unwrap_or_else(|| json!({}));
            tool_calls.push(json!({
                "index": n,
                "id": id,
                "type": "function",
                "function": { "name": call.name, "arguments": args.to_string() }
            }));
        }
    }
    Said { text, tool_calls }
}

/// Gemini's `finishReason` in OpenAI's words; `called_tools` turns a normal stop
/// into `tool_calls`, as OpenAI reports it.
pub(super) fn finish_reason(reason: &str, called_tools: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "PROHIBITED_CONTENT" | "BLOCKLIST" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if called_tools => "tool_calls",
        _ => "stop",
    }
}

/// `usageMetadata` as OpenAI's usage; thinking tokens count as completion tokens.
/// Counts come from the provider: sums saturate rather than overflow.
pub(super) fn usage(meta: &UsageMetadata) -> Value {
    let completion = meta
        .candidates_token_count
        .saturating_add(meta.thoughts_token_count);
    let total = if meta.total_token_count > 0 {
        meta.total_token_count
    } else {
        meta.prompt_token_count.saturating_add(completion)
    };
    json!({
        "prompt_tokens": meta.prompt_token_count,
        "completion_tokens": completion,
        "total_tokens": total,
        "prompt_tokens_details": { "cached_tokens": meta.cached_content_token_count },
        "completion_tokens_details": { "reasoning_tokens": meta.thoughts_token_count }
    })
}

/// Translates a non-streaming answer. `model` is the target's, used when Gemini
/// does not say `modelVersion`.
pub fn translate(body: &[u8], model: &str, stamp: &Stamp) -> Result<Vec<u8>, TranslateError> {
    let response = GenerateResponse::parse(body)?;
    let stamp = stamp.with_response_id(response.response_id.as_deref());
    let choices = if response.prompt_blocked() {
        vec![choice(0, json!(""), None, "content_filter")]
    } else {
        response
            .candidates
            .iter()
            .enumerate()
            .map(|(position, c)| candidate_choice(c, position, &stamp))
            .collect()
    };
    let mut out = Map::new();
    out.insert("id".into(), stamp.id.clone().into());
    out.insert("object".into(), "chat.completion".into());
    out.insert("created".into(), stamp.created.into());
    let model = response.model_version.as_deref().unwrap_or(model);
    out.insert("model".into(), model.into());
    out.insert("choices".into(), Value::Array(choices));
    if let Some(meta) = &response.usage_metadata {
        out.insert("usage".into(), usage(meta));
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| TranslateError::Response(e.to_string()))
}

fn candidate_choice(candidate: &Candidate, position: usize, stamp: &Stamp) -> Value {
    let index = candidate.index.unwrap_or(position as u32);
    let Said { text, tool_calls } = said(candidate, index, stamp, 0);
    let called = !tool_calls.is_empty();
    let reason = finish_reason(candidate.finish_reason.as_deref().unwrap_or("STOP"), called);
    let content = if text.is_empty() && called {
        Value::Null
    } else {
        Value::String(text)
    };
    choice(index, content, called.then_some(tool_calls), reason)
}

fn choice(index: u32, content: Value, tool_calls: Option<Vec<Value>>, reason: &str) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert("content".into(), content);
    if let Some(calls) = tool_calls {
        let calls = calls.into_iter().map(without_index).collect();
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    json!({ "index": index, "message": message, "logprobs": null, "finish_reason": reason })
}

/// Tool calls in a complete message carry no `index` (only stream deltas do).
fn without_index(mut call: Value) -> Value {
    if let Value::Object(fields) = &mut call {
        fields.remove("index");
    }
    call
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
