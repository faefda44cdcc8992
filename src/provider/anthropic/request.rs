//! OpenAI chat-completions request → Anthropic Messages request.
//!
//! System and developer messages become the top-level `system`; tool calls and tool
//! results become `tool_use` / `tool_result` blocks; consecutive turns of one role
//! are merged because Anthropic requires user and assistant turns to alternate.
//! `response_format` has no Anthropic field: it becomes an instruction appended to
//! `system`. `temperature` is clamped to Anthropic's 0..=1, and `top_p` is only sent
//! without a `temperature` (current Claude models reject both). Fields Anthropic has
//! no counterpart for (penalties, seed, logprobs, ...) are dropped.

use serde::Deserialize;
use serde_json::Value;

use super::wire::{
    Content, ContentBlock, ImageSource, Message, MessagesRequest, Metadata, Role, System, Tool,
    ToolChoice,
};
use crate::provider::TranslateError;

/// `max_tokens` is required by Anthropic; OpenAI clients often leave it out.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
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
    stream: Option<bool>,
    #[serde(default)]
    tools: Vec<ChatTool>,
    #[serde(default)]
    tool_choice: Option<ChatToolChoice>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    response_format: Option<ResponseFormat>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    n: Option<u64>,
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
    content: Option<ChatContent>,
    #[serde(default)]
    tool_calls: Vec<ChatToolCall>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ChatContent {
    Text(String),
    Parts(Vec<ChatPart>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ChatPart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: ImageUrl,
    },
    /// Audio, files and other parts Anthropic cannot take as-is.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct ImageUrl {
    url: String,
}

#[derive(Deserialize)]
struct ChatToolCall {
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
struct ChatTool {
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
enum ChatToolChoice {
    Mode(String),
    Named { function: NamedFunction },
}

#[derive(Deserialize)]
struct NamedFunction {
    name: String,
}

#[derive(Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    json_schema: Option<JsonSchemaFormat>,
}

#[derive(Deserialize)]
struct JsonSchemaFormat {
    #[serde(default)]
    schema: Option<Value>,
}

fn invalid(message: impl Into<String>) -> TranslateError {
    TranslateError::Request(message.into())
}

/// Translates an OpenAI chat-completions body for the Anthropic model `model`.
pub fn translate(body: &[u8], model: &str) -> Result<MessagesRequest, TranslateError> {
    let chat: ChatRequest = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    if chat.n.is_some_and(|n| n > 1) {
        return Err(TranslateError::Unsupported(
            "more than one choice (`n` > 1)",
        ));
    }
    let (system, messages) = conversation(chat.messages)?;
    let system = with_format_instruction(system, chat.response_format.as_ref());
    let tools = tools(chat.tools)?;
    let tool_choice = tool_choice(chat.tool_choice, chat.parallel_tool_calls, &tools)?;
    Ok(MessagesRequest {
        model: model.to_string(),
        max_tokens: chat
            .max_completion_tokens
            .or(chat.max_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS),
        messages,
        system: (!system.is_empty()).then_some(System::Text(system)),
        temperature: chat.temperature.map(|t| t.clamp(0.0, 1.0)),
        top_p: chat.top_p.filter(|_| chat.temperature.is_none()),
        top_k: None,
        stop_sequences: match chat.stop {
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(list)) => list,
            None => Vec::new(),
        },
        stream: chat.stream.filter(|s| *s),
        tools,
        tool_choice,
        metadata: chat.user.map(|user| Metadata {
            user_id: Some(user),
        }),
    })
}

/// Splits the system prompt off and builds alternating turns.
fn conversation(chat: Vec<ChatMessage>) -> Result<(String, Vec<Message>), TranslateError> {
    let mut system = Vec::new();
    let mut turns: Vec<(Role, Vec<ContentBlock>)> = Vec::new();
    for message in chat {
        let (role, blocks) = match message.role.as_str() {
            "system" | "developer" => {
                system.push(text_of(message.content)?);
                continue;
            }
            "user" => (Role::User, blocks_of(message.content)?),
            "assistant" => (Role::Assistant, assistant_blocks(message)?),
            "tool" => (Role::User, vec![tool_result(message)?]),
            other => return Err(invalid(format!("unknown message role `{other}`"))),
        };
        push_turn(&mut turns, role, blocks);
    }
    trim_prefill(&mut turns);
    let messages = turns
        .into_iter()
        .filter(|(_, blocks)| !blocks.is_empty())
        .map(|(role, blocks)| Message {
            role,
            content: Content::Blocks(blocks),
        })
        .collect();
    Ok((system.join("\n\n"), messages))
}

/// Appends blocks to the last turn when it has the same role, else opens a turn.
/// Tool results lead a user turn, as Anthropic requires.
fn push_turn(turns: &mut Vec<(Role, Vec<ContentBlock>)>, role: Role, blocks: Vec<ContentBlock>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, existing)) if *last == role => {
            existing.extend(blocks);
            existing.sort_by_key(|b| !matches!(b, ContentBlock::ToolResult { .. }));
        }
        _ => turns.push((role, blocks)),
    }
}

/// Anthropic rejects a final assistant (prefill) turn ending in whitespace.
fn trim_prefill(turns: &mut [(Role, Vec<ContentBlock>)]) {
    let Some((Role::Assistant, blocks)) = turns.last_mut() else {
        return;
    };
    if let Some(ContentBlock::Text { text }) = blocks.last_mut() {
        text.truncate(text.trim_end().len());
        if text.is_empty() {
            blocks.pop();
        }
    }
}

