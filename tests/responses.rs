//! The Responses API endpoint, end to end over real sockets: Responses requests
//! through the gateway to mock targets of every kind (translated onto chat
//! completions), answered in the Responses shapes (whole and streamed), with a
//! function tool round trip, failover before the first token, a stream continued
//! after commit, a failure after commit, stateful requests refused and the
//! gateway's own errors.

mod common;

use std::time::Duration;

use common::*;
use loadtest::client::HttpResponse;
use loadtest::mock::{Fault, MockHandle};
use serde_json::{json, Value};
use switchyard::gateway::Gateway;

fn request_body(stream: bool) -> Value {
    json!({
        "model": "chat",
        "instructions": "You are terse.",
        "input": "Say hello.",
        "max_output_tokens": 64,
        "metadata": {"app": "test"},
        "store": false,
        "stream": stream,
    })
}

fn post_to(gw: &Gateway, path: &str, body: &[u8]) -> HttpResponse {
    let mut client = client(gw);
    client.set_read_timeout(Duration::from_secs(10)).unwrap();
    client
        .request("POST", path, &[("content-type", "application/json")], body)
        .expect("a complete response")
}

fn post(gw: &Gateway, body: &Value) -> HttpResponse {
    post_to(gw, "/v1/responses", body.to_string().as_bytes())
}

/// (event name, data) of every event, checking that each event's data repeats
/// its name as `type` and that sequence numbers count 0, 1, 2, ...
fn events(response: &HttpResponse) -> Vec<(String, Value)> {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let events = sse_events(response);
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str(), "{data}");
    }
    for (n, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], n as u64, "{}", response.text());
    }
    assert!(!response.text().contains("[DONE]"));
    events
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    event_names(events)
}

fn count(events: &[(String, Value)], name: &str) -> usize {
    events.iter().filter(|(n, _)| n == name).count()
}

fn streamed_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .filter_map(|(_, d)| d["delta"].as_str())
        .collect()
}

/// The text of a whole `response` (its one message item).
fn response_text(response: &HttpResponse) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["object"], "response", "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    assert!(body["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("resp_sy")));
    let item = &body["output"][0];
    assert_eq!(item["type"], "message", "{body}");
    assert_eq!(item["content"][0]["type"], "output_text", "{body}");
    item["content"][0]["text"]
        .as_str()
        .expect("text")
        .to_string()
}

/// A clean stream: created and in_progress once, first; completed once, last.
fn assert_clean(events: &[(String, Value)]) {
    let names = names(events);
    assert_eq!(
        &names[..2],
        ["response.created", "response.in_progress"],
        "{names:?}"
    );
    assert_eq!(names.last(), Some(&"response.completed"), "{names:?}");
    for name in [
        "response.created",
        "response.in_progress",
        "response.completed",
    ] {
        assert_eq!(count(events, name), 1, "{name}: {names:?}");
    }
    assert_eq!(count(events, "error"), 0, "{names:?}");
    let id = &events[0].1["response"]["id"];
    assert_eq!(events[events.len() - 1].1["response"]["id"], *id);
}

fn assert_openai_error(response: &HttpResponse, status: u16) -> String {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    body["error"]["message"]
        .as_str()
        .expect("a message")
        .to_string()
}

/// A route to `mock` speaking `kind`'s dialect, as the kind's base URL has it.
fn kind_yaml(kind: &str, mock: &MockHandle) -> String {
    let addr = mock.addr();
    let (settings, model) = match kind {
        "openai-compatible" => (
            format!("{{ kind: openai-compatible, base_url: \"{}\" }}", mock.base_url()),
            "gpt-4o",
        ),
        "azure" => (
            format!("{{ kind: azure, base_url: \"http://{addr}\", api_key: az-key }}"),
            "gpt-4o",
        ),
        "anthropic" => (
            format!("{{ kind: anthropic, base_url: \"{}\", api_key: sk-ant }}", mock.base_url()),
            "claude-sonnet-4-5",
        ),
        "gemini" => (
            format!("{{ kind: gemini, base_url: \"http://{addr}/v1beta\", api_key: g-key }}"),
            "gemini-2.0-flash",
        ),
        "bedrock" => (
            format!(
                "{{ kind: bedrock, base_url: \"{}\", region: us-east-1, aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: secret }}",
                mock.base_url()
            ),
            "anthropic.claude-3-haiku-20240307-v1:0",
        ),
        other => panic!("unknown kind {other}"),
    };
    translated_route_yaml(kind, &settings, model, None, "")
}

const KINDS: [&str; 5] = [
    "openai-compatible",
    "azure",
    "anthropic",
    "gemini",
    "bedrock",
];

