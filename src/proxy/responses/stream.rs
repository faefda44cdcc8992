//! OpenAI chunk events → Responses API stream events, one relayed chunk at a
//! time, written as they arrive.
//!
//! Every event is `event: <type>` with a JSON `data` carrying the same `type` and
//! a `sequence_number` counting from 0 across the whole client stream
//! (continuations spliced into it included: the translator lives as long as the
//! client's stream). The order is the Responses API's:
//!
//! - `response.created`, `response.in_progress` (status `in_progress`, no output)
//!   on the first chunk the client sees;
//! - text: `response.output_item.added` (a `message`),
//!   `response.content_part.added`, `response.output_text.delta`s, and on close
//!   `response.output_text.done`, `response.content_part.done`,
//!   `response.output_item.done`;
//! - each tool call (chat `delta.tool_calls[i]`, interleaved by index):
//!   `response.output_item.added` (a `function_call` with `arguments: ""`),
//!   `response.function_call_arguments.delta`s, and on close
//!   `response.function_call_arguments.done`, `response.output_item.done`;
//! - at the end `response.completed` (or `response.incomplete` for a
//!   `length` / `content_filter` finish) with the whole response: every item and
//!   the usage the relay recorded (cached and reasoning token details from the
//!   provider's last usage chunk).
//!
//! Text closes when a tool call starts; tool calls stay open until the choice
//! finishes. A refusal delta is written as text. Reasoning deltas
//! (`reasoning_content`) are dropped: chat providers' reasoning is not the
//! Responses API's encrypted reasoning item, and the SDKs need no summary. Only
//! choice 0 is translated (the Responses API has no `n`). A failure after commit
//! is `response.failed` then an `error` event (see [`EventTranslator::error`]).

use serde_json::{json, Value};

use super::request::Echo;
use super::response::{self, Parts};
use crate::http::sse::write_event;
use crate::wire::Usage;

/// One output item of the response being streamed.
#[derive(Debug)]
struct Item {
    id: String,
    open: bool,
    /// Cut by a failure after commit: reported `incomplete`.
    cut: bool,
    body: ItemBody,
}

