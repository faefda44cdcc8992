//! `/v1/responses` passed through to targets that serve the Responses API
//! (`responses: true`), end to end over real sockets: the client's body and the
//! provider's events as they are, failover between native and translated targets
//! before the first token, what a native stream does after it, and stateful
//! requests pinned to the one target that holds their state.

mod common;

use std::time::Duration;

use common::*;
use loadtest::client::HttpResponse;
use loadtest::mock::{Fault, MockHandle};
use serde_json::{json, Value};
use switchyard::gateway::Gateway;

fn post(gw: &Gateway, body: &Value) -> HttpResponse {
    let mut client = client(gw);
    client.set_read_timeout(Duration::from_secs(10)).unwrap();
    client
        .request(
            "POST",
            "/v1/responses",
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
        .expect("a complete response")
}

/// A route `chat` over `targets`: (provider name, mock, serves Responses natively).
fn route_yaml(targets: &[(&str, &MockHandle, bool)], route_extra: &str) -> String {
    let mut yaml = String::from("listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n");
    for (name, mock, native) in targets {
        yaml.push_str(&format!(
            "  {name}: {{ kind: openai-compatible, base_url: \"{}\", responses: {native} }}\n",
            mock.base_url()
        ));
    }
    yaml.push_str("routes:\n  - name: chat\n    match: { model: chat }\n");
    if !route_extra.contains("strategy:") {
        yaml.push_str("    strategy: priority\n");
    }
    yaml.push_str("    targets:\n");
    for (i, (name, _, _)) in targets.iter().enumerate() {
        yaml.push_str(&format!(
            "      - {{ provider: {name}, model: {name}-model, priority: {i} }}\n"
        ));
    }
    for line in route_extra.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str("    ");
        yaml.push_str(line.trim_start());
        yaml.push('\n');
    }
    yaml
}

fn events(response: &HttpResponse) -> Vec<(String, Value)> {
    sse_events(response)
}

