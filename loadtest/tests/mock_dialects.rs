//! The mock's provider dialects (Anthropic, Gemini, Bedrock, Azure OpenAI) over
//! real sockets on 127.0.0.1: answer shapes, stream shapes, fault shapes and the
//! continuation rule, checked with an independent blocking client (and an
//! independent AWS event-stream decoder for Bedrock).

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};

use loadtest::mock::{Dialect, Fault, MockHandle};
use serde_json::{json, Value};

mod support;

use support::{fill, find_header, start, TIMEOUT};

/// Bound on reads per response, so no loop can spin forever.
const MAX_READS: usize = 10_000;

fn status_fault(status: u16, retry_after: Option<u64>) -> Fault {
    Fault::Status {
        status,
        rate: 1.0,
        retry_after,
        body: None,
        times: None,
    }
}

/// A raw POST with extra headers.
fn post(path: &str, headers: &[(&str, &str)], body: &Value) -> Vec<u8> {
    let body = body.to_string();
    let mut raw = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n");
    for (name, value) in headers {
        raw += &format!("{name}: {value}\r\n");
    }
    raw += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    raw.into_bytes()
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The body ended with the last chunk (not a reset or close).
    complete: bool,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }
}

/// Sends one request on a fresh connection and reads the response; a chunked body
/// cut by a reset or close comes back with `complete: false`.
fn call(mock: &MockHandle, raw: &[u8]) -> Response {
    exchange(mock.addr(), raw).expect("response head")
}

fn exchange(addr: SocketAddr, raw: &[u8]) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.write_all(raw)?;
    let mut buf = Vec::new();
    let (status, headers, head_len) = read_head(&mut stream, &mut buf)?;
    buf.drain(..head_len);
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
        complete: false,
    };
    if resp.header("transfer-encoding") == Some("chunked") {
        resp.complete = read_chunks(&mut stream, &mut buf, &mut resp.body).is_ok();
    } else {
        let len: usize = resp
            .header("content-length")
            .map_or(0, |v| v.parse().expect("length"));
        for _ in 0..MAX_READS {
            if buf.len() >= len {
                break;
            }
            fill(&mut stream, &mut buf)?;
        }
        resp.body = buf[..len.min(buf.len())].to_vec();
        resp.complete = buf.len() >= len;
    }
    Ok(resp)
}

type Head = (u16, Vec<(String, String)>, usize);

fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Head> {
    for _ in 0..MAX_READS {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = resp.parse(buf) {
            let headers = resp
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_ascii_lowercase(), value)
                })
                .collect();
            return Ok((resp.code.unwrap_or(0), headers, n));
        }
        fill(stream, buf)?;
    }
    Err(io::ErrorKind::InvalidData.into())
}

/// Appends the de-chunked body to `body` until the last chunk.
fn read_chunks(stream: &mut TcpStream, buf: &mut Vec<u8>, body: &mut Vec<u8>) -> io::Result<()> {
    for _ in 0..MAX_READS {
        if let Ok(httparse::Status::Complete((n, size))) = httparse::parse_chunk_size(buf) {
            let size = usize::try_from(size).map_err(|_| io::ErrorKind::InvalidData)?;
            if buf.len() >= n + size + 2 {
                body.extend_from_slice(&buf[n..n + size]);
                buf.drain(..n + size + 2);
                if size == 0 {
                    return Ok(());
                }
                continue;
            }
        }
        fill(stream, buf)?;
    }
    Err(io::ErrorKind::InvalidData.into())
}

/// SSE events of a body as (event name, data), split on blank lines (LF or CRLF).
fn sse_events(text: &str) -> Vec<(Option<String>, String)> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let event = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_string);
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("")
                .to_string();
            (event, data)
        })
        .collect()
}

fn parse(data: &str) -> Value {
    serde_json::from_str(data).expect("event data is JSON")
}

// ---------------------------------------------------------------- Anthropic

