//! Legacy text completions (`POST /v1/completions`, Azure
//! `.../openai/deployments/{deployment}/completions`): the `text_completion` object
//! and its SSE chunks, with the same words as the chat route.
//!
//! `prompt` is a string or a list of strings (read as one user turn, so the answer
//! is always a fresh one). Stream events, in order (fault `after_chunks` counts
//! them): one chunk per word (word `k` is event `k`), the chunk with
//! `finish_reason` `stop`, the usage chunk when `stream_options.include_usage`,
//! `data: [DONE]`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::answer::{Answer, Continuation, Role, Turn};
use super::dialect::BodyError;
use super::wire::{push_json_str, push_u64};

/// The event index of word `k` in a completions stream (for stream faults).
pub fn after_words(k: usize) -> usize {
    k
}

#[derive(Deserialize)]
struct CompletionRequest<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// A planned completion and the prompt text (for Azure's content filter).
pub(crate) struct Completion {
    pub answer: Answer,
    pub prompt: String,
}

/// Reads a completions request and plans its answer of `words` words.
pub(crate) fn read(body: &[u8], words: usize, id: u64) -> Result<Completion, BodyError> {
    let req: CompletionRequest<'_> = serde_json::from_slice(body)?;
    let prompt = match &req.prompt {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        Some(Value::Null) | None => String::new(),
        Some(_) => {
            return Err(BodyError::Field(
                "prompt: must be a string or a list of strings",
            ))
        }
    };
    let turn = Turn {
        role: Role::User,
        text: Cow::Borrowed(prompt.as_str()),
    };
    let model = req
        .model
        .map_or_else(|| String::from("mock-model"), Cow::into_owned);
    let mut answer =
        Answer::for_turns(&[turn], Continuation::Honest, model, words, id, body.len())?;
    answer.stream = req.stream.unwrap_or(false);
    answer.include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    Ok(Completion { answer, prompt })
}

/// One event of the stream, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Piece(usize),
    Finish,
    Usage,
    Done,
}

fn event(answer: &Answer, n: usize) -> Option<Event> {
    let pieces = answer.pieces();
    let usage = usize::from(answer.include_usage);
    match n {
        n if n < pieces => Some(Event::Piece(n)),
        n if n == pieces => Some(Event::Finish),
        n if usage == 1 && n == pieces + 1 => Some(Event::Usage),
        n if n == pieces + 1 + usage => Some(Event::Done),
        _ => None,
    }
}

/// Number of stream events; `no_done` leaves out `data: [DONE]`.
pub(crate) fn event_count(answer: &Answer, no_done: bool) -> usize {
    answer.pieces() + 2 + usize::from(answer.include_usage) - usize::from(no_done)
}

fn push_head(out: &mut Vec<u8>, answer: &Answer, created: u64) {
    out.extend_from_slice(b"{\"id\":\"cmpl-mock-");
    push_u64(out, answer.id);
    out.extend_from_slice(b"\",\"object\":\"text_completion\",\"created\":");
    push_u64(out, created);
    out.extend_from_slice(b",\"model\":");
    push_json_str(out, &answer.model);
}

/// Appends the whole `text_completion` object.
pub(crate) fn write_whole(out: &mut Vec<u8>, answer: &Answer, name: &str, created: u64) {
    push_head(out, answer, created);
    out.extend_from_slice(b",\"choices\":[{\"text\":");
    answer.push_content(out, name);
    out.extend_from_slice(b",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}],");
    answer.push_usage(out);
    out.push(b'}');
}

/// Appends stream event `n` (`data: ...\n\n`); nothing past the end.
pub(crate) fn write_event(out: &mut Vec<u8>, answer: &Answer, n: usize, name: &str, created: u64) {
    let Some(event) = event(answer, n) else {
        return;
    };
    if event == Event::Done {
        out.extend_from_slice(b"data: [DONE]\n\n");
        return;
    }
    out.extend_from_slice(b"data: ");
    push_head(out, answer, created);
    match event {
        Event::Piece(k) => {
            out.extend_from_slice(b",\"choices\":[{\"text\":\"");
            answer.push_piece(out, name, k);
            out.extend_from_slice(b"\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}");
        }
        Event::Finish => out.extend_from_slice(
            b",\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}]}",
        ),
        Event::Usage | Event::Done => {
            out.extend_from_slice(b",\"choices\":[],");
            answer.push_usage(out);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_concatenates_to_the_whole_text() {
        let body = br#"{"model":"m","prompt":["a","b"],"stream":true,"stream_options":{"include_usage":true}}"#;
        let c = read(body, 3, 5).expect("valid");
        assert_eq!(c.prompt, "a\nb");
        let mut whole = Vec::new();
        write_whole(&mut whole, &c.answer, "x", 1);
        let whole: Value = serde_json::from_slice(&whole).expect("JSON");
        let text = whole["choices"][0]["text"].as_str().expect("text");
        assert_eq!(text, "Hello from x: w0 w1 w2 ");
        let count = event_count(&c.answer, false);
        assert_eq!(count, 3 + 3);
        let mut streamed = String::new();
        for n in 0..count {
            let mut out = Vec::new();
            write_event(&mut out, &c.answer, n, "x", 1);
            let data = std::str::from_utf8(&out).expect("utf8");
            let data = data.strip_prefix("data: ").expect("data").trim_end();
            if n + 1 == count {
                assert_eq!(data, "[DONE]");
                continue;
            }
            let v: Value = serde_json::from_str(data).expect("JSON");
            streamed += v["choices"][0]["text"].as_str().unwrap_or("");
        }
        assert_eq!(streamed, text);
        assert!(matches!(
            read(br#"{"prompt":3}"#, 3, 1),
            Err(BodyError::Field(_))
        ));
    }
}
