//! The OpenAI-compatible bodies the mock speaks: chat completions (whole and as SSE
//! chunks), embeddings, the model list and error objects, all deterministic.
//!
//! The answer to every chat request is `"Hello from {name}: "` followed by the words
//! `w0 w1 ... w{n-1}`, each with a trailing space (`n` = `stream_chunks`). Streamed,
//! word `i` is one chunk and the greeting rides in the first one, so the chunks
//! concatenate to the non-streamed content.
//!
//! Continuation rule: when the last message has role `assistant` (a prefill, e.g. a
//! gateway resuming a broken stream), the mock answers only the rest of the full
//! answer: it finds the highest `w{i}` token in that text and answers `w{i+1}`
//! onwards (all words if none is present), without the greeting. So for a prefix
//! that ends on a chunk boundary, prefix + continuation == the full answer. If the
//! prefix does not end in whitespace, the continuation starts with one space.
//! The instruction style counts too: an assistant message followed by a last user
//! message that starts with "Continue" is answered the same way.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::wire::{push_json_escaped, push_json_str, push_u64};

/// Everything needed to write one chat answer, whole or streamed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub id: u64,
    pub model: String,
    /// Index of the first word answered.
    pub first: usize,
    /// One past the last word answered.
    pub end: usize,
    /// Whether the greeting precedes the first word (not for continuations).
    pub greet: bool,
    /// Whether a space precedes the first word (continuing a prefix without one).
    pub lead_space: bool,
    pub prompt_tokens: u64,
    pub stream: bool,
    pub include_usage: bool,
}

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default, borrow)]
    messages: Vec<Message<'a>>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(default, borrow)]
    role: Cow<'a, str>,
    #[serde(default)]
    content: Option<Value>,
}

