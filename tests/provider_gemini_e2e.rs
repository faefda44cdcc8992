//! Gemini (generateContent / streamGenerateContent?alt=sse / batchEmbedContents)
//! end to end on 127.0.0.1: the gateway translates, the mock provider answers in
//! Gemini's dialect, and the client sees OpenAI's shapes.

mod common;

use common::*;
use loadtest::client::Client;
use loadtest::mock::MockHandle;

const MODEL: &str = "gemini-2.0-flash";

/// A route whose first target is `gemini` and, when given, an OpenAI fallback.
fn yaml(gemini: &MockHandle, fallback: Option<&MockHandle>) -> String {
    let base = format!("http://{}/v1beta", gemini.addr());
    let mut yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n  gemini: {{ kind: gemini, base_url: \"{base}\", api_key: g-key }}\n"
    );
    if let Some(m) = fallback {
        yaml.push_str(&provider("fallback", m));
    }
    yaml.push_str("routes:\n");
    for name in ["chat", "embed"] {
        yaml.push_str(&format!(
            "  - name: {name}\n    match: {{ model: {name} }}\n    strategy: priority\n    targets:\n      - {{ provider: gemini, model: {MODEL}, priority: 0 }}\n"
        ));
        if fallback.is_some() {
            yaml.push_str("      - { provider: fallback, model: fallback-model, priority: 1 }\n");
        }
    }
    yaml
}

#[test]
fn generate_and_stream_round_trip() {
    let gemini = mock("gemini");
    let gw = gateway(&yaml(&gemini, None));
    let response = chat(gw.addr());
    let text = completion_text(&response);
    assert_eq!(response.json()["model"], MODEL);

    let recorded = gemini.last_request().expect("mock saw the request");
    assert_eq!(
        recorded.path,
        "/v1beta/models/gemini-2.0-flash:generateContent"
    );
    assert_eq!(recorded.header("x-goog-api-key"), Some("g-key"));
    assert!(recorded.header("authorization").is_none());
    let sent: serde_json::Value = serde_json::from_slice(&recorded.body).expect("json");
    assert_eq!(
        sent["systemInstruction"]["parts"][0]["text"],
        "You are a helpful assistant."
    );
    assert_eq!(sent["contents"][0]["parts"][0]["text"], "Say hello.");

    assert_stream_text(&chat_stream(gw.addr()), &text);
    let recorded = gemini.last_request().expect("stream request");
    assert_eq!(
        recorded.path,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
    gw.shutdown();
    gemini.shutdown();
}

#[test]
fn embeddings_round_trip() {
    let gemini = mock("gemini");
    let gw = gateway(&yaml(&gemini, None));
    let mut client = Client::connect(gw.addr()).expect("connect");
    let body = br#"{"model":"embed","input":["first","second"]}"#;
    let response = client
        .request(
            "POST",
            "/v1/embeddings",
            &[("content-type", "application/json")],
            body,
        )
        .expect("response");
    assert_eq!(response.status, 200, "{}", response.text());
    let out = response.json();
    assert_eq!(out["object"], "list");
    assert_eq!(out["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(out["data"][1]["index"], 1);
    assert!(out["data"][0]["embedding"]
        .as_array()
        .is_some_and(|v| !v.is_empty()));
    let recorded = gemini.last_request().expect("embed request");
    assert_eq!(
        recorded.path,
        "/v1beta/models/gemini-2.0-flash:batchEmbedContents"
    );
    gw.shutdown();
    gemini.shutdown();
}

#[test]
fn unavailable_gemini_falls_back_and_client_errors_keep_googles_message() {
    let gemini = mock("gemini");
    let fallback = mock("fallback");
    gemini.set_fault(fault_status(503));
    let gw = gateway(&yaml(&gemini, Some(&fallback)));
    assert_from_fallback(&chat(gw.addr()));
    gw.shutdown();

    gemini.set_fault(fault_status(403));
    let gw = gateway(&yaml(&gemini, None));
    let response = chat(gw.addr());
    assert_eq!(response.status, 403, "{}", response.text());
    let error = response.json();
    assert_eq!(error["error"]["type"], "permission_error");
    assert_eq!(error["error"]["code"], "PERMISSION_DENIED");
    gw.shutdown();
    gemini.shutdown();
    fallback.shutdown();
}

#[test]
fn stream_errors_fall_back_before_commit_and_end_cleanly_after() {
    let gemini = mock("gemini");
    let fallback = mock("fallback");
    gemini.set_fault(loadtest::mock::Fault::SseErrorEvent { after_chunks: 0 });
    let gw = gateway(&yaml(&gemini, Some(&fallback)));
    let stream = chat_stream(gw.addr());
    assert_from_fallback(&stream);
    assert_eq!(stream.sse_data().last().map(String::as_str), Some("[DONE]"));

    gemini.set_fault(loadtest::mock::Fault::SseErrorEvent { after_chunks: 1 });
    let stream = chat_stream(gw.addr());
    assert_eq!(stream.status, 200, "{}", stream.text());
    assert_eq!(
        stream.header("x-switchyard-target"),
        Some("gemini/gemini-2.0-flash")
    );
    let data = stream.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(data.iter().any(|d| d.contains("\"error\"")), "{data:?}");

    gemini.set_fault(loadtest::mock::Fault::MalformedEvent { after_chunks: 1 });
    let stream = chat_stream(gw.addr());
    assert_eq!(
        stream.header("x-switchyard-target"),
        Some("gemini/gemini-2.0-flash")
    );
    assert_eq!(stream.sse_data().last().map(String::as_str), Some("[DONE]"));
    assert!(!stream.stream_text().is_empty());
    gw.shutdown();
    gemini.shutdown();
    fallback.shutdown();
}

#[test]
fn gemini_needs_an_api_key() {
    let yaml = "listen: 127.0.0.1:0\nproviders:\n  gemini: { kind: gemini, base_url: \"http://127.0.0.1:9/v1beta\" }\nroutes:\n  - name: chat\n    match: { model: chat }\n    targets:\n      - { provider: gemini, model: gemini-2.0-flash }\n";
    let errors = switchyard::config::load_str(yaml, "t.yaml", &|_: &str| None)
        .expect_err("a keyless gemini provider is refused");
    let text = errors.to_string();
    assert!(
        text.contains("providers.gemini.api_key: is required for kind `gemini`"),
        "{text}"
    );
}