const ANTHROPIC_HEADERS: &[(&str, &str)] = &[
    ("x-api-key", "sk-ant-test"),
    ("anthropic-version", "2023-06-01"),
];

fn messages(body: Value) -> Vec<u8> {
    post("/v1/messages", ANTHROPIC_HEADERS, &body)
}

fn anthropic_hi(stream: bool) -> Value {
    json!({"model":"claude-test","max_tokens":64,"stream":stream,
           "system":"be brief","messages":[{"role":"user","content":"hi"}]})
}

/// Concatenated `text_delta`s of an Anthropic stream.
fn anthropic_text(events: &[(Option<String>, String)]) -> String {
    events
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("content_block_delta"))
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------- Gemini

fn gemini_body(contents: Value) -> Value {
    json!({"contents":contents,"systemInstruction":{"parts":[{"text":"s"}]},
           "generationConfig":{"maxOutputTokens":64}})
}

fn gemini_hi() -> Value {
    gemini_body(json!([{"role":"user","parts":[{"text":"hi"}]}]))
}

fn gemini_stream_path(model: &str) -> String {
    format!("/v1beta/models/{model}:streamGenerateContent?alt=sse&key=K")
}

/// Concatenated part texts of a Gemini SSE stream.
fn gemini_text(events: &[(Option<String>, String)]) -> String {
    events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

// ---------------------------------------------------------------- Bedrock

const SIGV4: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";

fn converse(model: &str, stream: bool, body: Value) -> Vec<u8> {
    let op = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    let path = format!("/model/{model}/{op}");
    post(
        &path,
        &[("authorization", SIGV4), ("x-amz-date", "20240101T000000Z")],
        &body,
    )
}

fn bedrock_hi() -> Value {
    json!({"messages":[{"role":"user","content":[{"text":"hi"}]}],
           "system":[{"text":"s"}],"inferenceConfig":{"maxTokens":64}})
}

/// One decoded AWS event-stream message.
#[derive(Debug)]
struct Frame {
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).expect("frame payload JSON")
    }
}

/// CRC-32 (IEEE, reflected, as event-stream uses), bit by bit, independent of the mock's.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Decodes event-stream messages, checking both CRCs and that the bytes end on a
/// message boundary. Only string headers (type 7) are expected from the mock.
fn decode_frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 16, "truncated prelude");
        let total = be32(&bytes[0..4]) as usize;
        let headers_len = be32(&bytes[4..8]) as usize;
        assert!(
            total >= 16 + headers_len && bytes.len() >= total,
            "bad lengths"
        );
        assert_eq!(be32(&bytes[8..12]), crc32(&bytes[..8]), "prelude CRC");
        assert_eq!(
            be32(&bytes[total - 4..total]),
            crc32(&bytes[..total - 4]),
            "message CRC"
        );
        let mut h = &bytes[12..12 + headers_len];
        let mut headers = Vec::new();
        while !h.is_empty() {
            let name_len = usize::from(h[0]);
            let name = String::from_utf8(h[1..1 + name_len].to_vec()).expect("name");
            assert_eq!(h[1 + name_len], 7, "string header");
            let at = 2 + name_len;
            let value_len = usize::from(u16::from_be_bytes([h[at], h[at + 1]]));
            let value = String::from_utf8(h[at + 2..at + 2 + value_len].to_vec()).expect("value");
            headers.push((name, value));
            h = &h[at + 2 + value_len..];
        }
        let payload = bytes[12 + headers_len..total - 4].to_vec();
        frames.push(Frame { headers, payload });
        bytes = &bytes[total..];
    }
    frames
}