fn deltas(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(name, _)| name == "response.output_text.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap_or("").to_string())
        .collect()
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
        .filter(|part| part["type"] == "output_text")
        .map(|part| part["text"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_native_target_gets_the_clients_body_and_answers_as_it_is() {
    let native = mock("native");
    let gw = gateway(&route_yaml(&[("native", &native, true)], ""));
    // A built-in tool no translation could express passes through untouched.
    let body = json!({
        "model": "chat",
        "input": "Say hello.",
        "tools": [{"type": "web_search"}],
        "include": ["web_search_call.action.sources"],
    });
    let response = post(&gw, &body);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_served_by(&response, "native/native-model");
    let answer = response.json();
    assert_eq!(answer["object"], "response");
    assert!(
        answer["id"].as_str().unwrap().starts_with("resp_mock_"),
        "{answer}"
    );
    assert!(!output_text(&answer).is_empty(), "{answer}");
    let sent = native.last_request().unwrap();
    assert!(sent.path.ends_with("/v1/responses"), "{}", sent.path);
    let sent: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent["model"], "native-model");
    assert_eq!(sent["tools"], body["tools"]);
    assert_eq!(sent["include"], body["include"]);
    assert!(sent.get("stream_options").is_none());
}

#[test]
fn a_native_stream_is_relayed_event_for_event() {
    let native = mock("native");
    let gw = gateway(&route_yaml(&[("native", &native, true)], ""));
    let stream = post(
        &gw,
        &json!({"model": "chat", "input": "Say hello.", "stream": true}),
    );
    assert_eq!(stream.status, 200, "{}", stream.text());
    let events = events(&stream);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"response.created"), "{names:?}");
    assert_eq!(names.last(), Some(&"response.completed"), "{names:?}");
    assert!(!stream.text().contains("[DONE]"), "no end marker of ours");
    let numbers: Vec<u64> = events
        .iter()
        .map(|(_, v)| v["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>());
    let completed = &events.last().unwrap().1["response"];
    assert_eq!(deltas(&events), output_text(completed));
}

#[test]
fn native_and_translated_targets_fail_over_to_each_other_before_the_first_token() {
    let (native, translated) = (mock("native"), mock("chat"));
    let gw = gateway(&route_yaml(
        &[("native", &native, true), ("chat", &translated, false)],
        "",
    ));
    native.set_fault(fault_status(503));
    let whole = post(&gw, &json!({"model": "chat", "input": "Say hello."}));
    assert_served_by(&whole, "chat/chat-model");
    assert_eq!(whole.header("x-switchyard-fallback"), Some("true"));
    let answer = whole.json();
    assert!(
        answer["id"].as_str().unwrap().starts_with("resp_sy"),
        "translated: {answer}"
    );
    assert!(translated
        .last_request()
        .unwrap()
        .path
        .ends_with("/chat/completions"));

    let stream = post(
        &gw,
        &json!({"model": "chat", "input": "Say hello.", "stream": true}),
    );
    assert_served_by(&stream, "chat/chat-model");
    let seen = events(&stream);
    assert_eq!(seen.first().unwrap().0, "response.created");
    assert_eq!(seen.last().unwrap().0, "response.completed");
    assert!(!deltas(&seen).is_empty());

    // And the other way round: a translated primary down, the native one serves.
    native.set_fault(Fault::None);
    translated.set_fault(fault_status(503));
    let gw = gateway(&route_yaml(
        &[("chat", &translated, false), ("native", &native, true)],
        "",
    ));
    let stream = post(
        &gw,
        &json!({"model": "chat", "input": "Say hello.", "stream": true}),
    );
    assert_served_by(&stream, "native/native-model");
    let events = events(&stream);
    assert!(events[0].1["response"]["id"]
        .as_str()
        .unwrap()
        .starts_with("resp_mock_"));
}

#[test]
fn a_native_stream_cut_after_commit_ends_with_an_error_event_and_is_not_continued() {
    let (native, translated) = (mock("native"), mock("chat"));
    let gw = gateway(&route_yaml(
        &[("native", &native, true), ("chat", &translated, false)],
        "stream: { continue_after_commit: true }",
    ));
    native.set_fault(Fault::ResetMidStream { after_chunks: 5 });
    let stream = post(
        &gw,
        &json!({"model": "chat", "input": "Say hello.", "stream": true}),
    );
    assert_eq!(stream.status, 200);
    let events = events(&stream);
    assert!(
        events
            .iter()
            .any(|(name, v)| name == "error" || v["type"] == "error"),
        "{events:?}"
    );
    assert!(events.iter().all(|(name, _)| name != "response.completed"));
    assert_eq!(
        translated.stats().requests,
        0,
        "a native stream is never continued"
    );
}

#[test]
fn a_request_only_a_native_target_can_take_skips_the_translated_ones() {
    let (translated, native) = (mock("chat"), mock("native"));
    let body = json!({"model": "chat", "input": "Find it.", "tools": [{"type": "web_search"}]});
    let gw = gateway(&route_yaml(
        &[("chat", &translated, false), ("native", &native, true)],
        "",
    ));
    let response = post(&gw, &body);
    assert_served_by(&response, "native/native-model");
    assert_eq!(translated.stats().requests, 0);

    let gw = gateway(&route_yaml(&[("chat", &translated, false)], ""));
    let response = post(&gw, &body);
    assert_eq!(response.status, 400, "{}", response.text());
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("web_search"), "{message}");
    assert_eq!(translated.stats().requests, 0);
}

#[test]
fn a_stateful_request_goes_to_the_first_native_target_only() {
    let (translated, first, second) = (mock("chat"), mock("first"), mock("second"));
    let gw = gateway(&route_yaml(
        &[
            ("chat", &translated, false),
            ("first", &first, true),
            ("second", &second, true),
        ],
        "strategy: weighted",
    ));
    let created = post(
        &gw,
        &json!({"model": "chat", "input": "Remember 7.", "store": true}),
    );
    assert_served_by(&created, "first/first-model");
    let id = created.json()["id"].as_str().unwrap().to_string();
    for _ in 0..4 {
        let next = post(
            &gw,
            &json!({"model": "chat", "input": "What was it?", "previous_response_id": id}),
        );
        assert_served_by(&next, "first/first-model");
        assert_eq!(next.json()["previous_response_id"], id.as_str());
    }
    // Its target failing, the client gets that target's answer: no other target
    // holds the state, so none is tried.
    first.set_fault(fault_status(503));
    let failed = post(
        &gw,
        &json!({"model": "chat", "input": "Again?", "previous_response_id": id}),
    );
    assert_eq!(failed.status, 503, "{}", failed.text());
    assert_eq!(second.stats().requests, 0);
    assert_eq!(translated.stats().requests, 0);

    // A route with no native target refuses it, saying why.
    let gw = gateway(&route_yaml(&[("chat", &translated, false)], ""));
    let refused = post(
        &gw,
        &json!({"model": "chat", "input": "x", "previous_response_id": id}),
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("previous_response_id"), "{message}");
    assert_eq!(translated.stats().requests, 0);
}
