//! Responses API request → the gateway's internal OpenAI chat body, plus the
//! request fields a `response` object echoes back ([`Echo`]).
//!
//! | Responses | chat completions |
//! |---|---|
//! | `model` | `model` (routing reads it exactly as for chat) |
//! | `instructions` | a leading `system` message |
//! | `input` string | one `user` message |
//! | `message` items (user / system / developer / assistant) | messages (`developer` → `system`) |
//! | `input_text` / `output_text` / `refusal` parts | text (assistant parts joined into one string) |
//! | `input_image` (`image_url`: URL or data URL) | `image_url` part |
//! | consecutive `function_call` items | one assistant message with several `tool_calls` (joined to a preceding assistant message) |
//! | `function_call_output` | a `tool` message (text parts joined) |
//! | `reasoning` items | dropped (chat APIs cannot take them back) |
//! | `tools` of type `function` | `function` tools |
//! | `tool_choice` auto / none / required / `{type: function, name}` | same, in chat's shape |
//! | `max_output_tokens` | `max_tokens` |
//! | `text.format` json_object / json_schema | `response_format` |
//! | `text.verbosity` | `verbosity` |
//! | `reasoning.effort` | `reasoning_effort` |
//! | `temperature`, `top_p`, `user`, `parallel_tool_calls` | same names |
//! | `stream` | `stream` plus `stream_options.include_usage` (usage for the final event) |
//!
//! Ignored (harmless through a gateway): `include`, `truncation: "disabled"`,
//! `service_tier`, `metadata` (echoed only), `prompt_cache_key`,
//! `safety_identifier`, `store: false`, `background: false`, `stream_options`,
//! `top_logprobs`, `reasoning.summary`. Everything else that cannot be honoured
//! is a [`RequestError`] naming the field: hosted tools, `file_id` inputs,
//! `item_reference` and other item types, `truncation: "auto"`,
//! `max_tool_calls`, unknown fields. Stateful features are found by
//! [`stateful`], separately, so a pass-through target may one day take them.

use serde_json::{json, Map, Value};

/// Why a Responses request cannot be expressed as a chat request. Every variant
/// reaches the client as a 400 `invalid_request_error` naming the field.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error(transparent)]
    NotUtf8(#[from] crate::wire::body::NotUtf8),
    #[error("request body is not a valid Responses request: {0}")]
    Json(String),
    #[error("`{field}`: {reason}")]
    Field { field: String, reason: String },
    #[error("input[{index}]: item type `{kind}` is not supported by this gateway on a target translated from chat completions (supported: message, function_call, function_call_output, reasoning)")]
    UnsupportedItem { index: usize, kind: String },
    #[error("input[{index}]: content part type `{kind}` is not supported in a `{role}` message")]
    UnsupportedPart {
        index: usize,
        kind: String,
        role: String,
    },
    #[error("tools[{index}]: tool type `{kind}` is not available on a target translated from chat completions; only `function` tools are")]
    HostedTool { index: usize, kind: String },
    #[error("{}", .0.message())]
    Stateful(Stateful),
}

