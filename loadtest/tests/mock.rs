//! The mock provider over real sockets on 127.0.0.1, with a minimal blocking client.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use loadtest::mock::{Fault, MockConfig, MockHandle};
use serde_json::Value;

mod support;

use support::{find_header, start, TIMEOUT};

const CHAT: &str = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM: &str = r#"{"model":"gpt-test","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;

fn post(path: &str, body: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Test: yes\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

impl Client {
    fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write request");
    }

    fn fill(&mut self) -> io::Result<()> {
        support::fill(&mut self.stream, &mut self.buf)
    }

    fn read_head(&mut self) -> io::Result<Response> {
        for _ in 0..10_000 {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) =
                resp.parse(&self.buf).expect("valid response head")
            {
                let headers = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let status = resp.code.expect("status");
                self.buf.drain(..n);
                return Ok(Response {
                    status,
                    headers,
                    body: Vec::new(),
                });
            }
            self.fill()?;
        }
        Err(io::ErrorKind::InvalidData.into())
    }

    /// The next chunk of a chunked body; `None` after the last chunk.
    fn read_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        for _ in 0..10_000 {
            if let Ok(httparse::Status::Complete((n, size))) = httparse::parse_chunk_size(&self.buf)
            {
                let size = size as usize;
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

    fn read_response(&mut self) -> io::Result<Response> {
        let mut resp = self.read_head()?;
        if resp.header("transfer-encoding") == Some("chunked") {
            while let Some(chunk) = self.read_chunk()? {
                resp.body.extend_from_slice(&chunk);
            }
            return Ok(resp);
        }
        let len: usize = resp
            .header("content-length")
            .map_or(0, |v| v.parse().expect("length"));
        while self.buf.len() < len {
            self.fill()?;
        }
        resp.body = self.buf.drain(..len).collect();
        Ok(resp)
    }

    fn request(&mut self, raw: &[u8]) -> Response {
        self.send(raw);
        self.read_response().expect("response")
    }

    /// True when the peer closed or reset the connection.
    fn is_closed(&mut self) -> bool {
        matches!(self.fill(), Err(e) if e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::TimedOut)
    }
}

fn call(mock: &MockHandle, raw: &[u8]) -> Response {
    Client::connect(mock.addr()).expect("connect").request(raw)
}

fn set_fault_via_http(addr: SocketAddr, json: &str) -> Response {
    Client::connect(addr)
        .expect("connect")
        .request(&post("/_mock/fault", json))
}

/// SSE `data:` payloads of a stream body, in order.
fn sse_data(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8(body.to_vec()).expect("utf8 stream");
    text.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_string)
        .collect()
}

