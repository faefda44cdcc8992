//! Anthropic Messages request → the gateway's internal OpenAI chat body.
//!
//! Field by field (Anthropic's Messages API reference → OpenAI chat completions):
//!
//! | Anthropic | OpenAI |
//! |---|---|
//! | `model` | `model` (routing reads it exactly as for chat) |
//! | `system` (string or text blocks) | a leading `system` message (blocks joined with `\n`) |
//! | `messages[].content` string | `content` string |
//! | `text` / `image` blocks | `content` parts `text` / `image_url` (base64 → `data:` URL) |
//! | assistant `tool_use` blocks | assistant `tool_calls` (`input` → JSON `arguments`) |
//! | user `tool_result` blocks | `tool` messages, placed before the user's other content |
//! | `max_tokens`, `temperature`, `top_p`, `stream` | same names |
//! | `stop_sequences` | `stop` |
//! | `tools` (custom: name, description, input_schema) | `function` tools (`parameters`) |
//! | `tool_choice` auto / any / tool / none | `"auto"` / `"required"` / named function / `"none"` |
//! | `tool_choice.disable_parallel_tool_use` | `parallel_tool_calls: false` |
//!
//! Dropped (no OpenAI equivalent, or meaningless through a gateway): `metadata`,
//! `top_k`, `thinking`, `service_tier`, `cache_control` on blocks, and `thinking` /
//! `redacted_thinking` blocks in earlier assistant turns. A `tool_result` marked
//! `is_error` is sent with its content prefixed by `Error: `. Server tools (a tool
//! with a `type` other than `custom`) and other block kinds (`document`, ...) are
//! rejected with a 400 rather than silently lost.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Why an Anthropic request cannot be expressed as an OpenAI chat request.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error(transparent)]
    NotUtf8(#[from] crate::wire::body::NotUtf8),
    #[error("request body is not a valid Messages request: {0}")]
    Json(String),
    #[error("`messages` must not be empty")]
    NoMessages,
    #[error("messages[{index}]: content block type `{kind}` is not supported by this gateway (supported: text, image, tool_use, tool_result)")]
    UnsupportedBlock { index: usize, kind: String },
    #[error("messages[{index}]: `{kind}` blocks are only allowed in {role} messages")]
    MisplacedBlock {
        index: usize,
        kind: &'static str,
        role: &'static str,
    },
    #[error("messages[{index}]: image source type `{kind}` is not supported (use base64 or url)")]
    UnsupportedImage { index: usize, kind: String },
    #[error("tools[{index}]: server tool type `{kind}` cannot be routed through this gateway; only custom tools are supported")]
    ServerTool { index: usize, kind: String },
    #[error("`tool_choice` type `{0}` is not one of auto, any, tool, none")]
    ToolChoice(String),
    #[error("`tool_choice` of type `tool` needs a `name`")]
    ToolChoiceName,
}

// ---- Anthropic request (what the client sends) ----

#[derive(Deserialize)]
struct MessagesRequest<'a> {
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    system: Option<System>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(default)]
    tool_choice: Option<ToolChoice>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum System {
    Text(String),
    Blocks(Vec<SystemBlock>),
}

#[derive(Deserialize)]
struct SystemBlock {
    #[serde(default)]
    text: String,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Role {
    User,
    Assistant,
}

#[derive(Deserialize)]
struct Message {
    role: Role,
    content: Content,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<serde_json::Value>),
}

/// One content block. Parsed from a `Value` so an unknown `type` can be named.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    Image {
        source: ImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: serde_json::Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<ToolResultContent>,
        #[serde(default)]
        is_error: bool,
    },
    Thinking {},
    RedactedThinking {},
}

#[derive(Deserialize)]
struct ImageSource {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ToolResultContent {
    Text(String),
    Blocks(Vec<serde_json::Value>),
}

#[derive(Deserialize)]
struct Tool<'a> {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(borrow, default)]
    input_schema: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

// ---- OpenAI chat request (what the attempt loop routes) ----

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<ChatMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<Vec<String>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<FunctionTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
}

#[derive(Serialize, Debug, PartialEq)]
struct ChatMessage {
    role: &'static str,
    /// `null` only on an assistant message that carries just tool calls.
    content: Option<ChatContent>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<String>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(untagged)]
