//! The OpenAI Responses API (`POST /v1/responses`, Azure `.../openai/v1/responses`):
//! request reading, the whole `response` object and its typed SSE event stream,
//! with the same words (or the same forced tool call) as the chat route.
//!
//! Input is a string or a list of items (messages whose content is a string or
//! `input_text` parts, `function_call`, `function_call_output`); the continuation
//! rules of `answer.rs` apply to the messages. Response ids are
//! `resp_mock_{n}_{tag}` (`tag`: 8 hex digits, random per mock process), so a
//! `previous_response_id` is accepted only by the mock that issued it (see
//! `plan.rs`). Items are `msg_mock_{n}`, or `fc_mock_{n}` with call id
//! `call_mock_{n}` for a function call.
//!
//! Stream events (`event: {type}` + `data:` JSON with that `type` and a
//! `sequence_number` equal to the event's index; fault `after_chunks` counts them):
//!
//! - text: `response.created`, `response.in_progress`, `response.output_item.added`,
//!   `response.content_part.added`, one `response.output_text.delta` per word,
//!   `response.output_text.done`, `response.content_part.done`,
//!   `response.output_item.done`, `response.completed` — word `k` is event `4 + k`;
//! - function call: `response.created`, `response.in_progress`,
//!   `response.output_item.added`, one `response.function_call_arguments.delta` per
//!   argument chunk, `response.function_call_arguments.done`,
//!   `response.output_item.done`, `response.completed` — chunk `k` is event `3 + k`.
//!
//! No `[DONE]` follows (the real API sends none); `no_done` leaves out
//! `response.completed`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::answer::{last_user_text, text_of, Answer, Continuation, Role, Turn};
use super::dialect::BodyError;
use super::tool::{self, ToolCall};
use super::wire::{push_json_str, push_u64};

/// The event index of text word `k` in a Responses stream (for stream faults).
pub fn after_words(k: usize) -> usize {
    TEXT_HEAD + k
}

/// Events before the first text delta.
const TEXT_HEAD: usize = 4;
/// Events before the first argument delta of a function call.
const TOOL_HEAD: usize = 3;

#[derive(Deserialize)]
struct ResponsesRequest<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    instructions: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
}

/// A planned Responses answer: text words, or a function call (`answer.tool`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub answer: Answer,
    /// The `previous_response_id` asked for, echoed.
    pub previous: Option<String>,
    pub store: bool,
    pub max_output_tokens: Option<u64>,
    pub instructions: Option<String>,
    /// The issuing mock's tag (see the module docs).
    pub tag: u32,
    /// The text of the last input message, when it is a user's.
    pub last_user: Option<String>,
}

/// One event of the stream, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Created,
    InProgress,
    ItemAdded,
    PartAdded,
    /// Text piece or argument chunk `k`.
    Delta(usize),
    /// `output_text.done`, or `function_call_arguments.done`.
    DeltasDone,
    PartDone,
    ItemDone,
    Completed,
}

const TEXT_TAIL: [Event; 4] = [
    Event::DeltasDone,
    Event::PartDone,
    Event::ItemDone,
    Event::Completed,
];
const TOOL_TAIL: [Event; 3] = [Event::DeltasDone, Event::ItemDone, Event::Completed];

/// The conversation turns of a Responses `input`.
fn turns_of(input: Option<&Value>) -> Vec<Turn<'_>> {
    match input {
        Some(Value::String(text)) => vec![Turn {
            role: Role::User,
            text: Cow::Borrowed(text),
        }],
        Some(Value::Array(items)) => items.iter().map(turn_of).collect(),
        _ => Vec::new(),
    }
}

/// One input item as a turn: a message by its role, a tool output as neither
/// user nor assistant (so it never reads as a prefill or an instruction).
fn turn_of(item: &Value) -> Turn<'_> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => Turn {
            role: Role::parse(item.get("role").and_then(Value::as_str).unwrap_or("user")),
            text: text_of(item.get("content")),
        },
        "function_call_output" => Turn {
            role: Role::Other,
            text: text_of(item.get("output")),
        },
        _ => Turn {
            role: Role::Other,
            text: Cow::Borrowed(""),
        },
    }
}

impl Reply {
    /// Reads a Responses request and plans its answer of `words` words.
    pub(crate) fn read(
        body: &[u8],
        words: usize,
        id: u64,
        mode: Continuation,
        tag: u32,
    ) -> Result<Reply, BodyError> {
        let req: ResponsesRequest<'_> = serde_json::from_slice(body)?;
        let turns = turns_of(req.input.as_ref());
        let model = req
            .model
            .map_or_else(|| String::from("mock-model"), Cow::into_owned);
        let mut answer = Answer::for_turns(&turns, mode, model, words, id, body.len())?;
        answer.tool = tool::forced_responses(req.tools.as_deref(), req.tool_choice.as_ref())
            .map(|name| ToolCall { name, words });
        answer.stream = req.stream.unwrap_or(false);
        Ok(Reply {
            previous: req.previous_response_id,
            store: req.store.unwrap_or(true),
            max_output_tokens: req.max_output_tokens,
            instructions: match req.instructions {
                Some(Value::String(s)) => Some(s),
                _ => None,
            },
            tag,
            last_user: last_user_text(&turns).map(str::to_string),
            answer,
        })
    }

