//! The OpenAI-compatible bodies the mock speaks: chat completions (whole and as SSE
//! chunks), embeddings, the model list and error objects, all deterministic. The
//! answer text and the continuation rules live in [`super::answer`], the forced tool
//! call in [`super::tool`]; Azure OpenAI reuses these bodies (see [`super::azure`]).
//!
//! Stream events, in order (fault `after_chunks` counts them): the role delta
//! (`content` `""`, or `null` before a tool call), one chunk per word (for a tool
//! call: the call's head, then one chunk per argument piece), the chunk with
//! `finish_reason` (`stop`, or `tool_calls`), the usage chunk when asked, `[DONE]`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

pub(crate) use super::answer::Answer;
use super::answer::{last_user_text, Continuation, Turn};
use super::dialect::BodyError;
use super::tool::{self, ToolCall};
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
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
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

/// Reads a chat request body and plans its answer of `words` words under `mode`.
pub(crate) fn read_chat(
    body: &[u8],
    words: usize,
    id: u64,
    mode: Continuation,
) -> Result<Chat, BodyError> {
    let req: ChatRequest<'_> = serde_json::from_slice(body)?;
    let turns: Vec<Turn<'_>> = req
        .messages
        .iter()
        .map(|m| Turn::from_json(&m.role, &m.content))
        .collect();
    let model = req
        .model
        .map_or_else(|| String::from("mock-model"), Cow::into_owned);
    let mut answer = Answer::for_turns(&turns, mode, model, words, id, body.len())?;
    answer.tool = tool::forced_openai(req.tools.as_deref(), req.tool_choice.as_ref())
        .map(|name| ToolCall { name, words });
    answer.stream = req.stream.unwrap_or(false);
    answer.include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    Ok(Chat {
        answer,
        last_user: last_user_text(&turns).map(str::to_string),
    })
}

impl Answer {
    /// Reads a chat request body and plans its answer of `words` words under `mode`.
    pub(crate) fn from_request(
        body: &[u8],
        words: usize,
        id: u64,
        mode: Continuation,
    ) -> Result<Answer, BodyError> {
        read_chat(body, words, id, mode).map(|chat| chat.answer)
    }

    pub(crate) fn push_usage(&self, out: &mut Vec<u8>) {
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
        match &self.tool {
            Some(call) => {
                out.extend_from_slice(b"null,\"tool_calls\":[{");
                self.push_call_head(out, call);
                call.push_arguments(out);
                out.extend_from_slice(b"}}]");
            }
            None => self.push_content(out, name),
        }
        out.extend_from_slice(b"},\"finish_reason\":");
        out.extend_from_slice(self.finish_reason());
        out.extend_from_slice(b"}],");
        self.push_usage(out);
        out.push(b'}');
    }

