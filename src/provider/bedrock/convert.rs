//! The Converse request body built from an OpenAI chat request (AWS Bedrock API
//! reference: Converse, Message, ContentBlock, SystemContentBlock,
//! InferenceConfiguration, ToolConfiguration, ToolChoice).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::provider::TranslateError;

/// The OpenAI chat request fields Converse can express.
#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    tools: Option<Vec<Tool>>,
    #[serde(default)]
    tool_choice: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image_url: Option<ImageUrl>,
}

#[derive(Deserialize)]
struct ImageUrl {
    url: String,
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
    function: FunctionSpec,
}

#[derive(Deserialize)]
struct FunctionSpec {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

fn bad(message: impl Into<String>) -> TranslateError {
    TranslateError::Request(message.into())
}

/// The Converse request body for an OpenAI chat request body.
pub fn request_body(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let request: ChatRequest =
        serde_json::from_slice(body).map_err(|e| bad(format!("chat request: {e}")))?;
    let mut system = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let (role, blocks) = match message.role.as_str() {
            "system" | "developer" => {
                system.extend(text_blocks(message.content.as_ref())?);
                continue;
            }
            "user" => ("user", user_blocks(message.content.as_ref())?),
            "assistant" => ("assistant", assistant_blocks(message)?),
            "tool" => ("user", vec![tool_result(message)?]),
            other => return Err(bad(format!("unknown message role `{other}`"))),
        };
        push_merged(&mut messages, role, blocks);
    }
    trim_prefill(&mut messages);
    let mut out = Map::new();
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    if let Some(config) = inference_config(&request) {
        out.insert("inferenceConfig".into(), config);
    }
    if let Some(config) = tool_config(&request, has_tool_blocks(&out))? {
        out.insert("toolConfig".into(), config);
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| bad(e.to_string()))
}

/// Appends blocks, merging into the previous message when the role repeats
/// (Converse wants user and assistant turns to alternate).
fn push_merged(
    messages: &mut Vec<(&'static str, Vec<Value>)>,
    role: &'static str,
    blocks: Vec<Value>,
) {
    if blocks.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some((last, content)) if *last == role => content.extend(blocks),
        _ => messages.push((role, blocks)),
    }
}

/// A trailing assistant message is a prefill; Claude rejects one ending in whitespace.
fn trim_prefill(messages: &mut [(&'static str, Vec<Value>)]) {
    let Some(("assistant", blocks)) = messages.last_mut() else {
        return;
    };
    if let Some(Value::String(text)) = blocks.last_mut().and_then(|b| b.get_mut("text")) {
        let trimmed = text.trim_end().len();
        text.truncate(trimmed);
    }
}

fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({ "text": text }))
}

/// Text-only content (system and assistant messages).
fn text_blocks(content: Option<&Content>) -> Result<Vec<Value>, TranslateError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(text)) => Ok(text_block(text).into_iter().collect()),
        Some(Content::Parts(parts)) => parts
            .iter()
            .filter_map(|part| match part.kind.as_str() {
                "text" => part.text.as_deref().and_then(text_block).map(Ok),
                "refusal" => None,
                other => Some(Err(bad(format!("content part `{other}` here")))),
            })
            .collect(),
    }
}

fn user_blocks(content: Option<&Content>) -> Result<Vec<Value>, TranslateError> {
    let Some(Content::Parts(parts)) = content else {
        return text_blocks(content);
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match (part.kind.as_str(), &part.image_url) {
            ("text", _) => blocks.extend(part.text.as_deref().and_then(text_block)),
            ("image_url", Some(image)) => blocks.push(image_block(&image.url)?),
            (other, _) => return Err(bad(format!("content part `{other}` is not supported"))),
        }
    }
    Ok(blocks)
}

/// `data:image/png;base64,...` → `{"image":{"format":"png","source":{"bytes":...}}}`.
fn image_block(url: &str) -> Result<Value, TranslateError> {
    let data = url
        .strip_prefix("data:")
        .ok_or_else(|| bad("bedrock takes images only as data: URLs"))?;
    let (media, bytes) = data
        .split_once(";base64,")
        .ok_or_else(|| bad("image data URL must be base64"))?;
    let format = match media {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => return Err(bad(format!("image type `{other}` is not supported"))),
    };
    Ok(json!({ "image": { "format": format, "source": { "bytes": bytes } } }))
}

fn assistant_blocks(message: &ChatMessage) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = text_blocks(message.content.as_ref())?;
    for call in message.tool_calls.iter().flatten() {
        let arguments = call.function.arguments.trim();
        let input: Value = if arguments.is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments)
                .map_err(|_| bad(format!("tool call `{}` arguments are not JSON", call.id)))?
        };
        blocks.push(json!({
            "toolUse": { "toolUseId": call.id, "name": call.function.name, "input": input }
        }));
    }
    Ok(blocks)
}

fn tool_result(message: &ChatMessage) -> Result<Value, TranslateError> {
    let id = message
        .tool_call_id
        .as_deref()
        .ok_or_else(|| bad("tool message without tool_call_id"))?;
    let mut content = text_blocks(message.content.as_ref())?;
    if content.is_empty() {
        content.push(json!({ "text": "(empty)" }));
    }
    Ok(json!({ "toolResult": { "toolUseId": id, "content": content } }))
}

fn inference_config(request: &ChatRequest) -> Option<Value> {
    let mut config = Map::new();
    if let Some(max) = request.max_completion_tokens.or(request.max_tokens) {
        config.insert("maxTokens".into(), max.into());
    }
    if let Some(t) = request.temperature {
        config.insert("temperature".into(), t.into());
    }
    if let Some(p) = request.top_p {
        config.insert("topP".into(), p.into());
    }
    let stops = match &request.stop {
        Some(Stop::One(stop)) => vec![stop.clone()],
        Some(Stop::Many(stops)) => stops.clone(),
        None => Vec::new(),
    };
    if !stops.is_empty() {
        config.insert("stopSequences".into(), stops.into());
    }
    (!config.is_empty()).then_some(Value::Object(config))
}

fn has_tool_blocks(body: &Map<String, Value>) -> bool {
    let Some(Value::Array(messages)) = body.get("messages") else {
        return false;
    };
    messages
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some())
}

/// `toolConfig` from `tools` and `tool_choice`. `none` has no Converse
/// equivalent: tools are left out unless the history holds tool blocks
/// (Converse then requires the tool definitions).
fn tool_config(
    request: &ChatRequest,
    history_uses_tools: bool,
) -> Result<Option<Value>, TranslateError> {
    let Some(tools) = request.tools.as_ref().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let choice = match &request.tool_choice {
        None => None,
        Some(Value::String(s)) if s == "auto" => Some(json!({ "auto": {} })),
        Some(Value::String(s)) if s == "required" => Some(json!({ "any": {} })),
        Some(Value::String(s)) if s == "none" => {
            if !history_uses_tools {
                return Ok(None);
            }
            None
        }
        Some(other) => match other.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Some(json!({ "tool": { "name": name } })),
            None => return Err(bad("tool_choice is not understood")),
        },
    };
    let specs: Vec<Value> = tools.iter().map(tool_spec).collect();
    let mut config = json!({ "tools": specs });
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}

fn tool_spec(tool: &Tool) -> Value {
    let schema = tool
        .function
        .parameters
        .clone()
        .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
    let mut spec = json!({ "name": tool.function.name, "inputSchema": { "json": schema } });
    if let Some(description) = tool
        .function
        .description
        .as_deref()
        .filter(|d| !d.is_empty())
    {
        spec["description"] = description.into();
    }
    json!({ "toolSpec": spec })
}
