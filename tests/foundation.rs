//! The foundation end to end: relaying (whole and streamed), HTTP/1.1 framing
//! (keep-alive, pipelining, chunked bodies, `Expect: 100-continue`), bad input and
//! limits, client keys, config checking, the legacy driver and SIGTERM draining.
//! Real sockets on 127.0.0.1: an in-process gateway (or the real binary) in front of
//! mock providers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use loadtest::client::{chat_body, encode_request, Client, HttpResponse};
use loadtest::mock::{MockConfig, MockHandle};

// ---------------------------------------------------------------------------
// helpers

/// Asserts `response` has `status` and an OpenAI-shaped error body; returns the message.
fn assert_api_error(response: &HttpResponse, status: u16) -> String {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    let error = &body["error"];
    assert!(
        error.is_object(),
        "not an OpenAI error: {}",
        response.text()
    );
    for field in ["message", "type", "code"] {
        assert!(
            error[field].as_str().is_some_and(|s| !s.is_empty()),
            "error.{field} missing: {}",
            response.text()
        );
    }
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{:?}",
        response.headers
    );
    assert!(response.header("x-request-id").is_some());
    error["message"].as_str().unwrap_or_default().to_string()
}

/// Sends `bytes` on a fresh connection and reads one response.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> HttpResponse {
    let mut client = Client::connect(addr).expect("connect");
    client.set_read_timeout(Duration::from_secs(5)).unwrap();
    client.send_raw(bytes).expect("send");
    client.read_response(|_| {}).expect("response")
}

fn chat_request(stream: bool, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    encode_request(
        "POST",
        "/v1/chat/completions",
        &all,
        chat_body("chat", stream).as_bytes(),
    )
}

/// A gateway still answers a normal request on a fresh connection.
fn assert_still_serves(addr: SocketAddr) {
    let response = chat(addr);
    assert_eq!(response.status, 200, "{}", response.text());
}

/// Reads from `stream` until EOF, `limit` bytes or the stream's read timeout.
fn read_until_eof(stream: &mut TcpStream, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    while out.len() < limit {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    out
}

/// A path under the temp dir unique to this process and `name`.
fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "switchyard-foundation-{}-{name}",
        std::process::id()
    ))
}

/// A file removed when the guard drops, pass or fail.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = temp_path(name);
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().unwrap().port()
}

/// Kills and reaps the child unless it already exited.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn switchyard() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

fn mock_streaming(name: &str, chunks: usize, delay: Duration) -> MockHandle {
    mock_with(MockConfig {
        name: name.to_string(),
        stream_chunks: chunks,
        chunk_delay: delay,
        ..MockConfig::default()
    })
}

// ---------------------------------------------------------------------------
// 1. non-streaming relay

#[test]
fn relays_a_completion_with_ids_rewritten_model_and_provider_key() {
    let primary = mock("primary");
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nproviders:\n  \
         primary: {{ kind: openai, base_url: \"{}\", api_key: \"${{KEY}}\" }}\n\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      \
         - {{ provider: primary, model: gpt-real }}\n",
        primary.base_url()
    );
    let gw = start(config_with_env(&yaml, &[("KEY", "sk-upstream-42")]));
    let mut client = client(&gw);

    let response = client.chat(&chat_body("chat", false), &[]).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let generated = response.header("x-request-id").expect("x-request-id");
    assert!(!generated.is_empty());
    assert_eq!(
        response.header("x-switchyard-target"),
        Some("primary/gpt-real")
    );
    let body = response.json();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Hello from primary"));

    let recorded = primary.last_request().expect("the mock saw the request");
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.path, "/v1/chat/completions");
    assert_eq!(
        recorded.header("authorization"),
        Some("Bearer sk-upstream-42")
    );
    let sent: serde_json::Value = serde_json::from_slice(&recorded.body).unwrap();
    assert_eq!(sent["model"], "gpt-real");
    assert_eq!(sent["messages"][1]["content"], "Say hello.");

    // The client's own request id is echoed back; a second generated one differs.
    let echoed = client
        .chat(&chat_body("chat", false), &[("x-request-id", "abc-123")])
        .unwrap();
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.header("x-request-id"), Some("abc-123"));
    let again = client.chat(&chat_body("chat", false), &[]).unwrap();
    let second = again.header("x-request-id").unwrap();
    assert!(second != generated && second != "abc-123", "{second}");
    gw.shutdown();
    primary.shutdown();
}

// ---------------------------------------------------------------------------
// 2. streaming relay