fn field(field: &str, reason: impl Into<String>) -> RequestError {
    RequestError::Field {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// A stateful feature of the Responses API: it needs stored state (responses,
/// conversations, prompts) or a run that outlives the request, which only a
/// target serving the Responses API itself can provide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stateful {
    /// `previous_response_id`; `translated` when the id is one the gateway issued.
    PreviousResponse { translated: bool },
    /// `store: true`.
    Store,
    /// `background: true`.
    Background,
    /// `conversation`.
    Conversation,
    /// `prompt` (a stored prompt template).
    Prompt,
    /// An `item_reference` input item.
    ItemReference { index: usize },
}

impl Stateful {
    /// What the client is told.
    pub fn message(&self) -> String {
        const NEEDS: &str =
            "which needs a target that serves the Responses API itself; this route's targets are translated from chat completions";
        match self {
            Stateful::PreviousResponse { translated: true } => "`previous_response_id` names a response the gateway translated from chat completions; the gateway keeps no state: send the whole conversation in `input` instead".to_string(),
            Stateful::PreviousResponse { translated: false } => format!("`previous_response_id` continues a stored response, {NEEDS}; send the whole conversation in `input` instead"),
            Stateful::Store => format!("`store: true` stores the response, {NEEDS}; send `store: false`"),
            Stateful::Background => format!("`background: true` runs the response in the background, {NEEDS}"),
            Stateful::Conversation => format!("`conversation` reads and writes a stored conversation, {NEEDS}"),
            Stateful::Prompt => format!("`prompt` uses a stored prompt template, {NEEDS}"),
            Stateful::ItemReference { index } => format!("input[{index}]: `item_reference` names a stored item, {NEEDS}"),
        }
    }
}

/// The request fields a `response` object repeats, as the client gave them
/// (defaults filled in as the Responses API reports them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Echo {
    pub fields: Map<String, Value>,
}

/// A Responses request translated: the chat body, what to echo, and whether the
/// client asked for a stream.
#[derive(Debug)]
pub struct Translated {
    pub chat: Vec<u8>,
    pub echo: Echo,
    pub stream: bool,
}

/// Fields read and translated, or ignored as harmless. Anything else is refused.
const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "user",
    "max_output_tokens",
    "text",
    "reasoning",
    "stream",
    "stream_options",
    "include",
    "truncation",
    "service_tier",
    "metadata",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "store",
    "background",
    "top_logprobs",
    // Stateful: found by `stateful`, refused there.
    "previous_response_id",
    "conversation",
    "prompt",
];

fn object(body: &[u8]) -> Result<Map<String, Value>, RequestError> {
    let text = crate::wire::body::utf8(body)?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(RequestError::Json("the body must be a JSON object".into())),
        Err(e) => Err(RequestError::Json(e.to_string())),
    }
}

/// The stateful feature a request uses, if any (the first found). A body that
/// is not a JSON object uses none (`to_chat_body` says what is wrong with it).
pub fn stateful(body: &[u8]) -> Option<Stateful> {
    stateful_in(&object(body).ok()?)
}

fn stateful_in(request: &Map<String, Value>) -> Option<Stateful> {
    let present = |name: &str| request.get(name).is_some_and(|v| !v.is_null());
    if let Some(id) = request.get("previous_response_id").filter(|v| !v.is_null()) {
        let translated = id
            .as_str()
            .is_some_and(|id| id.starts_with(super::ID_PREFIX));
        return Some(Stateful::PreviousResponse { translated });
    }
    if request.get("store") == Some(&Value::Bool(true)) {
        return Some(Stateful::Store);
    }
    if request.get("background") == Some(&Value::Bool(true)) {
        return Some(Stateful::Background);
    }
    if present("conversation") {
        return Some(Stateful::Conversation);
    }
    if present("prompt") {
        return Some(Stateful::Prompt);
    }
    let items = request.get("input").and_then(Value::as_array)?;
    items
        .iter()
        .position(|item| item.get("type").and_then(Value::as_str) == Some("item_reference"))
        .map(|index| Stateful::ItemReference { index })
}

/// Translates a Responses request body into an OpenAI chat body.
pub fn to_chat_body(body: &[u8]) -> Result<Translated, RequestError> {
    let request = object(body)?;
    if let Some(unknown) = request.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(field(
            unknown,
            "this field is not supported by this gateway on a target translated from chat completions",
        ));
    }
    if let Some(feature) = stateful_in(&request) {
        return Err(RequestError::Stateful(feature));
    }
    check_ignored(&request)?;
    let model = match request.get("model") {
        Some(Value::String(model)) => model.clone(),
        _ => return Err(field("model", "a string `model` is required")),
    };
    let stream = match request.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(field("stream", "must be a boolean")),
    };
    let mut chat = Map::new();
    chat.insert("model".into(), model.into());
    chat.insert("messages".into(), Value::Array(messages(&request)?));
    options(&request, &mut chat)?;
    if stream {
        chat.insert("stream".into(), true.into());
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let chat =
        serde_json::to_vec(&Value::Object(chat)).map_err(|e| RequestError::Json(e.to_string()))?;
    Ok(Translated {
        chat,
        echo: echo(&request),
        stream,
    })
}