fn text_of(content: Option<ChatContent>) -> Result<String, TranslateError> {
    match content {
        None => Ok(String::new()),
        Some(ChatContent::Text(text)) => Ok(text),
        Some(ChatContent::Parts(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for part in parts {
                match part {
                    ChatPart::Text { text } => texts.push(text),
                    _ => return Err(invalid("only text parts are accepted here")),
                }
            }
            Ok(texts.join("\n"))
        }
    }
}

fn blocks_of(content: Option<ChatContent>) -> Result<Vec<ContentBlock>, TranslateError> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(ChatContent::Text(text)) => return Ok(text_block(text).into_iter().collect()),
        Some(ChatContent::Parts(parts)) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            ChatPart::Text { text } => blocks.extend(text_block(text)),
            ChatPart::ImageUrl { image_url } => blocks.push(image_block(&image_url.url)?),
            ChatPart::Other => return Err(TranslateError::Unsupported("this content part type")),
        }
    }
    Ok(blocks)
}

/// Anthropic rejects empty text blocks; empty text carries nothing anyway.
fn text_block(text: String) -> Option<ContentBlock> {
    (!text.is_empty()).then_some(ContentBlock::Text { text })
}

/// `data:<media>;base64,<data>` → base64 source; `http(s)://` → url source.
fn image_block(url: &str) -> Result<ContentBlock, TranslateError> {
    let source = if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest
            .split_once(";base64,")
            .ok_or_else(|| invalid("image data URL must be base64-encoded"))?;
        ImageSource::Base64 {
            media_type: media_type.to_string(),
            data: data.to_string(),
        }
    } else if url.starts_with("https://") || url.starts_with("http://") {
        ImageSource::Url {
            url: url.to_string(),
        }
    } else {
        return Err(invalid("image_url must be a data: or http(s) URL"));
    };
    Ok(ContentBlock::Image { source })
}

fn assistant_blocks(message: ChatMessage) -> Result<Vec<ContentBlock>, TranslateError> {
    let mut blocks = blocks_of(message.content)?;
    for call in message.tool_calls {
        blocks.push(ContentBlock::ToolUse {
            id: call.id,
            name: call.function.name,
            input: arguments(&call.function.arguments)?,
        });
    }
    Ok(blocks)
}

/// A tool call's JSON-string arguments as the object Anthropic's `input` must be.
fn arguments(text: &str) -> Result<Value, TranslateError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(Value::Object(map)),
        _ => Err(invalid("tool call arguments must be a JSON object")),
    }
}

fn tool_result(message: ChatMessage) -> Result<ContentBlock, TranslateError> {
    let tool_use_id = message
        .tool_call_id
        .ok_or_else(|| invalid("tool message without tool_call_id"))?;
    let text = text_of(message.content)?;
    Ok(ContentBlock::ToolResult {
        tool_use_id,
        content: (!text.is_empty()).then_some(Content::Text(text)),
        is_error: None,
    })
}

fn tools(chat: Vec<ChatTool>) -> Result<Vec<Tool>, TranslateError> {
    chat.into_iter()
        .map(|tool| match (tool.kind.as_str(), tool.function) {
            ("function", Some(function)) => Ok(Tool {
                name: function.name,
                description: function.description,
                input_schema: function
                    .parameters
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
            }),
            _ => Err(TranslateError::Unsupported("tools other than functions")),
        })
        .collect()
}

fn tool_choice(
    choice: Option<ChatToolChoice>,
    parallel: Option<bool>,
    tools: &[Tool],
) -> Result<Option<ToolChoice>, TranslateError> {
    if tools.is_empty() {
        return Ok(None);
    }
    let disable = (parallel == Some(false)).then_some(true);
    let choice = match choice {
        None if disable.is_none() => return Ok(None),
        None => ToolChoice::Auto {
            disable_parallel_tool_use: disable,
        },
        Some(ChatToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => ToolChoice::Auto {
                disable_parallel_tool_use: disable,
            },
            "required" => ToolChoice::Any {
                disable_parallel_tool_use: disable,
            },
            "none" => ToolChoice::None,
            other => return Err(invalid(format!("unknown tool_choice `{other}`"))),
        },
        Some(ChatToolChoice::Named { function }) => ToolChoice::Tool {
            name: function.name,
            disable_parallel_tool_use: disable,
        },
    };
    Ok(Some(choice))
}

/// JSON output modes become an instruction at the end of the system prompt.
fn with_format_instruction(mut system: String, format: Option<&ResponseFormat>) -> String {
    let instruction = match format {
        Some(f) if f.kind == "json_object" => {
            "Respond only with a single valid JSON object, without any other text.".to_string()
        }
        Some(f) if f.kind == "json_schema" => {
            let schema = f
                .json_schema
                .as_ref()
                .and_then(|s| s.schema.as_ref())
                .map(Value::to_string)
                .unwrap_or_else(|| "{}".into());
            format!("Respond only with a single JSON value that conforms to this JSON schema, without any other text:\n{schema}")
        }
        _ => return system,
    };
    if !system.is_empty() {
        system.push_str("\n\n");
    }
    system.push_str(&instruction);
    system
}