#[test]
fn stream_chunks_reach_the_client_before_the_upstream_finishes() {
    let primary = mock_streaming("primary", 6, Duration::from_millis(150));
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let mut client = client(&gw);
    client.send_raw(&chat_request(true, &[])).unwrap();
    let mut first_content: Option<Instant> = None;
    let mut done_at: Option<Instant> = None;
    let response = client
        .read_response(|piece| {
            let text = String::from_utf8_lossy(piece);
            if first_content.is_none() && text.contains("Hello from primary") {
                first_content = Some(Instant::now());
            }
            if text.contains("[DONE]") {
                done_at = Some(Instant::now());
            }
        })
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response
            .header("content-type")
            .map(|v| v.starts_with("text/event-stream")),
        Some(true)
    );
    assert_eq!(
        response.sse_data().last().map(String::as_str),
        Some("[DONE]")
    );
    assert_eq!(
        response.stream_text(),
        "Hello from primary: w0 w1 w2 w3 w4 w5 "
    );
    let first = first_content.expect("a content piece arrived");
    let done = done_at.expect("[DONE] arrived");
    // Six words 150 ms apart: the first must not wait for the whole answer.
    assert!(
        first + Duration::from_millis(400) < done,
        "first content {:?} before [DONE]",
        done - first
    );
    gw.shutdown();
    primary.shutdown();
}

// ---------------------------------------------------------------------------
// 3.-6. HTTP/1.1 framing

#[test]
fn keep_alive_reuses_client_and_upstream_connections() {
    let primary = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let mut client = client(&gw);
    for i in 0..20 {
        let response = client.chat(&chat_body("chat", false), &[]).unwrap();
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
        assert_ne!(response.header("connection"), Some("close"));
    }
    let stats = primary.stats();
    assert_eq!(stats.requests, 20);
    assert!(
        stats.connections < stats.requests,
        "upstream connections {} for {} requests",
        stats.connections,
        stats.requests
    );
    gw.shutdown();
    primary.shutdown();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let primary = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let mut client = client(&gw);
    let mut both = chat_request(false, &[("x-request-id", "pipe-1")]);
    both.extend_from_slice(&chat_request(true, &[("x-request-id", "pipe-2")]));
    client.send_raw(&both).unwrap();
    let first = client.read_response(|_| {}).unwrap();
    let second = client.read_response(|_| {}).unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(first.header("x-request-id"), Some("pipe-1"));
    assert_eq!(second.header("x-request-id"), Some("pipe-2"));
    assert!(first.json()["choices"].is_array());
    assert_eq!(second.sse_data().last().map(String::as_str), Some("[DONE]"));
    // The connection is still good for a third request.
    let third = client.chat(&chat_body("chat", false), &[]).unwrap();
    assert_eq!(third.status, 200);
    gw.shutdown();
    primary.shutdown();
}

