//! The Anthropic Messages dialect (`POST {prefix}/v1/messages`): request reading,
//! the whole `message` object and its SSE event stream.
//!
//! `max_tokens` is required (400 `invalid_request_error` without it). `system` is
//! ignored; message content is a string or blocks whose `text` fields count.
//!
//! Tool rules: a `tool_choice` of `{"type":"any"}` or `{"type":"tool","name":N}`
//! with non-empty `tools` forces a call whose input is `{"text":"w0 ... "}`, see
//! [`super::tool`]. Otherwise, when the request has a non-empty `tools` list and the
//! last message is a user message whose text contains "use a tool", the answer
//! calls the first tool with input `{}`. Either way the answer is a single
//! `tool_use` block (id `toolu_mock_{n}`, `stop_reason` `tool_use`) instead of text.
//! Streamed, that block is sent as `content_block_start` (`tool_use`, input `{}`)
//! and `input_json_delta`s (one with `partial_json` `"{}"` for the "use a tool"
//! rule).
//!
//! Stream events, in order (fault `after_chunks` counts them): `message_start`,
//! `content_block_start`, `ping`, one `content_block_delta` per word (per argument
//! chunk, `input_json_delta`, for a tool call), `content_block_stop`,
//! `message_delta` (`stop_reason`, `usage.output_tokens`), `message_stop`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::answer::{last_user_text, Answer, Continuation, Turn};
use super::dialect::{write_anthropic_error, BodyError};
use super::tool::{self, ToolCall};
use super::wire::{push_json_str, push_u64};

#[derive(Deserialize)]
struct MessagesRequest<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default, borrow)]
    messages: Vec<Message<'a>>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(default, borrow)]
    role: Cow<'a, str>,
    #[serde(default)]
    content: Option<Value>,
}

/// A planned Messages answer: text words, or a tool call (`answer.tool`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub answer: Answer,
}

/// One event of the stream, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    MessageStart,
    BlockStart,
    Ping,
    Delta(usize),
    BlockStop,
    MessageDelta,
    MessageStop,
}

impl Reply {
    /// Reads a Messages request and plans its answer of `words` words under `mode`.
    pub(crate) fn read(
        body: &[u8],
        words: usize,
        id: u64,
        mode: Continuation,
    ) -> Result<Reply, BodyError> {
        let req: MessagesRequest<'_> = serde_json::from_slice(body)?;
        if req.max_tokens.is_none() {
            return Err(BodyError::Field("max_tokens: Field required"));
        }
        let turns: Vec<Turn<'_>> = req
            .messages
            .iter()
            .map(|m| Turn::from_json(&m.role, &m.content))
            .collect();
        let model = req
            .model
            .map_or_else(|| String::from("mock-model"), Cow::into_owned);
        let mut answer = Answer::for_turns(&turns, mode, model, words, id, body.len())?;
        let tools = req.tools.as_deref();
        answer.tool = match tool::forced_anthropic(tools, req.tool_choice.as_ref()) {
            Some(name) => Some(ToolCall { name, words }),
            None => {
                let wants_tool = last_user_text(&turns).is_some_and(|t| t.contains("use a tool"));
                tools
                    .and_then(<[Value]>::first)
                    .filter(|_| wants_tool)
                    .map(|t| ToolCall {
                        name: t
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("tool")
                            .into(),
                        words: 0,
                    })
            }
        };
        answer.stream = req.stream.unwrap_or(false);
        Ok(Reply { answer })
    }

    /// The event that carries argument chunk `k` of a tool call, if there is one.
    pub(crate) fn argument_event(&self, k: usize) -> Option<usize> {
        let call = self.answer.tool.as_ref()?;
        (k < call.pieces()).then_some(3 + k)
    }