#[derive(Debug)]
enum ItemBody {
    Message {
        text: String,
    },
    Call {
        /// The chat tool call's index in its deltas.
        index: u64,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// State of one client stream being translated.
#[derive(Debug)]
pub struct EventTranslator {
    echo: Echo,
    id: String,
    created_at: u64,
    model: String,
    sequence: u64,
    started: bool,
    stopped: bool,
    items: Vec<Item>,
    finish_reason: Option<String>,
    /// The provider's last usage object, for the token details `Usage` lacks.
    usage: Option<Value>,
}

impl Default for EventTranslator {
    fn default() -> Self {
        Self::new(Echo::default())
    }
}

impl EventTranslator {
    pub fn new(echo: Echo) -> Self {
        EventTranslator {
            echo,
            id: super::new_id(super::ID_PREFIX),
            created_at: super::now_secs(),
            model: String::new(),
            sequence: 0,
            started: false,
            stopped: false,
            items: Vec::new(),
            finish_reason: None,
            usage: None,
        }
    }

    /// Appends the Responses events for one relayed OpenAI chunk (its `data`).
    /// Data that is not a chunk adds nothing.
    pub fn chunk(&mut self, data: &str, out: &mut Vec<u8>) {
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if self.stopped {
            return;
        }
        if !self.started {
            self.model = chunk["model"].as_str().unwrap_or("").to_string();
            self.start(out);
        }
        if chunk["usage"].is_object() {
            self.usage = Some(chunk["usage"].clone());
        }
        let choices = chunk["choices"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let Some(choice) = choices
            .iter()
            .find(|c| c["index"].as_u64().unwrap_or(0) == 0)
        else {
            return;
        };
        let delta = &choice["delta"];
        for key in ["content", "refusal"] {
            if let Some(text) = delta[key].as_str().filter(|t| !t.is_empty()) {
                self.text(text, out);
            }
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            self.tool_call(call, out);
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_string());
            self.close_all(out);
        }
    }

    /// Appends the end of the response: every open item closed, then
    /// `response.completed` (or `response.incomplete`) with `usage`. Idempotent.
    pub fn done(&mut self, usage: Option<Usage>, out: &mut Vec<u8>) {
        if self.stopped {
            return;
        }
        if !self.started {
            self.start(out);
        }
        self.close_all(out);
        self.stopped = true;
        let (status, incomplete) = response::status_of(self.finish_reason.as_deref());
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let response = self.response(status, incomplete, self.usage_value(usage), Value::Null);
        self.emit(out, kind, json!({ "response": response }));
    }

    /// Appends the events that end a stream failed after commit: open items
    /// marked `incomplete` (no `.done` events: they did not finish),
    /// `response.failed`, then `error`. The `error`
    /// event's data carries an `error` object too: that is what makes the
    /// official SDK's stream iteration raise `openai.APIError`.
    pub fn error(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        if self.stopped {
            return;
        }
        if !self.started {
            self.start(out);
        }
        self.stopped = true;
        for item in self.items.iter_mut().filter(|i| i.open) {
            item.open = false;
            item.cut = true;
        }
        let error = json!({"code": "server_error", "message": message});
        let response = self.response("failed", Value::Null, Value::Null, error);
        self.emit(out, "response.failed", json!({ "response": response }));
        let event = json!({
            "code": code,
            "message": message,
            "param": null,
            "error": {"type": "server_error", "code": code, "message": message, "param": null},
        });
        self.emit(out, "error", event);
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        self.started = true;
        let response = self.response("in_progress", Value::Null, Value::Null, Value::Null);
        self.emit(out, "response.created", json!({ "response": response }));
        let response = self.response("in_progress", Value::Null, Value::Null, Value::Null);
        self.emit(out, "response.in_progress", json!({ "response": response }));
    }

    /// Writes one event: `data` gets its `type` and the next sequence number.
    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        if let Some(map) = data.as_object_mut() {
            map.insert("type".into(), kind.into());
            map.insert("sequence_number".into(), self.sequence.into());
        }
        self.sequence += 1;
        write_event(out, Some(kind), &data.to_string());
    }

    fn response(&self, status: &str, incomplete: Value, usage: Value, error: Value) -> Value {
        let output = self.items.iter().map(item_value).collect();
        let mut response = response::response_object(
            Parts {
                id: &self.id,
                created_at: self.created_at,
                model: &self.model,
                status,
                incomplete_details: incomplete,
                output,
                usage,
            },
            &self.echo,
        );
        response["error"] = error;
        response
    }

    /// The Responses usage: the relay's counts (summed over continuations) with
    /// the provider's token details; null when nothing reported usage.
    fn usage_value(&self, usage: Option<Usage>) -> Value {
        let mut chat = self.usage.clone().unwrap_or(Value::Null);
        match usage {
            Some(usage) => {
                if !chat.is_object() {
                    chat = json!({});
                }
                chat["prompt_tokens"] = usage.prompt_tokens.into();
                chat["completion_tokens"] = usage.completion_tokens.into();
            }
            None if !chat.is_object() => return Value::Null,
            None => {}
        }
        response::usage_of(&chat)
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let open = self
            .items
            .iter()
            .position(|i| i.open && matches!(i.body, ItemBody::Message { .. }));
        let index = match open {
            Some(index) => index,
            None => self.open_message(out),
        };
        if let ItemBody::Message { text: all } = &mut self.items[index].body {
            all.push_str(text);
        }
        let data = json!({
            "item_id": self.items[index].id,
            "output_index": index,
            "content_index": 0,
            "delta": text,
            "logprobs": [],
        });
        self.emit(out, "response.output_text.delta", data);
    }

    fn open_message(&mut self, out: &mut Vec<u8>) -> usize {
        let index = self.items.len();
        self.items.push(Item {
            id: super::new_id("msg_"),
            open: true,
            cut: false,
            body: ItemBody::Message {
                text: String::new(),
            },
        });
        let item = item_value(&self.items[index]);
        let item_id = self.items[index].id.clone();
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        let part = json!({"type": "output_text", "text": "", "annotations": []});
        let data =
            json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": part});
        self.emit(out, "response.content_part.added", data);
        index
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<u8>) {
        let chat_index = call["index"].as_u64().unwrap_or(0);
        let known = self.items.iter().position(|i| {
            i.open && matches!(i.body, ItemBody::Call { index, .. } if index == chat_index)
        });
        let index = match known {
            Some(index) => index,
            None => self.open_call(chat_index, call, out),
        };
        let Some(piece) = call["function"]["arguments"]
            .as_str()
            .filter(|p| !p.is_empty())
        else {
            return;
        };
        if let ItemBody::Call { arguments, .. } = &mut self.items[index].body {
            arguments.push_str(piece);
        }
        let data = json!({"item_id": self.items[index].id, "output_index": index, "delta": piece});
        self.emit(out, "response.function_call_arguments.delta", data);
    }

    /// A new call item; an open message closes first (items come one after the
    /// other in a response).
    fn open_call(&mut self, chat_index: u64, call: &Value, out: &mut Vec<u8>) -> usize {
        if let Some(open) = self
            .items
            .iter()
            .position(|i| i.open && matches!(i.body, ItemBody::Message { .. }))
        {
            self.close(open, out);
        }
        let index = self.items.len();
        let call_id = match call["id"].as_str() {
            Some(id) => id.to_string(),
            None => super::new_id("call_"),
        };
        self.items.push(Item {
            id: super::new_id("fc_"),
            open: true,
            cut: false,
            body: ItemBody::Call {
                index: chat_index,
                call_id,
                name: call["function"]["name"].as_str().unwrap_or("").to_string(),
                arguments: String::new(),
            },
        });
        let item = item_value(&self.items[index]);
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        index
    }

    fn close_all(&mut self, out: &mut Vec<u8>) {
        for index in 0..self.items.len() {
            self.close(index, out);
        }
    }

    fn close(&mut self, index: usize, out: &mut Vec<u8>) {
        if !self.items[index].open {
            return;
        }
        self.items[index].open = false;
        let id = self.items[index].id.clone();
        match &self.items[index].body {
            ItemBody::Message { text } => {
                let text = text.clone();
                let data = json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []});
                self.emit(out, "response.output_text.done", data);
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                let data =
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part});
                self.emit(out, "response.content_part.done", data);
            }
            ItemBody::Call { arguments, .. } => {
                let data = json!({"item_id": id, "output_index": index, "arguments": arguments});
                self.emit(out, "response.function_call_arguments.done", data);
            }
        }
        let item = item_value(&self.items[index]);
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }
}

/// An item as the client sees it: `in_progress` while open, `incomplete` when a
/// failure cut it, else `completed`.
fn item_value(item: &Item) -> Value {
    let status = match (item.open, item.cut) {
        (true, _) => "in_progress",
        (false, true) => "incomplete",
        (false, false) => "completed",
    };
    match &item.body {
        ItemBody::Message { .. } if item.open => json!({
            "type": "message",
            "id": item.id,
            "status": status,
            "role": "assistant",
            "content": [],
        }),
        ItemBody::Message { text } => response::message_item(&item.id, text, status),
        ItemBody::Call {
            call_id,
            name,
            arguments,
            ..
        } => response::call_item(&item.id, call_id, name, arguments, status),
    }
}
