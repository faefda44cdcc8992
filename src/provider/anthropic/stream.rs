//! Anthropic's streaming events → OpenAI `chat.completion.chunk` events, one
//! Anthropic event at a time (no buffering beyond the event being read).
//!
//! `message_start` → role delta; `text_delta` → content delta; a `tool_use` block
//! start → tool call delta with id and name; `input_json_delta` → argument
//! fragment; `message_delta` → finish chunk then a usage-only chunk;
//! `message_stop` → `[DONE]`; `error` → an `error` event carrying the provider's
//! data (the relay classifies it). `ping` and unknown events produce nothing;
//! unparseable data is passed on raw so the relay drops and counts it.

use std::collections::VecDeque;

use serde_json::{json, Value};

use super::response::{finish_reason, usage_json};
use super::wire::{BlockDelta, ContentBlock, StreamEvent, Usage};
use crate::http::sse::{SseError, SseEvent, SseParser};
use crate::provider::EventSource;

/// Most tool calls one answer may start. The decoder remembers each one (to
/// route its argument fragments), so a stream may not make it remember more.
pub const MAX_TOOL_CALLS: usize = 1024;

/// Decodes an Anthropic event stream into OpenAI chunk events.
pub struct MessageStream {
    parser: SseParser,
    /// Translated events of the last Anthropic event not yet handed out (at most 2).
    ready: VecDeque<SseEvent>,
    /// `{"id":..,"object":..,"created":..,"model":..` shared by every chunk.
    prefix: String,
    created: u64,
    model: String,
    usage: Usage,
    /// Anthropic block index → OpenAI tool call index, in order of appearance.
    tools: Vec<(u64, usize)>,
    /// Set once the stream broke a limit; handed out after the events before it.
    failed: Option<SseError>,
}

impl MessageStream {
    /// `model` names the chunks until `message_start` says which model answers;
    /// `created` is the Unix time every chunk reports.
    pub fn new(model: &str, created: u64) -> Self {
        let mut stream = MessageStream {
            parser: SseParser::new(),
            ready: VecDeque::with_capacity(2),
            prefix: String::new(),
            created,
            model: model.to_string(),
            usage: Usage::default(),
            tools: Vec::new(),
            failed: None,
        };
        stream.set_identity("");
        stream
    }

    fn set_identity(&mut self, id: &str) {
        self.prefix = format!(
            r#"{{"id":{},"object":"chat.completion.chunk","created":{},"model":{}"#,
            Value::from(id),
            self.created,
            Value::from(self.model.as_str()),
        );
    }

    fn emit(&mut self, data: String) {
        self.ready.push_back(SseEvent {
            event: None,
            data,
            id: None,
        });
    }

    /// One chunk with a single choice carrying `delta`.
    fn emit_delta(&mut self, delta: Value, finish: Option<&str>) {
        let finish = finish.map_or(Value::Null, Value::from);
        let data = format!(
            r#"{},"choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#,
            self.prefix
        );
        self.emit(data);
    }

    fn translate(&mut self, event: SseEvent) {
        if event.event.as_deref() == Some("error") {
            self.ready.push_back(event);
            return;
        }
        match serde_json::from_str::<StreamEvent>(&event.data) {
            Ok(StreamEvent::Error { .. }) => self.ready.push_back(SseEvent {
                event: Some("error".into()),
                ..event
            }),
            Ok(parsed) => self.apply(parsed),
            Err(_) => self.emit(event.data),
        }
    }

    fn apply(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::MessageStart { message } => {
                if !message.model.is_empty() {
                    self.model = message.model;
                }
                self.usage = message.usage;
                self.set_identity(&message.id);
                self.emit_delta(json!({"role": "assistant", "content": ""}), None);
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => self.block_start(index, content_block),
            StreamEvent::ContentBlockDelta { index, delta } => self.block_delta(index, delta),
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason.as_deref() {
                    self.emit_delta(json!({}), Some(finish_reason(reason)));
                }
                self.merge_usage(usage);
                let data = format!(
                    r#"{},"choices":[],"usage":{}}}"#,
                    self.prefix,
                    usage_json(&self.usage)
                );
                self.emit(data);
            }
            StreamEvent::MessageStop => self.emit("[DONE]".into()),
            StreamEvent::ContentBlockStop { .. }
            | StreamEvent::Ping
            | StreamEvent::Error { .. }
            | StreamEvent::Other => {}
        }
    }

    fn block_start(&mut self, index: u64, block: ContentBlock) {
        match block {
            ContentBlock::Text { text } if !text.is_empty() => {
                self.emit_delta(json!({ "content": text }), None);
            }
            ContentBlock::ToolUse { .. } if self.tools.len() >= MAX_TOOL_CALLS => {
                self.failed = Some(SseError::TooMany {
                    what: "tool calls",
                    limit: MAX_TOOL_CALLS,
                });
            }
            ContentBlock::ToolUse { id, name, .. } => {
                let call = self.tools.len();
                self.tools.push((index, call));
                let delta = json!({"tool_calls": [{
                    "index": call,
                    "id": id,
                    "type": "function",
                    "function": { "name": name, "arguments": "" },
                }]});
                self.emit_delta(delta, None);
            }
            _ => {}
        }
    }

    fn block_delta(&mut self, index: u64, delta: BlockDelta) {
        match delta {
            BlockDelta::TextDelta { text } if !text.is_empty() => {
                self.emit_delta(json!({ "content": text }), None);
            }
            BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                let Some(&(_, call)) = self.tools.iter().find(|(block, _)| *block == index) else {
                    return;
                };
                let delta = json!({"tool_calls": [{
                    "index": call,
                    "function": { "arguments": partial_json },
                }]});
                self.emit_delta(delta, None);
            }
            _ => {}
        }
    }

    /// `message_delta` usage is cumulative: its counts replace `message_start`'s.
    fn merge_usage(&mut self, delta: Usage) {
        let usage = &mut self.usage;
        usage.output_tokens = delta.output_tokens.or(usage.output_tokens);
        usage.input_tokens = delta.input_tokens.or(usage.input_tokens);
        usage.cache_creation_input_tokens = delta
            .cache_creation_input_tokens
            .or(usage.cache_creation_input_tokens);
        usage.cache_read_input_tokens = delta
            .cache_read_input_tokens
            .or(usage.cache_read_input_tokens);
    }
}

impl EventSource for MessageStream {
    fn push(&mut self, bytes: &[u8]) {
        self.parser.push(bytes);
    }

    fn next_event(&mut self) -> Option<Result<SseEvent, SseError>> {
        // Each pass reads one Anthropic event; the parser runs dry on its input.
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if let Some(error) = &self.failed {
                return Some(Err(error.clone()));
            }
            match self.parser.next_event()? {
                Ok(event) => self.translate(event),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
