//! The mock's newer API surface over real sockets on 127.0.0.1: the OpenAI
//! Responses API, legacy completions, Anthropic count_tokens, the rate-limit and
//! request-id headers, and the `/_mock/last_request` and `/_mock/requests` routes.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};

use loadtest::mock::{self, Fault, MockHandle};
use serde_json::{json, Value};

mod support;

use support::{find_header, start, TIMEOUT};

const ANTHROPIC: &[(&str, &str)] = &[("x-api-key", "k"), ("anthropic-version", "2023-06-01")];

fn post(path: &str, headers: &[(&str, &str)], body: &Value) -> Vec<u8> {
    let body = body.to_string();
    let mut raw = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n");
    for (name, value) in headers {
        raw += &format!("{name}: {value}\r\n");
    }
    raw += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    raw.into_bytes()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The body ended with the last chunk (or its length), not a cut connection.
    complete: bool,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        support::fill(&mut self.stream, &mut self.buf)
    }

    fn read_head(&mut self) -> Response {
        for _ in 0..10_000 {
            let mut headers = [httparse::EMPTY_HEADER; 48];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = resp.parse(&self.buf).expect("valid head") {
                let headers = resp
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value).into_owned();
                        (h.name.to_ascii_lowercase(), value)
                    })
                    .collect();
                let status = resp.code.expect("status");
                self.buf.drain(..n);
                return Response {
                    status,
                    headers,
                    body: Vec::new(),
                    complete: false,
                };
            }
            self.fill().expect("response head");
        }
        panic!("no response head after 10000 reads");
    }

    /// The next chunk; `Ok(None)` after the last chunk.
    fn read_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        for _ in 0..10_000 {
            if let Ok(httparse::Status::Complete((n, size))) = httparse::parse_chunk_size(&self.buf)
            {
                let size = usize::try_from(size).expect("chunk size");
                if self.buf.len() >= n + size + 2 {
                    let data = self.buf[n..n + size].to_vec();
                    self.buf.drain(..n + size + 2);
                    return Ok((size > 0).then_some(data));
                }
            }
            self.fill()?;
        }
        Err(io::ErrorKind::InvalidData.into())
    }

    /// Sends `raw` and reads the whole answer (a chunked one until its last chunk
    /// or the connection ends).
    fn request(&mut self, raw: &[u8]) -> Response {
        self.stream.write_all(raw).expect("write request");
        let mut resp = self.read_head();
        if resp.header("transfer-encoding") == Some("chunked") {
            for _ in 0..1000 {
                match self.read_chunk() {
                    Ok(Some(chunk)) => resp.body.extend_from_slice(&chunk),
                    Ok(None) => {
                        resp.complete = true;
                        return resp;
                    }
                    Err(_) => return resp,
                }
            }
            panic!("stream longer than 1000 chunks");
        }
        let len: usize = resp
            .header("content-length")
            .map_or(0, |v| v.parse().expect("length"));
        while self.buf.len() < len {
            self.fill().expect("body");
        }
        resp.body = self.buf.drain(..len).collect();
        resp.complete = true;
        resp
    }
}

fn call(mock: &MockHandle, raw: &[u8]) -> Response {
    Client::connect(mock.addr()).request(raw)
}

/// The SSE events of a body as (event name or "", data), in order.
fn events(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8(body.to_vec()).expect("utf8 stream");
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "));
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            (
                name.unwrap_or("").to_string(),
                data.expect("a data line").to_string(),
            )
        })
        .collect()
}

/// Checks the Responses stream framing: every event named after its `type`,
/// sequence numbers 0, 1, 2, ...; returns the parsed data.
fn typed_events(body: &[u8]) -> Vec<(String, Value)> {
    let all = events(body);
    assert!(all.iter().all(|(_, d)| d != "[DONE]"), "no [DONE] line");
    all.into_iter()
        .enumerate()
        .map(|(n, (name, data))| {
            let v: Value = serde_json::from_str(&data).expect("event JSON");
            assert_eq!(v["type"].as_str(), Some(name.as_str()), "event {n}");
            assert_eq!(v["sequence_number"].as_u64(), Some(n as u64), "event {n}");
            (name, v)
        })
        .collect()
}

fn deltas(events: &[(String, Value)], kind: &str) -> String {
    events
        .iter()
        .filter(|(name, _)| name == kind)
        .map(|(_, v)| v["delta"].as_str().expect("delta").to_string())
        .collect()
}