    fn finish_reason(&self) -> &'static [u8] {
        if self.tool.is_some() {
            b"\"tool_calls\""
        } else {
            b"\"stop\""
        }
    }

    /// Appends `"id":..,"type":"function","function":{"name":..,"arguments":`.
    fn push_call_head(&self, out: &mut Vec<u8>, call: &ToolCall) {
        out.extend_from_slice(b"\"id\":\"call_mock_");
        push_u64(out, self.id);
        out.extend_from_slice(b"\",\"type\":\"function\",\"function\":{\"name\":");
        push_json_str(out, &call.name);
        out.extend_from_slice(b",\"arguments\":");
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
        match (event, &self.tool) {
            (StreamEvent::Role, None) => out.extend_from_slice(
                b"[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}",
            ),
            (StreamEvent::Role, Some(_)) => out.extend_from_slice(
                b"[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null},\"finish_reason\":null}]}",
            ),
            (StreamEvent::ToolHead, Some(call)) => {
                out.extend_from_slice(b"[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,");
                self.push_call_head(out, call);
                out.extend_from_slice(b"\"\"}}]},\"finish_reason\":null}]}");
            }
            (StreamEvent::Word(k), Some(call)) => {
                out.extend_from_slice(
                    b"[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"",
                );
                call.push_piece(out, k);
                out.extend_from_slice(b"\"}}]},\"finish_reason\":null}]}");
            }
            (StreamEvent::Word(k), None) => {
                out.extend_from_slice(b"[{\"index\":0,\"delta\":{\"content\":\"");
                self.push_piece(out, name, k);
                out.extend_from_slice(b"\"},\"finish_reason\":null}]}");
            }
            (StreamEvent::Finish, _) => {
                out.extend_from_slice(b"[{\"index\":0,\"delta\":{},\"finish_reason\":");
                out.extend_from_slice(self.finish_reason());
                out.extend_from_slice(b"}]}");
            }
            (StreamEvent::ToolHead, None) => out.extend_from_slice(
                b"[{\"index\":0,\"delta\":{},\"finish_reason\":null}]}",
            ),
            (StreamEvent::Usage | StreamEvent::Done, _) => {
                out.extend_from_slice(b"[],");
                self.push_usage(out);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b"\n\n");
    }

    /// Content events: one per piece, and the head of a tool call.
    fn body_events(&self) -> usize {
        self.pieces() + usize::from(self.tool.is_some())
    }

    /// Number of stream events; `no_done` leaves out `data: [DONE]`.
    pub(crate) fn event_count(&self, no_done: bool) -> usize {
        self.body_events() + 3 + usize::from(self.include_usage) - usize::from(no_done)
    }

    /// The event that carries argument chunk `k` of a tool call, if there is one.
    pub(crate) fn argument_event(&self, k: usize) -> Option<usize> {
        let call = self.tool.as_ref()?;
        (k < call.pieces()).then_some(2 + k)
    }

    /// The `n`-th (0-based) event of the stream, `None` past the end.
    pub(crate) fn event(&self, n: usize) -> Option<StreamEvent> {
        let head = usize::from(self.tool.is_some());
        let words = self.body_events();
        let usage = usize::from(self.include_usage);
        match n {
            0 => Some(StreamEvent::Role),
            1 if head == 1 => Some(StreamEvent::ToolHead),
            n if n <= words => Some(StreamEvent::Word(n - 1 - head)),
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
    /// A tool call's id and name.
    ToolHead,
    /// Word `k`, or argument chunk `k` of a tool call.
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
        Answer::from_request(body.as_bytes(), 4, 7, Continuation::Honest).expect("valid request")
    }

    /// Every SSE event's data of the streamed answer, `[DONE]` as a string.
    fn events(a: &Answer) -> Vec<Value> {
        let mut all = Vec::new();
        let mut n = 0;
        while let Some(ev) = a.event(n) {
            let mut out = Vec::new();
            a.write_event(&mut out, ev, "pri\"mary", 1);
            let data = std::str::from_utf8(&out)
                .expect("utf8")
                .strip_prefix("data: ")
                .expect("data")
                .trim_end();
            all.push(serde_json::from_str(data).unwrap_or_else(|_| Value::from(data)));
            n += 1;
        }
        assert_eq!(n, a.event_count(false));
        all
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
        assert_eq!(content_of(&answer(body)), "w2 w3 ");
        let plain = r#"{"messages":[{"role":"assistant","content":"w0 "},{"role":"user","content":"Thanks"}]}"#;
        assert_eq!(
            content_of(&answer(plain)),
            "Hello from pri\"mary: w0 w1 w2 w3 "
        );
    }

    #[test]
    fn continuation_skips_present_words() {
        let prefill = r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"Hello from a: w0 w1 "}]}"#;
        assert_eq!(content_of(&answer(prefill)), "w2 w3 ");
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
        assert!(Answer::from_request(b"{not json", 4, 1, Continuation::Honest).is_err());
        assert!(write_embeddings(&mut Vec::new(), b"[").is_err());
    }

    #[test]
    fn modes_shape_the_streamed_continuation() {
        let body = r#"{"stream":true,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"Hello from a: w0 w1 "},{"role":"user","content":"Continue."}]}"#;
        let cases = [
            (Continuation::PrefillOnly, "Hello from a: w0 w1 w2 w3 "),
            (
                Continuation::RestartReworded,
                "Sure, here it is again: w0 w1 w2 w3 ",
            ),
            (Continuation::RepeatLastSentence, "a: w0 w1 w2 w3 "),
        ];
        for (mode, want) in cases {
            let a = Answer::from_request(body.as_bytes(), 4, 1, mode).unwrap();
            assert_eq!(content_of(&a), want, "{mode:?}");
            let streamed: String = events(&a)
                .iter()
                .filter_map(|v| v["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(streamed, want, "{mode:?}");
        }
        let prefill =
            r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"w0 "}]}"#;
        assert!(matches!(
            Answer::from_request(prefill.as_bytes(), 4, 1, Continuation::RejectPrefill),
            Err(BodyError::Prefill)
        ));
    }

    const TOOLS: &str = r#""tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object"}}}]"#;

    #[test]
    fn forced_tool_call_streams_in_argument_chunks() {
        let body = format!(
            r#"{{"stream":true,{TOOLS},"tool_choice":"required","messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let a = answer(&body);
        let events = events(&a);
        let deltas: Vec<&Value> = events.iter().map(|v| &v["choices"][0]["delta"]).collect();
        assert_eq!(
            deltas[0],
            &serde_json::json!({"role":"assistant","content":null})
        );
        assert_eq!(
            deltas[1]["tool_calls"][0],
            serde_json::json!({"index":0,"id":"call_mock_7","type":"function","function":{"name":"lookup","arguments":""}})
        );
        let pieces: Vec<&str> = deltas[2..8]
            .iter()
            .map(|d| {
                d["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            pieces,
            [r#"{"text":""#, "w0 ", "w1 ", "w2 ", "w3 ", r#""}"#]
        );
        assert_eq!(a.argument_event(0), Some(2));
        assert_eq!(a.argument_event(5), Some(7));
        assert_eq!(a.argument_event(6), None);
        assert_eq!(events[8]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(events[9], Value::from("[DONE]"));

        let whole = format!(
            r#"{{{TOOLS},"tool_choice":{{"type":"function","function":{{"name":"lookup"}}}},"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let mut out = Vec::new();
        answer(&whole).write_completion(&mut out, "m", 1);
        let v: Value = serde_json::from_slice(&out).unwrap();
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(
            choice["message"]["tool_calls"],
            serde_json::json!([{"id":"call_mock_7","type":"function","function":{"name":"lookup","arguments":"{\"text\":\"w0 w1 w2 w3 \"}"}}])
        );
        assert_eq!(v["usage"]["completion_tokens"], 6);

        let auto = format!(
            r#"{{{TOOLS},"tool_choice":"auto","messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        assert_eq!(answer(&auto).tool, None);
        assert_eq!(answer(&auto).argument_event(0), None);
    }
}