/// Fields accepted only in their harmless form.
fn check_ignored(request: &Map<String, Value>) -> Result<(), RequestError> {
    match request.get("truncation") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "disabled" => {}
        Some(_) => {
            return Err(field(
                "truncation",
                "only `disabled` is supported on a target translated from chat completions",
            ))
        }
    }
    Ok(())
}

/// The chat messages: `instructions` first, then `input`.
fn messages(request: &Map<String, Value>) -> Result<Vec<Value>, RequestError> {
    let mut messages = Vec::new();
    match request.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(json!({"role": "system", "content": text})),
        Some(_) => return Err(field("instructions", "must be a string")),
    }
    match request.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                push_item(index, item, &mut messages)?;
            }
        }
        None | Some(Value::Null) => return Err(field("input", "`input` is required")),
        Some(_) => return Err(field("input", "must be a string or a list of items")),
    }
    if messages.is_empty() {
        return Err(field("input", "must not be empty"));
    }
    Ok(messages)
}

fn item_field<'a>(index: usize, item: &'a Value, name: &str) -> Result<&'a str, RequestError> {
    item.get(name).and_then(Value::as_str).ok_or_else(|| {
        field(
            &format!("input[{index}].{name}"),
            "a string is required for this item",
        )
    })
}

/// Adds one input item to the chat messages.
fn push_item(index: usize, item: &Value, messages: &mut Vec<Value>) -> Result<(), RequestError> {
    if !item.is_object() {
        return Err(field(
            &format!("input[{index}]"),
            "each item must be an object",
        ));
    }
    let kind = match item.get("type").and_then(Value::as_str) {
        Some(kind) => kind,
        None if item.get("role").is_some() => "message",
        None => {
            return Err(field(
                &format!("input[{index}].type"),
                "an item needs a `type`",
            ))
        }
    };
    match kind {
        "message" => messages.push(message(index, item)?),
        "function_call" => push_call(index, item, messages)?,
        "function_call_output" => messages.push(json!({
            "role": "tool",
            "tool_call_id": item_field(index, item, "call_id")?,
            "content": call_output(index, item)?,
        })),
        // Chat APIs have no way to take reasoning back.
        "reasoning" => {}
        other => {
            return Err(RequestError::UnsupportedItem {
                index,
                kind: other.to_string(),
            })
        }
    }
    Ok(())
}

/// A `function_call` joins the assistant message before it (a model turn's text
/// and its calls, or consecutive calls), else starts one.
fn push_call(index: usize, item: &Value, messages: &mut Vec<Value>) -> Result<(), RequestError> {
    let call = json!({
        "id": item_field(index, item, "call_id")?,
        "type": "function",
        "function": {
            "name": item_field(index, item, "name")?,
            "arguments": item_field(index, item, "arguments")?,
        },
    });
    if let Some(last) = messages.last_mut().filter(|m| m["role"] == "assistant") {
        if let Some(calls) = last.get_mut("tool_calls").and_then(Value::as_array_mut) {
            calls.push(call);
        } else if let Some(last) = last.as_object_mut() {
            last.insert("tool_calls".into(), json!([call]));
        }
        return Ok(());
    }
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
    Ok(())
}