fn responses_body(stream: bool) -> Value {
    json!({
        "model": "gpt-test",
        "stream": stream,
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
    })
}

fn tool_body(stream: bool) -> Value {
    json!({
        "model": "gpt-test",
        "stream": stream,
        "input": "what is the weather?",
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        "tool_choice": "required",
    })
}

/// The chat route's answer text for the same question.
fn chat_text(mock: &MockHandle) -> String {
    let chat = json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]});
    let v = call(mock, &post("/v1/chat/completions", &[], &chat)).json();
    v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

/// Named `mock_…` so that `cargo test -p loadtest mock` selects these tests.
mod mock_api {
    use super::*;

    #[test]
    fn responses_whole_answer_has_the_sdk_shape() {
        let mock = start("primary", 3);
        let resp = call(&mock, &post("/v1/responses", &[], &responses_body(false)));
        assert_eq!(resp.status, 200);
        let v = resp.json();
        let id = v["id"].as_str().expect("id");
        assert!(id.starts_with("resp_mock_"), "{id}");
        assert_eq!(
            (&v["object"], &v["status"], &v["model"]),
            (&json!("response"), &json!("completed"), &json!("gpt-test"))
        );
        let item = &v["output"][0];
        assert_eq!(
            (&item["type"], &item["role"]),
            (&json!("message"), &json!("assistant"))
        );
        assert_eq!(item["content"][0]["type"], "output_text");
        assert_eq!(
            item["content"][0]["text"].as_str(),
            Some(chat_text(&mock).as_str())
        );
        let usage = &v["usage"];
        let (input, output) = (
            usage["input_tokens"].as_u64(),
            usage["output_tokens"].as_u64(),
        );
        assert_eq!(output, Some(3));
        assert!(input.is_some_and(|i| i > 0));
        assert_eq!(usage["total_tokens"].as_u64(), Some(input.unwrap_or(0) + 3));
        assert_eq!(
            (
                &v["store"],
                &v["previous_response_id"],
                &v["max_output_tokens"]
            ),
            (&json!(true), &Value::Null, &Value::Null)
        );
        // The plain path answers the same way.
        let again = call(&mock, &post("/responses", &[], &responses_body(false)));
        let again = again.json();
        assert_eq!(again["output"][0]["content"], v["output"][0]["content"]);
        assert_ne!(again["id"], v["id"], "each response has its own id");
        mock.shutdown();
    }