/// The partial answer a request asks the mock to continue, if any: a trailing
/// assistant prefill, or an assistant turn followed by a "Continue ..." instruction.
fn continued_text(messages: &[Message<'_>]) -> Option<String> {
    let (last, earlier) = messages.split_last()?;
    if last.role == "assistant" {
        return Some(text_of(&last.content).into_owned());
    }
    let previous = earlier.last()?;
    let instruction = last.role == "user" && text_of(&last.content).starts_with("Continue");
    (instruction && previous.role == "assistant").then(|| text_of(&previous.content).into_owned())
}

impl Answer {
    /// Reads a chat request body and plans its answer of `words` words.
    pub(crate) fn from_request(
        body: &[u8],
        words: usize,
        id: u64,
    ) -> Result<Answer, serde_json::Error> {
        let req: ChatRequest<'_> = serde_json::from_slice(body)?;
        let prefill = continued_text(&req.messages);
        let (first, lead_space) = match &prefill {
            Some(text) => (
                next_word(text).min(words),
                !text.is_empty() && !text.ends_with(char::is_whitespace),
            ),
            None => (0, false),
        };
        Ok(Answer {
            id,
            model: req
                .model
                .map_or_else(|| String::from("mock-model"), Cow::into_owned),
            first,
            end: words,
            greet: prefill.is_none(),
            lead_space,
            prompt_tokens: (body.len() as u64).div_ceil(4),
            stream: req.stream.unwrap_or(false),
            include_usage: req.stream_options.is_some_and(|o| o.include_usage),
        })
    }

    /// Number of content chunks in the streamed form.
    pub(crate) fn pieces(&self) -> usize {
        self.end.saturating_sub(self.first)
    }

    fn completion_tokens(&self) -> u64 {
        self.pieces() as u64
    }

    /// Appends the escaped text of content chunk `k` (0-based), without quotes.
    fn push_piece(&self, out: &mut Vec<u8>, name: &str, k: usize) {
        if k == 0 && self.greet {
            out.extend_from_slice(b"Hello from ");
            push_json_escaped(out, name);
            out.extend_from_slice(b": ");
        }
        if k == 0 && self.lead_space {
            out.push(b' ');
        }
        out.push(b'w');
        push_u64(out, (self.first + k) as u64);
        out.push(b' ');
    }

    fn push_content(&self, out: &mut Vec<u8>, name: &str) {
        out.push(b'"');
        for k in 0..self.pieces() {
            self.push_piece(out, name, k);
        }
        out.push(b'"');
    }

    fn push_usage(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\"usage\":{\"prompt_tokens\":");
        push_u64(out, self.prompt_tokens);
        out.extend_from_slice(b",\"completion_tokens\":");
        push_u64(out, self.completion_tokens());
        out.extend_from_slice(b",\"total_tokens\":");
        push_u64(out, self.prompt_tokens + self.completion_tokens());
        out.push(b'}');
    }

    fn push_id_model(&self, out: &mut Vec<u8>, object: &str, created: u64) {
        out.extend_from_slice(b"{\"id\":\"chatcmpl-mock-");
        push_u64(out, self.id);
        out.extend_from_slice(b"\",\"object\":\"");
        out.extend_from_slice(object.as_bytes());
        out.extend_from_slice(b"\",\"created\":");
        push_u64(out, created);
        out.extend_from_slice(b",\"model\":");
        push_json_str(out, &self.model);
    }

    /// Appends the whole `chat.completion` object.
    pub(crate) fn write_completion(&self, out: &mut Vec<u8>, name: &str, created: u64) {
        self.push_id_model(out, "chat.completion", created);
        out.extend_from_slice(
            b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":",
        );
        self.push_content(out, name);
        out.extend_from_slice(b"},\"finish_reason\":\"stop\"}],");
        self.push_usage(out);
        out.push(b'}');
    }

    /// Appends SSE event `event` (`data: ...\n\n`) of the streamed answer.
    pub(crate) fn write_event(
        &self,
        out: &mut Vec<u8>,
        event: StreamEvent,
        name: &str,
        created: u64,
    ) {
        if event == StreamEvent::Done {
            out.extend_from_slice(b"data: [DONE]\n\n");
            return;
        }
        out.extend_from_slice(b"data: ");
        self.push_id_model(out, "chat.completion.chunk", created);
        out.extend_from_slice(b",\"choices\":");
        match event {
            StreamEvent::Role => out.extend_from_slice(
                b"[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}",
            ),
            StreamEvent::Word(k) => {
                out.extend_from_slice(b"[{\"index\":0,\"delta\":{\"content\":\"");
                self.push_piece(out, name, k);
                out.extend_from_slice(b"\"},\"finish_reason\":null}]}");
            }
            StreamEvent::Finish => {
                out.extend_from_slice(b"[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}")
            }
            StreamEvent::Usage | StreamEvent::Done => {
                out.extend_from_slice(b"[],");
                self.push_usage(out);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b"\n\n");
    }

    /// The `n`-th (0-based) event of the stream, `None` past the end.
    pub(crate) fn event(&self, n: usize) -> Option<StreamEvent> {
        let words = self.pieces();
        let usage = usize::from(self.include_usage);
        match n {
            0 => Some(StreamEvent::Role),
            n if n <= words => Some(StreamEvent::Word(n - 1)),
            n if n == words + 1 => Some(StreamEvent::Finish),
            n if usage == 1 && n == words + 2 => Some(StreamEvent::Usage),
            n if n == words + 2 + usage => Some(StreamEvent::Done),
            _ => None,
        }
    }
}

/// One SSE event of a streamed chat answer, in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamEvent {
    Role,
    Word(usize),
    Finish,
    Usage,
    Done,
}

/// The text of a message content: a string, or the `text` parts of an array.
fn text_of(content: &Option<Value>) -> Cow<'_, str> {
    match content {
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(Value::Array(parts)) => Cow::Owned(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => Cow::Borrowed(""),
    }
}

/// One past the highest `w{i}` token in `text`, 0 when there is none.
pub(crate) fn next_word(text: &str) -> usize {
    text.split_whitespace()
        .filter_map(|t| t.strip_prefix('w'))
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|d| d.parse::<usize>().ok())
        .map(|i| i.saturating_add(1))
        .max()
        .unwrap_or(0)
}

/// Appends an OpenAI-shaped error object.
pub(crate) fn write_error(out: &mut Vec<u8>, message: &str, kind: &str) {
    out.extend_from_slice(b"{\"error\":{\"message\":");
    push_json_str(out, message);
    out.extend_from_slice(b",\"type\":");
    push_json_str(out, kind);
    out.extend_from_slice(b",\"param\":null,\"code\":null}}");
}

/// The OpenAI error `type` for an HTTP status.
pub(crate) fn error_type(status: u16) -> &'static str {
    match status {
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

/// Appends the SSE error event that ends a stream with `overloaded_error`.
pub(crate) fn write_sse_error(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b"event: error\ndata: ");
    write_error(out, &format!("mock {name}: overloaded"), "overloaded_error");
    out.extend_from_slice(b"\n\n");
}

#[derive(Deserialize)]
struct EmbeddingRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    input: Option<Value>,
}