    fn stop_reason(&self) -> &'static str {
        if self.answer.tool.is_some() {
            "tool_use"
        } else {
            "end_turn"
        }
    }

    fn output_tokens(&self) -> u64 {
        self.answer.completion_tokens()
    }

    fn deltas(&self) -> usize {
        self.answer.pieces()
    }

    /// Appends the `tool_use` block, with its whole input or (`whole` false, as
    /// `content_block_start` has it) input `{}`.
    fn push_tool_block(&self, out: &mut Vec<u8>, call: &ToolCall, whole: bool) {
        out.extend_from_slice(b"{\"type\":\"tool_use\",\"id\":\"toolu_mock_");
        push_u64(out, self.answer.id);
        out.extend_from_slice(b"\",\"name\":");
        push_json_str(out, &call.name);
        out.extend_from_slice(b",\"input\":");
        if whole {
            call.push_input(out);
        } else {
            out.extend_from_slice(b"{}");
        }
        out.push(b'}');
    }

    fn push_usage(&self, out: &mut Vec<u8>, output_tokens: u64) {
        out.extend_from_slice(b"\"usage\":{\"input_tokens\":");
        push_u64(out, self.answer.prompt_tokens);
        out.extend_from_slice(b",\"output_tokens\":");
        push_u64(out, output_tokens);
        out.push(b'}');
    }

    /// Appends `message` fields up to `content` (exclusive).
    fn push_message_head(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":\"msg_mock_");
        push_u64(out, self.answer.id);
        out.extend_from_slice(b"\",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        push_json_str(out, &self.answer.model);
    }

    /// Appends the whole `message` object.
    pub(crate) fn write_message(&self, out: &mut Vec<u8>, name: &str) {
        self.push_message_head(out);
        out.extend_from_slice(b",\"content\":[");
        match &self.answer.tool {
            Some(call) => self.push_tool_block(out, call, true),
            None => {
                out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
                self.answer.push_content(out, name);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b"],\"stop_reason\":\"");
        out.extend_from_slice(self.stop_reason().as_bytes());
        out.extend_from_slice(b"\",\"stop_sequence\":null,");
        self.push_usage(out, self.output_tokens());
        out.push(b'}');
    }

    fn event(&self, n: usize) -> Option<Event> {
        let deltas = self.deltas();
        match n {
            0 => Some(Event::MessageStart),
            1 => Some(Event::BlockStart),
            2 => Some(Event::Ping),
            n if n < 3 + deltas => Some(Event::Delta(n - 3)),
            n if n == 3 + deltas => Some(Event::BlockStop),
            n if n == 4 + deltas => Some(Event::MessageDelta),
            n if n == 5 + deltas => Some(Event::MessageStop),
            _ => None,
        }
    }

    /// Number of stream events; `no_done` leaves out `message_stop`.
    pub(crate) fn event_count(&self, no_done: bool) -> usize {
        6 + self.deltas() - usize::from(no_done)
    }

    /// Appends stream event `n` (`event: ...\ndata: ...\n\n`); nothing past the end.
    pub(crate) fn write_event(&self, out: &mut Vec<u8>, n: usize, name: &str) {
        let Some(event) = self.event(n) else { return };
        let (kind, data): (&str, &[u8]) = match event {
            Event::MessageStart => ("message_start", b"{\"type\":\"message_start\",\"message\":"),
            Event::BlockStart => (
                "content_block_start",
                b"{\"type\":\"content_block_start\",\"index\":0,\"content_block\":",
            ),
            Event::Ping => ("ping", b"{\"type\":\"ping\"}"),
            Event::Delta(_) => (
                "content_block_delta",
                b"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":",
            ),
            Event::BlockStop => (
                "content_block_stop",
                b"{\"type\":\"content_block_stop\",\"index\":0}",
            ),
            Event::MessageDelta => ("message_delta", b"{\"type\":\"message_delta\",\"delta\":"),
            Event::MessageStop => ("message_stop", b"{\"type\":\"message_stop\"}"),
        };
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(data);
        match event {
            Event::MessageStart => {
                self.push_message_head(out);
                out.extend_from_slice(
                    b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,",
                );
                self.push_usage(out, 1);
                out.extend_from_slice(b"}}");
            }
            Event::BlockStart => {
                match &self.answer.tool {
                    Some(call) => self.push_tool_block(out, call, false),
                    None => out.extend_from_slice(b"{\"type\":\"text\",\"text\":\"\"}"),
                }
                out.push(b'}');
            }
            Event::Delta(k) => {
                if let Some(call) = &self.answer.tool {
                    out.extend_from_slice(b"{\"type\":\"input_json_delta\",\"partial_json\":\"");
                    call.push_piece(out, k);
                    out.extend_from_slice(b"\"}}");
                } else {
                    out.extend_from_slice(b"{\"type\":\"text_delta\",\"text\":\"");
                    self.answer.push_piece(out, name, k);
                    out.extend_from_slice(b"\"}}");
                }
            }
            Event::MessageDelta => {
                out.extend_from_slice(b"{\"stop_reason\":\"");
                out.extend_from_slice(self.stop_reason().as_bytes());
                out.extend_from_slice(b"\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":");
                push_u64(out, self.output_tokens());
                out.extend_from_slice(b"}}");
            }
            Event::Ping | Event::BlockStop | Event::MessageStop => {}
        }
        out.extend_from_slice(b"\n\n");
    }
}

#[derive(Deserialize)]
struct CountRequest {
    #[serde(default)]
    messages: Option<Vec<Value>>,
}

/// Answers `POST {prefix}/v1/messages/count_tokens`: `{"input_tokens":N}`, N
/// counted from the body like the Messages route's `usage.input_tokens` (one
/// token per 4 bytes). `messages` is required.
pub(crate) fn write_count_tokens(out: &mut Vec<u8>, body: &[u8]) -> Result<(), BodyError> {
    let req: CountRequest = serde_json::from_slice(body)?;
    if req.messages.is_none() {
        return Err(BodyError::Field("messages: Field required"));
    }
    out.extend_from_slice(b"{\"input_tokens\":");
    push_u64(out, (body.len() as u64).div_ceil(4));
    out.push(b'}');
    Ok(())
}

/// Appends the `event: error` that ends a stream with `overloaded_error`.
pub(crate) fn write_error_event(out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: error\ndata: ");
    write_anthropic_error(out, "overloaded_error", "Overloaded");
    out.extend_from_slice(b"\n\n");
}

/// Appends a `content_block_delta` event whose data is not JSON.
pub(crate) fn write_malformed(out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: content_block_delta\ndata: {not json\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &str) -> Result<Reply, BodyError> {
        Reply::read(body.as_bytes(), 3, 9, Continuation::Honest)
    }

    fn events(r: &Reply) -> Vec<(String, Value)> {
        (0..r.event_count(false))
            .map(|n| {
                let mut out = Vec::new();
                r.write_event(&mut out, n, "a");
                let text = String::from_utf8(out).expect("utf8");
                let (kind, data) = text
                    .trim_end()
                    .split_once("\ndata: ")
                    .expect("event and data lines");
                let kind = kind.strip_prefix("event: ").expect("event line");
                (
                    kind.to_string(),
                    serde_json::from_str(data).expect("data JSON"),
                )
            })
            .collect()
    }

    #[test]
    fn text_stream_matches_message() {
        let r =
            reply(r#"{"model":"c","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#)
                .expect("valid");
        let mut whole = Vec::new();
        r.write_message(&mut whole, "a");
        let whole: Value = serde_json::from_slice(&whole).expect("message JSON");
        assert_eq!(whole["content"][0]["text"], "Hello from a: w0 w1 w2 ");
        let events = events(&r);
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let text: String = events
            .iter()
            .filter_map(|(_, v)| v["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, "Hello from a: w0 w1 w2 ");
        assert!(events.iter().all(|(k, v)| v["type"] == k.as_str()));
        assert_eq!(events[7].1["usage"]["output_tokens"], 3);
    }

    #[test]
    fn tool_rule_and_required_fields() {
        let r = reply(r#"{"max_tokens":5,"tools":[{"name":"get_weather","input_schema":{}}],"messages":[{"role":"user","content":[{"type":"text","text":"please use a tool"}]}]}"#)
            .expect("valid");
        assert_eq!(
            r.answer.tool.as_ref().map(|c| c.name.as_str()),
            Some("get_weather")
        );
        let events = events(&r);
        assert_eq!(events[1].1["content_block"]["name"], "get_weather");
        assert_eq!(events[3].1["delta"]["partial_json"], "{}");
        assert_eq!(events[5].1["delta"]["stop_reason"], "tool_use");
        let no_tools =
            reply(r#"{"max_tokens":5,"messages":[{"role":"user","content":"use a tool"}]}"#);
        assert_eq!(no_tools.expect("valid").answer.tool, None);
        assert!(matches!(
            reply(r#"{"messages":[]}"#),
            Err(BodyError::Field(_))
        ));
        assert!(matches!(reply("{"), Err(BodyError::Json(_))));
    }

    #[test]
    fn forced_tool_call_streams_input_json_deltas() {
        let r = reply(r#"{"max_tokens":5,"stream":true,"tools":[{"name":"get_weather","input_schema":{}}],"tool_choice":{"type":"any"},"messages":[{"role":"user","content":"hi"}]}"#)
            .expect("valid");
        let events = events(&r);
        assert_eq!(
            events[1].1["content_block"],
            serde_json::json!({"type":"tool_use","id":"toolu_mock_9","name":"get_weather","input":{}})
        );
        let pieces: Vec<&str> = events
            .iter()
            .filter_map(|(_, v)| v["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(pieces, [r#"{"text":""#, "w0 ", "w1 ", "w2 ", r#""}"#]);
        assert!(events[3..8]
            .iter()
            .all(|(k, v)| k == "content_block_delta" && v["delta"]["type"] == "input_json_delta"));
        assert_eq!(events[9].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            (r.argument_event(0), r.argument_event(4)),
            (Some(3), Some(7))
        );
        assert_eq!(r.argument_event(5), None);

        let named = reply(r#"{"max_tokens":5,"tools":[{"name":"a"},{"name":"b"}],"tool_choice":{"type":"tool","name":"b"},"messages":[{"role":"user","content":"hi"}]}"#)
            .expect("valid");
        let mut whole = Vec::new();
        named.write_message(&mut whole, "a");
        let whole: Value = serde_json::from_slice(&whole).expect("message JSON");
        assert_eq!(
            whole["content"],
            serde_json::json!([{"type":"tool_use","id":"toolu_mock_9","name":"b","input":{"text":"w0 w1 w2 "}}])
        );
        assert_eq!(whole["stop_reason"], "tool_use");
        let text =
            reply(r#"{"max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
                .expect("valid");
        assert_eq!(text.argument_event(0), None);
    }

    #[test]
    fn continuation_modes_apply() {
        let body = r#"{"max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"text","text":"Hello from a: w0 "}]},{"role":"user","content":"Begin your reply by repeating, exactly, its last words: «a: w0» — then continue."}]}"#;
        let echo = Reply::read(body.as_bytes(), 3, 9, Continuation::EchoHonouring).expect("valid");
        let mut whole = Vec::new();
        echo.write_message(&mut whole, "b");
        let whole: Value = serde_json::from_slice(&whole).expect("message JSON");
        assert_eq!(whole["content"][0]["text"], "a: w0w1 w2 ");
        let prefill = r#"{"max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"w0"}]}"#;
        assert!(matches!(
            Reply::read(prefill.as_bytes(), 3, 9, Continuation::RejectPrefill),
            Err(BodyError::Prefill)
        ));
    }
}