    #[test]
    fn responses_stream_events_are_typed_numbered_and_match_the_whole_answer() {
        let mock = start("primary", 4);
        let whole = call(&mock, &post("/v1/responses", &[], &responses_body(false))).json();
        let text = whole["output"][0]["content"][0]["text"]
            .as_str()
            .expect("text");
        let resp = call(&mock, &post("/v1/responses", &[], &responses_body(true)));
        assert_eq!((resp.status, resp.complete), (200, true));
        assert_eq!(resp.header("content-type"), Some("text/event-stream"));
        let events = typed_events(&resp.body);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        let mut want = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
        ];
        want.extend(["response.output_text.delta"; 4]);
        want.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]);
        assert_eq!(names, want);
        assert_eq!(deltas(&events, "response.output_text.delta"), text);
        assert_eq!(events[0].1["response"]["status"], "in_progress");
        assert_eq!(events[0].1["response"]["output"], json!([]));
        let done = &events[11].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], text);
        assert_eq!(done["usage"]["output_tokens"], 4);
        assert_eq!(events[8].1["text"], text);
        let item_id = &events[2].1["item"]["id"];
        assert!(events[3..11]
            .iter()
            .all(|(_, v)| v["item_id"] == *item_id || v["item"]["id"] == *item_id));
        mock.shutdown();
    }

    #[test]
    fn responses_forced_tool_call_whole_and_streamed() {
        let mock = start("primary", 3);
        let v = call(&mock, &post("/v1/responses", &[], &tool_body(false))).json();
        let item = &v["output"][0];
        assert_eq!(
            (&item["type"], &item["name"]),
            (&json!("function_call"), &json!("get_weather"))
        );
        let call_id = item["call_id"].as_str().expect("call_id");
        assert!(call_id.starts_with("call_mock_"), "{call_id}");
        assert!(item["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("fc_mock_")));
        let args = item["arguments"].as_str().expect("arguments string");
        let parsed: Value = serde_json::from_str(args).expect("arguments are JSON");
        assert_eq!(parsed["text"], "w0 w1 w2 ");

        let resp = call(&mock, &post("/v1/responses", &[], &tool_body(true)));
        let events = typed_events(&resp.body);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[2], "response.output_item.added");
        assert_eq!(events[2].1["item"]["arguments"], "");
        assert_eq!(
            &names[names.len() - 3..],
            [
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let streamed = deltas(&events, "response.function_call_arguments.delta");
        assert_eq!(streamed, args);
        assert_eq!(events[names.len() - 3].1["arguments"], args);
        assert!(!names.contains(&"response.output_text.delta"));
        mock.shutdown();
    }

    #[test]
    fn previous_response_id_must_name_a_response_this_mock_issued() {
        let (mock, other) = (start("a", 2), start("b", 2));
        let first = call(&mock, &post("/v1/responses", &[], &responses_body(false))).json();
        let id = first["id"].as_str().expect("id").to_string();
        let mut next = responses_body(false);
        next["previous_response_id"] = json!(id);
        let resp = call(&mock, &post("/v1/responses", &[], &next));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json()["previous_response_id"], id.as_str());

        let elsewhere = call(&other, &post("/v1/responses", &[], &next));
        assert_eq!(elsewhere.status, 400);
        let want = json!({"error": {
            "message": format!("Previous response with id '{id}' not found."),
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }});
        assert_eq!(elsewhere.json(), want);
        next["previous_response_id"] = json!("resp_made_up");
        let unknown = call(&mock, &post("/v1/responses", &[], &next));
        assert_eq!(unknown.status, 400);
        assert_eq!(
            unknown.json()["error"]["code"],
            "previous_response_not_found"
        );
        // A response not stored cannot be named later.
        let mut unstored = responses_body(false);
        unstored["store"] = json!(false);
        let v = call(&mock, &post("/v1/responses", &[], &unstored)).json();
        assert_eq!(v["store"], false);
        next["previous_response_id"] = v["id"].clone();
        assert_eq!(call(&mock, &post("/v1/responses", &[], &next)).status, 400);
        mock.shutdown();
        other.shutdown();
    }

    #[test]
    fn responses_and_completions_streams_are_cut_mid_way() {
        let mock = start("primary", 4);
        mock.set_fault(Fault::ResetMidStream {
            after_chunks: mock::responses_after_words(2),
        });
        let resp = call(&mock, &post("/v1/responses", &[], &responses_body(true)));
        assert!(!resp.complete, "the stream was cut");
        let typed = typed_events(&resp.body);
        assert_eq!(typed.len(), 4 + 2);
        assert_eq!(
            deltas(&typed, "response.output_text.delta"),
            "Hello from primary: w0 w1 "
        );

        mock.set_fault(Fault::ResetMidStream {
            after_chunks: mock::completions_after_words(3),
        });
        let body = json!({"model": "m", "prompt": "hi", "stream": true});
        let resp = call(&mock, &post("/v1/completions", &[], &body));
        assert!(!resp.complete, "the stream was cut");
        let data = events(&resp.body);
        assert_eq!(data.len(), 3);
        let text: String = data
            .iter()
            .map(|(_, d)| serde_json::from_str::<Value>(d).expect("JSON"))
            .map(|v| v["choices"][0]["text"].as_str().expect("text").to_string())
            .collect();
        assert_eq!(text, "Hello from primary: w0 w1 w2 ");
        mock.shutdown();
    }

    #[test]
    fn responses_status_fault_and_azure_path() {
        let mock = start("primary", 2);
        mock.set_fault(Fault::Status {
            status: 503,
            rate: 1.0,
            retry_after: Some(3),
            body: None,
            times: Some(1),
        });
        let resp = call(&mock, &post("/v1/responses", &[], &responses_body(true)));
        assert_eq!((resp.status, resp.header("retry-after")), (503, Some("3")));
        assert_eq!(resp.json()["error"]["type"], "server_error");
        let azure = "/res/openai/v1/responses";
        let refused = call(&mock, &post(azure, &[], &responses_body(false)));
        assert_eq!(refused.status, 401);
        let ok = call(
            &mock,
            &post(azure, &[("api-key", "k")], &responses_body(false)),
        );
        assert_eq!(ok.status, 200);
        assert_eq!(ok.json()["model"], "gpt-test");
        mock.shutdown();
    }

    #[test]
    fn completions_whole_and_streamed_agree() {
        let mock = start("primary", 3);
        let body = json!({"model": "davinci", "prompt": ["a", "b"]});
        let v = call(&mock, &post("/v1/completions", &[], &body)).json();
        assert_eq!(v["object"], "text_completion");
        assert!(v["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("cmpl-mock-")));
        let choice = &v["choices"][0];
        let text = choice["text"].as_str().expect("text");
        assert_eq!(text, chat_text(&mock));
        assert_eq!(
            (&choice["finish_reason"], &choice["logprobs"]),
            (&json!("stop"), &Value::Null)
        );
        assert_eq!(v["usage"]["completion_tokens"], 3);

        let body = json!({"model": "davinci", "prompt": "a", "stream": true, "stream_options": {"include_usage": true}});
        let resp = call(&mock, &post("/completions", &[], &body));
        assert!(resp.complete);
        let data = events(&resp.body);
        assert_eq!(data.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|(_, d)| serde_json::from_str(d).expect("chunk JSON"))
            .collect();
        assert_eq!(chunks.len(), 3 + 2, "words, finish, usage");
        let streamed: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["text"].as_str())
            .collect();
        assert_eq!(streamed, text);
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
        assert!(chunks[..3]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null()));
        assert_eq!(chunks[4]["usage"]["completion_tokens"], 3);
        assert!(chunks.iter().all(|c| c["object"] == "text_completion"));

        let azure = "/openai/deployments/dep/completions?api-version=2024-06-01";
        let v = call(
            &mock,
            &post(azure, &[("api-key", "k")], &json!({"prompt": "x"})),
        )
        .json();
        assert_eq!(v["model"], "dep");
        mock.shutdown();
    }

    #[test]
    fn count_tokens_counts_the_request_and_takes_status_faults() {
        let mock = start("primary", 2);
        let small = json!({"model": "c", "messages": [{"role": "user", "content": "hi"}]});
        let long = "word ".repeat(200);
        let large = json!({"model": "c", "messages": [{"role": "user", "content": long}]});
        let count = |body: &Value| {
            let resp = call(&mock, &post("/v1/messages/count_tokens", ANTHROPIC, body));
            assert_eq!(resp.status, 200);
            let v = resp.json();
            assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{v}");
            v["input_tokens"].as_u64().expect("input_tokens")
        };
        let (a, b) = (count(&small), count(&large));
        assert_eq!(a, count(&small), "deterministic");
        assert_eq!(a, (small.to_string().len() as u64).div_ceil(4));
        assert!(b > a + 200, "{a} {b}");
        let prefixed = call(
            &mock,
            &post("/anthropic/v1/messages/count_tokens", ANTHROPIC, &small),
        );
        assert_eq!(prefixed.json()["input_tokens"].as_u64(), Some(a));
        let missing = call(
            &mock,
            &post(
                "/v1/messages/count_tokens",
                ANTHROPIC,
                &json!({"model": "c"}),
            ),
        );
        assert_eq!(missing.status, 400);
        assert_eq!(missing.json()["type"], "error");
        mock.set_fault(Fault::Status {
            status: 529,
            rate: 1.0,
            retry_after: None,
            body: None,
            times: None,
        });
        let overloaded = call(&mock, &post("/v1/messages/count_tokens", ANTHROPIC, &small));
        assert_eq!(overloaded.status, 529);
        assert_eq!(overloaded.json()["error"]["type"], "overloaded_error");
        mock.shutdown();
    }

    fn assert_openai_limits(resp: &Response) {
        for (name, value) in [
            ("x-ratelimit-limit-requests", "10000"),
            ("x-ratelimit-remaining-requests", "9999"),
            ("x-ratelimit-reset-requests", "6ms"),
            ("x-ratelimit-limit-tokens", "1000000"),
            ("x-ratelimit-remaining-tokens", "999000"),
            ("x-ratelimit-reset-tokens", "60ms"),
        ] {
            assert_eq!(resp.header(name), Some(value), "{name}");
        }
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`.
    fn is_rfc3339(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 20
            && b.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                19 => *c == b'Z',
                _ => c.is_ascii_digit(),
            })
    }

    #[test]
    fn rate_limit_and_request_id_headers_on_every_provider_answer() {
        let mock = start("primary", 2);
        let ok = call(&mock, &post("/v1/responses", &[], &responses_body(false)));
        assert_openai_limits(&ok);
        let stream = call(&mock, &post("/v1/responses", &[], &responses_body(true)));
        assert_openai_limits(&stream);
        let ids: Vec<&str> = [&ok, &stream]
            .iter()
            .map(|r| r.header("x-request-id").expect("x-request-id"))
            .collect();
        assert!(ids.iter().all(|id| id.starts_with("req_mock_")), "{ids:?}");
        assert_ne!(ids[0], ids[1]);

        let messages =
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        let anthropic = call(&mock, &post("/v1/messages", ANTHROPIC, &messages));
        assert_eq!(anthropic.status, 200);
        assert!(anthropic
            .header("request-id")
            .is_some_and(|id| id.starts_with("req_mock_")));
        assert_eq!(anthropic.header("x-ratelimit-limit-requests"), None);
        for (name, value) in [
            ("anthropic-ratelimit-requests-limit", "1000"),
            ("anthropic-ratelimit-requests-remaining", "999"),
            ("anthropic-ratelimit-tokens-limit", "100000"),
            ("anthropic-ratelimit-tokens-remaining", "99000"),
        ] {
            assert_eq!(anthropic.header(name), Some(value), "{name}");
        }
        for name in [
            "anthropic-ratelimit-requests-reset",
            "anthropic-ratelimit-tokens-reset",
        ] {
            let reset = anthropic.header(name).expect(name);
            assert!(is_rfc3339(reset), "{name}: {reset}");
        }

        mock.set_fault(Fault::Status {
            status: 429,
            rate: 1.0,
            retry_after: Some(7),
            body: None,
            times: None,
        });
        let chat = json!({"messages": [{"role": "user", "content": "hi"}]});
        let limited = call(&mock, &post("/v1/chat/completions", &[], &chat));
        assert_eq!(
            (limited.status, limited.header("retry-after")),
            (429, Some("7"))
        );
        assert_openai_limits(&limited);
        assert!(limited
            .header("x-request-id")
            .is_some_and(|id| id.starts_with("req_mock_")));
        let control = call(&mock, &get("/_mock/stats"));
        assert_eq!(control.status, 200);
        assert_eq!(control.header("x-request-id"), None);
        assert_eq!(control.header("x-ratelimit-limit-requests"), None);
        mock.shutdown();
    }

    #[test]
    fn last_request_and_recent_requests_over_http() {
        let mock = start("primary", 2);
        assert_eq!(call(&mock, &get("/_mock/last_request")).status, 404);
        let chat = json!({"model": "m", "messages": [{"role": "user", "content": "first"}]});
        call(
            &mock,
            &post("/v1/chat/completions", &[("X-Trace", "one")], &chat),
        );
        let second = post(
            "/v1/responses",
            &[("X-Trace", "two")],
            &responses_body(false),
        );
        call(&mock, &second);
        let last = call(&mock, &get("/_mock/last_request"));
        assert_eq!(last.status, 200);
        let v = last.json();
        assert_eq!(
            (&v["method"], &v["path"]),
            (&json!("POST"), &json!("/v1/responses"))
        );
        let headers = v["headers"].as_array().expect("headers");
        assert!(headers.contains(&json!(["x-trace", "two"])), "{headers:?}");
        assert_eq!(v["body"], responses_body(false).to_string().as_str());
        // Control requests are not recorded: the last one is still the provider's.
        let again = call(&mock, &get("/_mock/last_request")).json();
        assert_eq!(again["path"], "/v1/responses");

        let recent = call(&mock, &get("/_mock/requests")).json();
        let paths: Vec<&str> = recent
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|r| r["path"].as_str())
            .collect();
        assert_eq!(paths, ["/v1/chat/completions", "/v1/responses"]);
        let ring = mock.requests();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring[0].header("x-trace"), Some("one"));
        assert_eq!(
            mock.last_request()
                .and_then(|r| r.header("x-trace").map(str::to_string)),
            Some("two".into())
        );
        for _ in 0..40 {
            call(&mock, &get("/v1/models"));
        }
        assert_eq!(mock.requests().len(), 32, "the ring is bounded");
        mock.shutdown();
    }
}