#[test]
fn every_kind_answers_whole_and_streamed() {
    for kind in KINDS {
        let provider = mock(kind);
        let gw = gateway(&kind_yaml(kind, &provider));
        let whole = post(&gw, &request_body(false));
        let text = response_text(&whole);
        assert!(!text.is_empty(), "{kind}");
        let body = whole.json();
        assert_eq!(body["instructions"], "You are terse.", "{kind}");
        assert_eq!(body["metadata"], json!({"app": "test"}), "{kind}");
        assert_eq!(body["max_output_tokens"], 64, "{kind}");
        assert!(
            body["usage"]["output_tokens"]
                .as_u64()
                .is_some_and(|n| n > 0),
            "{kind}: {body}"
        );

        let streamed = post(&gw, &request_body(true));
        let events = events(&streamed);
        assert_clean(&events);
        assert_eq!(streamed_text(&events), text, "{kind}");
        let done = &events[events.len() - 1].1["response"];
        assert_eq!(done["status"], "completed", "{kind}");
        assert_eq!(
            done["output"][0]["content"][0]["text"],
            text.as_str(),
            "{kind}"
        );
        assert!(
            done["usage"]["output_tokens"]
                .as_u64()
                .is_some_and(|n| n > 0),
            "{kind}: {done}"
        );
        assert_eq!(count(&events, "response.output_item.added"), 1, "{kind}");
        assert_eq!(count(&events, "response.output_text.done"), 1, "{kind}");
        gw.shutdown();
    }
}

fn tool_request(stream: bool) -> Value {
    json!({
        "model": "chat",
        "input": [{"role": "user", "content": "What is the weather?"}],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather now",
                   "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}],
        "tool_choice": "required",
        "stream": stream,
    })
}

#[test]
fn function_tool_round_trip() {
    for kind in ["openai-compatible", "anthropic"] {
        let provider = mock(kind);
        let gw = gateway(&kind_yaml(kind, &provider));
        let whole = post(&gw, &tool_request(false));
        assert_eq!(whole.status, 200, "{kind}: {}", whole.text());
        let body = whole.json();
        let calls: Vec<&Value> = body["output"]
            .as_array()
            .expect("output")
            .iter()
            .filter(|i| i["type"] == "function_call")
            .collect();
        assert_eq!(calls.len(), 1, "{kind}: {body}");
        let call = calls[0];
        assert_eq!(call["name"], "get_weather", "{kind}");
        let call_id = call["call_id"].as_str().expect("call_id").to_string();
        let arguments = call["arguments"].as_str().expect("arguments").to_string();
        let parsed: Value = serde_json::from_str(&arguments).expect("JSON arguments");
        assert!(parsed.is_object(), "{kind}: {arguments}");

        let streamed = post(&gw, &tool_request(true));
        let events = events(&streamed);
        assert_clean(&events);
        let added = events
            .iter()
            .find(|(n, d)| {
                n == "response.output_item.added" && d["item"]["type"] == "function_call"
            })
            .expect("a function_call item");
        assert_eq!(added.1["item"]["arguments"], "", "{kind}");
        let deltas: String = events
            .iter()
            .filter(|(n, _)| n == "response.function_call_arguments.delta")
            .filter_map(|(_, d)| d["delta"].as_str())
            .collect();
        let done = events
            .iter()
            .find(|(n, _)| n == "response.function_call_arguments.done")
            .expect("arguments done");
        assert_eq!(done.1["arguments"], deltas.as_str(), "{kind}");
        assert_eq!(deltas, arguments, "{kind}");

        // The client runs the tool and sends the result back.
        let mut second = json!({
            "model": "chat",
            "input": [
                {"role": "user", "content": "What is the weather?"},
                {"type": "function_call", "call_id": call_id, "name": "get_weather", "arguments": arguments},
                {"type": "function_call_output", "call_id": call_id, "output": "sunny"},
            ],
            "tools": tool_request(false)["tools"].clone(),
        });
        second["tool_choice"] = "auto".into();
        let answer = post(&gw, &second);
        assert!(!response_text(&answer).is_empty(), "{kind}");
        let sent: Value =
            serde_json::from_slice(&provider.last_request().expect("request").body).unwrap();
        let sent = sent.to_string();
        assert!(sent.contains(&call_id), "{kind}: {sent}");
        assert!(sent.contains("sunny"), "{kind}: {sent}");
        gw.shutdown();
    }
}

#[test]
fn failover_before_the_first_token_is_invisible_in_the_events() {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(503));
    let gw = fallback_chain(&primary, &fallback, "retry: { attempts: 1 }", "");
    let whole = post(&gw, &request_body(false));
    assert_fell_back(&whole);
    let text = response_text(&whole);
    assert_eq!(whole.json()["model"], "fallback-model");

    let streamed = post(&gw, &request_body(true));
    assert_eq!(streamed.header("x-switchyard-fallback"), Some("true"));
    let events = events(&streamed);
    assert_clean(&events);
    assert_eq!(streamed_text(&events), text);
    assert_eq!(count(&events, "response.output_item.added"), 1);
    gw.shutdown();
}

