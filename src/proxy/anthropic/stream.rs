//! OpenAI chunk events → Anthropic Messages stream events, one relayed chunk at a
//! time, written as they arrive.
//!
//! The event order is the Messages API's: `message_start` (on the first chunk the
//! client sees), then per content block `content_block_start`, its
//! `content_block_delta`s (`text_delta`, or `input_json_delta` for a tool call's
//! argument fragments) and `content_block_stop`; at the end `message_delta` (stop
//! reason and usage) and `message_stop`. Text is one `text` block; each OpenAI tool
//! call becomes its own `tool_use` block with the next index. Usage arrives after
//! the finish chunk in OpenAI streams, so `message_delta` is written at `[DONE]`
//! with the usage the relay recorded. Only choice 0 is translated (the Messages API
//! has no `n`). A failure after commit is an `event: error` (see [`error_event`]).

use serde::{Deserialize, Serialize};

use super::response::{message_id, stop_reason, MessageUsage};
use crate::http::sse::write_event;
use crate::wire::Usage;

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// The content block the client has open.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    Text { index: u32 },
    Tool { call: u32, index: u32 },
}

/// State of one client stream being translated; lives as long as the client's
/// stream, across continuations spliced into it.
#[derive(Debug, Default)]
pub struct EventTranslator {
    started: bool,
    open: Option<Open>,
    next_index: u32,
    /// OpenAI tool-call index → Anthropic block index of every tool block started.
    tools: Vec<(u32, u32)>,
    stop_reason: Option<&'static str>,
    stopped: bool,
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: StartMessage<'a>,
}

