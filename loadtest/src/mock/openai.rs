//! The OpenAI-compatible bodies the mock speaks: chat completions (whole and as SSE
//! chunks), embeddings, the model list and error objects, all deterministic. The
//! answer text and the continuation rule live in [`super::answer`]; Azure OpenAI
//! reuses these bodies (see [`super::azure`]).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

pub(crate) use super::answer::Answer;
use super::answer::{last_user_text, Turn};
use super::wire::{push_json_str, push_u64};

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

/// A chat request read for its answer, plus the text of its last user message.
pub(crate) struct Chat {
    pub answer: Answer,
    pub last_user: Option<String>,
}

/// Reads a chat request body and plans its answer of `words` words.
pub(crate) fn read_chat(body: &[u8], words: usize, id: u64) -> Result<Chat, serde_json::Error> {
    let req: ChatRequest<'_> = serde_json::from_slice(body)?;
    let turns: Vec<Turn<'_>> = req
        .messages
        .iter()
        .map(|m| Turn::from_json(&m.role, &m.content))
        .collect();
    let model = req
        .model
        .map_or_else(|| String::from("mock-model"), Cow::into_owned);
    let mut answer = Answer::for_turns(&turns, model, words, id, body.len());
    answer.stream = req.stream.unwrap_or(false);
    answer.include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    Ok(Chat {
        answer,
        last_user: last_user_text(&turns).map(str::to_string),
    })
}

impl Answer {
    /// Reads a chat request body and plans its answer of `words` words.
    pub(crate) fn from_request(
        body: &[u8],
        words: usize,
        id: u64,
    ) -> Result<Answer, serde_json::Error> {
        read_chat(body, words, id).map(|chat| chat.answer)
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

    /// Number of stream events; `no_done` leaves out `data: [DONE]`.
    pub(crate) fn event_count(&self, no_done: bool) -> usize {
        self.pieces() + 3 + usize::from(self.include_usage) - usize::from(no_done)
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
        assert_eq!(super::super::answer::next_word("x w3 w10x w1"), 4);
    }

    #[test]
    fn rejects_invalid_json() {
        assert!(Answer::from_request(b"{not json", 4, 1).is_err());
        assert!(write_embeddings(&mut Vec::new(), b"[").is_err());
    }
}
