//! Hardening of the answer path (issue 11): bounded whole answers, content
//! encodings, provider statuses outside what a client may be shown, credentials a
//! provider echoes back, and request bodies that are not UTF-8.

mod common;

use std::time::Duration;

use common::*;
use loadtest::client::{Client, HttpResponse};
use loadtest::mock::{Fault, MockConfig, MockHandle};
use serde_json::Value;
use switchyard::gateway::Gateway;

/// A mock named `name` whose answers have `words` words (about 7 bytes each).
fn mock_words(name: &str, words: usize) -> MockHandle {
    mock_with(MockConfig {
        name: name.to_string(),
        stream_chunks: words,
        ..MockConfig::default()
    })
}

fn encode(encoding: &str) -> Fault {
    Fault::Encode {
        encoding: encoding.to_string(),
    }
}

/// One try per target, so each attempt in an error body is one target.
const ONE_TRY: &str = "retry: { attempts: 1 }";

/// The gateway's own 502 (OpenAI-shaped): its attempts' details, joined.
fn exhausted_details(response: &HttpResponse) -> String {
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["error"]["code"], "upstream_failed", "{body}");
    body["error"]["attempts"]
        .as_array()
        .expect("attempts listed")
        .iter()
        .map(|a| a["detail"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn content(response: &HttpResponse) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    let body: Value = serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "answer is not JSON ({e}); content-encoding {:?}",
            response.header("content-encoding")
        )
    });
    body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

fn post_raw(gw: &Gateway, path: &str, body: &[u8]) -> HttpResponse {
    let mut client = client(gw);
    client.set_read_timeout(Duration::from_secs(10)).unwrap();
    client
        .request(
            "POST",
            path,
            &[
                ("content-type", "application/json"),
                ("anthropic-version", "2023-06-01"),
            ],
            body,
        )
        .expect("a complete response")
}

// ---------------------------------------------------------------------------
// #8: whole answers are bounded by limits.max_response_bytes
// ---------------------------------------------------------------------------

#[test]
fn answer_over_max_response_bytes_fails_naming_the_limit() {
    // ~130 KB answer against a 64 KiB limit.
    let big = mock_words("big", 20_000);
    let gw = gateway(&chain_yaml(
        &[("big", &big)],
        ONE_TRY,
        "limits: { max_response_bytes: 65536 }\n",
    ));
    let details = exhausted_details(&chat(gw.addr()));
    assert!(details.contains("limits.max_response_bytes"), "{details}");
    assert!(details.contains("65536"), "{details}");
}

#[test]
fn oversized_answer_falls_back_to_the_next_target() {
    let big = mock_words("big", 20_000);
    let small = mock("fallback");
    let gw = gateway(&chain_yaml(
        &[("big", &big), ("fallback", &small)],
        ONE_TRY,
        "limits: { max_response_bytes: 65536 }\n",
    ));
    assert_fell_back(&chat(gw.addr()));
}

#[test]
fn answers_under_the_limit_are_served_whole() {
    let big = mock_words("big", 20_000);
    let gw = gateway(&chain_yaml(&[("big", &big)], ONE_TRY, ""));
    let text = content(&chat(gw.addr()));
    assert!(text.starts_with("Hello from big: w0 w1 "));
    assert!(text.ends_with("w19999 "));
}

#[test]
fn large_answers_reach_anthropic_clients_whole() {
    let big = mock_words("big", 20_000);
    let gw = gateway(&chain_yaml(&[("big", &big)], ONE_TRY, ""));
    let body = serde_json::json!({
        "model": "chat",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    });
    let response = post_raw(&gw, "/v1/messages", body.to_string().as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
    let message = response.json();
    let text = message["content"][0]["text"].as_str().expect("text");
    assert!(text.starts_with("Hello from big: w0 ") && text.ends_with("w19999 "));
}

// ---------------------------------------------------------------------------
// #11: content encodings
// ---------------------------------------------------------------------------

#[test]
fn upstream_requests_ask_for_identity_encoding() {
    let m = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &m)], ONE_TRY, ""));
    assert_eq!(chat(gw.addr()).status, 200);
    let request = m.last_request().expect("the mock got a request");
    assert_eq!(request.header("accept-encoding"), Some("identity"));
    assert_eq!(chat_stream(gw.addr()).status, 200);
    let request = m.last_request().expect("the mock got a stream request");
    assert_eq!(request.header("accept-encoding"), Some("identity"));
}

#[test]
fn gzip_answer_reaches_the_client_decoded() {
    let m = mock("primary");
    m.set_fault(encode("gzip"));
    let gw = gateway(&chain_yaml(&[("primary", &m)], ONE_TRY, ""));
    let response = chat(gw.addr());
    assert_eq!(response.header("content-encoding"), None);
    assert!(content(&response).starts_with("Hello from primary: w0 "));
}