#[test]
fn chunked_request_body_is_accepted_and_forwarded() {
    let primary = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let body = chat_body("chat", false);
    let (a, b) = body.split_at(body.len() / 2);
    let mut raw = Vec::new();
    raw.extend_from_slice(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: switchyard\r\n\
          content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    for part in [a, b] {
        raw.extend_from_slice(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let mut client = client(&gw);
    client.send_raw(&raw).unwrap();
    let response = client.read_response(|_| {}).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let recorded = primary.last_request().expect("forwarded");
    let sent: serde_json::Value = serde_json::from_slice(&recorded.body).unwrap();
    assert_eq!(sent["model"], "primary-model");
    assert_eq!(sent["messages"][0]["role"], "system");
    // Framing was consumed exactly: the connection serves the next request.
    let next = client.chat(&chat_body("chat", false), &[]).unwrap();
    assert_eq!(next.status, 200);
    gw.shutdown();
    primary.shutdown();
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let primary = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let body = chat_body("chat", false);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: switchyard\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\
         expect: 100-continue\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(gw.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    // Nothing of the body is sent until the interim response is here.
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") && interim.len() < 256 {
        match stream.read(&mut byte) {
            Ok(1) => interim.push(byte[0]),
            other => panic!("no 100 Continue: {other:?} after {interim:?}"),
        }
    }
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).unwrap();
    let rest = String::from_utf8(read_until_eof(&mut stream, 1 << 20)).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(rest.contains("Hello from primary"), "{rest}");
    gw.shutdown();
    primary.shutdown();
}

// ---------------------------------------------------------------------------
// 7. bad input and limits

fn limited_gateway(primary: &MockHandle) -> switchyard::gateway::Gateway {
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nproviders:\n{}\
         routes:\n  - name: chat\n    match: {{ model: [chat, chat-mini] }}\n    targets:\n      \
         - {{ provider: primary, model: primary-model }}\n\
         limits: {{ max_body_bytes: 1024, max_header_bytes: 2048, request_timeout: 300ms }}\n",
        provider("primary", primary)
    );
    gateway(&yaml)
}

#[test]
fn malformed_heads_get_400_and_the_gateway_keeps_serving() {
    let primary = mock("primary");
    let gw = limited_gateway(&primary);
    let addr = gw.addr();

    let response = exchange(addr, b"NOT A VALID REQUEST LINE\r\n\r\n");
    assert_api_error(&response, 400);
    assert_still_serves(addr);

    let conflicting = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n\
        content-length: 10\r\ntransfer-encoding: chunked\r\n\r\n";
    let message = assert_api_error(&exchange(addr, conflicting), 400);
    assert!(message.contains("Content-Length"), "{message}");
    assert_still_serves(addr);
    gw.shutdown();
    primary.shutdown();
}

#[test]
fn bad_bodies_models_paths_and_methods_get_clear_errors_on_a_live_connection() {
    let primary = mock("primary");
    let gw = limited_gateway(&primary);
    let mut client = client(&gw);
    let json = [("content-type", "application/json")];

    let response = client.chat("{\"model\": \"chat\", ", &[]).unwrap();
    let message = assert_api_error(&response, 400);
    assert!(message.contains("JSON"), "{message}");

    let response = client
        .chat(
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
            &[],
        )
        .unwrap();
    let message = assert_api_error(&response, 400);
    assert!(message.contains("model"), "{message}");

    let response = client
        .chat(&chat_body("no-such-model", false), &[])
        .unwrap();
    let message = assert_api_error(&response, 404);
    assert_eq!(response.json()["error"]["code"], "model_not_found");
    assert!(
        message.contains("no-such-model")
            && message.contains("chat")
            && message.contains("chat-mini"),
        "{message}"
    );

    let response = client
        .request("GET", "/v1/chat/completions", &json, b"")
        .unwrap();
    assert_api_error(&response, 405);
    assert_eq!(response.header("allow"), Some("POST"));

    let response = client.request("GET", "/v2/nothing", &json, b"").unwrap();
    let message = assert_api_error(&response, 404);
    assert!(message.contains("/v2/nothing"), "{message}");

    // None of that cost the connection: it still serves chat.
    let response = client.chat(&chat_body("chat-mini", false), &[]).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        primary.stats().requests,
        1,
        "bad requests reached the provider"
    );
    gw.shutdown();
    primary.shutdown();
}

#[test]
fn size_limits_give_413_and_431() {
    let primary = mock("primary");
    let gw = limited_gateway(&primary);
    let addr = gw.addr();

    // The head alone announces too much: answered without waiting for the body.
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n\
        content-type: application/json\r\ncontent-length: 5000\r\n\r\n";
    let message = assert_api_error(&exchange(addr, head), 413);
    assert!(message.contains("1024"), "{message}");
    assert_still_serves(addr);

    // A body that fits is fine.
    let mut client = client(&gw);
    let response = client.chat(&chat_body("chat", false), &[]).unwrap();
    assert_eq!(response.status, 200);

    let big = "x".repeat(3000);
    let raw = format!("GET /v1/models HTTP/1.1\r\nhost: x\r\nx-padding: {big}\r\n\r\n");
    assert_api_error(&exchange(addr, raw.as_bytes()), 431);
    assert_still_serves(addr);
    assert_eq!(primary.stats().requests, 3);
    gw.shutdown();
    primary.shutdown();
}

#[test]
fn a_stalled_half_head_gets_408() {
    let primary = mock("primary");
    let gw = limited_gateway(&primary);
    let started = Instant::now();
    let response = exchange(
        gw.addr(),
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-",
    );
    let message = assert_api_error(&response, 408);
    assert!(message.contains("in time"), "{message}");
    // The request timeout (300 ms) fired, not the 60 s idle timeout.
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_still_serves(gw.addr());

    // A body that stalls is also cut at the request timeout.
    let response = exchange(
        gw.addr(),
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"mo",
    );
    assert_api_error(&response, 408);
    assert_still_serves(gw.addr());
    gw.shutdown();
    primary.shutdown();
}

// ---------------------------------------------------------------------------
// 8. client keys

