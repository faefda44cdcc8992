//! The mock behaving like real fallbacks when a gateway continues a broken stream,
//! over real sockets: continuation modes set at start, in-process and through
//! `/_mock/continuation`, the provider errors for a refused prefill, and the
//! `slow_first_token` and `tool_call_cut` stream faults (OpenAI and Anthropic).

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use loadtest::mock::{Continuation, Fault, MockConfig, MockHandle};
use serde_json::{json, Value};

mod support;

use support::{fill, find_header, start, TIMEOUT};

fn post(path: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\napi-key: k\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

#[derive(Debug)]
struct Response {
    status: u16,
    body: Vec<u8>,
    /// The chunked body ended with its last chunk (not a reset).
    complete: bool,
    /// When the head arrived, and each body chunk, since the request was sent.
    head_at: Duration,
    chunks_at: Vec<Duration>,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    /// The `data:` payloads of an SSE body, parsed (`[DONE]` as a string).
    fn data(&self) -> Vec<Value> {
        self.text()
            .replace("\r\n", "\n")
            .split("\n\n")
            .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::from(d)))
            .collect()
    }
}

/// One request on a fresh connection, its chunks timed as they arrive.
fn call(mock: &MockHandle, raw: &[u8]) -> Response {
    exchange(mock, raw).expect("response")
}

fn exchange(mock: &MockHandle, raw: &[u8]) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&mock.addr(), TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.write_all(raw)?;
    let sent = Instant::now();
    let mut buf = Vec::new();
    let (status, headers) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = resp.parse(&buf) {
            let found: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_ascii_lowercase(), value)
                })
                .collect();
            let status = resp.code.unwrap_or(0);
            buf.drain(..n);
            break (status, found);
        }
        fill(&mut stream, &mut buf)?;
    };
    let mut resp = Response {
        status,
        body: Vec::new(),
        complete: false,
        head_at: sent.elapsed(),
        chunks_at: Vec::new(),
    };
    if find_header(&headers, "transfer-encoding") != Some("chunked") {
        let len: usize = find_header(&headers, "content-length").map_or(0, |v| v.parse().unwrap());
        while buf.len() < len {
            fill(&mut stream, &mut buf)?;
        }
        resp.body = buf[..len].to_vec();
        resp.complete = true;
        return Ok(resp);
    }
    for _ in 0..10_000 {
        if let Ok(httparse::Status::Complete((n, size))) = httparse::parse_chunk_size(&buf) {
            let size = size as usize;
            if buf.len() >= n + size + 2 {
                if size == 0 {
                    resp.complete = true;
                    return Ok(resp);
                }
                resp.body.extend_from_slice(&buf[n..n + size]);
                resp.chunks_at.push(sent.elapsed());
                buf.drain(..n + size + 2);
                continue;
            }
        }
        if fill(&mut stream, &mut buf).is_err() {
            return Ok(resp);
        }
    }
    Err(io::ErrorKind::InvalidData.into())
}

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";
const AZURE: &str = "/openai/deployments/d/chat/completions?api-version=2024-06-01";
const PARTIAL: &str = "Hello from a: w0 w1 ";
const ECHO: &str =
    "Begin your reply by repeating, exactly, its last words: «w0 w1» — then continue where it stopped.";
const CONTINUE: &str = "Continue your previous answer exactly where it stopped.";

fn chat(stream: bool, messages: Value) -> Value {
    json!({"model":"m","stream":stream,"messages":messages})
}

fn anthropic(stream: bool, messages: Value) -> Value {
    json!({"model":"m","max_tokens":64,"stream":stream,"messages":messages})
}

fn prefill() -> Value {
    json!([{"role":"user","content":"q"},{"role":"assistant","content":PARTIAL}])
}

fn instruction(ask: &str) -> Value {
    json!([{"role":"user","content":"q"},{"role":"assistant","content":PARTIAL},
           {"role":"user","content":ask}])
}