#[test]
fn deflate_answer_reaches_the_client_decoded() {
    let m = mock("primary");
    m.set_fault(encode("deflate"));
    let gw = gateway(&chain_yaml(&[("primary", &m)], ONE_TRY, ""));
    let response = chat(gw.addr());
    assert_eq!(response.header("content-encoding"), None);
    assert!(content(&response).starts_with("Hello from primary: w0 "));
}

#[test]
fn gzip_answer_from_a_translating_kind_is_decoded() {
    let m = mock("claude");
    m.set_fault(encode("gzip"));
    let settings = format!(
        "{{ kind: anthropic, base_url: \"http://{}\", api_key: sk-ant-test }}",
        m.addr()
    );
    let gw = gateway(&translated_route_yaml(
        "anthropic",
        &settings,
        "claude-x",
        None,
        ONE_TRY,
    ));
    let text = completion_text(&chat(gw.addr()));
    assert!(text.starts_with("Hello from claude: w0 "), "{text}");
}

#[test]
fn gzip_bomb_is_capped_by_max_response_bytes() {
    // ~1.5 MB of text compresses to ~0.45 MB: under the 1 MiB limit on the wire,
    // over it once decoded.
    let bomb = mock_words("bomb", 200_000);
    bomb.set_fault(encode("gzip"));
    let gw = gateway(&chain_yaml(
        &[("bomb", &bomb)],
        ONE_TRY,
        "limits: { max_response_bytes: 1048576 }\n",
    ));
    let details = exhausted_details(&chat(gw.addr()));
    assert!(details.contains("limits.max_response_bytes"), "{details}");
    assert!(details.contains("decoded"), "{details}");
}

#[test]
fn unknown_encoding_fails_the_attempt_naming_it() {
    let m = mock("primary");
    m.set_fault(encode("br"));
    let gw = gateway(&chain_yaml(&[("primary", &m)], ONE_TRY, ""));
    let details = exhausted_details(&chat(gw.addr()));
    assert!(details.contains("`br`"), "{details}");
}

#[test]
fn unknown_encoding_falls_back() {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(encode("zstd"));
    let gw = fallback_chain(&primary, &fallback, ONE_TRY, "");
    assert_fell_back(&chat(gw.addr()));
}

#[test]
fn encoded_stream_fails_before_commit_naming_the_encoding() {
    let m = mock("primary");
    m.set_fault(encode("gzip"));
    let gw = gateway(&chain_yaml(&[("primary", &m)], ONE_TRY, ""));
    let details = exhausted_details(&chat_stream(gw.addr()));
    assert!(details.contains("`gzip`"), "{details}");
}

#[test]
fn encoded_stream_falls_back_invisibly() {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(encode("gzip"));
    let gw = fallback_chain(&primary, &fallback, ONE_TRY, "");
    let stream = chat_stream(gw.addr());
    assert_fell_back(&stream);
    assert_eq!(stream.sse_data().last().map(String::as_str), Some("[DONE]"));
}

// ---------------------------------------------------------------------------
// #15: statuses, redirects and echoed credentials
// ---------------------------------------------------------------------------

#[test]
fn status_999_becomes_a_502() {
    let m = mock("primary");
    m.set_fault(fault_status(999));
    let gw = gateway(&chain_yaml(&[("primary", &m)], ONE_TRY, ""));
    let details = exhausted_details(&chat(gw.addr()));
    assert!(details.contains("999"), "{details}");
}

#[test]
fn status_999_falls_back() {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(999));
    let gw = fallback_chain(&primary, &fallback, ONE_TRY, "");
    assert_fell_back(&chat(gw.addr()));
}

#[test]
fn redirect_is_never_relayed() {
    let m = mock("primary");
    m.set_fault(fault_status(302));
    let gw = gateway(&chain_yaml(&[("primary", &m)], ONE_TRY, ""));
    let response = chat(gw.addr());
    assert_eq!(response.header("location"), None);
    let details = exhausted_details(&response);
    assert!(details.contains("302"), "{details}");
}

#[test]
fn redirect_falls_back() {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(307));
    let gw = fallback_chain(&primary, &fallback, ONE_TRY, "");
    assert_fell_back(&chat(gw.addr()));
}

#[test]
fn bad_status_on_messages_is_an_anthropic_502() {
    let m = mock("primary");
    m.set_fault(fault_status(999));
    let gw = gateway(&chain_yaml(&[("primary", &m)], ONE_TRY, ""));
    let body = serde_json::json!({
        "model": "chat",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    });
    let response = post_raw(&gw, "/v1/messages", body.to_string().as_bytes());
    assert_eq!(response.status, 502, "{}", response.text());
    let body = response.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "api_error", "{body}");
}

