//! ConverseStream events (event-stream messages) as OpenAI `chat.completion.chunk`
//! server-sent events: role, text and tool-call deltas, the finish chunk, the
//! usage-only chunk and `[DONE]`; exceptions become `event: error` events.

use std::collections::VecDeque;

use serde::Deserialize;
use serde_json::{json, Value};

use super::eventstream::{Decoder, Message};
use super::response::{finish_reason, usage, TokenUsage};
use crate::http::sse::{SseError, SseEvent};
use crate::provider::EventSource;

/// Decodes a ConverseStream body into OpenAI chunk events, fed as bytes arrive.
pub struct ConverseEvents {
    decoder: Decoder,
    ready: VecDeque<SseEvent>,
    id: String,
    model: String,
    created: u64,
    /// (content block index, OpenAI tool call index) of the open toolUse block.
    open_tool: Option<(u64, usize)>,
    tools_seen: usize,
    done: bool,
}

impl ConverseEvents {
    pub fn new(model: &str, id: String, created: u64) -> ConverseEvents {
        ConverseEvents {
            decoder: Decoder::new(),
            ready: VecDeque::new(),
            id,
            model: model.to_string(),
            created,
            open_tool: None,
            tools_seen: 0,
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> SseEvent {
        let data = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        });
        data_event(data.to_string())
    }

    fn translate(&mut self, message: &Message) {
        if self.done {
            return;
        }
        match message.header_str(":message-type").unwrap_or("event") {
            "event" => self.on_event(message),
            "exception" => {
                let kind = message.header_str(":exception-type").unwrap_or("exception");
                let text = payload_message(&message.payload);
                self.fail(kind, &text);
            }
            _ => {
                let kind = message.header_str(":error-code").unwrap_or("error");
                let text = message
                    .header_str(":error-message")
                    .unwrap_or("")
                    .to_string();
                self.fail(kind, &text);
            }
        }
    }

    fn fail(&mut self, kind: &str, message: &str) {
        let data = json!({ "error": { "type": kind, "message": message } });
        self.ready.push_back(SseEvent {
            event: Some("error".into()),
            data: data.to_string(),
            id: None,
        });
        self.done = true;
    }

    fn on_event(&mut self, message: &Message) {
        let Ok(payload) = serde_json::from_slice::<Payload>(&message.payload) else {
            return;
        };
        let event = match message.header_str(":event-type").unwrap_or("") {
            "messageStart" => Some(self.chunk(json!({ "role": "assistant", "content": "" }), None)),
            "contentBlockStart" => self.block_start(&payload),
            "contentBlockDelta" => self.block_delta(&payload),
            "messageStop" => {
                let reason = finish_reason(payload.stop_reason.as_deref().unwrap_or("end_turn"));
                Some(self.chunk(json!({}), Some(reason)))
            }
            "metadata" => {
                let usage_chunk = json!({
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage(&payload.usage.unwrap_or_default()),
                });
                self.ready.push_back(data_event(usage_chunk.to_string()));
                self.done = true;
                Some(data_event("[DONE]".into()))
            }
            _ => None,
        };
        self.ready.extend(event);
    }

    fn block_start(&mut self, payload: &Payload) -> Option<SseEvent> {
        let tool = payload.start.as_ref()?.tool_use.as_ref()?;
        let index = self.tools_seen;
        self.tools_seen += 1;
        self.open_tool = Some((payload.content_block_index, index));
        let call = json!({
            "index": index,
            "id": tool.tool_use_id,
            "type": "function",
            "function": { "name": tool.name, "arguments": "" },
        });
        Some(self.chunk(json!({ "tool_calls": [call] }), None))
    }

    fn block_delta(&mut self, payload: &Payload) -> Option<SseEvent> {
        let delta = payload.delta.as_ref()?;
        if let Some(text) = delta.text.as_deref().filter(|t| !t.is_empty()) {
            return Some(self.chunk(json!({ "content": text }), None));
        }
        let input = delta.tool_use.as_ref()?.input.as_deref()?;
        let index = match self.open_tool {
            Some((block, index)) if block == payload.content_block_index => index,
            _ => self.tools_seen.checked_sub(1)?,
        };
        let call = json!({ "index": index, "function": { "arguments": input } });
        Some(self.chunk(json!({ "tool_calls": [call] }), None))
    }
}

fn data_event(data: String) -> SseEvent {
    SseEvent {
        event: None,
        data,
        id: None,
    }
}

fn payload_message(payload: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default, alias = "Message")]
        message: Option<String>,
    }
    serde_json::from_slice::<Body>(payload)
        .ok()
        .and_then(|b| b.message)
        .unwrap_or_else(|| String::from_utf8_lossy(payload).into_owned())
}

impl EventSource for ConverseEvents {
    fn push(&mut self, bytes: &[u8]) {
        self.decoder.push(bytes);
    }

    fn next_event(&mut self) -> Option<Result<SseEvent, SseError>> {
        // Each turn either returns or consumes one whole message (at least 16
        // buffered bytes), so the loop ends with the buffered input.
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            match self.decoder.next_message()? {
                Ok(message) => self.translate(&message),
                Err(e) => return Some(Err(SseError::Framing(e.to_string()))),
            }
        }
    }
}

/// The union of the ConverseStream event payloads this module reads.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Payload {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    start: Option<BlockStart>,
    #[serde(default)]
    delta: Option<BlockDelta>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    #[serde(default)]
    tool_use: Option<ToolUseStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseStart {
    tool_use_id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolUseDelta>,
}

#[derive(Deserialize)]
struct ToolUseDelta {
    #[serde(default)]
    input: Option<String>,
}
