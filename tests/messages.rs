//! The Anthropic Messages endpoint, end to end over real sockets: an Anthropic
//! request through the gateway to OpenAI mock targets, answered in Anthropic's
//! shapes (whole and streamed), with failover, `x-api-key` auth, tool translation,
//! a mid-stream failure and the gateway's own errors.

mod common;

use std::time::Duration;

use common::*;
use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::{Fault, MockHandle};
use serde_json::{json, Value};
use switchyard::gateway::Gateway;

const PRIMARY: &str = "primary/primary-model";
const FALLBACK: &str = "fallback/fallback-model";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn request_body(stream: bool) -> Value {
    json!({
        "model": "chat",
        "max_tokens": 64,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Say hello."}],
        "metadata": {"user_id": "u-1"},
        "stream": stream,
    })
}

/// POSTs `body` to `/v1/messages` with an Anthropic SDK's headers plus `headers`.
fn post_with(gw: &Gateway, body: &Value, headers: &[(&str, &str)]) -> HttpResponse {
    let mut client = client(gw);
    client.set_read_timeout(Duration::from_secs(10)).unwrap();
    let mut all = vec![
        ("content-type", "application/json"),
        ("anthropic-version", "2023-06-01"),
    ];
    all.extend_from_slice(headers);
    client
        .request("POST", "/v1/messages", &all, body.to_string().as_bytes())
        .expect("a complete response")
}

fn post(gw: &Gateway, body: &Value) -> HttpResponse {
    post_with(gw, body, &[])
}

fn events(response: &HttpResponse) -> Vec<(String, Value)> {
    sse_events(response)
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    event_names(events)
}

/// Concatenated `text_delta`s of an Anthropic event stream.
fn streamed_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(name, data)| {
            name == "content_block_delta" && data["delta"]["type"] == "text_delta"
        })
        .filter_map(|(_, data)| data["delta"]["text"].as_str())
        .collect()
}

/// The mock's full answer and usage, asked directly in OpenAI's format.
fn direct(mock: &MockHandle) -> (String, Value) {
    let mut client = Client::connect(mock.addr()).expect("connect to mock");
    let response = client
        .chat(&chat_body("direct", false), &[])
        .expect("mock answers");
    let body = response.json();
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("mock text")
        .to_string();
    (text, body["usage"].clone())
}

/// The OpenAI body the mock last received.
fn received(mock: &MockHandle) -> Value {
    let request = mock.last_request().expect("the mock got a request");
    assert_eq!(request.path, "/v1/chat/completions");
    serde_json::from_slice(&request.body).expect("the mock got JSON")
}

fn assert_error(response: &HttpResponse, status: u16, kind: &str) -> String {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{}",
        response.text()
    );
    let body = response.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("").to_string();
    assert!(!message.is_empty(), "{body}");
    message
}

/// A mock `primary`, its own answer to a direct chat (text, usage), and then a
/// gateway with a one-target route to it.
fn direct_then_gateway() -> (MockHandle, String, Value, Gateway) {
    let primary = mock("primary");
    let (text, usage) = direct(&primary);
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    (primary, text, usage, gw)
}

// ---------------------------------------------------------------------------
// Whole answers
// ---------------------------------------------------------------------------

#[test]
fn non_streaming_message_through_an_openai_target() {
    let (primary, text, usage, gw) = direct_then_gateway();
    let response = post(&gw, &request_body(false));
    assert_served_by(&response, PRIMARY);
    let body = response.json();
    let id = body["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("msg_") && id.len() > 4, "{id}");
    assert_eq!(
        body,
        json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": "primary-model",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {
                "input_tokens": body["usage"]["input_tokens"],
                "output_tokens": usage["completion_tokens"],
            },
        })
    );
    // The mock counts prompt tokens from what it received; only its sign is fixed.
    assert!(body["usage"]["input_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));
    // What the OpenAI target received: a chat body, routed model, system first.
    let sent = received(&primary);
    assert_eq!(sent["model"], "primary-model");
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello."},
        ])
    );
    assert_eq!(sent["max_tokens"], 64);
    assert!(sent.get("metadata").is_none(), "{sent}");
    gw.shutdown();
}

