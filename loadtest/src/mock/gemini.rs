//! The Gemini dialect (`POST {prefix}/models/{model}:generateContent`,
//! `:streamGenerateContent`, `:embedContent`, `:batchEmbedContents`).
//!
//! Requests carry `contents` (`role` `user` or `model`, `parts` with `text`);
//! `systemInstruction` and `generationConfig` are accepted and ignored. The answer
//! is one `GenerateContentResponse` whose `modelVersion` is the model in the path.
//!
//! Streaming with `?alt=sse` sends one `data: {GenerateContentResponse}` event per
//! word, separated by CRLF CRLF as Google does, with `finishReason: "STOP"` and
//! `usageMetadata` only on the last (an answer with no words left sends one chunk
//! with empty text). There is no terminal sentinel. Without `alt=sse` the same
//! chunks are streamed as one JSON array (`[{..}\r\n,{..}]`), Google's default.
//! Stream faults count chunks: `after_chunks: k` strikes after `k` words.
//! Continuations always follow the `honest` rule, whatever the mock's mode.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::answer::{Answer, Continuation, Turn};
use super::dialect::{write_gemini_error, BodyError};
use super::wire::{push_json_str, push_u64};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest<'a> {
    #[serde(default, borrow)]
    contents: Vec<Content<'a>>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(default, borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(default)]
    parts: Option<Value>,
}

/// A planned Gemini answer and how a stream of it is framed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub answer: Answer,
    /// `alt=sse`: SSE events; otherwise a streamed JSON array.
    pub sse: bool,
}

impl Reply {
    /// Reads a `generateContent` request for `model` and plans its answer.
    pub(crate) fn read(
        body: &[u8],
        model: &str,
        words: usize,
        id: u64,
    ) -> Result<Reply, BodyError> {
        let req: GenerateRequest<'_> = serde_json::from_slice(body)?;
        let turns: Vec<Turn<'_>> = req
            .contents
            .iter()
            .map(|c| Turn::from_json(c.role.as_deref().unwrap_or("user"), &c.parts))
            .collect();
        let answer = Answer::for_turns(
            &turns,
            Continuation::Honest,
            model.to_string(),
            words,
            id,
            body.len(),
        )?;
        Ok(Reply { answer, sse: true })
    }

    fn push_usage(&self, out: &mut Vec<u8>) {
        let (prompt, output) = (self.answer.prompt_tokens, self.answer.completion_tokens());
        out.extend_from_slice(b",\"usageMetadata\":{\"promptTokenCount\":");
        push_u64(out, prompt);
        out.extend_from_slice(b",\"candidatesTokenCount\":");
        push_u64(out, output);
        out.extend_from_slice(b",\"totalTokenCount\":");
        push_u64(out, prompt + output);
        out.push(b'}');
    }

    fn push_tail(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"modelVersion\":");
        push_json_str(out, &self.answer.model);
        out.extend_from_slice(b",\"responseId\":\"mock-");
        push_u64(out, self.answer.id);
        out.extend_from_slice(b"\"}");
    }

    /// Appends one `GenerateContentResponse`; `text` writes the part's escaped text.
    fn push_response(&self, out: &mut Vec<u8>, finish: bool, text: impl FnOnce(&mut Vec<u8>)) {
        out.extend_from_slice(
            b"{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"",
        );
        text(out);
        out.extend_from_slice(b"\"}]}");
        if finish {
            out.extend_from_slice(b",\"finishReason\":\"STOP\"");
        }
        out.extend_from_slice(b",\"index\":0}]");
        if finish {
            self.push_usage(out);
        }
        self.push_tail(out);
    }

    /// Appends the whole answer.
    pub(crate) fn write_response(&self, out: &mut Vec<u8>, name: &str) {
        self.push_response(out, true, |out| {
            for k in 0..self.answer.pieces() {
                self.answer.push_piece(out, name, k);
            }
        });
    }

    /// Number of stream chunks (at least one).
    pub(crate) fn event_count(&self) -> usize {
        self.answer.pieces().max(1)
    }

    fn open(&self, out: &mut Vec<u8>, n: usize) {
        if self.sse {
            out.extend_from_slice(b"data: ");
        } else {
            out.extend_from_slice(if n == 0 { b"[" } else { b",\r\n" });
        }
    }

    fn close(&self, out: &mut Vec<u8>, last: bool) {
        if self.sse {
            out.extend_from_slice(b"\r\n\r\n");
        } else if last {
            out.push(b']');
        }
    }

    /// Appends stream chunk `n`; `no_done` leaves `finishReason` and usage off the
    /// last one. Nothing past the end.
    pub(crate) fn write_event(&self, out: &mut Vec<u8>, n: usize, name: &str, no_done: bool) {
        let count = self.event_count();
        if n >= count {
            return;
        }
        let last = n + 1 == count;
        self.open(out, n);
        self.push_response(out, last && !no_done, |out| {
            if n < self.answer.pieces() {
                self.answer.push_piece(out, name, n);
            }
        });
        self.close(out, last);
    }

    /// Appends the error chunk (503 `UNAVAILABLE`) that ends a stream at chunk `n`.
    pub(crate) fn write_error_event(&self, out: &mut Vec<u8>, n: usize) {
        self.open(out, n);
        write_gemini_error(out, 503, "The model is overloaded. Please try again later.");
        self.close(out, true);
    }

    /// Appends a chunk that is not JSON, at chunk `n`.
    pub(crate) fn write_malformed(&self, out: &mut Vec<u8>, n: usize) {
        self.open(out, n);
        out.extend_from_slice(b"{not json");
        self.close(out, false);
    }
}

