//! OpenAI `chat.completion` → a Responses API `response` object, as the official
//! SDKs parse it.
//!
//! The completion's text becomes one `message` item (`output_text` content), each
//! tool call a `function_call` item carrying the chat tool call's id as its
//! `call_id` (what the client sends back in `function_call_output`). A
//! `finish_reason` of `length` or `content_filter` makes the response
//! `incomplete` with that reason. `output_text` is not a field: the SDKs compute
//! it from the items. Non-2xx answers stay as they are: they are OpenAI-shaped
//! errors, which is what Responses clients parse.

use serde_json::{json, Map, Value};

use super::request::Echo;
use crate::http::ApiError;

/// Why a 2xx answer could not be made a `response`.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("the provider's answer could not be translated into a Responses API response: {0}")]
pub struct ResponseError(pub String);

/// The status and body a Responses client gets for a whole answer whose body is
/// OpenAI-shaped: a 2xx `chat.completion` becomes a `response` (an
/// untranslatable one a 502), anything else passes unchanged.
pub fn shape_answer(status: u16, body: &[u8], echo: &Echo) -> (u16, Vec<u8>) {
    if !(200..300).contains(&status) {
        return (status, body.to_vec());
    }
    match from_completion(body, echo) {
        Ok(response) => (status, response),
        Err(e) => (502, ApiError::bad_gateway(e.to_string()).body()),
    }
}

/// `status` and `incomplete_details` for a chat `finish_reason`.
pub(crate) fn status_of(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The Responses `usage` of a chat `usage` object.
pub(crate) fn usage_of(usage: &Value) -> Value {
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    let input = count(&usage["prompt_tokens"]);
    let output = count(&usage["completion_tokens"]);
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": count(&usage["prompt_tokens_details"]["cached_tokens"]),
        },
        "output_tokens": output,
        "output_tokens_details": {
            "reasoning_tokens": count(&usage["completion_tokens_details"]["reasoning_tokens"]),
        },
        "total_tokens": input.saturating_add(output),
    })
}

/// What a `response` object is made of besides the echoed request fields.
pub(crate) struct Parts<'a> {
    pub id: &'a str,
    pub created_at: u64,
    pub model: &'a str,
    pub status: &'a str,
    pub incomplete_details: Value,
    pub output: Vec<Value>,
    pub usage: Value,
}

/// A whole `response` object.
pub(crate) fn response_object(parts: Parts<'_>, echo: &Echo) -> Value {
    let mut response = Map::new();
    response.insert("id".into(), parts.id.into());
    response.insert("object".into(), "response".into());
    response.insert("created_at".into(), parts.created_at.into());
    response.insert("status".into(), parts.status.into());
    response.insert("model".into(), parts.model.into());
    response.insert("output".into(), Value::Array(parts.output));
    response.insert("usage".into(), parts.usage);
    response.insert("error".into(), Value::Null);
    response.insert("incomplete_details".into(), parts.incomplete_details);
    response.insert("previous_response_id".into(), Value::Null);
    response.insert("store".into(), false.into());
    response.insert("background".into(), false.into());
    for (name, value) in &echo.fields {
        response.insert(name.clone(), value.clone());
    }
    Value::Object(response)
}

/// A completed `message` item holding `text`.
pub(crate) fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

/// A `function_call` item.
pub(crate) fn call_item(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({
        "type": "function_call",
        "id": id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    })
}

fn from_completion(body: &[u8], echo: &Echo) -> Result<Vec<u8>, ResponseError> {
    let completion: Value =
        serde_json::from_slice(body).map_err(|e| ResponseError(e.to_string()))?;
    let choice = completion["choices"]
        .get(0)
        .ok_or_else(|| ResponseError("the completion has no choices".into()))?;
    let message = choice
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| ResponseError("the completion's choice has no message".into()))?;
    let output = output_items(message)?;
    let (status, incomplete_details) = status_of(choice["finish_reason"].as_str());
    let id = super::new_id(super::ID_PREFIX);
    let parts = Parts {
        id: &id,
        created_at: completion["created"]
            .as_u64()
            .unwrap_or_else(super::now_secs),
        model: completion["model"].as_str().unwrap_or(""),
        status,
        incomplete_details,
        output,
        usage: usage_of(&completion["usage"]),
    };
    serde_json::to_vec(&response_object(parts, echo)).map_err(|e| ResponseError(e.to_string()))
}

/// The output items of a completion's message: its text (or refusal) as one
/// `message` item, then one `function_call` item per tool call.
fn output_items(message: &Value) -> Result<Vec<Value>, ResponseError> {
    let mut output = Vec::new();
    let text = match (&message["content"], &message["refusal"]) {
        (Value::String(text), _) if !text.is_empty() => Some(text.as_str()),
        (_, Value::String(refusal)) if !refusal.is_empty() => Some(refusal.as_str()),
        _ => None,
    };
    if let Some(text) = text {
        output.push(message_item(&super::new_id("msg_"), text, "completed"));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let function = &call["function"];
        let (Some(call_id), Some(name)) = (call["id"].as_str(), function["name"].as_str()) else {
            return Err(ResponseError("a tool call lacks its id or name".into()));
        };
        let arguments = function["arguments"].as_str().unwrap_or("{}");
        output.push(call_item(
            &super::new_id("fc_"),
            call_id,
            name,
            arguments,
            "completed",
        ));
    }
    Ok(output)
}
