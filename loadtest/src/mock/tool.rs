//! The forced tool call: a request that makes the model call a function is answered
//! with one call instead of text, deterministic like the text answer.
//!
//! - OpenAI, Azure: non-empty `tools` and `tool_choice` `"required"` (calls the first
//!   tool's `function.name`) or `{"type":"function","function":{"name":N}}` (calls
//!   `N`). Call id `call_mock_{n}`, `finish_reason` `tool_calls`.
//! - Anthropic: non-empty `tools` and `tool_choice` `{"type":"any"}` (the first
//!   tool's `name`) or `{"type":"tool","name":N}`; `stop_reason` `tool_use`. (The
//!   older rule, a last user message containing "use a tool", still calls the first
//!   tool with input `{}` in one chunk, see `anthropic.rs`.)
//!
//! The arguments are `{"text":"w0 w1 ... w{n-1} "}` (`n` = `stream_chunks`),
//! streamed in `n + 2` argument chunks: `{"text":"`, one per word (`w{i} `), `"}`.
//! OpenAI sends them as `delta.tool_calls[0].function.arguments` after a chunk with
//! the call's `id`, `type` and `function.name` (arguments `""`); Anthropic as
//! `input_json_delta`s after a `content_block_start` `tool_use` block. The
//! `tool_call_cut` fault counts these argument chunks.

use serde_json::Value;

use super::wire::push_u64;

/// A single function call answered instead of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ToolCall {
    pub name: String,
    /// Words in the arguments `{"text":"w0 ... "}`; 0 means arguments `{}` in one
    /// chunk (Anthropic's "use a tool" rule).
    pub words: usize,
}

impl ToolCall {
    /// Number of argument chunks.
    pub(crate) fn pieces(&self) -> usize {
        if self.words == 0 {
            1
        } else {
            self.words + 2
        }
    }

