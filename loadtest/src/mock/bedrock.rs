//! The Bedrock Converse dialect (`POST {prefix}/model/{modelId}/converse` and
//! `/converse-stream`; the model id may be percent-encoded, e.g. `%3A`).
//!
//! Requests carry `messages` (`role`, `content` blocks with `text`); `system` and
//! `inferenceConfig` are accepted and ignored. SigV4 signatures are not verified
//! (the `authorization` header is only recorded).
//!
//! `converse-stream` answers `application/vnd.amazon.eventstream` frames (see
//! [`super::eventstream`]), in order (fault `after_chunks` counts them):
//! `messageStart` `{role}`, one `contentBlockDelta` `{delta:{text},contentBlockIndex:0}`
//! per word, `contentBlockStop`, `messageStop` `{stopReason}`, `metadata`
//! `{usage, metrics}`. The error event is an exception frame
//! (`:exception-type` `throttlingException`). Continuations always follow the
//! `honest` rule, whatever the mock's mode.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::answer::{Answer, Continuation, Turn};
use super::dialect::BodyError;
use super::eventstream;
use super::wire::{push_json_str, push_u64};

#[derive(Deserialize)]
struct ConverseRequest<'a> {
    #[serde(default, borrow)]
    messages: Vec<Message<'a>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(default, borrow)]
    role: Cow<'a, str>,
    #[serde(default)]
    content: Option<Value>,
}

/// Reads a Converse request for `model` and plans its answer of `words` words.
pub(crate) fn read(body: &[u8], model: &str, words: usize, id: u64) -> Result<Answer, BodyError> {
    let req: ConverseRequest<'_> = serde_json::from_slice(body)?;
    let turns: Vec<Turn<'_>> = req
        .messages
        .iter()
        .map(|m| Turn::from_json(&m.role, &m.content))
        .collect();
    Ok(Answer::for_turns(
        &turns,
        Continuation::Honest,
        model.to_string(),
        words,
        id,
        body.len(),
    )?)
}

fn push_usage(out: &mut Vec<u8>, answer: &Answer) {
    let (input, output) = (answer.prompt_tokens, answer.completion_tokens());
    out.extend_from_slice(b"\"usage\":{\"inputTokens\":");
    push_u64(out, input);
    out.extend_from_slice(b",\"outputTokens\":");
    push_u64(out, output);
    out.extend_from_slice(b",\"totalTokens\":");
    push_u64(out, input + output);
    out.extend_from_slice(b"},\"metrics\":{\"latencyMs\":1}");
}

/// Appends the whole Converse response.
pub(crate) fn write_response(out: &mut Vec<u8>, answer: &Answer, name: &str) {
    out.extend_from_slice(
        b"{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":",
    );
    answer.push_content(out, name);
    out.extend_from_slice(b"}]}},\"stopReason\":\"end_turn\",");
    push_usage(out, answer);
    out.push(b'}');
}

/// Number of stream frames; `no_done` leaves out `messageStop` and `metadata`.
pub(crate) fn event_count(answer: &Answer, no_done: bool) -> usize {
    answer.pieces() + if no_done { 2 } else { 4 }
}

/// Appends stream frame `n`; nothing past the end.
pub(crate) fn write_event(out: &mut Vec<u8>, answer: &Answer, n: usize, name: &str) {
    let words = answer.pieces();
    match n {
        0 => eventstream::write_event(out, "messageStart", |o| {
            o.extend_from_slice(b"{\"role\":\"assistant\"}")
        }),
        n if n <= words => eventstream::write_event(out, "contentBlockDelta", |o| {
            o.extend_from_slice(b"{\"contentBlockIndex\":0,\"delta\":{\"text\":\"");
            answer.push_piece(o, name, n - 1);
            o.extend_from_slice(b"\"}}");
        }),
        n if n == words + 1 => eventstream::write_event(out, "contentBlockStop", |o| {
            o.extend_from_slice(b"{\"contentBlockIndex\":0}")
        }),
        n if n == words + 2 => eventstream::write_event(out, "messageStop", |o| {
            o.extend_from_slice(b"{\"stopReason\":\"end_turn\"}")
        }),
        n if n == words + 3 => eventstream::write_event(out, "metadata", |o| {
            o.push(b'{');
            push_usage(o, answer);
            o.push(b'}');
        }),
        _ => {}
    }
}

/// Appends the exception frame (`throttlingException`) that ends a stream.
pub(crate) fn write_error_event(out: &mut Vec<u8>, name: &str) {
    eventstream::write_exception(out, "throttlingException", |o| {
        o.extend_from_slice(b"{\"message\":");
        push_json_str(
            o,
            &format!("mock {name}: Too many requests, please wait before trying again."),
        );
        o.push(b'}');
    });
}

/// Appends a well-framed `contentBlockDelta` whose payload is not JSON.
pub(crate) fn write_malformed(out: &mut Vec<u8>) {
    eventstream::write_event(out, "contentBlockDelta", |o| {
        o.extend_from_slice(b"{not json")
    });
}

/// Percent-decodes a model id from the path (`%3A` → `:`); invalid escapes and
/// non-UTF-8 results are kept as written.
pub(crate) fn decode_model_id(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_or(Cow::Borrowed(raw), Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_shape() {
        let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"system":[{"text":"s"}],"inferenceConfig":{"maxTokens":9}}"#;
        let answer = read(body, "anthropic.claude-v2:1", 2, 1).expect("valid");
        let mut out = Vec::new();
        write_response(&mut out, &answer, "b");
        let v: Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(
            v["output"]["message"]["content"][0]["text"],
            "Hello from b: w0 w1 "
        );
        assert_eq!(v["stopReason"], "end_turn");
        assert_eq!(v["usage"]["outputTokens"], 2);
        assert_eq!(event_count(&answer, false), 6);
        assert!(read(b"[", "m", 2, 1).is_err());
    }

    #[test]
    fn model_ids_are_percent_decoded() {
        assert_eq!(
            decode_model_id("anthropic.claude-3-haiku-20240307-v1%3A0"),
            "anthropic.claude-3-haiku-20240307-v1:0"
        );
        assert_eq!(decode_model_id("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(decode_model_id("plain"), "plain");
        assert_eq!(decode_model_id("%ff"), "%ff");
    }
}