enum ChatContent {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Serialize, Debug, PartialEq)]
struct ImageUrl {
    url: String,
}

#[derive(Serialize, Debug, PartialEq)]
struct ToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCall,
}

#[derive(Serialize, Debug, PartialEq)]
struct FunctionCall {
    name: String,
    arguments: String,
}

#[derive(Serialize)]
struct FunctionTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionDef<'a>,
}

#[derive(Serialize)]
struct FunctionDef<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a RawValue>,
}

impl ChatMessage {
    fn new(role: &'static str, content: ChatContent) -> ChatMessage {
        ChatMessage {
            role,
            content: Some(content),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// Translates an Anthropic Messages request body into an OpenAI chat body.
pub fn to_chat_body(body: &[u8]) -> Result<Vec<u8>, RequestError> {
    let text = crate::wire::body::utf8(body)?;
    let request: MessagesRequest =
        serde_json::from_str(text).map_err(|e| RequestError::Json(e.to_string()))?;
    if request.messages.is_empty() {
        return Err(RequestError::NoMessages);
    }
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    match request.system {
        Some(System::Text(text)) => {
            messages.push(ChatMessage::new("system", ChatContent::Text(text)))
        }
        Some(System::Blocks(blocks)) if !blocks.is_empty() => {
            let text: Vec<String> = blocks.into_iter().map(|b| b.text).collect();
            messages.push(ChatMessage::new(
                "system",
                ChatContent::Text(text.join("\n")),
            ));
        }
        Some(System::Blocks(_)) | None => {}
    }
    for (index, message) in request.messages.into_iter().enumerate() {
        translate_message(index, message, &mut messages)?;
    }
    let tools = request
        .tools
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(index, tool)| function_tool(index, tool))
        .collect::<Result<Vec<_>, _>>()?;
    let (tool_choice, parallel_tool_calls) = match request.tool_choice {
        Some(choice) => {
            let parallel = choice
                .disable_parallel_tool_use
                .filter(|disable| *disable && !tools.is_empty())
                .map(|_| false);
            (Some(tool_choice(choice)?), parallel)
        }
        None => (None, None),
    };
    let chat = ChatRequest {
        model: &request.model,
        messages,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        stop: request.stop_sequences.filter(|s| !s.is_empty()),
        stream: request.stream.unwrap_or(false),
        tools,
        tool_choice,
        parallel_tool_calls,
    };
    serde_json::to_vec(&chat).map_err(|e| RequestError::Json(e.to_string()))
}

fn function_tool<'a>(index: usize, tool: &'a Tool<'a>) -> Result<FunctionTool<'a>, RequestError> {
    if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
        return Err(RequestError::ServerTool {
            index,
            kind: kind.to_string(),
        });
    }
    Ok(FunctionTool {
        kind: "function",
        function: FunctionDef {
            name: &tool.name,
            description: tool.description.as_deref(),
            parameters: tool.input_schema,
        },
    })
}

fn tool_choice(choice: ToolChoice) -> Result<serde_json::Value, RequestError> {
    Ok(match choice.kind.as_str() {
        "auto" => "auto".into(),
        "any" => "required".into(),
        "none" => "none".into(),
        "tool" => {
            let name = choice.name.ok_or(RequestError::ToolChoiceName)?;
            serde_json::json!({ "type": "function", "function": { "name": name } })
        }
        other => return Err(RequestError::ToolChoice(other.to_string())),
    })
}

fn parse_block(index: usize, value: serde_json::Value) -> Result<Block, RequestError> {
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("(missing)")
        .to_string();
    serde_json::from_value(value).map_err(|e| {
        let known = [
            "text",
            "image",
            "tool_use",
            "tool_result",
            "thinking",
            "redacted_thinking",
        ];
        if known.contains(&kind.as_str()) {
            RequestError::Json(format!("messages[{index}]: `{kind}` block: {e}"))
        } else {
            RequestError::UnsupportedBlock { index, kind }
        }
    })
}

fn image_part(index: usize, source: ImageSource) -> Result<Part, RequestError> {
    let url = match (source.kind.as_str(), source.data, source.url) {
        ("base64", Some(data), _) => format!(
            "data:{};base64,{data}",
            source.media_type.as_deref().unwrap_or("image/png")
        ),
        ("url", _, Some(url)) => url,
        (kind, _, _) => {
            return Err(RequestError::UnsupportedImage {
                index,
                kind: kind.to_string(),
            })
        }
    };
    Ok(Part::ImageUrl {
        image_url: ImageUrl { url },
    })
}

/// Text parts alone become one string (what every OpenAI-compatible server accepts);
/// anything with an image stays a parts array.
fn content_of(parts: Vec<Part>) -> ChatContent {
    if parts.iter().all(|p| matches!(p, Part::Text { .. })) {
        let texts: Vec<String> = parts
            .into_iter()
            .filter_map(|p| match p {
                Part::Text { text } => Some(text),
                Part::ImageUrl { .. } => None,
            })
            .collect();
        ChatContent::Text(texts.join("\n"))
    } else {
        ChatContent::Parts(parts)
    }
}

fn translate_message(
    index: usize,
    message: Message,
    out: &mut Vec<ChatMessage>,
) -> Result<(), RequestError> {
    let role = match message.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    let blocks = match message.content {
        Content::Text(text) => {
            out.push(ChatMessage::new(role, ChatContent::Text(text)));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    let mut tool_calls = Vec::new();
    for value in blocks {
        match parse_block(index, value)? {
            Block::Text { text } => parts.push(Part::Text { text }),
            Block::Image { source } => parts.push(image_part(index, source)?),
            Block::ToolUse { id, name, input } if message.role == Role::Assistant => {
                tool_calls.push(tool_call(id, name, input));
            }
            Block::ToolUse { .. } => {
                return Err(RequestError::MisplacedBlock {
                    index,
                    kind: "tool_use",
                    role: "assistant",
                })
            }
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } if message.role == Role::User => {
                let (text, images) = tool_result_content(index, content)?;
                // Images have no place in an OpenAI tool message: they ride in the
                // user message that follows the tool results.
                parts.extend(images);
                out.push(tool_message(tool_use_id, text, is_error));
            }
            Block::ToolResult { .. } => {
                return Err(RequestError::MisplacedBlock {
                    index,
                    kind: "tool_result",
                    role: "user",
                })
            }
            Block::Thinking {} | Block::RedactedThinking {} => {}
        }
    }
    out.extend(turn(message.role, parts, tool_calls));
    Ok(())
}

/// The message a turn's remaining parts (and an assistant's tool calls) make, if
/// anything is left of it.
fn turn(role: Role, parts: Vec<Part>, tool_calls: Vec<ToolCall>) -> Option<ChatMessage> {
    match role {
        Role::Assistant => {
            let content = (!parts.is_empty()).then(|| content_of(parts));
            (content.is_some() || !tool_calls.is_empty()).then_some(ChatMessage {
                role: "assistant",
                content,
                tool_calls,
                tool_call_id: None,
            })
        }
        Role::User => (!parts.is_empty()).then(|| ChatMessage::new("user", content_of(parts))),
    }
}

/// An assistant's `tool_use` block as an OpenAI tool call (arguments as JSON text).
fn tool_call(id: String, name: String, input: serde_json::Value) -> ToolCall {
    let input = if input.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        input
    };
    ToolCall {
        id,
        kind: "function",
        function: FunctionCall {
            name,
            arguments: input.to_string(),
        },
    }
}

/// A user's `tool_result` block as an OpenAI tool message.
fn tool_message(tool_use_id: String, text: String, is_error: bool) -> ChatMessage {
    let text = if is_error {
        format!("Error: {text}")
    } else {
        text
    };
    ChatMessage {
        role: "tool",
        content: Some(ChatContent::Text(text)),
        tool_calls: Vec::new(),
        tool_call_id: Some(tool_use_id),
    }
}

/// A tool result's text (text blocks joined) and any images it carried.
fn tool_result_content(
    index: usize,
    content: Option<ToolResultContent>,
) -> Result<(String, Vec<Part>), RequestError> {
    let blocks = match content {
        None => return Ok((String::new(), Vec::new())),
        Some(ToolResultContent::Text(text)) => return Ok((text, Vec::new())),
        Some(ToolResultContent::Blocks(blocks)) => blocks,
    };
    let mut texts = Vec::new();
    let mut images = Vec::new();
    for value in blocks {
        match parse_block(index, value)? {
            Block::Text { text } => texts.push(text),
            Block::Image { source } => images.push(image_part(index, source)?),
            _ => {
                return Err(RequestError::UnsupportedBlock {
                    index,
                    kind: "tool_result content other than text or image".into(),
                })
            }
        }
    }
    Ok((texts.join("\n"), images))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn translate(request: Value) -> Value {
        let body = to_chat_body(request.to_string().as_bytes()).expect("translates");
        serde_json::from_slice(&body).expect("json")
    }

    #[test]
    fn simple_request() {
        let v = translate(json!({
            "model": "chat", "max_tokens": 100, "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hi"}],
            "temperature": 0.5, "top_p": 0.9, "top_k": 5, "stop_sequences": ["END"],
            "metadata": {"user_id": "u"}, "stream": true
        }));
        assert_eq!(
            v,
            json!({
                "model": "chat",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"}
                ],
                "max_tokens": 100, "temperature": 0.5, "top_p": 0.9,
                "stop": ["END"], "stream": true
            })
        );
    }

    #[test]
    fn system_blocks_and_images() {
        let v = translate(json!({
            "model": "m", "max_tokens": 1,
            "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
            ]}]
        }));
        assert_eq!(
            v["messages"][0],
            json!({"role": "system", "content": "a\nb"})
        );
        assert_eq!(
            v["messages"][1]["content"],
            json!([
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAA"}},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
            ])
        );
        assert!(v.get("stream").is_none());
    }

    #[test]
    fn tool_round_trip() {
        let v = translate(json!({
            "model": "m", "max_tokens": 1,
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "15C"}]},
                    {"type": "text", "text": "Thanks"}
                ]}
            ]
        }));
        assert_eq!(
            v["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
        );
        assert_eq!(
            v["tool_choice"],
            json!({"type": "function", "function": {"name": "get_weather"}})
        );
        assert_eq!(v["parallel_tool_calls"], false);
        assert_eq!(
            v["messages"][1],
            json!({"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]})
        );
        assert_eq!(
            v["messages"][2],
            json!({"role": "tool", "content": "15C", "tool_call_id": "toolu_1"})
        );
        assert_eq!(
            v["messages"][3],
            json!({"role": "user", "content": "Thanks"})
        );
    }

    #[test]
    fn tool_only_assistant_has_null_content() {
        let v = translate(json!({
            "model": "m", "max_tokens": 1,
            "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": true}]}
            ]
        }));
        assert_eq!(v["messages"][0]["content"], Value::Null);
        assert_eq!(v["messages"][1]["content"], "Error: boom");
        assert_eq!(v["messages"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn tool_choices() {
        for (choice, expected) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
        ] {
            let v = translate(json!({"model": "m", "max_tokens": 1, "tool_choice": choice,
                "messages": [{"role": "user", "content": "x"}]}));
            assert_eq!(v["tool_choice"], expected);
            assert!(v.get("parallel_tool_calls").is_none());
        }
    }

    #[test]
    fn rejections() {
        let err = |v: Value| to_chat_body(v.to_string().as_bytes()).unwrap_err();
        // Invalid UTF-8 in a field the translation drops is refused all the same.
        let not_utf8 = b"{\"model\":\"m\",\"metadata\":{\"user_id\":\"\xc3\"},\"messages\":[]}";
        assert!(matches!(
            to_chat_body(not_utf8),
            Err(RequestError::NotUtf8(_))
        ));
        assert!(matches!(
            err(json!({"messages": []})),
            RequestError::Json(_)
        ));
        assert_eq!(
            err(json!({"model": "m", "messages": []})),
            RequestError::NoMessages
        );
        assert_eq!(
            err(
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]})
            ),
            RequestError::UnsupportedBlock {
                index: 0,
                kind: "document".into()
            }
        );
        assert!(matches!(
            err(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
            ),
            RequestError::ServerTool { index: 0, .. }
        ));
        assert!(matches!(
            err(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "tool"}})
            ),
            RequestError::ToolChoiceName
        ));
        assert!(matches!(
            err(
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]})
            ),
            RequestError::MisplacedBlock { .. }
        ));
        assert!(matches!(
            err(json!({"model": "m", "messages": [{"role": "system", "content": "x"}]})),
            RequestError::Json(_)
        ));
    }
}