#[derive(Deserialize)]
struct BatchEmbedRequest {
    #[serde(default)]
    requests: Vec<Value>,
}

/// Appends deterministic embeddings (8 values each): `{"embeddings":[..]}` for a
/// batch, `{"embedding":{..}}` for a single `embedContent`.
pub(crate) fn write_embeddings(
    out: &mut Vec<u8>,
    body: &[u8],
    batch: bool,
) -> Result<(), BodyError> {
    if !batch {
        serde_json::from_slice::<Value>(body)?;
        out.extend_from_slice(b"{\"embedding\":");
        push_values(out, 0);
        out.push(b'}');
        return Ok(());
    }
    let req: BatchEmbedRequest = serde_json::from_slice(body)?;
    out.extend_from_slice(b"{\"embeddings\":[");
    for i in 0..req.requests.len().min(4096) {
        if i > 0 {
            out.push(b',');
        }
        push_values(out, i);
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

fn push_values(out: &mut Vec<u8>, i: usize) {
    out.extend_from_slice(b"{\"values\":[");
    for j in 0..8 {
        out.extend_from_slice(if j == 0 { b"0." } else { b",0." });
        push_u64(out, ((i * 7 + j * 3) % 10) as u64);
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &str, sse: bool) -> Reply {
        let mut r = Reply::read(body.as_bytes(), "gemini-x", 3, 4).expect("valid");
        r.sse = sse;
        r
    }

    const HI: &str = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"systemInstruction":{"parts":[{"text":"s"}]}}"#;

    #[test]
    fn whole_and_streamed_agree() {
        let r = reply(HI, true);
        let mut whole = Vec::new();
        r.write_response(&mut whole, "g");
        let whole: Value = serde_json::from_slice(&whole).expect("JSON");
        let text = whole["candidates"][0]["content"]["parts"][0]["text"].clone();
        assert_eq!(text, "Hello from g: w0 w1 w2 ");
        assert_eq!(whole["modelVersion"], "gemini-x");
        let mut streamed = String::new();
        let mut out = Vec::new();
        for n in 0..r.event_count() {
            out.clear();
            r.write_event(&mut out, n, "g", false);
            let data = std::str::from_utf8(&out).expect("utf8");
            let data = data
                .strip_prefix("data: ")
                .expect("data")
                .strip_suffix("\r\n\r\n")
                .expect("crlf");
            let v: Value = serde_json::from_str(data).expect("chunk JSON");
            streamed += v["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap_or("");
            let last = n + 1 == r.event_count();
            assert_eq!(v["candidates"][0]["finishReason"].is_string(), last);
            assert_eq!(v["usageMetadata"]["totalTokenCount"].is_u64(), last);
        }
        assert_eq!(streamed, text.as_str().unwrap_or(""));
    }

    #[test]
    fn array_framing_is_one_json_array() {
        let r = reply(HI, false);
        let mut out = Vec::new();
        for n in 0..r.event_count() {
            r.write_event(&mut out, n, "g", false);
        }
        let v: Value = serde_json::from_slice(&out).expect("array JSON");
        assert_eq!(v.as_array().map(Vec::len), Some(3));
        let done = reply(
            r#"{"contents":[{"role":"model","parts":[{"text":"w2 "}]}]}"#,
            true,
        );
        assert_eq!((done.answer.pieces(), done.event_count()), (0, 1));
    }

    #[test]
    fn embeddings() {
        let mut out = Vec::new();
        write_embeddings(&mut out, br#"{"requests":[{},{}]}"#, true).expect("batch");
        let v: Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["embeddings"].as_array().map(Vec::len), Some(2));
        assert!(write_embeddings(&mut out, b"[", false).is_err());
    }
}