    /// The sequence number named by a `resp_mock_{n}_{tag}` id of mock `tag`.
    pub(crate) fn parse_id(id: &str, tag: u32) -> Option<u64> {
        let (n, hex) = id.strip_prefix("resp_mock_")?.split_once('_')?;
        let ours = hex.len() == 8 && u32::from_str_radix(hex, 16).ok()? == tag;
        ours.then(|| n.parse().ok()).flatten()
    }

    fn push_id(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\"resp_mock_");
        push_u64(out, self.answer.id);
        out.push(b'_');
        push_hex8(out, self.tag);
        out.push(b'"');
    }

    fn item_id(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.answer.tool.is_some() {
            b"\"fc_mock_"
        } else {
            b"\"msg_mock_"
        });
        push_u64(out, self.answer.id);
        out.push(b'"');
    }

    fn push_usage(&self, out: &mut Vec<u8>) {
        let (input, output) = (self.answer.prompt_tokens, self.answer.completion_tokens());
        out.extend_from_slice(b"{\"input_tokens\":");
        push_u64(out, input);
        out.extend_from_slice(
            b",\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":",
        );
        push_u64(out, output);
        out.extend_from_slice(
            b",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":",
        );
        push_u64(out, input + output);
        out.push(b'}');
    }

    /// Appends the `response` object; `done` false is the in-progress form
    /// (empty output, no usage).
    pub(crate) fn push_response(&self, out: &mut Vec<u8>, name: &str, created: u64, done: bool) {
        out.extend_from_slice(b"{\"id\":");
        self.push_id(out);
        out.extend_from_slice(b",\"object\":\"response\",\"created_at\":");
        push_u64(out, created);
        out.extend_from_slice(if done {
            b",\"status\":\"completed\",\"model\":"
        } else {
            b",\"status\":\"in_progress\",\"model\":"
        });
        push_json_str(out, &self.answer.model);
        out.extend_from_slice(b",\"output\":[");
        if done {
            self.push_item(out, name, true);
        }
        out.extend_from_slice(b"],\"usage\":");
        if done {
            self.push_usage(out);
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"parallel_tool_calls\":true,\"tool_choice\":\"auto\",\"tools\":[],\"error\":null,\"incomplete_details\":null,\"instructions\":");
        push_opt_str(out, self.instructions.as_deref());
        out.extend_from_slice(b",\"metadata\":{},\"temperature\":1.0,\"top_p\":1.0,\"text\":{\"format\":{\"type\":\"text\"}},\"previous_response_id\":");
        push_opt_str(out, self.previous.as_deref());
        out.extend_from_slice(if self.store {
            b",\"store\":true"
        } else {
            b",\"store\":false"
        });
        out.extend_from_slice(b",\"truncation\":\"disabled\",\"max_output_tokens\":");
        match self.max_output_tokens {
            Some(n) => push_u64(out, n),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }

    /// Appends the output item: whole (`done`) or as first announced.
    fn push_item(&self, out: &mut Vec<u8>, name: &str, done: bool) {
        let status: &[u8] = if done {
            b",\"status\":\"completed\""
        } else {
            b",\"status\":\"in_progress\""
        };
        if let Some(call) = &self.answer.tool {
            out.extend_from_slice(b"{\"type\":\"function_call\",\"id\":");
            self.item_id(out);
            out.extend_from_slice(b",\"call_id\":\"call_mock_");
            push_u64(out, self.answer.id);
            out.extend_from_slice(b"\",\"name\":");
            push_json_str(out, &call.name);
            out.extend_from_slice(b",\"arguments\":");
            if done {
                call.push_arguments(out);
            } else {
                out.extend_from_slice(b"\"\"");
            }
            out.extend_from_slice(status);
            out.push(b'}');
            return;
        }
        out.extend_from_slice(b"{\"type\":\"message\",\"id\":");
        self.item_id(out);
        out.extend_from_slice(status);
        out.extend_from_slice(b",\"role\":\"assistant\",\"content\":[");
        if done {
            self.push_part(out, name, true);
        }
        out.extend_from_slice(b"]}");
    }

    /// Appends the `output_text` part, with the whole text or (`full` false) empty.
    fn push_part(&self, out: &mut Vec<u8>, name: &str, full: bool) {
        out.extend_from_slice(b"{\"type\":\"output_text\",\"text\":");
        if full {
            self.answer.push_content(out, name);
        } else {
            out.extend_from_slice(b"\"\"");
        }
        out.extend_from_slice(b",\"annotations\":[]}");
    }

    fn head_events(&self) -> usize {
        if self.answer.tool.is_some() {
            TOOL_HEAD
        } else {
            TEXT_HEAD
        }
    }

    fn tail(&self) -> &'static [Event] {
        if self.answer.tool.is_some() {
            &TOOL_TAIL
        } else {
            &TEXT_TAIL
        }
    }

    fn event(&self, n: usize) -> Option<Event> {
        const HEAD: [Event; 4] = [
            Event::Created,
            Event::InProgress,
            Event::ItemAdded,
            Event::PartAdded,
        ];
        let (head, pieces) = (self.head_events(), self.answer.pieces());
        if n < head {
            return HEAD.get(n).copied();
        }
        if n < head + pieces {
            return Some(Event::Delta(n - head));
        }
        self.tail().get(n - head - pieces).copied()
    }

    /// Number of stream events; `no_done` leaves out `response.completed`.
    pub(crate) fn event_count(&self, no_done: bool) -> usize {
        self.head_events() + self.answer.pieces() + self.tail().len() - usize::from(no_done)
    }

    /// The event that carries the first content (a word, or an argument chunk).
    pub(crate) fn first_content_event(&self) -> usize {
        self.head_events()
    }

    /// The event that carries argument chunk `k` of a function call.
    pub(crate) fn argument_event(&self, k: usize) -> Option<usize> {
        let call = self.answer.tool.as_ref()?;
        (k < call.pieces()).then_some(TOOL_HEAD + k)
    }

    fn event_type(&self, event: Event) -> &'static str {
        let tool = self.answer.tool.is_some();
        match event {
            Event::Created => "response.created",
            Event::InProgress => "response.in_progress",
            Event::ItemAdded => "response.output_item.added",
            Event::PartAdded => "response.content_part.added",
            Event::Delta(_) if tool => "response.function_call_arguments.delta",
            Event::Delta(_) => "response.output_text.delta",
            Event::DeltasDone if tool => "response.function_call_arguments.done",
            Event::DeltasDone => "response.output_text.done",
            Event::PartDone => "response.content_part.done",
            Event::ItemDone => "response.output_item.done",
            Event::Completed => "response.completed",
        }
    }

    /// Appends stream event `n` (`event: ...\ndata: ...\n\n`); nothing past the end.
    pub(crate) fn write_event(&self, out: &mut Vec<u8>, n: usize, name: &str, created: u64) {
        let Some(event) = self.event(n) else { return };
        let kind = self.event_type(event);
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: {\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"sequence_number\":");
        push_u64(out, n as u64);
        match event {
            Event::Created | Event::InProgress | Event::Completed => {
                out.extend_from_slice(b",\"response\":");
                self.push_response(out, name, created, event == Event::Completed);
            }
            Event::ItemAdded | Event::ItemDone => {
                out.extend_from_slice(b",\"output_index\":0,\"item\":");
                self.push_item(out, name, event == Event::ItemDone);
            }
            Event::PartAdded | Event::PartDone => {
                self.push_item_ref(out, true);
                out.extend_from_slice(b",\"part\":");
                self.push_part(out, name, event == Event::PartDone);
            }
            Event::Delta(k) => self.push_delta(out, name, k),
            Event::DeltasDone => self.push_deltas_done(out, name),
        }
        out.extend_from_slice(b"}\n\n");
    }

    /// Appends `,"item_id":..,"output_index":0` (and `,"content_index":0`).
    fn push_item_ref(&self, out: &mut Vec<u8>, content: bool) {
        out.extend_from_slice(b",\"item_id\":");
        self.item_id(out);
        out.extend_from_slice(b",\"output_index\":0");
        if content {
            out.extend_from_slice(b",\"content_index\":0");
        }
    }

    fn push_delta(&self, out: &mut Vec<u8>, name: &str, k: usize) {
        match &self.answer.tool {
            Some(call) => {
                self.push_item_ref(out, false);
                out.extend_from_slice(b",\"delta\":\"");
                call.push_piece(out, k);
                out.push(b'"');
            }
            None => {
                self.push_item_ref(out, true);
                out.extend_from_slice(b",\"delta\":\"");
                self.answer.push_piece(out, name, k);
                out.extend_from_slice(b"\",\"logprobs\":[]");
            }
        }
    }

    fn push_deltas_done(&self, out: &mut Vec<u8>, name: &str) {
        match &self.answer.tool {
            Some(call) => {
                self.push_item_ref(out, false);
                out.extend_from_slice(b",\"name\":");
                push_json_str(out, &call.name);
                out.extend_from_slice(b",\"arguments\":");
                call.push_arguments(out);
            }
            None => {
                self.push_item_ref(out, true);
                out.extend_from_slice(b",\"text\":");
                self.answer.push_content(out, name);
                out.extend_from_slice(b",\"logprobs\":[]");
            }
        }
    }
}

