//! An OpenAI chat completion request as a Gemini `GenerateContentRequest`.
//!
//! system/developer messages become `systemInstruction`; user → `user`,
//! assistant → `model` (tool calls as `functionCall` parts), tool results →
//! `user` turns of `functionResponse` parts named after the call they answer.
//! Consecutive turns of one role are merged, as Gemini expects alternation.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::{schema, TranslateError};
use crate::provider::chat_request::{
    base64_data_url, push_turn, ChatContent, ChatMessage, ChatPart, ChatRequest, ChatTool,
    ChatToolCall, ChatToolChoice, InputAudio,
};

/// Translates the client's OpenAI chat body into Gemini's request body.
pub fn translate(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let request: ChatRequest =
        serde_json::from_slice(body).map_err(|e| TranslateError::Request(e.to_string()))?;
    let mut out = Map::new();
    let (system, contents) = conversation(request.messages.as_deref().unwrap_or_default())?;
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    if let Some(tools) = &request.tools {
        if !tools.is_empty() {
            out.insert("tools".into(), function_declarations(tools)?);
        }
    }
    if let Some(choice) = &request.tool_choice {
        out.insert("toolConfig".into(), tool_config(choice)?);
    }
    let config = generation_config(&request)?;
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| TranslateError::Request(e.to_string()))
}

/// The system instruction's parts and the conversation's `contents`.
fn conversation(messages: &[ChatMessage]) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for message in messages {
        match message.role.as_str() {
            "system" | "developer" => system.extend(content_parts(&message.content)?),
            "user" => push_turn(&mut turns, "user", content_parts(&message.content)?),
            "assistant" => {
                let mut parts = content_parts(&message.content)?;
                for call in message.tool_calls.iter().flatten() {
                    call_names.insert(&call.id, &call.function.name);
                    parts.push(function_call(call)?);
                }
                push_turn(&mut turns, "model", parts);
            }
            "tool" | "function" => {
                let name = message
                    .tool_call_id
                    .as_deref()
                    .and_then(|id| call_names.get(id).copied())
                    .or(message.name.as_deref())
                    .ok_or_else(|| {
                        TranslateError::Request("tool message answers no earlier tool call".into())
                    })?;
                let response = function_response(name, &message.content);
                push_turn(&mut turns, "user", vec![response]);
            }
            other => {
                return Err(TranslateError::Request(format!(
                    "message role `{other}` is not supported"
                )))
            }
        }
    }
    let turn = |(role, parts)| json!({ "role": role, "parts": parts });
    Ok((system, turns.into_iter().map(turn).collect()))
}