/// Appends a deterministic embedding list (8 dimensions per input).
pub(crate) fn write_embeddings(out: &mut Vec<u8>, body: &[u8]) -> Result<(), serde_json::Error> {
    let req: EmbeddingRequest = serde_json::from_slice(body)?;
    let inputs = match &req.input {
        Some(Value::Array(items)) => items.len().min(4096),
        _ => 1,
    };
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for i in 0..inputs {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"object\":\"embedding\",\"index\":");
        push_u64(out, i as u64);
        out.extend_from_slice(b",\"embedding\":[");
        for j in 0..8 {
            out.extend_from_slice(if j == 0 { b"0." } else { b",0." });
            push_u64(out, ((i * 7 + j * 3) % 10) as u64);
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"],\"model\":");
    push_json_str(out, req.model.as_deref().unwrap_or("mock-embedding"));
    let tokens = (body.len() as u64).div_ceil(4);
    out.extend_from_slice(b",\"usage\":{\"prompt_tokens\":");
    push_u64(out, tokens);
    out.extend_from_slice(b",\"total_tokens\":");
    push_u64(out, tokens);
    out.extend_from_slice(b"}}");
    Ok(())
}

/// Appends the model list: one model, `mock-model`, owned by the mock's name.
pub(crate) fn write_models(out: &mut Vec<u8>, name: &str, created: u64) {
    out.extend_from_slice(
        b"{\"object\":\"list\",\"data\":[{\"id\":\"mock-model\",\"object\":\"model\",\"created\":",
    );
    push_u64(out, created);
    out.extend_from_slice(b",\"owned_by\":");
    push_json_str(out, name);
    out.extend_from_slice(b"}]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> Answer {
        Answer::from_request(body.as_bytes(), 4, 7).expect("valid request")
    }

    fn content_of(a: &Answer) -> String {
        let mut out = Vec::new();
        a.write_completion(&mut out, "pri\"mary", 1);
        let v: Value = serde_json::from_slice(&out).expect("completion is JSON");
        v["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_string()
    }

    #[test]
    fn full_answer_and_stream_agree() {
        let a = answer(
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(content_of(&a), "Hello from pri\"mary: w0 w1 w2 w3 ");
        let mut streamed = String::new();
        let mut n = 0;
        while let Some(ev) = a.event(n) {
            let mut out = Vec::new();
            a.write_event(&mut out, ev, "pri\"mary", 1);
            let data = std::str::from_utf8(&out)
                .expect("utf8")
                .strip_prefix("data: ")
                .expect("data");
            if ev != StreamEvent::Done {
                let v: Value = serde_json::from_str(data.trim_end()).expect("event JSON");
                streamed += v["choices"][0]["delta"]["content"].as_str().unwrap_or("");
            }
            n += 1;
        }
        assert_eq!(n, 4 + 4, "role, 4 words, finish, usage, done");
        assert_eq!(streamed, content_of(&a));
    }

    #[test]
    fn instruction_style_continuation() {
        let body = r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"Hello from a: w0 w1 "},{"role":"user","content":"Continue exactly where you stopped."}]}"#;
        let answer = Answer::from_request(body.as_bytes(), 4, 1).unwrap();
        assert_eq!((answer.first, answer.greet), (2, false));
        let plain = r#"{"messages":[{"role":"assistant","content":"w0 "},{"role":"user","content":"Thanks"}]}"#;
        assert!(Answer::from_request(plain.as_bytes(), 4, 1).unwrap().greet);
    }

    #[test]
    fn continuation_skips_present_words() {
        let prefill = r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"Hello from a: w0 w1 "}]}"#;
        let a = answer(prefill);
        assert_eq!((a.first, a.greet, a.lead_space), (2, false, false));
        assert_eq!(content_of(&a), "w2 w3 ");
        let parts = r#"{"messages":[{"role":"assistant","content":[{"type":"text","text":"Hello from a: w0"}]}]}"#;
        assert_eq!(content_of(&answer(parts)), " w1 w2 w3 ");
        assert_eq!(
            content_of(&answer(
                r#"{"messages":[{"role":"assistant","content":"w9 "}]}"#
            )),
            ""
        );
        assert_eq!(next_word("x w3 w10x w1"), 4);
    }

    #[test]
    fn rejects_invalid_json() {
        assert!(Answer::from_request(b"{not json", 4, 1).is_err());
        assert!(write_embeddings(&mut Vec::new(), b"[").is_err());
    }
}