/// Appends the `error` event that ends a stream (`sse_error_event`).
pub(crate) fn write_error_event(out: &mut Vec<u8>, n: usize, name: &str) {
    out.extend_from_slice(
        b"event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":",
    );
    push_json_str(out, &format!("mock {name}: overloaded"));
    out.extend_from_slice(b",\"param\":null,\"sequence_number\":");
    push_u64(out, n as u64);
    out.extend_from_slice(b"}\n\n");
}

/// Appends a text delta event whose data is not JSON (`malformed_event`).
pub(crate) fn write_malformed(out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: response.output_text.delta\ndata: {not json\n\n");
}

/// Appends the 400 the real API answers to an unknown `previous_response_id`.
pub(crate) fn write_unknown_previous(out: &mut Vec<u8>, id: &str) {
    out.extend_from_slice(b"{\"error\":{\"message\":");
    push_json_str(out, &format!("Previous response with id '{id}' not found."));
    out.extend_from_slice(b",\"type\":\"invalid_request_error\",\"param\":\"previous_response_id\",\"code\":\"previous_response_not_found\"}}");
}

fn push_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends `n` as 8 lower-case hex digits.
fn push_hex8(out: &mut Vec<u8>, n: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..8).rev() {
        out.push(HEX[((n >> (shift * 4)) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &str) -> Reply {
        Reply::read(body.as_bytes(), 3, 7, Continuation::Honest, 0xabcd_ef01).expect("valid")
    }

    fn events(r: &Reply) -> Vec<(String, Value)> {
        (0..r.event_count(false))
            .map(|n| {
                let mut out = Vec::new();
                r.write_event(&mut out, n, "a", 1);
                let text = String::from_utf8(out).expect("utf8");
                let (kind, data) = text
                    .trim_end()
                    .split_once("\ndata: ")
                    .expect("event and data lines");
                let kind = kind.strip_prefix("event: ").expect("event line");
                (kind.to_string(), serde_json::from_str(data).expect("JSON"))
            })
            .collect()
    }

    #[test]
    fn text_stream_matches_the_response() {
        let r = reply(
            r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}]}"#,
        );
        let mut whole = Vec::new();
        r.push_response(&mut whole, "a", 1, true);
        let whole: Value = serde_json::from_slice(&whole).expect("JSON");
        assert_eq!(whole["id"], "resp_mock_7_abcdef01");
        assert_eq!(
            whole["output"][0]["content"][0]["text"],
            "Hello from a: w0 w1 w2 "
        );
        let events = events(&r);
        assert_eq!(events.len(), 11);
        let deltas: String = events
            .iter()
            .filter(|(k, _)| k == "response.output_text.delta")
            .filter_map(|(_, v)| v["delta"].as_str())
            .collect();
        assert_eq!(deltas, "Hello from a: w0 w1 w2 ");
        for (n, (kind, v)) in events.iter().enumerate() {
            assert_eq!(
                (v["type"].as_str(), v["sequence_number"].as_u64()),
                (Some(kind.as_str()), Some(n as u64))
            );
        }
        assert_eq!(events[10].1["response"], whole);
        assert_eq!(
            Reply::parse_id("resp_mock_7_abcdef01", 0xabcd_ef01),
            Some(7)
        );
        assert_eq!(Reply::parse_id("resp_mock_7_abcdef02", 0xabcd_ef01), None);
        assert_eq!(Reply::parse_id("resp_7", 1), None);
    }

    #[test]
    fn forced_call_streams_arguments() {
        let r = reply(
            r#"{"input":"hi","stream":true,"tools":[{"type":"function","name":"f","parameters":{}}],"tool_choice":"required"}"#,
        );
        let events = events(&r);
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds.len(), 3 + 5 + 3);
        assert_eq!(kinds[3], "response.function_call_arguments.delta");
        assert_eq!(kinds[8], "response.function_call_arguments.done");
        let args: String = events[3..8]
            .iter()
            .filter_map(|(_, v)| v["delta"].as_str())
            .collect();
        assert_eq!(args, r#"{"text":"w0 w1 w2 "}"#);
        assert_eq!(events[8].1["arguments"], args.as_str());
        assert_eq!(
            events[10].1["response"]["output"][0]["call_id"],
            "call_mock_7"
        );
        assert_eq!((r.argument_event(0), r.argument_event(5)), (Some(3), None));
    }
}
