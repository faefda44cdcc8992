//! Gemini's `alt=sse` stream (each `data:` a `GenerateContentResponse`) as
//! OpenAI `chat.completion.chunk` events.
//!
//! Per candidate: a role delta first, then a delta per event with its text and
//! tool calls, then a finish chunk when `finishReason` appears. When every
//! candidate has finished, a usage-only chunk (from the last `usageMetadata`) and
//! `[DONE]` follow at once: Gemini ends its stream there, and this source sees
//! bytes, never the end of the body. An `{"error": ...}` event is passed on as
//! `event: error`.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Value};

use super::response::{self, GenerateResponse, UsageMetadata};
use super::Stamp;
use crate::http::sse::{SseError, SseEvent, SseParser};
use crate::provider::EventSource;

/// Most candidates one answer may have (OpenAI's `n` is at most 128). The stream
/// keeps state per candidate, so a stream may not make it keep more.
pub const MAX_CANDIDATES: usize = 128;

/// What the stream has said so far for one candidate.
#[derive(Default)]
struct CandidateState {
    tool_calls: u32,
    finished: bool,
}

/// Translating event source for one Gemini streaming answer.
pub struct GeminiStream {
    parser: SseParser,
    ready: VecDeque<Result<SseEvent, SseError>>,
    stamp: Stamp,
    /// The target's model until the first event names `modelVersion`.
    model: String,
    started: bool,
    candidates: BTreeMap<u32, CandidateState>,
    usage: Option<UsageMetadata>,
    done: bool,
}

impl GeminiStream {
    pub fn new(model: &str) -> GeminiStream {
        GeminiStream::with_stamp(model, Stamp::now())
    }

    pub(crate) fn with_stamp(model: &str, stamp: Stamp) -> GeminiStream {
        GeminiStream {
            parser: SseParser::new(),
            ready: VecDeque::new(),
            stamp,
            model: model.to_string(),
            started: false,
            candidates: BTreeMap::new(),
            usage: None,
            done: false,
        }
    }

    fn translate(&mut self, event: SseEvent) {
        if self.done {
            return;
        }
        if is_error(&event.data) {
            self.emit_raw(Some("error"), event.data);
            return;
        }
        let Ok(answer) = GenerateResponse::parse(event.data.as_bytes()) else {
            // Passed on unchanged: the relay drops and counts malformed events.
            self.emit_raw(None, event.data);
            return;
        };
        self.start(&answer);
        if answer.usage_metadata.is_some() {
            self.usage = answer.usage_metadata;
        }
        if answer.prompt_blocked() {
            self.open_candidate(0);
            self.finish_candidate(0, "content_filter");
        }
        for (position, candidate) in answer.candidates.iter().enumerate() {
            let index = candidate.index.unwrap_or(position as u32);
            self.candidate(index, candidate);
        }
        let all_finished = self.candidates.values().all(|c| c.finished);
        if !self.done && !self.candidates.is_empty() && all_finished {
            self.end();
        }
    }

    /// Fixes id and model from the first answer.
    fn start(&mut self, answer: &GenerateResponse) {
        if self.started {
            return;
        }
        self.started = true;
        self.stamp = self.stamp.with_response_id(answer.response_id.as_deref());
        if let Some(version) = answer.model_version.as_deref().filter(|v| !v.is_empty()) {
            self.model = version.to_string();
        }
    }

    fn candidate(&mut self, index: u32, candidate: &response::Candidate) {
        if !self.open_candidate(index) {
            return;
        }
        let first_call = self.candidates.get(&index).map_or(0, |c| c.tool_calls);
        let said = response::said(candidate, index, &self.stamp, first_call);
        if !said.text.is_empty() || !said.tool_calls.is_empty() {
            let mut delta = serde_json::Map::new();
            if !said.text.is_empty() {
                delta.insert("content".into(), said.text.into());
            }
            let calls = said.tool_calls.len() as u32;
            if calls > 0 {
                delta.insert("tool_calls".into(), Value::Array(said.tool_calls));
            }
            if let Some(state) = self.candidates.get_mut(&index) {
                state.tool_calls += calls;
            }
            self.emit_choice(index, Value::Object(delta), None);
        }
        if let Some(reason) = candidate.finish_reason.as_deref() {
            let called = self
                .candidates
                .get(&index)
                .is_some_and(|c| c.tool_calls > 0);
            self.finish_candidate(index, response::finish_reason(reason, called));
        }
    }

    /// The role delta, once per candidate; false once the stream is over. Past
    /// [`MAX_CANDIDATES`] the stream ends with [`SseError::TooMany`].
    fn open_candidate(&mut self, index: u32) -> bool {
        if self.done {
            return false;
        }
        if self.candidates.contains_key(&index) {
            return true;
        }
        if self.candidates.len() >= MAX_CANDIDATES {
            self.ready.push_back(Err(SseError::TooMany {
                what: "candidates",
                limit: MAX_CANDIDATES,
            }));
            self.done = true;
            return false;
        }
        self.candidates.insert(index, CandidateState::default());
        let delta = json!({ "role": "assistant", "content": "" });
        self.emit_choice(index, delta, None);
        true
    }

    fn finish_candidate(&mut self, index: u32, reason: &str) {
        match self.candidates.get_mut(&index) {
            Some(state) if !state.finished => state.finished = true,
            _ => return,
        }
        self.emit_choice(index, json!({}), Some(reason));
    }

    fn end(&mut self) {
        if let Some(meta) = self.usage {
            let mut chunk = self.chunk(Vec::new());
            chunk["usage"] = response::usage(&meta);
            self.emit_raw(None, chunk.to_string());
        }
        self.emit_raw(None, "[DONE]".into());
        self.done = true;
    }

    fn chunk(&self, choices: Vec<Value>) -> Value {
        json!({
            "id": self.stamp.id,
            "object": "chat.completion.chunk",
            "created": self.stamp.created,
            "model": self.model,
            "choices": choices,
        })
    }

    fn emit_choice(&mut self, index: u32, delta: Value, finish: Option<&str>) {
        let choice = json!({ "index": index, "delta": delta, "finish_reason": finish });
        let chunk = self.chunk(vec![choice]);
        self.emit_raw(None, chunk.to_string());
    }

    fn emit_raw(&mut self, event: Option<&str>, data: String) {
        self.ready.push_back(Ok(SseEvent {
            event: event.map(str::to_string),
            data,
            id: None,
        }));
    }
}

/// A data line carrying Google's `{"error": {...}}` instead of an answer.
fn is_error(data: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct WithError {
        #[serde(default)]
        error: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<WithError>(data).is_ok_and(|e| e.error.is_some())
}

impl EventSource for GeminiStream {
    fn push(&mut self, bytes: &[u8]) {
        self.parser.push(bytes);
    }

    fn next_event(&mut self) -> Option<Result<SseEvent, SseError>> {
        // Each turn either returns or consumes one parsed event from the buffer.
        loop {
            if let Some(ready) = self.ready.pop_front() {
                return Some(ready);
            }
            match self.parser.next_event()? {
                Ok(event) => self.translate(event),
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