#[derive(Serialize)]
struct StartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    content: [(); 0],
    model: &'a str,
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: MessageUsage,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: StartBlock<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Empty,
    },
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: DeltaBody<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DeltaBody<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct Indexed {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: DeltaUsage,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct DeltaUsage {
    #[serde(skip_serializing_if = "Option::is_none")]
    input_tokens: Option<u64>,
    output_tokens: u64,
}

#[derive(Serialize)]
struct Typed {
    #[serde(rename = "type")]
    kind: &'static str,
}

fn event<T: Serialize>(frame: &mut Vec<u8>, name: &str, value: &T) {
    // These shapes hold only strings and numbers: serialising cannot fail.
    let data = serde_json::to_string(value).unwrap_or_default();
    write_event(frame, Some(name), &data);
}

impl EventTranslator {
    /// Appends to `frame` the Anthropic events for one relayed OpenAI chunk (its
    /// `data`). Data that is not a chunk adds nothing.
    pub fn chunk(&mut self, data: &str, frame: &mut Vec<u8>) {
        let Ok(chunk) = serde_json::from_str::<Chunk>(data) else {
            return;
        };
        if !self.started {
            self.start(
                chunk.id.as_deref().unwrap_or(""),
                chunk.model.as_deref().unwrap_or(""),
                chunk.usage,
                frame,
            );
        }
        let Some(choice) = chunk.choices.into_iter().find(|c| c.index == 0) else {
            return;
        };
        if let Some(delta) = choice.delta {
            for text in [delta.content, delta.refusal].into_iter().flatten() {
                if !text.is_empty() {
                    self.text(&text, frame);
                }
            }
            for call in delta.tool_calls.into_iter().flatten() {
                self.tool_call(call, frame);
            }
        }
        if let Some(reason) = choice.finish_reason {
            self.stop_reason = Some(stop_reason(Some(&reason)));
            self.close(frame);
        }
    }

    /// Appends the end of the message: the open block's stop, `message_delta` with
    /// the stop reason and `usage`, and `message_stop`. Idempotent.
    pub fn done(&mut self, usage: Option<Usage>, frame: &mut Vec<u8>) {
        if self.stopped {
            return;
        }
        if !self.started {
            self.start("", "", None, frame);
        }
        self.close(frame);
        self.stopped = true;
        let delta = MessageDelta {
            kind: "message_delta",
            delta: StopDelta {
                stop_reason: self.stop_reason.unwrap_or("end_turn"),
                stop_sequence: None,
            },
            usage: DeltaUsage {
                input_tokens: usage.map(|u| u.prompt_tokens),
                output_tokens: usage.map_or(0, |u| u.completion_tokens),
            },
        };
        event(frame, "message_delta", &delta);
        event(
            frame,
            "message_stop",
            &Typed {
                kind: "message_stop",
            },
        );
    }

    fn start(&mut self, id: &str, model: &str, usage: Option<Usage>, frame: &mut Vec<u8>) {
        self.started = true;
        let id = message_id(id);
        let start = MessageStart {
            kind: "message_start",
            message: StartMessage {
                id: &id,
                kind: "message",
                role: "assistant",
                content: [],
                model,
                stop_reason: None,
                stop_sequence: None,
                usage: MessageUsage {
                    input_tokens: usage.map_or(0, |u| u.prompt_tokens),
                    output_tokens: 0,
                },
            },
        };
        event(frame, "message_start", &start);
    }

    fn open(&mut self, open: Open, block: StartBlock<'_>, frame: &mut Vec<u8>) {
        self.close(frame);
        let index = match open {
            Open::Text { index } | Open::Tool { index, .. } => index,
        };
        self.next_index = index + 1;
        self.open = Some(open);
        let start = BlockStart {
            kind: "content_block_start",
            index,
            content_block: block,
        };
        event(frame, "content_block_start", &start);
    }

    fn close(&mut self, frame: &mut Vec<u8>) {
        if let Some(open) = self.open.take() {
            let index = match open {
                Open::Text { index } | Open::Tool { index, .. } => index,
            };
            event(
                frame,
                "content_block_stop",
                &Indexed {
                    kind: "content_block_stop",
                    index,
                },
            );
        }
    }

    fn text(&mut self, text: &str, frame: &mut Vec<u8>) {
        let index = match self.open {
            Some(Open::Text { index }) => index,
            _ => {
                let index = self.next_index;
                self.open(Open::Text { index }, StartBlock::Text { text: "" }, frame);
                index
            }
        };
        let delta = BlockDelta {
            kind: "content_block_delta",
            index,
            delta: DeltaBody::TextDelta { text },
        };
        event(frame, "content_block_delta", &delta);
    }

    fn tool_call(&mut self, call: ToolCallDelta, frame: &mut Vec<u8>) {
        let (name, arguments) = match call.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let known = self
            .tools
            .iter()
            .find(|(c, _)| *c == call.index)
            .map(|(_, i)| *i);
        let index = match known {
            Some(index) => index,
            None => {
                let index = self.next_index;
                let id = call
                    .id
                    .unwrap_or_else(|| format!("toolu_{:016x}", fastrand::u64(..)));
                let name = name.unwrap_or_default();
                self.tools.push((call.index, index));
                self.open(
                    Open::Tool {
                        call: call.index,
                        index,
                    },
                    StartBlock::ToolUse {
                        id: &id,
                        name: &name,
                        input: Empty {},
                    },
                    frame,
                );
                index
            }
        };
        if let Some(partial_json) = arguments.as_deref().filter(|a| !a.is_empty()) {
            let delta = BlockDelta {
                kind: "content_block_delta",
                index,
                delta: DeltaBody::InputJsonDelta { partial_json },
            };
            event(frame, "content_block_delta", &delta);
        }
    }
}

/// The `error` event that ends a client stream after an upstream failure; the
/// Anthropic SDKs raise it as an `APIStatusError`.
pub fn error_event(reason: &str, frame: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct ErrorEvent<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        error: ErrorBody<'a>,
    }
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        message: &'a str,
    }
    let message = format!("the upstream stream failed after the response started: {reason}");
    event(
        frame,
        "error",
        &ErrorEvent {
            kind: "error",
            error: ErrorBody {
                kind: "api_error",
                message: &message,
            },
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// (event name, data) of every event in `frame`.
    fn events(frame: &[u8]) -> Vec<(String, Value)> {
        let text = String::from_utf8_lossy(frame);
        text.split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let mut name = String::new();
                let mut data = String::new();
                for line in e.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                (name, serde_json::from_str(&data).unwrap_or(Value::Null))
            })
            .collect()
    }

    fn names(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn text_stream() {
        let mut t = EventTranslator::default();
        let mut frame = Vec::new();
        for data in [
            r#"{"id":"chatcmpl-7","model":"gpt","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"chatcmpl-7","model":"gpt","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"id":"chatcmpl-7","model":"gpt","choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"id":"chatcmpl-7","model":"gpt","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
        ] {
            t.chunk(data, &mut frame);
        }
        t.done(
            Some(Usage {
                prompt_tokens: 4,
                completion_tokens: 2,
            }),
            &mut frame,
        );
        t.done(None, &mut frame);
        let events = events(&frame);
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            events[0].1,
            json!({"type": "message_start", "message": {"id": "msg_7", "type": "message", "role": "assistant",
                "content": [], "model": "gpt", "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}})
        );
        assert_eq!(
            events[1].1,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            events[2].1,
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}})
        );
        assert_eq!(
            events[4].1,
            json!({"type": "content_block_stop", "index": 0})
        );
        assert_eq!(
            events[5].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
                "usage": {"input_tokens": 4, "output_tokens": 2}})
        );
        assert_eq!(events[6].1, json!({"type": "message_stop"}));
    }

    #[test]
    fn tool_call_stream() {
        let mut t = EventTranslator::default();
        let mut frame = Vec::new();
        for data in [
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Let me check."}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"weather","arguments":""}}]}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"time","arguments":"{}"}}]}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            "not json",
        ] {
            t.chunk(data, &mut frame);
        }
        t.done(None, &mut frame);
        let events = events(&frame);
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            events[4].1,
            json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}}})
        );
        assert_eq!(
            events[5].1["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"city\":"})
        );
        assert_eq!(events[8].1["index"], 2);
        assert_eq!(events[8].1["content_block"]["id"], "call_b");
        assert_eq!(events[11].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[11].1["usage"], json!({"output_tokens": 0}));
    }

    #[test]
    fn error_event_shape() {
        let mut frame = Vec::new();
        error_event("reset", &mut frame);
        let events = events(&frame);
        assert_eq!(events[0].0, "error");
        assert_eq!(events[0].1["type"], "error");
        assert_eq!(events[0].1["error"]["type"], "api_error");
        assert!(events[0].1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("reset")));
    }
}