fn call_output(index: usize, item: &Value) -> Result<String, RequestError> {
    match item.get("output") {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                match (kind, part.get("text").and_then(Value::as_str)) {
                    ("input_text" | "output_text", Some(piece)) => text.push_str(piece),
                    _ => {
                        return Err(RequestError::UnsupportedPart {
                            index,
                            kind: kind.to_string(),
                            role: "function_call_output".into(),
                        })
                    }
                }
            }
            Ok(text)
        }
        _ => Err(field(
            &format!("input[{index}].output"),
            "must be a string or a list of text parts",
        )),
    }
}

/// A `message` item as a chat message.
fn message(index: usize, item: &Value) -> Result<Value, RequestError> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some(role @ ("user" | "system" | "assistant")) => role,
        Some("developer") => "system",
        _ => {
            return Err(field(
                &format!("input[{index}].role"),
                "must be one of user, system, developer, assistant",
            ))
        }
    };
    let content = match item.get("content") {
        Some(Value::String(text)) => Value::String(text.clone()),
        Some(Value::Array(parts)) if role == "user" => Value::Array(user_parts(index, parts)?),
        Some(Value::Array(parts)) => Value::String(text_parts(index, role, parts)?),
        _ => {
            return Err(field(
                &format!("input[{index}].content"),
                "must be a string or a list of content parts",
            ))
        }
    };
    Ok(json!({"role": role, "content": content}))
}

fn unsupported(index: usize, kind: &str, role: &str) -> RequestError {
    RequestError::UnsupportedPart {
        index,
        kind: kind.to_string(),
        role: role.to_string(),
    }
}

/// A user message's parts: text and images.
fn user_parts(index: usize, parts: &[Value]) -> Result<Vec<Value>, RequestError> {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "input_text" => {
                let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                    field(
                        &format!("input[{index}].content"),
                        "an `input_text` part needs `text`",
                    )
                })?;
                out.push(json!({"type": "text", "text": text}));
            }
            "input_image" => out.push(image(index, part)?),
            other => return Err(unsupported(index, other, "user")),
        }
    }
    Ok(out)
}

fn image(index: usize, part: &Value) -> Result<Value, RequestError> {
    if part.get("file_id").is_some_and(|v| !v.is_null()) {
        return Err(field(
            &format!("input[{index}].content"),
            "`input_image` with a `file_id` needs the Files API, which a target translated from chat completions does not have; send `image_url` (a URL or a data URL)",
        ));
    }
    let url = part
        .get("image_url")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            field(
                &format!("input[{index}].content"),
                "an `input_image` part needs `image_url`",
            )
        })?;
    let mut image_url = json!({"url": url});
    if let Some(detail) = part.get("detail").and_then(Value::as_str) {
        image_url["detail"] = detail.into();
    }
    Ok(json!({"type": "image_url", "image_url": image_url}))
}

/// A system or assistant message's text parts, joined.
fn text_parts(index: usize, role: &str, parts: &[Value]) -> Result<String, RequestError> {
    let mut text = String::new();
    for part in parts {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        let piece = match kind {
            "input_text" => part.get("text"),
            "output_text" if role == "assistant" => part.get("text"),
            "refusal" if role == "assistant" => part.get("refusal"),
            other => return Err(unsupported(index, other, role)),
        };
        let piece = piece.and_then(Value::as_str).ok_or_else(|| {
            field(
                &format!("input[{index}].content"),
                format!("a `{kind}` part needs its text"),
            )
        })?;
        text.push_str(piece);
    }
    Ok(text)
}

