//! Anthropic (Messages API) end to end on 127.0.0.1: the gateway translates OpenAI
//! chat requests, the mock provider answers in Anthropic's dialect (JSON and SSE),
//! and the client sees OpenAI's shapes.

mod common;

use common::*;
use loadtest::mock::{Fault, MockHandle};

const MODEL: &str = "claude-sonnet-4-5";

/// A route whose first target is `anthropic` (the mock speaking Messages) and,
/// when given, a plain OpenAI-compatible fallback.
fn yaml(anthropic: &MockHandle, fallback: Option<&MockHandle>, route_extra: &str) -> String {
    let settings = format!(
        "{{ kind: anthropic, base_url: \"{}\", api_key: sk-ant-test }}",
        anthropic.base_url()
    );
    translated_route_yaml("anthropic", &settings, MODEL, fallback, route_extra)
}

#[test]
fn messages_round_trip_plain_and_streamed() {
    let anthropic = mock("anthropic");
    let gw = gateway(&yaml(&anthropic, None, ""));
    let text = completion_text(&chat(gw.addr()));

    let recorded = anthropic.last_request().expect("mock saw the request");
    assert_eq!(recorded.path, "/v1/messages");
    assert_eq!(recorded.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(recorded.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(recorded.header("authorization"), None);
    let sent: serde_json::Value = serde_json::from_slice(&recorded.body).expect("json");
    assert_eq!(sent["model"], MODEL);
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(sent["system"], "You are a helpful assistant.");
    assert_eq!(sent["messages"][0]["content"][0]["text"], "Say hello.");

    assert_stream_text(&chat_stream(gw.addr()), &text);
    gw.shutdown();
    anthropic.shutdown();
}

#[test]
fn tool_use_comes_back_as_tool_calls() {
    let anthropic = mock("anthropic");
    let gw = gateway(&yaml(&anthropic, None, ""));
    let body = serde_json::json!({
        "model": "chat",
        "messages": [{"role": "user", "content": "Please use a tool."}],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    });
    let mut client = client(&gw);
    let response = client.chat(&body.to_string(), &[]).expect("response");
    assert_eq!(response.status, 200, "{}", response.text());
    let json = response.json();
    assert_eq!(json["choices"][0]["finish_reason"], "tool_calls");
    let call = &json["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "lookup");
    assert_eq!(call["function"]["arguments"], "{}");
    gw.shutdown();
    anthropic.shutdown();
}

#[test]
fn overload_falls_back_and_stream_error_events_too() {
    let anthropic = mock("anthropic");
    let fallback = mock("fallback");
    let gw = gateway(&yaml(&anthropic, Some(&fallback), "retry: { attempts: 1 }"));
    assert_falls_back_on_status_and_stream_error(&gw, &anthropic, 529);
    gw.shutdown();
    anthropic.shutdown();
    fallback.shutdown();
}

#[test]
fn errors_reach_the_client_in_openai_shape() {
    let anthropic = mock("anthropic");
    let gw = gateway(&yaml(&anthropic, None, "retry: { attempts: 1 }"));
    assert_context_length_error(
        &gw,
        &anthropic,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#,
        "prompt is too long: 208310 tokens > 200000 maximum",
    );
    gw.shutdown();
    anthropic.shutdown();
}

#[test]
fn streamed_tool_calls_and_usage_reach_the_client() {
    let anthropic = mock("anthropic");
    let gw = gateway(&yaml(&anthropic, None, ""));
    let body = serde_json::json!({
        "model": "chat",
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Please use a tool."}],
        "tools": [{"type": "function", "function": {"name": "lookup"}}]
    });
    let mut client = client(&gw);
    let response = client.chat(&body.to_string(), &[]).expect("response");
    assert_eq!(response.status, 200, "{}", response.text());
    let data = response.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<serde_json::Value> = data
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("chunk json"))
        .collect();
    let id = &chunks[0]["id"];
    assert!(chunks.iter().all(|c| &c["id"] == id), "{data:?}");
    let calls: Vec<_> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0].as_object())
        .collect();
    assert_eq!(calls[0]["function"]["name"], "lookup");
    let arguments: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, "{}");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    let usage = chunks.last().expect("usage chunk");
    assert_eq!(usage["choices"], serde_json::json!([]));
    assert!(usage["usage"]["total_tokens"].as_u64().is_some(), "{usage}");
    gw.shutdown();
    anthropic.shutdown();
}

#[test]
fn a_broken_stream_continues_on_anthropic_with_prefill() {
    let primary = mock("primary");
    let anthropic = mock("anthropic");
    let mut yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n{}  anthropic: {{ kind: anthropic, base_url: \"{}\", api_key: sk-ant-test }}\n",
        provider("primary", &primary),
        anthropic.base_url()
    );
    yaml.push_str("routes:\n  - name: chat\n    match: { model: chat }\n    targets:\n");
    yaml.push_str("      - { provider: primary, model: primary-model, priority: 0 }\n");
    yaml.push_str(&format!(
        "      - {{ provider: anthropic, model: {MODEL}, priority: 1 }}\n"
    ));
    yaml.push_str("    retry: { attempts: 1 }\n    stream: { continue_after_commit: true }\n");
    primary.set_fault(Fault::ResetMidStream { after_chunks: 3 });
    let gw = gateway(&yaml);
    let stream = chat_stream(gw.addr());
    assert_eq!(stream.status, 200, "{}", stream.text());
    let data = stream.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    assert!(!data.iter().any(|d| d.contains("\"error\"")), "{data:?}");
    let recorded = anthropic.last_request().expect("continuation sent");
    let sent: serde_json::Value = serde_json::from_slice(&recorded.body).expect("json");
    let messages = sent["messages"].as_array().expect("messages");
    let last = messages.last().expect("a message");
    assert_eq!(last["role"], "assistant", "{sent}");
    let prefix = last["content"][0]["text"].as_str().expect("prefill text");
    assert!(stream.stream_text().starts_with(prefix), "{sent}");
    assert_eq!(sent["stream"], true);
    gw.shutdown();
    primary.shutdown();
    anthropic.shutdown();
}