const API_KEY: &str = "sk-gateway-own-key-0123456789";
const PROVIDER_HEADER_SECRET: &str = "hdr-secret-abcdefghij";
const TARGET_HEADER_SECRET: &str = "tgt-secret-klmnopqrst";

/// A one-target route to `m` carrying every kind of configured credential.
fn credentialed_gateway(m: &MockHandle, kind: &str) -> Gateway {
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nproviders:\n  leaky: {{ kind: {kind}, base_url: \"{}\", api_key: \"{API_KEY}\", headers: {{ x-org-token: \"{PROVIDER_HEADER_SECRET}\" }} }}\nroutes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: leaky, model: m, headers: {{ x-tenant-secret: \"{TARGET_HEADER_SECRET}\" }} }}\n    retry: {{ attempts: 1 }}\n",
        if kind == "anthropic" {
            format!("http://{}", m.addr())
        } else {
            m.base_url()
        }
    );
    gateway(&yaml)
}

fn assert_scrubbed(response: &HttpResponse) {
    let text = response.text();
    for secret in [API_KEY, PROVIDER_HEADER_SECRET, TARGET_HEADER_SECRET] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(text.contains("[redacted]"), "{text}");
}

#[test]
fn echoed_credentials_are_scrubbed_from_error_bodies() {
    let m = mock("leaky");
    m.set_fault(Fault::EchoRequest { status: 401 });
    let gw = credentialed_gateway(&m, "openai-compatible");
    let response = chat(gw.addr());
    assert_eq!(response.status, 401, "{}", response.text());
    assert_scrubbed(&response);
}

#[test]
fn echoed_credentials_are_scrubbed_through_a_translating_kind() {
    let m = mock("leaky");
    m.set_fault(Fault::EchoRequest { status: 400 });
    let gw = credentialed_gateway(&m, "anthropic");
    let response = chat(gw.addr());
    assert_eq!(response.status, 400, "{}", response.text());
    assert_scrubbed(&response);
}

#[test]
fn credentials_in_a_success_body_are_scrubbed() {
    // The mock greets with its own name; name it after the gateway's key.
    let m = mock(API_KEY);
    let gw = credentialed_gateway(&m, "openai-compatible");
    let response = chat(gw.addr());
    let text = content(&response);
    assert!(text.starts_with("Hello from [redacted]: w0 "), "{text}");
    assert!(!response.text().contains(API_KEY));
}

// ---------------------------------------------------------------------------
// #16: request bodies must be UTF-8
// ---------------------------------------------------------------------------

fn with_invalid_utf8(json: &str) -> Vec<u8> {
    // `@@` marks where the invalid bytes go.
    let (before, after) = json.split_once("@@").expect("a marker");
    [before.as_bytes(), b"\xff\xfe\xc3", after.as_bytes()].concat()
}

fn assert_openai_utf8_error(response: &HttpResponse) {
    assert_eq!(response.status, 400, "{}", response.text());
    let body = response.json();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("UTF-8"), "{message}");
}

#[test]
fn invalid_utf8_in_a_chat_string_is_rejected() {
    let m = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &m)], ONE_TRY, ""));
    let body =
        with_invalid_utf8(r#"{"model":"chat","messages":[{"role":"user","content":"a @@ b"}]}"#);
    assert_openai_utf8_error(&post_raw(&gw, "/v1/chat/completions", &body));
    assert_eq!(m.stats().requests, 0, "nothing may reach the provider");
}

#[test]
fn invalid_utf8_in_embeddings_input_is_rejected() {
    let m = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &m)], ONE_TRY, ""));
    let body = with_invalid_utf8(r#"{"model":"chat","input":"x @@"}"#);
    assert_openai_utf8_error(&post_raw(&gw, "/v1/embeddings", &body));
    assert_eq!(m.stats().requests, 0, "nothing may reach the provider");
}

#[test]
fn invalid_utf8_on_messages_is_an_anthropic_400() {
    let m = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &m)], ONE_TRY, ""));
    let body = with_invalid_utf8(
        r#"{"model":"chat","max_tokens":8,"metadata":{"user_id":"@@"},"messages":[{"role":"user","content":"hi"}]}"#,
    );
    let response = post_raw(&gw, "/v1/messages", &body);
    assert_eq!(response.status, 400, "{}", response.text());
    let body = response.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("UTF-8"), "{message}");
    assert_eq!(m.stats().requests, 0, "nothing may reach the provider");
}

#[test]
fn valid_utf8_still_passes() {
    let m = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &m)], ONE_TRY, ""));
    let body = r#"{"model":"chat","messages":[{"role":"user","content":"héllo ✓ 😀"}]}"#;
    let response = Client::connect(gw.addr())
        .expect("connect")
        .chat(body, &[])
        .expect("response");
    assert_eq!(response.status, 200, "{}", response.text());
}