fn chat_text(resp: &Response) -> String {
    if !resp.body.starts_with(b"data: ") {
        return resp.json()["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_string();
    }
    resp.data()
        .iter()
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

fn anthropic_text(resp: &Response) -> String {
    if !resp.body.starts_with(b"event: ") {
        return resp.json()["content"][0]["text"]
            .as_str()
            .expect("text")
            .to_string();
    }
    resp.data()
        .iter()
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
        .collect()
}

fn set_continuation_via_http(mock: &MockHandle, json: &str) -> Response {
    call(
        mock,
        &post("/_mock/continuation", &serde_json::from_str(json).unwrap()),
    )
}

/// Named `mock_…` so that `cargo test -p loadtest mock` selects these tests.
mod mock_fallbacks {
    use super::*;

    #[test]
    fn continuation_mode_is_set_at_start_in_process_and_over_http() {
        let mock = loadtest::mock::start(MockConfig {
            name: "b".into(),
            stream_chunks: 4,
            continuation: Continuation::PrefillOnly,
            ..MockConfig::default()
        })
        .expect("mock starts");
        assert_eq!(
            call(&mock, &get("/_mock/continuation")).json(),
            json!({"mode":"prefill_only"})
        );
        let restart = call(&mock, &post(CHAT, &chat(true, instruction(CONTINUE))));
        assert_eq!(chat_text(&restart), "Hello from a: w0 w1 w2 w3 ");
        let resumed = call(&mock, &post(CHAT, &chat(true, prefill())));
        assert_eq!(chat_text(&resumed), "w2 w3 ");

        let ok = set_continuation_via_http(&mock, r#"{"mode":"restart_reworded"}"#);
        assert_eq!(
            (ok.status, ok.json()),
            (
                200,
                json!({"ok":true,"continuation":{"mode":"restart_reworded"}})
            )
        );
        assert_eq!(mock.continuation(), Continuation::RestartReworded);
        for messages in [prefill(), instruction(ECHO)] {
            let resp = call(&mock, &post(MESSAGES, &anthropic(true, messages)));
            assert_eq!(
                anthropic_text(&resp),
                "Sure, here it is again: w0 w1 w2 w3 "
            );
        }
        let bad = set_continuation_via_http(&mock, r#"{"mode":"liar"}"#);
        assert_eq!(bad.status, 400);
        assert!(bad.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid continuation JSON"));
        assert_eq!(mock.continuation(), Continuation::RestartReworded);

        mock.set_continuation(Continuation::RepeatLastSentence);
        let resp = call(&mock, &post(AZURE, &chat(false, instruction(CONTINUE))));
        assert_eq!(chat_text(&resp), "a: w0 w1 w2 w3 ");
        mock.set_continuation(Continuation::EchoHonouring);
        let resp = call(&mock, &post(MESSAGES, &anthropic(true, instruction(ECHO))));
        assert_eq!(anthropic_text(&resp), "w0 w1w2 w3 ");
        mock.set_continuation(Continuation::Honest);
        let resp = call(&mock, &post(CHAT, &chat(false, instruction(CONTINUE))));
        assert_eq!(chat_text(&resp), "w2 w3 ");
        assert_eq!(mock.stats().requests, 7, "control requests are not counted");
        mock.shutdown();
    }

    #[test]
    fn reject_prefill_answers_each_providers_error() {
        let mock = start("b", 4);
        mock.set_continuation(Continuation::RejectPrefill);
        for path in [CHAT, AZURE] {
            let resp = call(&mock, &post(path, &chat(true, prefill())));
            assert_eq!(resp.status, 400, "{path}");
            assert_eq!(
                resp.text(),
                r#"{"error":{"message":"Assistant message prefill is not supported: the final message must be a user or tool message.","type":"invalid_request_error","param":"messages","code":"invalid_request_error"}}"#
            );
        }
        let resp = call(&mock, &post(MESSAGES, &anthropic(true, prefill())));
        assert_eq!(resp.status, 400);
        assert_eq!(
            resp.text(),
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"This model does not support assistant message prefill. The conversation must end with a user message."}}"#
        );
        let echo = call(&mock, &post(CHAT, &chat(true, instruction(ECHO))));
        assert_eq!((echo.status, chat_text(&echo)), (200, "w0 w1w2 w3 ".into()));
        let plain = call(
            &mock,
            &post(MESSAGES, &anthropic(false, instruction(CONTINUE))),
        );
        assert_eq!(
            anthropic_text(&plain),
            "Sure, here it is again: w0 w1 w2 w3 "
        );
        // Gemini keeps the honest rule.
        let gemini = json!({"contents":[{"role":"user","parts":[{"text":"q"}]},
                                        {"role":"model","parts":[{"text":PARTIAL}]}]});
        let resp = call(&mock, &post("/v1beta/models/g:generateContent", &gemini));
        assert_eq!(
            (
                resp.status,
                resp.json()["candidates"][0]["content"]["parts"][0]["text"].clone()
            ),
            (200, json!("w2 w3 "))
        );
        mock.shutdown();
    }

    const WAIT: Duration = Duration::from_millis(600);
    /// Scheduling slack allowed to the client on a loaded machine.
    const SLACK: Duration = Duration::from_millis(300);

    #[test]
    fn slow_first_token_holds_only_the_first_content_chunk() {
        let mock = start("b", 3);
        mock.set_fault(Fault::SlowFirstToken { ms: 600 });
        let resp = call(
            &mock,
            &post(CHAT, &chat(true, json!([{"role":"user","content":"hi"}]))),
        );
        assert!(resp.complete);
        assert_eq!(chat_text(&resp), "Hello from b: w0 w1 w2 ");
        let data = resp.data();
        assert_eq!(data[0]["choices"][0]["delta"]["role"], "assistant");
        let (role_at, first_at) = (resp.chunks_at[0], resp.chunks_at[1]);
        assert!(first_at >= WAIT, "{:?}", resp.chunks_at);
        assert!(role_at + SLACK <= first_at, "{:?}", resp.chunks_at);
        assert!(*resp.chunks_at.last().unwrap() < first_at + SLACK);

        // Anthropic: message_start, content_block_start and ping go out at once.
        let resp = call(
            &mock,
            &post(
                MESSAGES,
                &anthropic(true, json!([{"role":"user","content":"hi"}])),
            ),
        );
        assert_eq!(anthropic_text(&resp), "Hello from b: w0 w1 w2 ");
        assert!(
            resp.chunks_at[2] + SLACK <= resp.chunks_at[3],
            "{:?}",
            resp.chunks_at
        );
        assert!(resp.chunks_at[3] >= WAIT);

        // Gemini: only the head goes out at once.
        let gemini = json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}]});
        let resp = call(
            &mock,
            &post("/v1beta/models/g:streamGenerateContent?alt=sse", &gemini),
        );
        assert!(resp.head_at + SLACK <= resp.chunks_at[0], "{resp:?}");
        assert!(resp.chunks_at[0] >= WAIT);
        assert_eq!(mock.stats().faults_injected, 3);
        mock.shutdown();
    }

    fn tools_chat() -> Value {
        json!({"model":"m","stream":true,"tool_choice":"required",
               "tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object"}}}],
               "messages":[{"role":"user","content":"hi"}]})
    }

    fn tools_anthropic() -> Value {
        json!({"model":"m","max_tokens":64,"stream":true,"tool_choice":{"type":"any"},
               "tools":[{"name":"lookup","input_schema":{"type":"object"}}],
               "messages":[{"role":"user","content":"hi"}]})
    }

    fn openai_arguments(resp: &Response) -> String {
        resp.data()
            .iter()
            .filter_map(|v| {
                v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    fn anthropic_arguments(resp: &Response) -> String {
        resp.data()
            .iter()
            .filter_map(|v| v["delta"]["partial_json"].as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn tool_call_streams_whole_and_is_cut_mid_arguments() {
        let mock = start("b", 4);
        let whole = call(&mock, &post(CHAT, &tools_chat()));
        assert!(whole.complete);
        let data = whole.data();
        assert_eq!(
            data[1]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index":0,"id":"call_mock_1","type":"function","function":{"name":"lookup","arguments":""}})
        );
        assert_eq!(openai_arguments(&whole), r#"{"text":"w0 w1 w2 w3 "}"#);
        assert_eq!(
            data[data.len() - 2]["choices"][0]["finish_reason"],
            "tool_calls"
        );
        let whole_anthropic = call(&mock, &post(MESSAGES, &tools_anthropic()));
        assert_eq!(
            anthropic_arguments(&whole_anthropic),
            r#"{"text":"w0 w1 w2 w3 "}"#
        );
        assert!(whole_anthropic
            .text()
            .contains(r#""stop_reason":"tool_use""#));

        mock.set_fault(Fault::ToolCallCut { after_chunks: 2 });
        let cut = call(&mock, &post(CHAT, &tools_chat()));
        assert!(!cut.complete, "reset mid-arguments");
        assert_eq!(cut.data().len(), 4, "role, call head, 2 argument chunks");
        assert_eq!(openai_arguments(&cut), r#"{"text":"w0 "#);
        let cut = call(&mock, &post(MESSAGES, &tools_anthropic()));
        assert!(!cut.complete);
        assert_eq!(cut.data().len(), 5, "3 events, 2 argument chunks");
        assert_eq!(anthropic_arguments(&cut), r#"{"text":"w0 "#);
        let text = call(
            &mock,
            &post(CHAT, &chat(true, json!([{"role":"user","content":"hi"}]))),
        );
        assert!(text.complete, "text streams are untouched");
        assert_eq!(chat_text(&text), "Hello from b: w0 w1 w2 w3 ");

        mock.set_fault(Fault::ToolCallCut { after_chunks: 6 });
        let past = call(&mock, &post(CHAT, &tools_chat()));
        assert!(
            past.complete,
            "a count past the arguments leaves the call whole"
        );
        assert_eq!(openai_arguments(&past), r#"{"text":"w0 w1 w2 w3 "}"#);
        assert_eq!(mock.stats().faults_injected, 2);
        mock.shutdown();
    }
}
