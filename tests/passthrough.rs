//! The endpoints that pass through only to the kinds that serve them, end to end
//! over real sockets: legacy `/v1/completions` (openai, openai-compatible, azure)
//! and Anthropic's `/v1/messages/count_tokens`, with the chat path's failover,
//! targets that cannot serve them skipped, and a clear 400 on a route that has none.

mod common;

use std::time::Duration;

use common::*;
use loadtest::client::HttpResponse;
use loadtest::mock::MockHandle;
use serde_json::{json, Value};
use switchyard::gateway::Gateway;

fn post(gw: &Gateway, path: &str, body: &Value, headers: &[(&str, &str)]) -> HttpResponse {
    let mut client = client(gw);
    client.set_read_timeout(Duration::from_secs(10)).unwrap();
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    client
        .request("POST", path, &all, body.to_string().as_bytes())
        .expect("a complete response")
}

fn completion(stream: bool) -> Value {
    json!({"model": "chat", "prompt": "Say hello.", "max_tokens": 16, "stream": stream})
}

/// A route `chat` over `targets`: (provider name, provider settings, model).
fn route_yaml(targets: &[(&str, String, &str)]) -> String {
    let mut yaml = String::from("listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n");
    for (name, settings, _) in targets {
        yaml.push_str(&format!("  {name}: {settings}\n"));
    }
    yaml.push_str("routes:\n  - name: chat\n    match: { model: chat }\n    strategy: priority\n    targets:\n");
    for (i, (name, _, model)) in targets.iter().enumerate() {
        yaml.push_str(&format!(
            "      - {{ provider: {name}, model: {model}, priority: {i} }}\n"
        ));
    }
    yaml
}

fn compatible(mock: &MockHandle) -> String {
    format!(
        "{{ kind: openai-compatible, base_url: \"{}\" }}",
        mock.base_url()
    )
}

fn anthropic(mock: &MockHandle) -> String {
    format!(
        "{{ kind: anthropic, base_url: \"http://{}\", api_key: sk-ant-test }}",
        mock.addr()
    )
}

#[test]
fn completions_pass_through_with_failover_whole_and_streamed() {
    let (primary, fallback) = primary_and_fallback();
    let gw = gateway(&route_yaml(&[
        ("primary", compatible(&primary), "primary-model"),
        ("fallback", compatible(&fallback), "fallback-model"),
    ]));
    let whole = post(&gw, "/v1/completions", &completion(false), &[]);
    assert_eq!(whole.status, 200, "{}", whole.text());
    let body = whole.json();
    assert_eq!(body["object"], "text_completion");
    assert!(!body["choices"][0]["text"].as_str().unwrap().is_empty());
    let sent = primary.last_request().expect("primary was called");
    assert!(sent.path.ends_with("/v1/completions"), "{}", sent.path);
    let sent: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent["model"], "primary-model");
    assert_eq!(sent["prompt"], "Say hello.");

    primary.set_fault(fault_status(503));
    let stream = post(&gw, "/v1/completions", &completion(true), &[]);
    assert_eq!(stream.status, 200, "{}", stream.text());
    assert_fell_back(&stream);
    let data = stream.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_string))
        .collect();
    assert!(!text.is_empty(), "{data:?}");
    let sent: Value = serde_json::from_slice(&fallback.last_request().unwrap().body).unwrap();
    assert_eq!(sent["model"], "fallback-model");
}

#[test]
fn completions_skip_targets_that_cannot_serve_them() {
    let (first, second) = primary_and_fallback();
    let gw = gateway(&route_yaml(&[
        ("claude", anthropic(&first), "claude-x"),
        ("openai", compatible(&second), "gpt-x"),
    ]));
    let response = post(&gw, "/v1/completions", &completion(false), &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_served_by(&response, "openai/gpt-x");
    assert_eq!(
        first.stats().requests,
        0,
        "nothing is sent to a kind without completions"
    );
    // The skipped target is not an attempt.
    assert_eq!(response.header("x-switchyard-attempts"), Some("1"));
}

#[test]
fn a_route_without_a_serving_target_is_a_clear_400_in_the_endpoints_shape() {
    let only = mock("only");
    let gw = gateway(&route_yaml(&[("claude", anthropic(&only), "claude-x")]));
    let response = post(&gw, "/v1/completions", &completion(false), &[]);
    assert_eq!(response.status, 400, "{}", response.text());
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("legacy completions"), "{message}");
    assert!(message.contains("route `chat`"), "{message}");

    let compat = mock("compat");
    let gw = gateway(&route_yaml(&[("openai", compatible(&compat), "gpt-x")]));
    let count = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    let response = post(&gw, "/v1/messages/count_tokens", &count, &[]);
    assert_eq!(response.status, 400, "{}", response.text());
    let body = response.json();
    assert_eq!(body["type"], "error", "Anthropic-shaped: {body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Anthropic"));
    assert_eq!(only.stats().requests + compat.stats().requests, 0);
}

#[test]
fn count_tokens_passes_through_to_anthropic_targets_only() {
    let (compat, claude) = primary_and_fallback();
    let gw = gateway(&route_yaml(&[
        ("openai", compatible(&compat), "gpt-x"),
        ("claude", anthropic(&claude), "claude-x"),
    ]));
    let body = json!({
        "model": "chat",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "How many tokens is this?"}],
    });
    let response = post(
        &gw,
        "/v1/messages/count_tokens",
        &body,
        &[("anthropic-version", "2023-06-01")],
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_served_by(&response, "claude/claude-x");
    let counted = response.json();
    assert!(counted["input_tokens"].as_u64().unwrap() > 0, "{counted}");
    assert_eq!(compat.stats().requests, 0);
    let sent = claude.last_request().unwrap();
    assert!(
        sent.path.ends_with("/v1/messages/count_tokens"),
        "{}",
        sent.path
    );
    let sent: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent["model"], "claude-x");
    assert_eq!(sent["system"], "Be brief.", "the body passes as it is");
}
