//! The Converse request body built from an OpenAI chat request (AWS Bedrock API
//! reference: Converse, Message, ContentBlock, SystemContentBlock,
//! InferenceConfiguration, ToolConfiguration, ToolChoice).

use serde_json::{json, Map, Value};

use crate::provider::chat_request::{
    base64_data_url, no_parameters, push_turn, ChatContent, ChatMessage, ChatPart, ChatRequest,
    ChatTool, ChatToolChoice,
};
use crate::provider::TranslateError;

fn bad(message: impl Into<String>) -> TranslateError {
    TranslateError::Request(message.into())
}

/// The Converse request body for an OpenAI chat request body.
pub fn request_body(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let request: ChatRequest =
        serde_json::from_slice(body).map_err(|e| bad(format!("chat request: {e}")))?;
    let mut system = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let chat = (request.messages.as_deref())
        .ok_or_else(|| bad("chat request: missing field `messages`"))?;
    for message in chat {
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
        push_turn(&mut messages, role, blocks);
    }
    trim_prefill(&mut messages);
    // Converse has no field for a response format: asked for in the system prompt.
    if let Some(instruction) = request
        .response_format
        .as_ref()
        .and_then(|f| f.instruction())
    {
        system.push(json!({ "text": instruction }));
    }
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
fn text_blocks(content: Option<&ChatContent>) -> Result<Vec<Value>, TranslateError> {
    match content {
        None => Ok(Vec::new()),
        Some(ChatContent::Text(text)) => Ok(text_block(text).into_iter().collect()),
        Some(ChatContent::Parts(parts)) => parts
            .iter()
            .filter_map(|part| match part {
                ChatPart::Text { text } => text_block(text).map(Ok),
                ChatPart::Refusal { .. } => None,
                other => Some(Err(bad(format!("content part `{}` here", other.kind())))),
            })
            .collect(),
    }
}

fn user_blocks(content: Option<&ChatContent>) -> Result<Vec<Value>, TranslateError> {
    let Some(ChatContent::Parts(parts)) = content else {
        return text_blocks(content);
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            ChatPart::Text { text } => blocks.extend(text_block(text)),
            ChatPart::ImageUrl { image_url } => blocks.push(image_block(&image_url.url)?),
            other => {
                let kind = other.kind();
                return Err(bad(format!("content part `{kind}` is not supported")));
            }
        }
    }
    Ok(blocks)
}

/// `data:image/png;base64,...` → `{"image":{"format":"png","source":{"bytes":...}}}`.
fn image_block(url: &str) -> Result<Value, TranslateError> {
    if !url.starts_with("data:") {
        return Err(bad("bedrock takes images only as data: URLs"));
    }
    let (media, bytes) =
        base64_data_url(url).ok_or_else(|| bad("image data URL must be base64"))?;
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
        let input = call
            .function
            .parsed_arguments()
            .map_err(|_| bad(format!("tool call `{}` arguments are not JSON", call.id)))?;
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
    if let Some(max) = request.max_output_tokens() {
        config.insert("maxTokens".into(), max.into());
    }
    if let Some(t) = request.temperature {
        config.insert("temperature".into(), t.into());
    }
    if let Some(p) = request.top_p {
        config.insert("topP".into(), p.into());
    }
    let stops = request.stop_sequences();
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
    let specs = tools
        .iter()
        .map(tool_spec)
        .collect::<Result<Vec<Value>, _>>()?;
    let choice = match &request.tool_choice {
        None => None,
        Some(ChatToolChoice::Mode(s)) if s == "auto" => Some(json!({ "auto": {} })),
        Some(ChatToolChoice::Mode(s)) if s == "required" => Some(json!({ "any": {} })),
        Some(ChatToolChoice::Mode(s)) if s == "none" => {
            if !history_uses_tools {
                return Ok(None);
            }
            None
        }
        Some(ChatToolChoice::Named { function }) => {
            Some(json!({ "tool": { "name": function.name } }))
        }
        Some(_) => return Err(bad("tool_choice is not understood")),
    };
    let mut config = json!({ "tools": specs });
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}

fn tool_spec(tool: &ChatTool) -> Result<Value, TranslateError> {
    let function = tool
        .function
        .as_ref()
        .ok_or_else(|| bad("tool without a `function`"))?;
    let schema = function.parameters.clone().unwrap_or_else(no_parameters);
    let mut spec = json!({ "name": function.name, "inputSchema": { "json": schema } });
    if let Some(description) = function.description.as_deref().filter(|d| !d.is_empty()) {
        spec["description"] = description.into();
    }
    Ok(json!({ "toolSpec": spec }))
}