#[test]
fn a_stream_continued_after_commit_is_one_sequence() {
    let (primary, fallback) = primary_and_fallback();
    let full = response_text(&post(
        &gateway(&chain_yaml(&[("primary", &primary)], "", "")),
        &request_body(false),
    ));
    primary.set_fault(Fault::ResetMidStream { after_chunks: 3 });
    let gw = fallback_chain(
        &primary,
        &fallback,
        "retry: { attempts: 1 }\nstream: { continue_after_commit: true }",
        "",
    );
    let response = post(&gw, &request_body(true));
    assert_served_by(&response, "primary/primary-model");
    let events = events(&response);
    assert_clean(&events);
    let names = names(&events);
    assert_eq!(count(&events, "response.output_item.added"), 1, "{names:?}");
    assert_eq!(
        count(&events, "response.content_part.added"),
        1,
        "{names:?}"
    );
    assert_eq!(count(&events, "response.output_item.done"), 1, "{names:?}");
    assert_eq!(streamed_text(&events), full);
    let done = &events[events.len() - 1].1["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], full.as_str());
    assert_eq!(done["model"], "primary-model");
    gw.shutdown();
}

#[test]
fn a_failure_after_commit_ends_with_response_failed_and_error() {
    let primary = mock("primary");
    primary.set_fault(Fault::ResetMidStream { after_chunks: 3 });
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let response = post(&gw, &request_body(true));
    let events = events(&response);
    let names = names(&events);
    assert_eq!(names[0], "response.created", "{names:?}");
    assert!(names.contains(&"response.output_text.delta"), "{names:?}");
    assert_eq!(
        &names[names.len() - 2..],
        ["response.failed", "error"],
        "{names:?}"
    );
    assert_eq!(count(&events, "response.completed"), 0);
    let failed = &events[events.len() - 2].1["response"];
    assert_eq!(failed["status"], "failed");
    let error = &events[events.len() - 1].1;
    assert_eq!(error["code"], "upstream_stream_interrupted");
    assert!(error["message"]
        .as_str()
        .is_some_and(|m| m.contains("after the response started")));
    // What makes the official SDK raise `APIError` on this event.
    assert_eq!(error["error"]["message"], error["message"]);
    gw.shutdown();
}

#[test]
fn stateful_requests_are_refused_with_the_reason() {
    let primary = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let cases = [
        (
            json!({"previous_response_id": "resp_abc"}),
            "serves the Responses API itself",
        ),
        (
            json!({"previous_response_id": "resp_sy0123456789abcdef0123456789"}),
            "keeps no state",
        ),
        (json!({"store": true}), "store"),
        (json!({"background": true}), "background"),
        (json!({"conversation": "conv_1"}), "conversation"),
        (json!({"prompt": {"id": "pmpt_1"}}), "prompt"),
        (
            json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
            "item_reference",
        ),
    ];
    for (extra, needle) in cases {
        let mut body = request_body(false);
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let message = assert_openai_error(&post(&gw, &body), 400);
        assert!(message.contains(needle), "{extra}: {message}");
    }
    assert_eq!(primary.stats().requests, 0);
    gw.shutdown();
}

#[test]
fn bad_requests_and_unknown_models_are_openai_shaped() {
    let primary = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    assert_openai_error(&post_to(&gw, "/v1/responses", b"{not json"), 400);
    let mut body = request_body(false);
    body["input"] = json!([{"type": "web_search_call", "id": "ws_1"}]);
    let message = assert_openai_error(&post(&gw, &body), 400);
    assert!(message.contains("web_search_call"), "{message}");
    let mut body = request_body(false);
    body["tools"] = json!([{"type": "web_search"}]);
    let message = assert_openai_error(&post(&gw, &body), 400);
    assert!(message.contains("web_search"), "{message}");
    let mut body = request_body(false);
    body["model"] = json!("no-such-model");
    let message = assert_openai_error(&post(&gw, &body), 404);
    assert!(message.contains("no-such-model"), "{message}");
    let mut client = client(&gw);
    let response = client
        .request("GET", "/v1/responses", &[], b"")
        .expect("response");
    assert_openai_error(&response, 405);
    assert_eq!(primary.stats().requests, 0);
    // The bare path serves too.
    let response = post_to(
        &gw,
        "/responses",
        request_body(false).to_string().as_bytes(),
    );
    assert!(!response_text(&response).is_empty());
    gw.shutdown();
}
