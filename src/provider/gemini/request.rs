//! An OpenAI chat completion request as a Gemini `GenerateContentRequest`.
//!
//! system/developer messages become `systemInstruction`; user → `user`,
//! assistant → `model` (tool calls as `functionCall` parts), tool results →
//! `user` turns of `functionResponse` parts named after the call they answer.
//! Consecutive turns of one role are merged, as Gemini expects alternation.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{schema, TranslateError};

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    tools: Option<Vec<Tool>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    response_format: Option<ResponseFormat>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentPart {
    Text {
        text: String,
    },
    Refusal {
        refusal: String,
    },
    ImageUrl {
        image_url: ImageUrl,
    },
    InputAudio {
        input_audio: InputAudio,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct ImageUrl {
    url: String,
}

#[derive(Deserialize)]
struct InputAudio {
    data: String,
    format: String,
}

#[derive(Deserialize)]
struct ToolCall {
    id: String,
    function: FunctionCall,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct Tool {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    function: Option<FunctionDef>,
}

#[derive(Deserialize)]
struct FunctionDef {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchema },
}

#[derive(Deserialize)]
struct JsonSchema {
    #[serde(default)]
    schema: Option<Value>,
}

/// Translates the client's OpenAI chat body into Gemini's request body.
pub fn translate(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let request: ChatRequest =
        serde_json::from_slice(body).map_err(|e| TranslateError::Request(e.to_string()))?;
    let mut out = Map::new();
    let (system, contents) = conversation(&request.messages)?;
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

/// Turns being built: role and parts, merged when a role repeats.
#[derive(Default)]
struct Turns {
    contents: Vec<(&'static str, Vec<Value>)>,
}

impl Turns {
    fn push(&mut self, role: &'static str, parts: Vec<Value>) {
        if parts.is_empty() {
            return;
        }
        match self.contents.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => self.contents.push((role, parts)),
        }
    }

    fn into_values(self) -> Vec<Value> {
        let turn = |(role, parts)| json!({ "role": role, "parts": parts });
        self.contents.into_iter().map(turn).collect()
    }
}

/// The system instruction's parts and the conversation's `contents`.
fn conversation(messages: &[Message]) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for message in messages {
        match message.role.as_str() {
            "system" | "developer" => system.extend(content_parts(&message.content)?),
            "user" => turns.push("user", content_parts(&message.content)?),
            "assistant" => {
                let mut parts = content_parts(&message.content)?;
                for call in message.tool_calls.iter().flatten() {
                    call_names.insert(&call.id, &call.function.name);
                    parts.push(function_call(call)?);
                }
                turns.push("model", parts);
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
                turns.push("user", vec![function_response(name, &message.content)]);
            }
            other => {
                return Err(TranslateError::Request(format!(
                    "message role `{other}` is not supported"
                )))
            }
        }
    }
    Ok((system, turns.into_values()))
}

/// Text, image and audio parts of one message; empty text is left out.
fn content_parts(content: &Option<Content>) -> Result<Vec<Value>, TranslateError> {
    let text_part = |text: &str| (!text.is_empty()).then(|| json!({ "text": text }));
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(text)) => Ok(text_part(text).into_iter().collect()),
        Some(Content::Parts(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for part in parts {
                let converted = match part {
                    ContentPart::Text { text } => text_part(text),
                    ContentPart::Refusal { refusal } => text_part(refusal),
                    ContentPart::ImageUrl { image_url } => Some(inline_image(&image_url.url)?),
                    ContentPart::InputAudio { input_audio } => Some(inline_audio(input_audio)),
                    ContentPart::Other => {
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
    let rest = url.strip_prefix("data:").ok_or_else(refuse)?;
    let (meta, data) = rest.split_once(',').ok_or_else(refuse)?;
    let mime = meta.strip_suffix(";base64").ok_or_else(refuse)?;
    Ok(json!({ "inlineData": { "mimeType": mime, "data": data } }))
}

fn inline_audio(audio: &InputAudio) -> Value {
    let mime = format!("audio/{}", audio.format);
    json!({ "inlineData": { "mimeType": mime, "data": audio.data } })
}

/// An assistant tool call as a `functionCall` part (arguments parsed back to JSON).
fn function_call(call: &ToolCall) -> Result<Value, TranslateError> {
    let arguments = call.function.arguments.trim();
    let args: Value = if arguments.is_empty() {
        json!({})
    } else {
        serde_json::from_str(arguments).map_err(|e| {
            TranslateError::Request(format!("tool call arguments are not JSON: {e}"))
        })?
    };
    Ok(json!({ "functionCall": { "name": call.function.name, "args": args } }))
}

/// A tool result as a `functionResponse` part. Gemini wants an object: a JSON
/// object result is sent as it is, anything else as `{"content": <text>}`.
fn function_response(name: &str, content: &Option<Content>) -> Value {
    let text = match content {
        None => String::new(),
        Some(Content::Text(text)) => text.clone(),
        Some(Content::Parts(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text } => Some(text.as_str()),
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

fn function_declarations(tools: &[Tool]) -> Result<Value, TranslateError> {
    let mut declarations = Vec::with_capacity(tools.len());
    for tool in tools {
        let function = match (tool.kind.as_str(), &tool.function) {
            ("function", Some(function)) => function,
            _ => {
                return Err(TranslateError::Request(format!(
                    "tool type `{}` is not supported for Gemini",
                    tool.kind
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
fn tool_config(choice: &Value) -> Result<Value, TranslateError> {
    let config = match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => json!({ "mode": "AUTO" }),
            "none" => json!({ "mode": "NONE" }),
            "required" => json!({ "mode": "ANY" }),
            other => {
                return Err(TranslateError::Request(format!(
                    "tool_choice `{other}` is not supported"
                )))
            }
        },
        _ => {
            let name = choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::Request("tool_choice names no function".into()))?;
            json!({ "mode": "ANY", "allowedFunctionNames": [name] })
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
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    set("maxOutputTokens", max_tokens.map(Value::from));
    set("stopSequences", request.stop.as_ref().map(stop_sequences));
    set("candidateCount", request.n.map(Value::from));
    set("presencePenalty", request.presence_penalty.map(Value::from));
    set(
        "frequencyPenalty",
        request.frequency_penalty.map(Value::from),
    );
    set("seed", request.seed.map(Value::from));
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            set("responseMimeType", Some("application/json".into()))
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            set("responseMimeType", Some("application/json".into()));
            let schema = json_schema
                .schema
                .as_ref()
                .map(schema::convert)
                .transpose()?;
            set("responseSchema", schema);
        }
    }
    Ok(config)
}

fn stop_sequences(stop: &Stop) -> Value {
    match stop {
        Stop::One(one) => json!([one]),
        Stop::Many(many) => json!(many),
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