#[test]
fn tool_calls_become_tool_use_blocks() {
    let primary = mock("primary");
    let completion = json!({
        "id": "chatcmpl-tools", "object": "chat.completion", "model": "primary-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]
        }}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    });
    primary.set_fault(Fault::Status {
        status: 200,
        rate: 1.0,
        retry_after: None,
        body: Some(completion.to_string()),
        times: None,
    });
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let mut body = request_body(false);
    body["tools"] = json!([{
        "name": "get_weather",
        "description": "Current weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }]);
    body["tool_choice"] = json!({"type": "any"});
    let response = post(&gw, &body);
    assert_eq!(response.status, 200, "{}", response.text());
    let answer = response.json();
    assert_eq!(answer["id"], "msg_tools");
    assert_eq!(
        answer["content"],
        json!([{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}])
    );
    assert_eq!(answer["stop_reason"], "tool_use");
    assert_eq!(
        answer["usage"],
        json!({"input_tokens": 11, "output_tokens": 5})
    );
    // The tool definitions reached the OpenAI target as function tools.
    let sent = received(&primary);
    assert_eq!(
        sent["tools"],
        json!([{"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }}])
    );
    assert_eq!(sent["tool_choice"], "required");
    gw.shutdown();
}

#[test]
fn failover_to_the_fallback_is_visible() {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(503));
    let (text, _) = direct(&fallback);
    let gw = fallback_chain(&primary, &fallback, "retry: { attempts: 1 }", "");
    let response = post(&gw, &request_body(false));
    assert_fell_back(&response);
    assert_eq!(response.json()["content"][0]["text"], text.as_str());
    assert_eq!(response.json()["model"], "fallback-model");

    let response = post(&gw, &request_body(true));
    assert_served_by(&response, FALLBACK);
    assert_eq!(streamed_text(&events(&response)), text);
    gw.shutdown();
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

#[test]
fn streaming_message_through_an_openai_target() {
    let (primary, text, usage, gw) = direct_then_gateway();
    let response = post(&gw, &request_body(true));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert_eq!(response.header("x-switchyard-target"), Some(PRIMARY));
    let events = events(&response);
    let names = names(&events);
    let deltas = names.len() - 5;
    let mut expected = vec!["message_start", "content_block_start"];
    expected.extend((0..deltas).map(|_| "content_block_delta"));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected, "{}", response.text());
    assert!(deltas >= 2, "one delta per word: {names:?}");

    let start = &events[0].1;
    assert_eq!(start["type"], "message_start");
    let message = &start["message"];
    assert!(message["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("msg_")));
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "primary-model");
    assert_eq!(message["content"], json!([]));
    assert_eq!(message["stop_reason"], Value::Null);
    assert_eq!(
        events[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    for (_, delta) in &events[2..2 + deltas] {
        assert_eq!(delta["type"], "content_block_delta");
        assert_eq!(delta["index"], 0);
        assert_eq!(delta["delta"]["type"], "text_delta");
    }
    assert_eq!(streamed_text(&events), text);
    assert_eq!(
        events[2 + deltas].1,
        json!({"type": "content_block_stop", "index": 0})
    );
    assert_eq!(
        events[3 + deltas].1,
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {
                "input_tokens": events[3 + deltas].1["usage"]["input_tokens"],
                "output_tokens": usage["completion_tokens"],
            },
        })
    );
    assert!(events[3 + deltas].1["usage"]["input_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));
    assert_eq!(events[4 + deltas].1, json!({"type": "message_stop"}));
    assert!(!response.text().contains("[DONE]"));
    // The gateway asked the OpenAI target for usage, as on the chat path.
    let sent = received(&primary);
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
    gw.shutdown();
}

#[test]
fn mid_stream_reset_ends_with_an_anthropic_error_event() {
    let primary = mock("primary");
    // Role delta and two words, then a connection reset.
    primary.set_fault(Fault::ResetMidStream { after_chunks: 3 });
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let response = post(&gw, &request_body(true));
    assert_eq!(response.status, 200, "{}", response.text());
    let events = events(&response);
    let names = names(&events);
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"error"), "{names:?}");
    assert!(!names.contains(&"message_stop"), "{names:?}");
    assert!(names.contains(&"content_block_delta"), "{names:?}");
    let error = &events[events.len() - 1].1;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "api_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("after the response started")),
        "{error}"
    );
    assert!(!response.text().contains("[DONE]"));
    gw.shutdown();
}

// ---------------------------------------------------------------------------
// Auth and errors
// ---------------------------------------------------------------------------

#[test]
fn x_api_key_authenticates() {
    let primary = mock("primary");
    let top = "keys:\n  - { name: app, key: sk-anthropic-test }\n";
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", top));
    let body = request_body(false);

    let response = post_with(&gw, &body, &[("x-api-key", "sk-anthropic-test")]);
    assert_eq!(response.status, 200, "{}", response.text());
    let response = post_with(&gw, &body, &[("authorization", "Bearer sk-anthropic-test")]);
    assert_eq!(response.status, 200, "{}", response.text());

    let message = assert_error(&post(&gw, &body), 401, "authentication_error");
    assert!(message.contains("x-api-key"), "{message}");
    assert_error(
        &post_with(&gw, &body, &[("x-api-key", "sk-wrong")]),
        401,
        "authentication_error",
    );
    // The chat endpoint keeps to `Authorization: Bearer`.
    let mut client = client(&gw);
    let response = client
        .chat(
            &chat_body("chat", false),
            &[("x-api-key", "sk-anthropic-test")],
        )
        .expect("response");
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["error"]["code"], "invalid_api_key");
    gw.shutdown();
}

#[test]
fn bad_requests_are_anthropic_shaped() {
    let primary = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let mut client = client(&gw);
    let response = client
        .request(
            "POST",
            "/v1/messages",
            &[("content-type", "application/json")],
            b"{not json",
        )
        .expect("response");
    assert_error(&response, 400, "invalid_request_error");

    let mut body = request_body(false);
    body["messages"] = json!([{"role": "user", "content": [{"type": "document", "source": {}}]}]);
    let message = assert_error(&post(&gw, &body), 400, "invalid_request_error");
    assert!(message.contains("document"), "{message}");

    let mut body = request_body(false);
    body["model"] = json!("no-such-model");
    let message = assert_error(&post(&gw, &body), 404, "not_found_error");
    assert!(message.contains("no-such-model"), "{message}");

    let response = client
        .request("GET", "/v1/messages", &[], b"")
        .expect("response");
    assert_error(&response, 405, "invalid_request_error");
    // A sub-path the gateway does not serve: still Anthropic's error shape.
    let response = client
        .request("POST", "/v1/messages/batches", &[], b"{}")
        .expect("response");
    assert_error(&response, 404, "not_found_error");
    assert_eq!(primary.stats().requests, 0);
    gw.shutdown();
}

#[test]
fn upstream_failures_are_anthropic_shaped() {
    let (_primary, _fallback, gw) = failing_chain();
    // Everything fails: 502 with the attempt list kept.
    for _ in 0..2 {
        let response = post(&gw, &request_body(false));
        let message = assert_error(&response, 502, "api_error");
        assert!(message.contains("attempts failed"), "{message}");
        let attempts = &response.json()["error"]["attempts"];
        assert_eq!(attempts.as_array().map(Vec::len), Some(2), "{attempts}");
    }
    // Both breakers open: fail fast with 503 + retry-after.
    let response = post(&gw, &request_body(true));
    let message = assert_error(&response, 503, "overloaded_error");
    assert!(message.contains("unavailable"), "{message}");
    assert!(response.header("retry-after").is_some());
    gw.shutdown();
}

#[test]
fn provider_errors_keep_their_message() {
    let primary = mock("primary");
    primary.set_fault(Fault::Status {
        status: 400,
        rate: 1.0,
        retry_after: None,
        body: Some(
            json!({"error": {"message": "temperature is out of range", "type": "invalid_request_error", "code": "invalid_value"}})
                .to_string(),
        ),
        times: None,
    });
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let response = post(&gw, &request_body(false));
    let message = assert_error(&response, 400, "invalid_request_error");
    assert_eq!(message, "temperature is out of range");
    assert_eq!(response.header("x-switchyard-target"), Some(PRIMARY));
    gw.shutdown();
}

#[test]
fn continued_stream_stays_one_anthropic_message() {
    let (primary, fallback) = primary_and_fallback();
    let (full, _) = direct(&primary);
    primary.set_fault(Fault::ResetMidStream { after_chunks: 3 });
    let gw = fallback_chain(
        &primary,
        &fallback,
        "retry: { attempts: 1 }\nstream: { continue_after_commit: true }",
        "",
    );
    let response = post(&gw, &request_body(true));
    assert_served_by(&response, PRIMARY);
    let events = events(&response);
    let names = names(&events);
    let count = |name: &str| names.iter().filter(|n| **n == name).count();
    assert_eq!(count("message_start"), 1, "{names:?}");
    assert_eq!(count("content_block_start"), 1, "{names:?}");
    assert_eq!(count("content_block_stop"), 1, "{names:?}");
    assert_eq!(count("error"), 0, "{names:?}");
    assert_eq!(
        &names[names.len() - 2..],
        ["message_delta", "message_stop"],
        "{names:?}"
    );
    // The primary's words, then the fallback's continuation, in one text block.
    assert_eq!(streamed_text(&events), full);
    assert_eq!(events[0].1["message"]["model"], "primary-model");
    gw.shutdown();
}

#[test]
fn body_limit_errors_are_anthropic_shaped_too() {
    let primary = mock("primary");
    let gw = gateway(&chain_yaml(
        &[("primary", &primary)],
        "",
        "limits: { max_body_bytes: 256 }\n",
    ));
    let big = vec![b'x'; 1024];
    let mut client = client(&gw);
    let response = client
        .request(
            "POST",
            "/v1/messages",
            &[("content-type", "application/json")],
            &big,
        )
        .expect("response");
    assert_error(&response, 413, "request_too_large");
    let mut client = loadtest::client::Client::connect(gw.addr()).unwrap();
    let chat = client
        .request(
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            &big,
        )
        .expect("response");
    assert_eq!(chat.status, 413);
    assert!(
        chat.json()["error"]["message"].is_string(),
        "{}",
        chat.text()
    );
    gw.shutdown();
}