/// Sampling, limits, tools and formats.
fn options(
    request: &Map<String, Value>,
    chat: &mut Map<String, Value>,
) -> Result<(), RequestError> {
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("user", "user"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("max_output_tokens", "max_tokens"),
    ] {
        if let Some(value) = request.get(from).filter(|v| !v.is_null()) {
            chat.insert(to.into(), value.clone());
        }
    }
    if let Some(tools) = request.get("tools").filter(|v| !v.is_null()) {
        chat.insert("tools".into(), Value::Array(self::tools(tools)?));
    }
    if let Some(choice) = request.get("tool_choice").filter(|v| !v.is_null()) {
        chat.insert("tool_choice".into(), tool_choice(choice)?);
    }
    if let Some(text) = request.get("text").filter(|v| !v.is_null()) {
        text_options(text, chat)?;
    }
    if let Some(reasoning) = request.get("reasoning").filter(|v| !v.is_null()) {
        if let Some(effort) = reasoning.get("effort").filter(|v| !v.is_null()) {
            chat.insert("reasoning_effort".into(), effort.clone());
        }
    }
    Ok(())
}

fn tools(tools: &Value) -> Result<Vec<Value>, RequestError> {
    let Some(tools) = tools.as_array() else {
        return Err(field("tools", "must be a list"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (index, tool) in tools.iter().enumerate() {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "function" {
            return Err(RequestError::HostedTool {
                index,
                kind: kind.to_string(),
            });
        }
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return Err(field(
                &format!("tools[{index}].name"),
                "a function tool needs a `name`",
            ));
        };
        let mut function = json!({"name": name});
        for key in ["description", "parameters", "strict"] {
            if let Some(value) = tool.get(key).filter(|v| !v.is_null()) {
                function[key] = value.clone();
            }
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

fn tool_choice(choice: &Value) -> Result<Value, RequestError> {
    if let Some(mode @ ("auto" | "none" | "required")) = choice.as_str() {
        return Ok(mode.into());
    }
    let kind = choice.get("type").and_then(Value::as_str);
    match (kind, choice.get("name").and_then(Value::as_str)) {
        (Some("function"), Some(name)) => Ok(json!({"type": "function", "function": {"name": name}})),
        (Some("function"), None) => Err(field("tool_choice", "a `function` choice needs a `name`")),
        _ => Err(field(
            "tool_choice",
            "only auto, none, required or {\"type\": \"function\", \"name\": ...} are supported on a target translated from chat completions",
        )),
    }
}

/// `text.format` → `response_format`; `text.verbosity` → `verbosity`.
fn text_options(text: &Value, chat: &mut Map<String, Value>) -> Result<(), RequestError> {
    if let Some(verbosity) = text.get("verbosity").filter(|v| !v.is_null()) {
        chat.insert("verbosity".into(), verbosity.clone());
    }
    let Some(format) = text.get("format").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("json_object") => {
            chat.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some("json_schema") => {
            let Some(name) = format.get("name").and_then(Value::as_str) else {
                return Err(field(
                    "text.format.name",
                    "a `json_schema` format needs a `name`",
                ));
            };
            let mut schema = json!({"name": name});
            for key in ["schema", "strict", "description"] {
                if let Some(value) = format.get(key).filter(|v| !v.is_null()) {
                    schema[key] = value.clone();
                }
            }
            chat.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": schema}),
            );
        }
        _ => {
            return Err(field(
                "text.format.type",
                "must be text, json_object or json_schema",
            ))
        }
    }
    Ok(())
}

/// What a `response` object repeats of the request.
fn echo(request: &Map<String, Value>) -> Echo {
    let mut fields = Map::new();
    let defaults = [
        ("instructions", Value::Null),
        ("tools", json!([])),
        ("tool_choice", "auto".into()),
        ("parallel_tool_calls", true.into()),
        ("temperature", Value::Null),
        ("top_p", Value::Null),
        ("max_output_tokens", Value::Null),
        ("text", json!({"format": {"type": "text"}})),
        ("metadata", json!({})),
        ("truncation", "disabled".into()),
        ("reasoning", json!({"effort": null, "summary": null})),
        ("user", Value::Null),
    ];
    for (name, default) in defaults {
        let value = request.get(name).filter(|v| !v.is_null()).cloned();
        fields.insert(name.into(), value.unwrap_or(default));
    }
    Echo { fields }
}