fn streamed_content(data: &[String]) -> String {
    data.iter()
        .filter(|d| d.as_str() != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// Named `mock_…` so that `cargo test -p loadtest mock` selects these tests.
mod mock_provider {
    use super::*;

    #[test]
    fn chat_answer_has_openai_shape() {
        let mock = start("primary", 3);
        let resp = call(&mock, &post("/v1/chat/completions", CHAT));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("x-mock-provider"), Some("primary"));
        let v = resp.json();
        assert_eq!(v["object"], "chat.completion");
        assert!(v["id"].as_str().expect("id").starts_with("chatcmpl-mock-"));
        assert_eq!(v["model"], "gpt-test");
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Hello from primary: w0 w1 w2 "
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let usage = &v["usage"];
        assert_eq!(usage["completion_tokens"], 3);
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(usage["prompt_tokens"].as_u64().expect("prompt") + 3)
        );
        mock.shutdown();
    }

    #[test]
    fn stream_events_arrive_in_order_and_match_the_whole_answer() {
        let mock = start("primary", 4);
        let whole = call(&mock, &post("/v1/chat/completions", CHAT)).json();
        let resp = call(&mock, &post("/v1/chat/completions", STREAM));
        assert_eq!(resp.header("content-type"), Some("text/event-stream"));
        let data = sse_data(&resp.body);
        assert_eq!(
            data.len(),
            1 + 4 + 1 + 1 + 1,
            "role, words, finish, usage, done: {data:?}"
        );
        let first: Value = serde_json::from_str(&data[0]).expect("role chunk");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        let finish: Value = serde_json::from_str(&data[5]).expect("finish chunk");
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let usage: Value = serde_json::from_str(&data[6]).expect("usage chunk");
        assert_eq!(usage["usage"]["completion_tokens"], 4);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        assert_eq!(
            streamed_content(&data),
            whole["choices"][0]["message"]["content"]
                .as_str()
                .expect("content")
        );
        assert_eq!(mock.stats().streams, 1);
        mock.shutdown();
    }

    #[test]
    fn keep_alive_and_pipelining_answer_in_order_on_one_connection() {
        let mock = start("primary", 2);
        let mut client = Client::connect(mock.addr()).expect("connect");
        assert_eq!(
            client.request(&post("/v1/chat/completions", CHAT)).status,
            200
        );
        assert_eq!(
            client.request(&post("/v1/chat/completions", CHAT)).status,
            200
        );
        let mut both = post("/v1/chat/completions", CHAT);
        both.extend_from_slice(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
        client.send(&both);
        assert_eq!(
            client.read_response().expect("first").json()["object"],
            "chat.completion"
        );
        let models = client.read_response().expect("second").json();
        assert_eq!(models["data"][0]["owned_by"], "primary");
        let closing = b"GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n";
        assert_eq!(client.request(closing).header("connection"), Some("close"));
        assert!(client.is_closed());
        assert_eq!(mock.stats().connections, 1);
        mock.shutdown();
    }

    #[test]
    fn chunked_request_bodies_are_decoded() {
        let mock = start("primary", 2);
        let (a, b) = CHAT.split_at(10);
        let raw = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
        let resp = call(&mock, raw.as_bytes());
        assert_eq!(
            resp.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(mock.last_request().expect("recorded").body, CHAT.as_bytes());
        mock.shutdown();
    }

    #[test]
    fn bad_requests_get_openai_errors() {
        let mock = start("primary", 2);
        let bad = call(&mock, &post("/v1/chat/completions", "{not json"));
        assert_eq!(bad.status, 400);
        assert_eq!(bad.json()["error"]["type"], "invalid_request_error");
        assert_eq!(call(&mock, &post("/v1/nothing", "{}")).status, 404);
        assert_eq!(
            call(&mock, b"GET /v1/chat/completions HTTP/1.1\r\n\r\n").status,
            405
        );
        let emb = call(
            &mock,
            &post("/v1/embeddings", r#"{"model":"e","input":["a","b"]}"#),
        )
        .json();
        assert_eq!(emb["data"].as_array().map(Vec::len), Some(2));
        mock.shutdown();
    }

    #[test]
    fn status_fault_answers_errors_with_retry_after() {
        let mock = start("primary", 2);
        mock.set_fault(Fault::Status {
            status: 429,
            rate: 1.0,
            retry_after: Some(2),
            body: None,
            times: None,
        });
        let resp = call(&mock, &post("/v1/chat/completions", CHAT));
        assert_eq!((resp.status, resp.header("retry-after")), (429, Some("2")));
        assert_eq!(resp.json()["error"]["type"], "rate_limit_error");
        mock.set_fault(Fault::Status {
            status: 503,
            rate: 1.0,
            retry_after: None,
            body: Some("raw".into()),
            times: None,
        });
        let resp = call(&mock, &post("/v1/chat/completions", STREAM));
        assert_eq!((resp.status, resp.body.as_slice()), (503, &b"raw"[..]));
        mock.set_fault(Fault::Status {
            status: 500,
            rate: 0.0,
            retry_after: None,
            body: None,
            times: None,
        });
        assert_eq!(call(&mock, &post("/v1/chat/completions", CHAT)).status, 200);
        assert_eq!(mock.stats().faults_injected, 2);
        mock.shutdown();
    }

    #[test]
    fn refuse_closes_the_port_until_healed() {
        let mock = start("primary", 2);
        let mut pooled = Client::connect(mock.addr()).expect("connect");
        assert_eq!(
            pooled.request(&post("/v1/chat/completions", CHAT)).status,
            200
        );
        mock.set_fault(Fault::Refuse);
        assert!(TcpStream::connect_timeout(&mock.addr(), TIMEOUT).is_err());
        assert!(pooled.is_closed(), "open connections are dropped too");
        mock.set_fault(Fault::None);
        assert_eq!(call(&mock, &post("/v1/chat/completions", CHAT)).status, 200);
        mock.shutdown();
    }

    #[test]
    fn refuse_through_http_is_answered_then_healed_on_the_control_port() {
        let config = MockConfig {
            control: Some("127.0.0.1:0".parse().expect("addr")),
            ..MockConfig::default()
        };
        let mock = loadtest::mock::start(config).expect("mock starts");
        let control = mock.control_addr().expect("control port");
        assert_eq!(
            set_fault_via_http(mock.addr(), r#"{"mode":"refuse"}"#).status,
            200
        );
        let deadline = Instant::now() + TIMEOUT;
        while TcpStream::connect_timeout(&mock.addr(), TIMEOUT).is_ok() {
            assert!(Instant::now() < deadline, "port still open");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            set_fault_via_http(control, r#"{"mode":"none"}"#).status,
            200
        );
        let deadline = Instant::now() + TIMEOUT;
        while TcpStream::connect_timeout(&mock.addr(), TIMEOUT).is_err() {
            assert!(Instant::now() < deadline, "port not re-opened");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(call(&mock, &post("/v1/chat/completions", CHAT)).status, 200);
        let on_control = Client::connect(control)
            .expect("control")
            .request(&post("/v1/chat/completions", CHAT));
        assert_eq!(
            on_control.status, 404,
            "the control port serves only /_mock/"
        );
        mock.shutdown();
    }

    #[test]
    fn reset_on_request_closes_without_an_answer() {
        let mock = start("primary", 2);
        mock.set_fault(Fault::ResetOnRequest);
        let mut client = Client::connect(mock.addr()).expect("connect");
        client.send(&post("/v1/chat/completions", CHAT));
        assert!(client.read_head().is_err());
        assert_eq!(mock.stats().requests, 1, "the request was read");
        mock.shutdown();
    }

    #[test]
    fn latency_fault_delays_the_answer() {
        let mock = start("primary", 2);
        mock.set_fault(Fault::Latency {
            base: Duration::from_millis(80),
            jitter: Duration::from_millis(20),
        });
        let began = Instant::now();
        assert_eq!(call(&mock, &post("/v1/chat/completions", CHAT)).status, 200);
        assert!(began.elapsed() >= Duration::from_millis(80));
        mock.shutdown();
    }

    /// How a streamed answer ended for the client.
    #[derive(Debug, PartialEq, Eq)]
    enum StreamEnd {
        Complete,
        Closed,
        Silent,
    }

    /// Reads a stream's head and chunks until its last chunk, the peer leaving, or
    /// `silence` without a byte.
    fn read_stream(client: &mut Client, silence: Duration) -> (Vec<String>, StreamEnd) {
        client
            .stream
            .set_read_timeout(Some(silence))
            .expect("timeout");
        assert_eq!(client.read_head().expect("head").status, 200);
        let mut body = Vec::new();
        for _ in 0..100 {
            match client.read_chunk() {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => return (sse_data(&body), StreamEnd::Complete),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return (sse_data(&body), StreamEnd::Silent)
                }
                Err(_) => return (sse_data(&body), StreamEnd::Closed),
            }
        }
        panic!("stream longer than 100 chunks");
    }

    #[test]
    fn stall_goes_silent_with_the_socket_open() {
        let mock = start("primary", 4);
        mock.set_fault(Fault::Stall { after_chunks: 2 });
        let mut client = Client::connect(mock.addr()).expect("connect");
        client.send(&post("/v1/chat/completions", STREAM));
        let (data, end) = read_stream(&mut client, Duration::from_secs(1));
        assert_eq!((data.len(), end), (2, StreamEnd::Silent), "{data:?}");
        let mut plain = Client::connect(mock.addr()).expect("connect");
        plain
            .stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        plain.send(&post("/v1/chat/completions", CHAT));
        let err = plain.read_head().expect_err("no answer");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err}"
        );
        mock.shutdown();
    }

    #[test]
    fn reset_mid_stream_cuts_after_n_events() {
        let mock = start("primary", 4);
        mock.set_fault(Fault::ResetMidStream { after_chunks: 3 });
        let mut client = Client::connect(mock.addr()).expect("connect");
        client.send(&post("/v1/chat/completions", STREAM));
        let (data, end) = read_stream(&mut client, TIMEOUT);
        assert_eq!((data.len(), end), (3, StreamEnd::Closed), "{data:?}");
        assert_eq!(streamed_content(&data), "Hello from primary: w0 w1 ");
        mock.shutdown();
    }

    #[test]
    fn sse_error_event_ends_the_stream() {
        let mock = start("primary", 4);
        mock.set_fault(Fault::SseErrorEvent { after_chunks: 2 });
        let resp = call(&mock, &post("/v1/chat/completions", STREAM));
        assert_eq!(resp.status, 200);
        let text = String::from_utf8(resp.body).expect("utf8");
        assert!(text.contains("event: error\ndata: "), "{text}");
        let data = sse_data(text.as_bytes());
        assert_eq!(data.len(), 3);
        let error: Value = serde_json::from_str(&data[2]).expect("error JSON");
        assert_eq!(error["error"]["type"], "overloaded_error");
        mock.shutdown();
    }

    #[test]
    fn malformed_event_and_missing_done_are_injected() {
        let mock = start("primary", 3);
        mock.set_fault(Fault::MalformedEvent { after_chunks: 1 });
        let data = sse_data(&call(&mock, &post("/v1/chat/completions", STREAM)).body);
        assert_eq!(data[1], "{not json");
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        assert_eq!(streamed_content(&data), "Hello from primary: w0 w1 w2 ");
        mock.set_fault(Fault::NoDone);
        let data = sse_data(&call(&mock, &post("/v1/chat/completions", STREAM)).body);
        assert!(!data.iter().any(|d| d == "[DONE]"));
        assert_eq!(streamed_content(&data), "Hello from primary: w0 w1 w2 ");
        mock.shutdown();
    }

    #[test]
    fn control_endpoint_switches_faults_and_reports_stats() {
        let mock = start("primary", 2);
        let resp = set_fault_via_http(
            mock.addr(),
            r#"{"mode":"status","status":503,"rate":1.0,"retry_after":2}"#,
        );
        assert_eq!(resp.status, 200);
        assert_eq!(call(&mock, &post("/v1/chat/completions", CHAT)).status, 503);
        assert_eq!(
            call(&mock, b"GET /_mock/fault HTTP/1.1\r\n\r\n").json()["status"],
            503
        );
        assert_eq!(
            set_fault_via_http(mock.addr(), r#"{"mode":"bogus"}"#).status,
            400
        );
        assert_eq!(
            set_fault_via_http(mock.addr(), r#"{"mode":"none"}"#).status,
            200
        );
        assert_eq!(call(&mock, &post("/v1/chat/completions", CHAT)).status, 200);
        let stats = call(&mock, b"GET /_mock/stats HTTP/1.1\r\n\r\n").json();
        assert_eq!(
            (
                stats["requests"].as_u64(),
                stats["faults_injected"].as_u64()
            ),
            (Some(2), Some(1))
        );
        assert_eq!(mock.stats().requests, 2, "control requests are not counted");
        mock.shutdown();
    }

    #[test]
    fn last_request_records_headers_and_body() {
        let mock = start("primary", 2);
        assert!(mock.last_request().is_none());
        call(&mock, &post("/v1/chat/completions?x=1", CHAT));
        let last = mock.last_request().expect("recorded");
        assert_eq!(
            (last.method.as_str(), last.path.as_str()),
            ("POST", "/v1/chat/completions?x=1")
        );
        assert_eq!(last.header("x-test"), Some("yes"));
        assert_eq!(last.body, CHAT.as_bytes());
        mock.shutdown();
    }

    #[test]
    fn continuation_completes_a_prefix_from_another_mock() {
        let (primary, secondary) = (start("primary", 5), start("secondary", 5));
        let full = call(&primary, &post("/v1/chat/completions", CHAT)).json();
        let full = full["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_string();
        let prefix = "Hello from primary: w0 w1 ";
        let body = format!(
            r#"{{"model":"m","stream":true,"messages":[{{"role":"user","content":"hi"}},{{"role":"assistant","content":"{prefix}"}}]}}"#
        );
        let data = sse_data(&call(&secondary, &post("/v1/chat/completions", &body)).body);
        assert_eq!(format!("{prefix}{}", streamed_content(&data)), full);
        primary.shutdown();
        secondary.shutdown();
    }

    #[test]
    fn several_threads_share_one_port() {
        let config = MockConfig {
            threads: 2,
            ..MockConfig::default()
        };
        let mock = loadtest::mock::start(config).expect("mock starts");
        for _ in 0..8 {
            assert_eq!(call(&mock, &post("/v1/chat/completions", CHAT)).status, 200);
        }
        mock.set_fault(Fault::Refuse);
        assert!(TcpStream::connect_timeout(&mock.addr(), TIMEOUT).is_err());
        mock.set_fault(Fault::None);
        assert_eq!(call(&mock, &post("/v1/chat/completions", CHAT)).status, 200);
        assert_eq!(mock.stats().requests, 9);
        let began = Instant::now();
        mock.shutdown();
        assert!(began.elapsed() < Duration::from_secs(2));
    }
}