fn bedrock_text(frames: &[Frame]) -> String {
    frames
        .iter()
        .filter(|f| f.header(":event-type") == Some("contentBlockDelta"))
        .filter_map(|f| f.json()["delta"]["text"].as_str().map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------- Azure

const AZURE: &str = "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01";

fn azure_chat(path: &str, key: bool, body: Value) -> Vec<u8> {
    let headers: &[(&str, &str)] = if key { &[("api-key", "az-key")] } else { &[] };
    post(path, headers, &body)
}

fn openai_hi(stream: bool) -> Value {
    json!({"model":"ignored","stream":stream,"messages":[{"role":"user","content":"hi"}]})
}

/// Named `mock_…` so that `cargo test -p loadtest mock` selects these tests.
mod mock_dialects {
    use super::*;

    #[test]
    fn anthropic_message_shape_and_recorded_headers() {
        let mock = start("claude", 3);
        let resp = call(&mock, &messages(anthropic_hi(false)));
        assert_eq!(resp.status, 200);
        let v = resp.json();
        assert!(v["id"].as_str().expect("id").starts_with("msg_"));
        assert_eq!(
            (v["type"].as_str(), v["role"].as_str()),
            (Some("message"), Some("assistant"))
        );
        assert_eq!(v["model"], "claude-test");
        assert_eq!(
            v["content"],
            json!([{"type":"text","text":"Hello from claude: w0 w1 w2 "}])
        );
        assert_eq!(v["stop_reason"], "end_turn");
        assert!(v["stop_sequence"].is_null());
        assert_eq!(v["usage"]["output_tokens"], 3);
        assert!(v["usage"]["input_tokens"].as_u64().expect("input tokens") > 0);
        let seen = mock.last_request().expect("recorded");
        assert_eq!(seen.dialect, Some(Dialect::Anthropic));
        assert_eq!(seen.header("x-api-key"), Some("sk-ant-test"));
        assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
        let prefixed = call(
            &mock,
            &post("/anthropic/v1/messages", &[], &anthropic_hi(false)),
        );
        assert_eq!(prefixed.status, 200);
        mock.shutdown();
    }

    #[test]
    fn anthropic_stream_shape() {
        let mock = start("claude", 3);
        let resp = call(&mock, &messages(anthropic_hi(true)));
        assert_eq!((resp.status, resp.complete), (200, true));
        assert_eq!(resp.header("content-type"), Some("text/event-stream"));
        let events = sse_events(resp.text());
        let names: Vec<&str> = events.iter().filter_map(|(e, _)| e.as_deref()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (event, data) in &events {
            assert_eq!(
                parse(data)["type"].as_str(),
                event.as_deref(),
                "data type matches event"
            );
        }
        let start = parse(&events[0].1);
        assert_eq!(start["message"]["model"], "claude-test");
        assert_eq!(start["message"]["content"], json!([]));
        assert_eq!(
            parse(&events[1].1)["content_block"],
            json!({"type":"text","text":""})
        );
        assert_eq!(parse(&events[3].1)["delta"]["type"], "text_delta");
        let delta = parse(&events[7].1);
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["output_tokens"], 3);
        assert_eq!(anthropic_text(&events), "Hello from claude: w0 w1 w2 ");
        mock.shutdown();
    }

    #[test]
    fn anthropic_requires_max_tokens_and_answers_tool_use() {
        let mock = start("claude", 3);
        let resp = call(
            &mock,
            &messages(json!({"model":"c","messages":[{"role":"user","content":"hi"}]})),
        );
        assert_eq!(resp.status, 400);
        let v = resp.json();
        assert_eq!(
            (v["type"].as_str(), v["error"]["type"].as_str()),
            (Some("error"), Some("invalid_request_error"))
        );
        assert!(v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("max_tokens"));

        let tools = json!([{"name":"get_weather","description":"d","input_schema":{"type":"object"}},
                           {"name":"other","input_schema":{"type":"object"}}]);
        let ask = |stream: bool| {
            json!({"model":"c","max_tokens":64,"stream":stream,"tools":tools,
            "messages":[{"role":"user","content":[{"type":"text","text":"Please use a tool now"}]}]})
        };
        let v = call(&mock, &messages(ask(false))).json();
        assert_eq!(v["stop_reason"], "tool_use");
        let block = &v["content"][0];
        assert_eq!(
            (block["type"].as_str(), block["name"].as_str()),
            (Some("tool_use"), Some("get_weather"))
        );
        assert_eq!(block["input"], json!({}));
        assert!(block["id"].as_str().expect("tool id").starts_with("toolu_"));

        let events = sse_events(call(&mock, &messages(ask(true))).text());
        let start = parse(&events[1].1);
        assert_eq!(start["content_block"]["type"], "tool_use");
        let partial: String = events
            .iter()
            .filter_map(|(_, d)| {
                parse(d)["delta"]["partial_json"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&partial).expect("tool input"),
            json!({})
        );
        assert_eq!(
            parse(&events[events.len() - 2].1)["delta"]["stop_reason"],
            "tool_use"
        );

        let after_result = json!({"model":"c","max_tokens":64,"tools":tools,"messages":[
            {"role":"user","content":"use a tool"},
            {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"get_weather","input":{}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"sunny"}]}]});
        let v = call(&mock, &messages(after_result)).json();
        assert_eq!(
            v["content"][0]["type"], "text",
            "a tool result is answered with text"
        );
        mock.shutdown();
    }

    #[test]
    fn anthropic_fault_shapes() {
        let mock = start("claude", 3);
        mock.set_fault(status_fault(529, None));
        let resp = call(&mock, &messages(anthropic_hi(true)));
        assert_eq!(resp.status, 529);
        assert_eq!(
            resp.json(),
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})
        );
        mock.set_fault(status_fault(429, Some(3)));
        let resp = call(&mock, &messages(anthropic_hi(false)));
        assert_eq!((resp.status, resp.header("retry-after")), (429, Some("3")));
        assert_eq!(resp.json()["error"]["type"], "rate_limit_error");
        mock.set_fault(status_fault(500, None));
        assert_eq!(
            call(&mock, &messages(anthropic_hi(false))).json()["error"]["type"],
            "api_error"
        );

        mock.set_fault(Fault::SseErrorEvent {
            after_chunks: Dialect::Anthropic.after_words(2),
        });
        let resp = call(&mock, &messages(anthropic_hi(true)));
        assert_eq!((resp.status, resp.complete), (200, true));
        let events = sse_events(resp.text());
        assert_eq!(anthropic_text(&events), "Hello from claude: w0 w1 ");
        let (event, data) = events.last().expect("error event");
        assert_eq!(event.as_deref(), Some("error"));
        assert_eq!(parse(data)["error"]["type"], "overloaded_error");
        assert_eq!(parse(data)["type"], "error");

        mock.set_fault(Fault::ResetMidStream {
            after_chunks: Dialect::Anthropic.after_words(1),
        });
        let resp = call(&mock, &messages(anthropic_hi(true)));
        assert!(!resp.complete, "the stream is cut");
        assert_eq!(
            anthropic_text(&sse_events(resp.text())),
            "Hello from claude: w0 "
        );

        mock.set_fault(Fault::MalformedEvent { after_chunks: 3 });
        let resp = call(&mock, &messages(anthropic_hi(true)));
        let events = sse_events(resp.text());
        assert!(events.iter().any(|(_, d)| d == "{not json"));
        assert_eq!(anthropic_text(&events), "Hello from claude: w0 w1 w2 ");

        mock.set_fault(Fault::NoDone);
        let events = sse_events(call(&mock, &messages(anthropic_hi(true))).text());
        assert_eq!(
            events.last().and_then(|(e, _)| e.as_deref()),
            Some("message_delta")
        );
        mock.shutdown();
    }

    #[test]
    fn gemini_answer_stream_and_embeddings() {
        let mock = start("gem", 3);
        let resp = call(
            &mock,
            &post(
                "/v1beta/models/gemini-2.0-flash:generateContent",
                &[("x-goog-api-key", "g")],
                &gemini_hi(),
            ),
        );
        assert_eq!(resp.status, 200);
        let v = resp.json();
        let candidate = &v["candidates"][0];
        assert_eq!(
            candidate["content"],
            json!({"role":"model","parts":[{"text":"Hello from gem: w0 w1 w2 "}]})
        );
        assert_eq!(
            (
                candidate["finishReason"].as_str(),
                candidate["index"].as_u64()
            ),
            (Some("STOP"), Some(0))
        );
        let usage = &v["usageMetadata"];
        assert_eq!(usage["candidatesTokenCount"], 3);
        assert_eq!(
            usage["totalTokenCount"].as_u64(),
            Some(usage["promptTokenCount"].as_u64().expect("prompt") + 3)
        );
        assert_eq!(v["modelVersion"], "gemini-2.0-flash");
        assert_eq!(
            mock.last_request().expect("recorded").dialect,
            Some(Dialect::Gemini)
        );

        let resp = call(
            &mock,
            &post(&gemini_stream_path("gemini-2.0-flash"), &[], &gemini_hi()),
        );
        assert_eq!((resp.status, resp.complete), (200, true));
        assert_eq!(resp.header("content-type"), Some("text/event-stream"));
        assert!(
            resp.text().contains("\r\n\r\n"),
            "Google separates events with CRLF"
        );
        let events = sse_events(resp.text());
        assert_eq!(events.len(), 3, "one chunk per word");
        assert_eq!(gemini_text(&events), "Hello from gem: w0 w1 w2 ");
        for (i, (_, data)) in events.iter().enumerate() {
            let v = parse(data);
            let last = i == events.len() - 1;
            assert_eq!(
                v["candidates"][0]["finishReason"].as_str(),
                last.then_some("STOP")
            );
            assert_eq!(v["usageMetadata"].is_object(), last);
        }

        let resp = call(
            &mock,
            &post("/v1beta/models/g:streamGenerateContent", &[], &gemini_hi()),
        );
        let chunks = resp.json();
        assert_eq!(
            chunks.as_array().map(Vec::len),
            Some(3),
            "without alt=sse: a JSON array"
        );

        let batch = json!({"requests":[{"model":"models/e","content":{"parts":[{"text":"a"}]}},
                                        {"model":"models/e","content":{"parts":[{"text":"b"}]}}]});
        let v = call(
            &mock,
            &post("/v1beta/models/e:batchEmbedContents", &[], &batch),
        )
        .json();
        let embeddings = v["embeddings"].as_array().expect("embeddings");
        assert_eq!(embeddings.len(), 2);
        assert!(embeddings[0]["values"]
            .as_array()
            .is_some_and(|v| !v.is_empty()));
        let resp = call(
            &mock,
            &post("/v1beta/models/g:generateContent", &[], &json!("x")),
        );
        assert_eq!(
            (resp.status, resp.json()["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
        mock.shutdown();
    }

    #[test]
    fn gemini_fault_shapes() {
        let mock = start("gem", 3);
        let path = "/v1beta/models/g:generateContent";
        for (status, name) in [
            (429, "RESOURCE_EXHAUSTED"),
            (503, "UNAVAILABLE"),
            (500, "INTERNAL"),
        ] {
            mock.set_fault(status_fault(status, None));
            let resp = call(&mock, &post(path, &[], &gemini_hi()));
            assert_eq!(resp.status, status);
            let error = &resp.json()["error"];
            assert_eq!(
                (error["code"].as_u64(), error["status"].as_str()),
                (Some(u64::from(status)), Some(name))
            );
        }
        let resp = call(&mock, &post(path, &[], &gemini_hi()));
        assert_eq!(
            resp.json()["error"]["message"],
            "An internal error has occurred."
        );
        mock.set_fault(status_fault(429, None));
        let resp = call(&mock, &post(path, &[], &gemini_hi()));
        assert_eq!(
            resp.json()["error"]["message"],
            "Resource has been exhausted"
        );

        mock.set_fault(Fault::SseErrorEvent {
            after_chunks: Dialect::Gemini.after_words(1),
        });
        let resp = call(&mock, &post(&gemini_stream_path("g"), &[], &gemini_hi()));
        assert_eq!((resp.status, resp.complete), (200, true));
        let events = sse_events(resp.text());
        assert_eq!(gemini_text(&events), "Hello from gem: w0 ");
        let error = parse(&events.last().expect("error chunk").1);
        assert_eq!(
            (
                error["error"]["code"].as_u64(),
                error["error"]["status"].as_str()
            ),
            (Some(503), Some("UNAVAILABLE"))
        );

        mock.set_fault(Fault::ResetMidStream {
            after_chunks: Dialect::Gemini.after_words(2),
        });
        let resp = call(&mock, &post(&gemini_stream_path("g"), &[], &gemini_hi()));
        assert!(!resp.complete);
        assert_eq!(
            gemini_text(&sse_events(resp.text())),
            "Hello from gem: w0 w1 "
        );

        mock.set_fault(Fault::NoDone);
        let events =
            sse_events(call(&mock, &post(&gemini_stream_path("g"), &[], &gemini_hi())).text());
        assert_eq!(gemini_text(&events), "Hello from gem: w0 w1 w2 ");
        assert!(events
            .iter()
            .all(|(_, d)| parse(d)["candidates"][0]["finishReason"].is_null()));
        mock.shutdown();
    }

    #[test]
    fn bedrock_converse_and_stream_frames() {
        let mock = start("rock", 3);
        let model = "anthropic.claude-3-haiku-20240307-v1%3A0";
        let resp = call(&mock, &converse(model, false, bedrock_hi()));
        assert_eq!(resp.status, 200);
        let v = resp.json();
        assert_eq!(
            v["output"]["message"],
            json!({"role":"assistant","content":[{"text":"Hello from rock: w0 w1 w2 "}]})
        );
        assert_eq!(v["stopReason"], "end_turn");
        let usage = &v["usage"];
        assert_eq!(usage["outputTokens"], 3);
        assert_eq!(
            usage["totalTokens"].as_u64(),
            Some(usage["inputTokens"].as_u64().expect("input") + 3)
        );
        assert!(v["metrics"]["latencyMs"].is_u64());
        let seen = mock.last_request().expect("recorded");
        assert_eq!(seen.dialect, Some(Dialect::Bedrock));
        assert_eq!(seen.path, format!("/model/{model}/converse"));
        assert!(seen
            .header("authorization")
            .expect("authorization")
            .starts_with("AWS4-HMAC-SHA256 Credential="));

        let resp = call(&mock, &converse(model, true, bedrock_hi()));
        assert_eq!((resp.status, resp.complete), (200, true));
        assert_eq!(
            resp.header("content-type"),
            Some("application/vnd.amazon.eventstream")
        );
        let frames = decode_frames(&resp.body);
        let kinds: Vec<&str> = frames
            .iter()
            .filter_map(|f| f.header(":event-type"))
            .collect();
        assert_eq!(
            kinds,
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        for frame in &frames {
            assert_eq!(frame.header(":message-type"), Some("event"));
            assert_eq!(frame.header(":content-type"), Some("application/json"));
        }
        assert_eq!(frames[0].json(), json!({"role":"assistant"}));
        assert_eq!(frames[1].json()["contentBlockIndex"], 0);
        assert_eq!(bedrock_text(&frames), "Hello from rock: w0 w1 w2 ");
        assert_eq!(frames[5].json(), json!({"stopReason":"end_turn"}));
        assert_eq!(frames[6].json()["usage"]["outputTokens"], 3);
        assert!(frames[6].json()["metrics"]["latencyMs"].is_u64());
        mock.shutdown();
    }

    #[test]
    fn bedrock_fault_shapes() {
        let mock = start("rock", 3);
        for (status, kind) in [
            (429, "ThrottlingException"),
            (503, "ServiceUnavailableException"),
        ] {
            mock.set_fault(status_fault(status, None));
            let resp = call(&mock, &converse("m", false, bedrock_hi()));
            assert_eq!(
                (resp.status, resp.header("x-amzn-errortype")),
                (status, Some(kind))
            );
            assert!(resp.json()["message"].is_string());
        }
        mock.set_fault(status_fault(429, None));
        assert_eq!(
            call(&mock, &converse("m", true, bedrock_hi())).json(),
            json!({"message":"Too many requests"})
        );

        mock.set_fault(Fault::SseErrorEvent {
            after_chunks: Dialect::Bedrock.after_words(1),
        });
        let resp = call(&mock, &converse("m", true, bedrock_hi()));
        assert_eq!((resp.status, resp.complete), (200, true));
        let frames = decode_frames(&resp.body);
        assert_eq!(bedrock_text(&frames), "Hello from rock: w0 ");
        let last = frames.last().expect("exception frame");
        assert_eq!(last.header(":message-type"), Some("exception"));
        assert_eq!(last.header(":exception-type"), Some("throttlingException"));
        assert!(last.json()["message"].is_string());

        mock.set_fault(Fault::MalformedEvent { after_chunks: 2 });
        let frames = decode_frames(&call(&mock, &converse("m", true, bedrock_hi())).body);
        assert!(
            frames.iter().any(|f| f.payload == b"{not json"),
            "framed, CRCs valid, payload not JSON"
        );
        let good: Vec<Frame> = frames
            .into_iter()
            .filter(|f| f.payload != b"{not json")
            .collect();
        assert_eq!(bedrock_text(&good), "Hello from rock: w0 w1 w2 ");

        mock.set_fault(Fault::ResetMidStream {
            after_chunks: Dialect::Bedrock.after_words(2),
        });
        let resp = call(&mock, &converse("m", true, bedrock_hi()));
        assert!(!resp.complete);
        assert_eq!(
            bedrock_text(&decode_frames(&resp.body)),
            "Hello from rock: w0 w1 "
        );
        mock.shutdown();
    }

    #[test]
    fn azure_rules_and_shapes() {
        let mock = start("az", 3);
        let resp = call(&mock, &azure_chat(AZURE, true, openai_hi(false)));
        assert_eq!(resp.status, 200);
        let v = resp.json();
        assert_eq!(v["model"], "gpt4o-prod", "the deployment is the model");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Hello from az: w0 w1 w2 "
        );
        let seen = mock.last_request().expect("recorded");
        assert_eq!(
            (seen.dialect, seen.header("api-key")),
            (Some(Dialect::Azure), Some("az-key"))
        );

        let resp = call(&mock, &azure_chat(AZURE, false, openai_hi(false)));
        assert_eq!(resp.status, 401);
        assert!(resp.json()["error"]["message"].is_string());
        let no_version = "/openai/deployments/gpt4o-prod/chat/completions";
        let resp = call(&mock, &azure_chat(no_version, true, openai_hi(false)));
        assert_eq!(resp.status, 400);
        assert!(resp.json()["error"]["message"]
            .as_str()
            .expect("message")
            .contains("api-version"));

        let filtered = json!({"messages":[{"role":"user","content":"this must be filtered"}]});
        let resp = call(&mock, &azure_chat(AZURE, true, filtered));
        assert_eq!(resp.status, 400);
        let error = &resp.json()["error"];
        assert_eq!(error["code"], "content_filter");
        assert_eq!(error["innererror"]["code"], "ResponsibleAIPolicyViolation");
        assert!(error["message"]
            .as_str()
            .expect("message")
            .starts_with("The response was filtered"));

        let resp = call(&mock, &azure_chat(AZURE, true, openai_hi(true)));
        let events = sse_events(resp.text());
        assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
        assert_eq!(parse(&events[0].1)["model"], "gpt4o-prod");

        mock.set_fault(status_fault(429, Some(1)));
        let resp = call(&mock, &azure_chat(AZURE, true, openai_hi(false)));
        assert_eq!((resp.status, resp.header("retry-after")), (429, Some("1")));
        assert_eq!(resp.json()["error"]["type"], "rate_limit_error");
        mock.shutdown();
    }

    #[test]
    fn continuation_rule_in_every_dialect() {
        let mock = start("c", 4);
        let prefix = "Hello from c: w0 w1 ";
        let rest = "w2 w3 ";
        let instruction = "Continue exactly where you stopped.";

        let anthropic = |turns: Value| {
            call(
                &mock,
                &messages(json!({"model":"m","max_tokens":9,"messages":turns})),
            )
            .json()["content"][0]["text"]
                .clone()
        };
        let q = json!({"role":"user","content":"q"});
        assert_each_continues(
            anthropic,
            [
                json!([q, {"role":"assistant","content":prefix}]),
                json!([q, {"role":"assistant","content":[{"type":"text","text":prefix}]},
                       {"role":"user","content":instruction}]),
            ],
            rest,
        );

        let gemini = |contents: Value| {
            call(
                &mock,
                &post(
                    "/v1beta/models/g:generateContent",
                    &[],
                    &gemini_body(contents),
                ),
            )
            .json()["candidates"][0]["content"]["parts"][0]["text"]
                .clone()
        };
        let gq = json!({"role":"user","parts":[{"text":"q"}]});
        assert_each_continues(
            gemini,
            [
                json!([gq, {"role":"model","parts":[{"text":prefix}]}]),
                json!([gq, {"role":"model","parts":[{"text":prefix}]},
                       {"role":"user","parts":[{"text":instruction}]}]),
            ],
            rest,
        );

        let bedrock = |messages: Value| {
            call(&mock, &converse("m", false, json!({"messages":messages}))).json()["output"]
                ["message"]["content"][0]["text"]
                .clone()
        };
        let bq = json!({"role":"user","content":[{"text":"q"}]});
        assert_each_continues(
            bedrock,
            [
                json!([bq, {"role":"assistant","content":[{"text":prefix}]}]),
                json!([bq, {"role":"assistant","content":[{"text":prefix}]},
                       {"role":"user","content":[{"text":instruction}]}]),
            ],
            rest,
        );

        let azure = |messages: Value| {
            call(
                &mock,
                &azure_chat(AZURE, true, json!({"messages":messages})),
            )
            .json()["choices"][0]["message"]["content"]
                .clone()
        };
        assert_each_continues(
            azure,
            [
                json!([q, {"role":"assistant","content":prefix}]),
                json!([q, {"role":"assistant","content":prefix}, {"role":"user","content":instruction}]),
            ],
            rest,
        );
        mock.shutdown();
    }

    /// `ask` answers exactly `rest` to each of the `conversations` (a cut answer, or a
    /// cut answer followed by an instruction to continue).
    fn assert_each_continues(ask: impl Fn(Value) -> Value, conversations: [Value; 2], rest: &str) {
        for conversation in conversations {
            assert_eq!(ask(conversation.clone()), rest, "{conversation}");
        }
    }

    #[test]
    fn a_cut_stream_continues_across_dialects() {
        let anthropic = start("a", 4);
        let bedrock = start("b", 4);
        anthropic.set_fault(Fault::ResetMidStream {
            after_chunks: Dialect::Anthropic.after_words(2),
        });
        let cut = call(&anthropic, &messages(anthropic_hi(true)));
        assert!(!cut.complete);
        let prefix = anthropic_text(&sse_events(cut.text()));
        assert_eq!(prefix, "Hello from a: w0 w1 ");
        let turns = json!([{"role":"user","content":[{"text":"hi"}]},
                           {"role":"assistant","content":[{"text":prefix}]}]);
        let resp = call(&bedrock, &converse("m", true, json!({"messages":turns})));
        let rest = bedrock_text(&decode_frames(&resp.body));
        assert_eq!(prefix + &rest, "Hello from a: w0 w1 w2 w3 ");
        anthropic.shutdown();
        bedrock.shutdown();
    }
}