    /// Appends argument chunk `k`, escaped for a JSON string (without quotes).
    pub(crate) fn push_piece(&self, out: &mut Vec<u8>, k: usize) {
        if self.words == 0 {
            out.extend_from_slice(b"{}");
        } else if k == 0 {
            out.extend_from_slice(br#"{\"text\":\""#);
        } else if k <= self.words {
            out.push(b'w');
            push_u64(out, (k - 1) as u64);
            out.push(b' ');
        } else {
            out.extend_from_slice(br#"\"}"#);
        }
    }

    /// Appends the whole arguments as a quoted JSON string.
    pub(crate) fn push_arguments(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        for k in 0..self.pieces() {
            self.push_piece(out, k);
        }
        out.push(b'"');
    }

    /// Appends the arguments as a JSON object (Anthropic's `input`).
    pub(crate) fn push_input(&self, out: &mut Vec<u8>) {
        if self.words == 0 {
            out.extend_from_slice(b"{}");
            return;
        }
        out.extend_from_slice(b"{\"text\":\"");
        for i in 0..self.words {
            out.push(b'w');
            push_u64(out, i as u64);
            out.push(b' ');
        }
        out.extend_from_slice(b"\"}");
    }
}

/// The function an OpenAI request forces (`tool_choice` `"required"` or a named
/// function, with non-empty `tools`).
pub(crate) fn forced_openai(tools: Option<&[Value]>, choice: Option<&Value>) -> Option<String> {
    let first = tools?.first()?;
    let name = match choice? {
        Value::String(mode) if mode == "required" => first
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or("tool"),
        named @ Value::Object(_) => named.pointer("/function/name").and_then(Value::as_str)?,
        _ => return None,
    };
    Some(name.to_string())
}

/// The function a Responses API request forces: `tool_choice` `"required"` (the
/// first function tool's `name`) or `{"type":"function","name":N}`, with
/// function tools in `tools` (flat `{"type":"function","name":..}` entries; the
/// chat form `function.name` is read too).
pub(crate) fn forced_responses(tools: Option<&[Value]>, choice: Option<&Value>) -> Option<String> {
    let first = tools?
        .iter()
        .find(|t| t.get("type").and_then(Value::as_str) == Some("function"))?;
    let name_of = |v: &Value| {
        v.get("name")
            .or_else(|| v.pointer("/function/name"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match choice? {
        Value::String(mode) if mode == "required" => {
            Some(name_of(first).unwrap_or_else(|| String::from("tool")))
        }
        named @ Value::Object(_)
            if named.get("type").and_then(Value::as_str) == Some("function") =>
        {
            name_of(named)
        }
        _ => None,
    }
}

/// The tool an Anthropic request forces (`tool_choice` `{"type":"any"}` or
/// `{"type":"tool","name":N}`, with non-empty `tools`).
pub(crate) fn forced_anthropic(tools: Option<&[Value]>, choice: Option<&Value>) -> Option<String> {
    let first = tools?.first()?;
    let choice = choice?;
    let name = match choice.get("type").and_then(Value::as_str)? {
        "any" => first.get("name").and_then(Value::as_str).unwrap_or("tool"),
        "tool" => choice.get("name").and_then(Value::as_str)?,
        _ => return None,
    };
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn arguments(call: &ToolCall) -> String {
        let mut out = Vec::new();
        call.push_arguments(&mut out);
        serde_json::from_slice(&out).expect("a JSON string")
    }

    #[test]
    fn arguments_concatenate_to_json() {
        let call = ToolCall {
            name: "f".into(),
            words: 3,
        };
        assert_eq!(call.pieces(), 5);
        let args = arguments(&call);
        assert_eq!(args, r#"{"text":"w0 w1 w2 "}"#);
        let mut input = Vec::new();
        call.push_input(&mut input);
        assert_eq!(input, args.as_bytes());
        let empty = ToolCall {
            name: "f".into(),
            words: 0,
        };
        assert_eq!((empty.pieces(), arguments(&empty)), (1, "{}".to_string()));
    }

    #[test]
    fn forcing_choices() {
        let tools = [json!({"type":"function","function":{"name":"lookup"}})];
        let named = json!({"type":"function","function":{"name":"other"}});
        let required = json!("required");
        assert_eq!(
            forced_openai(Some(&tools), Some(&required)).as_deref(),
            Some("lookup")
        );
        assert_eq!(
            forced_openai(Some(&tools), Some(&named)).as_deref(),
            Some("other")
        );
        for choice in [json!("auto"), json!("none"), json!({"type":"function"})] {
            assert_eq!(forced_openai(Some(&tools), Some(&choice)), None, "{choice}");
        }
        assert_eq!(forced_openai(Some(&tools), None), None);
        assert_eq!(forced_openai(Some(&[]), Some(&required)), None);
        assert_eq!(forced_openai(None, Some(&required)), None);

        let flat = [
            json!({"type":"web_search"}),
            json!({"type":"function","name":"get_weather","parameters":{}}),
        ];
        assert_eq!(
            forced_responses(Some(&flat), Some(&required)).as_deref(),
            Some("get_weather")
        );
        let pick = json!({"type":"function","name":"other"});
        assert_eq!(
            forced_responses(Some(&flat), Some(&pick)).as_deref(),
            Some("other")
        );
        for choice in [json!("auto"), json!({"type":"web_search"})] {
            assert_eq!(
                forced_responses(Some(&flat), Some(&choice)),
                None,
                "{choice}"
            );
        }
        assert_eq!(forced_responses(Some(&flat[..1]), Some(&required)), None);

        let tools = [json!({"name":"get_weather","input_schema":{}})];
        let any = json!({"type":"any"});
        let tool = json!({"type":"tool","name":"t"});
        assert_eq!(
            forced_anthropic(Some(&tools), Some(&any)).as_deref(),
            Some("get_weather")
        );
        assert_eq!(
            forced_anthropic(Some(&tools), Some(&tool)).as_deref(),
            Some("t")
        );
        assert_eq!(
            forced_anthropic(Some(&tools), Some(&json!({"type":"auto"}))),
            None
        );
        assert_eq!(forced_anthropic(None, Some(&any)), None);
    }
}