/// Text, image and audio parts of one message; empty text is left out.
fn content_parts(content: &Option<ChatContent>) -> Result<Vec<Value>, TranslateError> {
    let text_part = |text: &str| (!text.is_empty()).then(|| json!({ "text": text }));
    match content {
        None => Ok(Vec::new()),
        Some(ChatContent::Text(text)) => Ok(text_part(text).into_iter().collect()),
        Some(ChatContent::Parts(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for part in parts {
                let converted = match part {
                    ChatPart::Text { text } => text_part(text),
                    ChatPart::Refusal { refusal } => text_part(refusal),
                    ChatPart::ImageUrl { image_url } => Some(inline_image(&image_url.url)?),
                    ChatPart::InputAudio { input_audio } => Some(inline_audio(input_audio)),
                    ChatPart::Other { .. } => {
                        return Err(TranslateError::Request(
                            "content part type is not supported for Gemini".into(),
                        ))
                    }
                };
                out.extend(converted);
            }
            Ok(out)
        }
    }
}

/// A `data:<mime>;base64,<data>` URL as `inlineData`. Gemini cannot fetch
/// arbitrary web URLs, so other URLs are refused.
fn inline_image(url: &str) -> Result<Value, TranslateError> {
    let refuse = || TranslateError::Request("Gemini images must be base64 `data:` URLs".into());
    let (mime, data) = base64_data_url(url).ok_or_else(refuse)?;
    Ok(json!({ "inlineData": { "mimeType": mime, "data": data } }))
}

fn inline_audio(audio: &InputAudio) -> Value {
    let mime = format!("audio/{}", audio.format);
    json!({ "inlineData": { "mimeType": mime, "data": audio.data } })
}

/// An assistant tool call as a `functionCall` part (arguments parsed back to JSON).
fn function_call(call: &ChatToolCall) -> Result<Value, TranslateError> {
    let args = call
        .function
        .parsed_arguments()
        .map_err(|e| TranslateError::Request(format!("tool call arguments are not JSON: {e}")))?;
    Ok(json!({ "functionCall": { "name": call.function.name, "args": args } }))
}

/// A tool result as a `functionResponse` part. Gemini wants an object: a JSON
/// object result is sent as it is, anything else as `{"content": <text>}`.
fn function_response(name: &str, content: &Option<ChatContent>) -> Value {
    let text = match content {
        None => String::new(),
        Some(ChatContent::Text(text)) => text.clone(),
        Some(ChatContent::Parts(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                ChatPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect(),
    };
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({ "content": text }),
    };
    json!({ "functionResponse": { "name": name, "response": response } })
}

fn function_declarations(tools: &[ChatTool]) -> Result<Value, TranslateError> {
    let mut declarations = Vec::with_capacity(tools.len());
    for tool in tools {
        let function = match (tool.kind.as_deref(), &tool.function) {
            (Some("function"), Some(function)) => function,
            (kind, _) => {
                return Err(TranslateError::Request(format!(
                    "tool type `{}` is not supported for Gemini",
                    kind.unwrap_or_default()
                )))
            }
        };
        let mut declaration = Map::new();
        declaration.insert("name".into(), function.name.clone().into());
        if let Some(description) = &function.description {
            declaration.insert("description".into(), description.clone().into());
        }
        if let Some(parameters) = &function.parameters {
            let parameters = schema::convert(parameters)?;
            if !schema::is_empty_object(&parameters) {
                declaration.insert("parameters".into(), parameters);
            }
        }
        declarations.push(Value::Object(declaration));
    }
    Ok(json!([{ "functionDeclarations": declarations }]))
}

/// `tool_choice` as `toolConfig.functionCallingConfig`.
fn tool_config(choice: &ChatToolChoice) -> Result<Value, TranslateError> {
    let config = match choice {
        ChatToolChoice::Mode(mode) => match mode.as_str() {
            "auto" => json!({ "mode": "AUTO" }),
            "none" => json!({ "mode": "NONE" }),
            "required" => json!({ "mode": "ANY" }),
            other => {
                return Err(TranslateError::Request(format!(
                    "tool_choice `{other}` is not supported"
                )))
            }
        },
        ChatToolChoice::Named { function } => {
            json!({ "mode": "ANY", "allowedFunctionNames": [function.name] })
        }
        ChatToolChoice::Other(_) => {
            return Err(TranslateError::Request(
                "tool_choice names no function".into(),
            ))
        }
    };
    Ok(json!({ "functionCallingConfig": config }))
}

fn generation_config(request: &ChatRequest) -> Result<Map<String, Value>, TranslateError> {
    let mut config = Map::new();
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            config.insert(key.into(), value);
        }
    };
    set("temperature", request.temperature.map(Value::from));
    set("topP", request.top_p.map(Value::from));
    set(
        "maxOutputTokens",
        request.max_output_tokens().map(Value::from),
    );
    let stop = request.stop.as_ref();
    set("stopSequences", stop.map(|stop| stop.as_slice().into()));
    let n = request.n.map(u32::try_from).transpose();
    let n = n.map_err(|_| TranslateError::Request("`n` is out of range".into()))?;
    set("candidateCount", n.map(Value::from));
    set("presencePenalty", request.presence_penalty.map(Value::from));
    set(
        "frequencyPenalty",
        request.frequency_penalty.map(Value::from),
    );
    set("seed", request.seed.map(Value::from));
    let format = request.response_format.as_ref();
    match format.map(|f| (f.kind.as_str(), f.json_schema.as_ref())) {
        None | Some(("text", _)) => {}
        Some(("json_object", _)) => set("responseMimeType", Some("application/json".into())),
        Some(("json_schema", Some(json_schema))) => {
            set("responseMimeType", Some("application/json".into()));
            let schema = json_schema
                .schema
                .as_ref()
                .map(schema::convert)
                .transpose()?;
            set("responseSchema", schema);
        }
        Some(("json_schema", None)) => {
            return Err(TranslateError::Request(
                "response_format `json_schema` without `json_schema`".into(),
            ))
        }
        Some((kind, _)) => {
            return Err(TranslateError::Request(format!(
                "response_format `{kind}` is not supported for Gemini"
            )))
        }
    }
    Ok(config)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