#[test]
fn client_keys_guard_chat_and_models() {
    let primary = mock("primary");
    let yaml = chain_yaml(
        &[("primary", &primary)],
        "",
        "keys:\n  - { name: app, key: \"${APP_KEY}\" }\n",
    );
    let gw = start(config_with_env(&yaml, &[("APP_KEY", "sk-app-secret")]));
    let mut client = client(&gw);
    let body = chat_body("chat", false);

    let response = client.chat(&body, &[]).unwrap();
    assert_api_error(&response, 401);
    assert_eq!(response.json()["error"]["code"], "invalid_api_key");
    let response = client
        .chat(&body, &[("authorization", "Bearer sk-app-wrong")])
        .unwrap();
    assert_api_error(&response, 401);
    let response = client
        .chat(&body, &[("authorization", "Bearer sk-app-secret")])
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    // The client's key is not the provider's: it must not leak upstream.
    let recorded = primary.last_request().unwrap();
    assert_ne!(
        recorded.header("authorization"),
        Some("Bearer sk-app-secret")
    );

    let response = client.request("GET", "/v1/models", &[], b"").unwrap();
    assert_api_error(&response, 401);
    let response = client
        .request(
            "GET",
            "/v1/models",
            &[("authorization", "Bearer sk-app-secret")],
            b"",
        )
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let list = response.json();
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().expect("data array");
    assert_eq!(data.len(), 1, "{list}");
    assert_eq!(data[0]["id"], "chat");
    assert_eq!(data[0]["object"], "model");
    assert!(data[0]["owned_by"].is_string() && data[0]["created"].is_number());
    assert_eq!(primary.stats().requests, 1);
    gw.shutdown();
    primary.shutdown();
}

// ---------------------------------------------------------------------------
// 9. config

#[test]
fn a_missing_env_var_is_named_with_its_line() {
    let yaml = "listen: 127.0.0.1:0\nproviders:\n  \
        p: { kind: openai, base_url: \"http://127.0.0.1:9/v1\", api_key: \"${MISSING_VAR}\" }\n\
        routes:\n  - name: chat\n    match: { model: chat }\n    targets:\n      \
        - { provider: p, model: m }\n";
    let errors = switchyard::config::load_str(yaml, "test.yaml", &|_| None)
        .expect_err("a missing variable is an error");
    let text = errors.to_string();
    assert!(text.contains("MISSING_VAR"), "{text}");
    assert!(text.contains("test.yaml:3"), "{text}");
    assert_eq!(errors.0.len(), 1, "{text}");
    assert_eq!(errors.0[0].line, Some(3));
}

const EXAMPLE_ENV: [&str; 7] = [
    "ADMIN_TOKEN",
    "SUPPORT_AGENT_KEY",
    "BATCH_JOBS_KEY",
    "OPENAI_API_KEY",
    "OPENAI_ORG",
    "GROQ_API_KEY",
    "ANTHROPIC_API_KEY",
];

/// Runs `switchyard check` on a shipped config with the example's secrets set.
fn check_shipped(file: &str) {
    let mut command = switchyard();
    command.args(["check", "--config", file]);
    for var in EXAMPLE_ENV {
        command.env(var, format!("test-{var}"));
    }
    let output = command.output().expect("switchyard check runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{file}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("OK"), "{stdout}");
}

#[test]
fn check_accepts_the_demo_config() {
    check_shipped("config/demo.yaml");
}

#[test]
fn check_accepts_the_example_config() {
    check_shipped("config/switchyard.example.yaml");
}

#[test]
fn check_names_the_missing_secrets_of_the_example() {
    let mut command = switchyard();
    command.args(["check", "--config", "config/switchyard.example.yaml"]);
    for var in EXAMPLE_ENV {
        command.env_remove(var);
    }
    let output = command.output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for var in EXAMPLE_ENV {
        assert!(stderr.contains(var), "{var} not named in {stderr}");
    }
    assert!(
        stderr.contains("config/switchyard.example.yaml:"),
        "{stderr}"
    );
}

#[test]
fn check_rejects_a_broken_file_with_file_and_line() {
    let file = TempFile::new(
        "broken.yaml",
        "listen: 127.0.0.1:0\nproviders:\n  p: { kind: openai, base_url: \"http://127.0.0.1:9/v1\" }\n\
         routes:\n  - name: chat\n    targets:\n      - { provider: nope, model: m }\n",
    );
    let path = &file.0;
    let output = switchyard()
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:7", path.display())),
        "no file:line in {stderr}"
    );
    assert!(stderr.contains("nope"), "{stderr}");
}

// ---------------------------------------------------------------------------
// 10. legacy driver

