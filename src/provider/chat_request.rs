//! The OpenAI chat request as the translating kinds read it.
//!
//! Anthropic, Bedrock and Gemini each turn this one shape into their own request;
//! their mapping stays in their own modules. Every field is optional here (each kind
//! refuses what it cannot express), and parts, tools and tool choices of a shape
//! none of them knows are kept as [`ChatPart::Other`] / [`ChatToolChoice::Other`]
//! so that each kind can word its own refusal.

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

/// The chat request fields the translating kinds use.
#[derive(Deserialize)]
pub(crate) struct ChatRequest {
    /// `None` when the request has none (Bedrock refuses that; the others read
    /// it as an empty conversation). `null` is refused like any non-list.
    #[serde(default, deserialize_with = "present")]
    pub messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub tools: Option<Vec<ChatTool>>,
    #[serde(default)]
    pub tool_choice: Option<ChatToolChoice>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub n: Option<u64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub seed: Option<i64>,
}

impl ChatRequest {
    /// The output token limit: `max_completion_tokens`, else the older `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The stop sequences as a list (none when `stop` is absent).
    pub fn stop_sequences(&self) -> &[String] {
        self.stop.as_ref().map_or(&[], Stop::as_slice)
    }
}

/// A field that, when present, must hold a `T` (`null` included in what is refused).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `stop`: one sequence or a list.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Stop::One(one) => std::slice::from_ref(one),
            Stop::Many(many) => many,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<ChatContent>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ChatToolCall>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum ChatContent {
    Text(String),
    Parts(Vec<ChatPart>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ChatPart {
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
    /// A part of another type (files, ...), or one lacking what its type needs.
    #[serde(untagged)]
    Other {
        #[serde(rename = "type")]
        kind: String,
    },
}

impl ChatPart {
    /// The part's `type`, for error messages.
    pub fn kind(&self) -> &str {
        match self {
            ChatPart::Text { .. } => "text",
            ChatPart::Refusal { .. } => "refusal",
            ChatPart::ImageUrl { .. } => "image_url",
            ChatPart::InputAudio { .. } => "input_audio",
            ChatPart::Other { kind } => kind,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ImageUrl {
    pub url: String,
}

#[derive(Deserialize)]
pub(crate) struct InputAudio {
    pub data: String,
    pub format: String,
}

#[derive(Deserialize)]
pub(crate) struct ChatToolCall {
    pub id: String,
    pub function: FunctionCall,
}

#[derive(Deserialize)]
pub(crate) struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

impl FunctionCall {
    /// The JSON-string `arguments` parsed back to JSON; blank ones are `{}`.
    pub fn parsed_arguments(&self) -> serde_json::Result<Value> {
        let arguments = self.arguments.trim();
        if arguments.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_str(arguments)
    }
}

#[derive(Deserialize)]
pub(crate) struct ChatTool {
    /// `"function"` for function tools; absent means the kind does not check it.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub function: Option<FunctionDef>,
}

#[derive(Deserialize)]
pub(crate) struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// The parameters schema of a function declared without one.
pub(crate) fn no_parameters() -> Value {
    json!({"type": "object", "properties": {}})
}

/// `tool_choice`: a mode (`auto`, `none`, `required`) or a named function.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum ChatToolChoice {
    Mode(String),
    Named {
        function: NamedFunction,
    },
    /// Any other JSON value.
    Other(IgnoredAny),
}

#[derive(Deserialize)]
pub(crate) struct NamedFunction {
    pub name: String,
}

#[derive(Deserialize)]
pub(crate) struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub json_schema: Option<JsonSchemaFormat>,
}

#[derive(Deserialize)]
pub(crate) struct JsonSchemaFormat {
    #[serde(default)]
    pub schema: Option<Value>,
}

impl ResponseFormat {
    /// The instruction that asks for the format, for kinds with no field for it
    /// (Anthropic, Bedrock's Converse): `None` for plain text.
    pub(crate) fn instruction(&self) -> Option<String> {
        match self.kind.as_str() {
            "json_object" => {
                Some("Respond only with a single valid JSON object, without any other text.".into())
            }
            "json_schema" => {
                let schema = self
                    .json_schema
                    .as_ref()
                    .and_then(|s| s.schema.as_ref())
                    .map_or_else(|| "{}".into(), Value::to_string);
                Some(format!("Respond only with a single JSON value that conforms to this JSON schema, without any other text:\n{schema}"))
            }
            _ => None,
        }
    }
}

/// `data:<media type>;base64,<data>` as (media type, base64 data); `None` for
/// other URLs and data URLs that are not base64.
pub(crate) fn base64_data_url(url: &str) -> Option<(&str, &str)> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    Some((meta.strip_suffix(";base64")?, data))
}

/// Appends `blocks` as a turn of `role`, or to the last turn when it has the
/// same role: the translated formats want user and assistant turns to alternate.
/// Nothing is appended for no blocks.
pub(crate) fn push_turn<R: PartialEq, B>(turns: &mut Vec<(R, Vec<B>)>, role: R, blocks: Vec<B>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, existing)) if *last == role => existing.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(value: Value) -> ChatPart {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn parts_of_unknown_or_malformed_type_keep_their_type() {
        assert!(
            matches!(part(json!({"type": "text", "text": "a"})), ChatPart::Text { text } if text == "a")
        );
        assert_eq!(part(json!({"type": "file", "file": {}})).kind(), "file");
        assert!(
            matches!(part(json!({"type": "image_url"})), ChatPart::Other { kind } if kind == "image_url")
        );
        assert!(serde_json::from_value::<ChatPart>(json!({"text": "a"})).is_err());
    }

    #[test]
    fn tool_choice_forms() {
        let choice = |v| serde_json::from_value::<ChatToolChoice>(v).unwrap();
        assert!(matches!(choice(json!("auto")), ChatToolChoice::Mode(m) if m == "auto"));
        assert!(matches!(
            choice(json!({"type": "function", "function": {"name": "f"}})),
            ChatToolChoice::Named { function } if function.name == "f"
        ));
        assert!(matches!(
            choice(json!({"function": {}})),
            ChatToolChoice::Other(_)
        ));
        assert!(matches!(choice(json!(5)), ChatToolChoice::Other(_)));
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            base64_data_url("data:image/png;base64,iVBO"),
            Some(("image/png", "iVBO"))
        );
        assert_eq!(base64_data_url("data:text/plain,hello"), None);
        assert_eq!(base64_data_url("https://x/y.png"), None);
    }

    #[test]
    fn messages_may_be_missing_but_not_null() {
        let request = |v| serde_json::from_value::<ChatRequest>(v);
        assert!(request(json!({})).unwrap().messages.is_none());
        assert!(request(json!({"messages": []})).unwrap().messages.is_some());
        assert!(request(json!({"messages": null})).is_err());
    }

    #[test]
    fn stop_and_token_limit() {
        let request = |v| serde_json::from_value::<ChatRequest>(v).unwrap();
        assert_eq!(request(json!({"stop": "END"})).stop_sequences(), ["END"]);
        assert_eq!(
            request(json!({"stop": ["a", "b"]})).stop_sequences(),
            ["a", "b"]
        );
        assert!(request(json!({})).stop_sequences().is_empty());
        let both = request(json!({"max_tokens": 10, "max_completion_tokens": 800}));
        assert_eq!(both.max_output_tokens(), Some(800));
        assert_eq!(
            request(json!({"max_tokens": 10})).max_output_tokens(),
            Some(10)
        );
    }

    #[test]
    fn turns_merge_when_the_role_repeats() {
        let mut turns = Vec::new();
        push_turn(&mut turns, "user", vec![1]);
        push_turn(&mut turns, "user", vec![2]);
        push_turn(&mut turns, "assistant", Vec::<i32>::new());
        push_turn(&mut turns, "assistant", vec![3]);
        assert_eq!(turns, [("user", vec![1, 2]), ("assistant", vec![3])]);
    }
}
