//! OpenAI chat-completions request → Anthropic Messages request.
//!
//! System and developer messages become the top-level `system`; tool calls and tool
//! results become `tool_use` / `tool_result` blocks; consecutive turns of one role
//! are merged because Anthropic requires user and assistant turns to alternate.
//! `response_format` has no Anthropic field: it becomes an instruction appended to
//! `system`. `temperature` is clamped to Anthropic's 0..=1, and `top_p` is only sent
//! without a `temperature` (current Claude models reject both). Fields Anthropic has
//! no counterpart for (penalties, seed, logprobs, ...) are dropped.

use serde_json::Value;

use super::wire::{
    Content, ContentBlock, ImageSource, Message, MessagesRequest, Metadata, Role, System, Tool,
    ToolChoice,
};
use crate::provider::chat_request::{
    base64_data_url, no_parameters, push_turn, ChatContent, ChatMessage, ChatPart, ChatRequest,
    ChatTool, ChatToolChoice, ResponseFormat,
};
use crate::provider::TranslateError;

/// `max_tokens` is required by Anthropic; OpenAI clients often leave it out.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

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
    let max_tokens = chat.max_output_tokens().unwrap_or(DEFAULT_MAX_TOKENS);
    let stop_sequences = chat.stop_sequences().to_vec();
    let (system, messages) = conversation(chat.messages.unwrap_or_default())?;
    let system = with_format_instruction(system, chat.response_format.as_ref());
    let tools = tools(chat.tools.unwrap_or_default())?;
    let tool_choice = tool_choice(chat.tool_choice, chat.parallel_tool_calls, &tools)?;
    Ok(MessagesRequest {
        model: model.to_string(),
        max_tokens,
        messages,
        system: (!system.is_empty()).then_some(System::Text(system)),
        temperature: chat.temperature.map(|t| t.clamp(0.0, 1.0)),
        top_p: chat.top_p.filter(|_| chat.temperature.is_none()),
        top_k: None,
        stop_sequences,
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
        // Tool results lead a user turn, as Anthropic requires.
        if let Some((_, blocks)) = turns.last_mut() {
            blocks.sort_by_key(|b| !matches!(b, ContentBlock::ToolResult { .. }));
        }
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
            _ => return Err(TranslateError::Unsupported("this content part type")),
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
    let source = if url.starts_with("data:") {
        let (media_type, data) =
            base64_data_url(url).ok_or_else(|| invalid("image data URL must be base64-encoded"))?;
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
    for call in message.tool_calls.into_iter().flatten() {
        // Anthropic's `input` must be an object.
        let input = match call.function.parsed_arguments() {
            Ok(object @ Value::Object(_)) => object,
            _ => return Err(invalid("tool call arguments must be a JSON object")),
        };
        blocks.push(ContentBlock::ToolUse {
            id: call.id,
            name: call.function.name,
            input,
        });
    }
    Ok(blocks)
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
        .map(|tool| match (tool.kind.as_deref(), tool.function) {
            (Some("function"), Some(function)) => Ok(Tool {
                name: function.name,
                description: function.description,
                input_schema: function.parameters.unwrap_or_else(no_parameters),
            }),
            (None, _) => Err(invalid("tool without a `type`")),
            _ => Err(TranslateError::Unsupported("tools other than functions")),
        })
        .collect()
}

fn tool_choice(
    choice: Option<ChatToolChoice>,
    parallel: Option<bool>,
    tools: &[Tool],
) -> Result<Option<ToolChoice>, TranslateError> {
    let disable = (parallel == Some(false)).then_some(true);
    let choice = match choice {
        Some(ChatToolChoice::Other(_)) => return Err(invalid("tool_choice is not understood")),
        _ if tools.is_empty() => return Ok(None),
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
    let Some(instruction) = format.and_then(ResponseFormat::instruction) else {
        return system;
    };
    if !system.is_empty() {
        system.push_str("\n\n");
    }
    system.push_str(&instruction);
    system
}