#[test]
fn legacy_driver_serves_on_two_shards() {
    let primary = mock("primary");
    let yaml = chain_yaml(&[("primary", &primary)], "", "driver: legacy\n")
        .replace("shards: 1\n", "shards: 2\n");
    let gw = gateway(&yaml);
    assert_eq!(gw.control.drivers, vec!["legacy", "legacy"]);
    // SO_REUSEPORT spreads connections by hash: 40 fresh ones reach both shards
    // unless something is very wrong (odds 2^-39 otherwise).
    for i in 0..40 {
        let response = chat(gw.addr());
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
    }
    let stream = chat_stream(gw.addr());
    assert_eq!(stream.sse_data().last().map(String::as_str), Some("[DONE]"));
    let snapshots = gw.control.snapshots();
    assert_eq!(snapshots.len(), 2);
    let served: Vec<u64> = snapshots
        .iter()
        .map(|s| {
            s.routes
                .iter()
                .map(|(_, r)| r.responses.get(&200).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    assert_eq!(served.iter().sum::<u64>(), 41, "{served:?}");
    assert!(
        served.iter().all(|&n| n > 0),
        "a shard served nothing: {served:?}"
    );
    gw.shutdown();
    primary.shutdown();
}

// ---------------------------------------------------------------------------
// 11. SIGTERM drains

fn wait_for_gateway(addr: SocketAddr, child: &mut ChildGuard) {
    let ready = wait_until(Duration::from_secs(15), || {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("switchyard exited early: {status}");
        }
        let Ok(mut client) = Client::connect(addr) else {
            return false;
        };
        client
            .request("GET", "/v1/models", &[], b"")
            .is_ok_and(|r| r.status == 200)
    });
    assert!(ready, "switchyard did not answer on {addr}");
}

#[test]
fn sigterm_drains_an_in_flight_stream_then_exits_zero() {
    let primary = mock_streaming("primary", 8, Duration::from_millis(200));
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let yaml = chain_yaml(&[("primary", &primary)], "", "")
        .replace("listen: 127.0.0.1:0", &format!("listen: {addr}"))
        .replace("shutdown_grace: 2s", "shutdown_grace: 5s");
    let file = TempFile::new("drain.yaml", &yaml);
    let child = switchyard()
        .args(["run", "--config"])
        .arg(&file.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn switchyard run");
    let mut child = ChildGuard(child);
    wait_for_gateway(addr, &mut child);

    let (first_tx, first_rx) = mpsc::channel();
    let streamer = std::thread::spawn(move || {
        let mut client = Client::connect(addr).expect("connect");
        client.send_raw(&chat_request(true, &[])).expect("send");
        let mut first = Some(first_tx);
        client.read_response(|_| {
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
        })
    });
    first_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the stream started");
    let pid = child.0.id() as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let signalled = Instant::now();

    // New connections are refused while the stream drains.
    let refused = wait_until(Duration::from_secs(3), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
    });
    assert!(refused, "switchyard still accepts after SIGTERM");

    let response = streamer
        .join()
        .expect("stream thread")
        .expect("the in-flight stream completed");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.sse_data().last().map(String::as_str),
        Some("[DONE]")
    );
    assert!(
        response.stream_text().ends_with("w7 "),
        "{}",
        response.text()
    );

    let exited = wait_until(Duration::from_secs(7), || {
        matches!(child.0.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "switchyard did not exit after draining");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(5) + Duration::from_millis(1500),
        "exit took {:?}, past the 5s grace",
        signalled.elapsed()
    );
    primary.shutdown();
}

// ---------------------------------------------------------------------------
// 12. a client that leaves mid-stream

#[test]
fn a_client_leaving_mid_stream_does_not_hurt_the_shard() {
    let primary = mock_streaming("primary", 8, Duration::from_millis(100));
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    {
        let mut stream = TcpStream::connect(gw.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(&chat_request(true, &[])).unwrap();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("Hello from") && seen.len() < 1 << 16 {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => panic!("stream ended early: {}", String::from_utf8_lossy(&seen)),
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
        // Dropped here, mid-stream.
    }
    // The shard lets go of the abandoned request...
    let settled = wait_until(Duration::from_secs(5), || {
        gw.control
            .snapshots()
            .iter()
            .all(|s| s.active_requests == 0)
    });
    assert!(settled, "the abandoned stream is still active");
    // ... and serves both kinds of request afterwards.
    assert_still_serves(gw.addr());
    let stream = chat_stream(gw.addr());
    assert_eq!(stream.status, 200);
    assert_eq!(stream.sse_data().last().map(String::as_str), Some("[DONE]"));
    gw.shutdown();
    primary.shutdown();
}
