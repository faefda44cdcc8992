//! Bedrock (Converse / ConverseStream) end to end on 127.0.0.1: the gateway signs
//! and translates, the mock provider answers in Bedrock's dialect (JSON and the
//! binary event stream), and the client sees OpenAI's shapes.

mod common;

use common::*;
use loadtest::mock::{Fault, MockHandle};

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// A route whose first target is `bedrock` (the mock speaking Converse) and,
/// when given, a plain OpenAI-compatible fallback.
fn yaml(bedrock: &MockHandle, fallback: Option<&MockHandle>, route_extra: &str) -> String {
    let mut yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n  bedrock: {{ kind: bedrock, base_url: \"{}\", region: us-east-1, aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: secret, aws_session_token: tok }}\n",
        bedrock.base_url()
    );
    if let Some(m) = fallback {
        yaml.push_str(&provider("fallback", m));
    }
    yaml.push_str("routes:\n  - name: chat\n    match: { model: chat }\n    strategy: priority\n    targets:\n");
    yaml.push_str(&format!(
        "      - {{ provider: bedrock, model: \"{MODEL}\", priority: 0 }}\n"
    ));
    if fallback.is_some() {
        yaml.push_str("      - { provider: fallback, model: fallback-model, priority: 1 }\n");
    }
    for line in route_extra.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str("    ");
        yaml.push_str(line.trim_start());
        yaml.push('\n');
    }
    yaml
}

#[test]
fn converse_and_converse_stream_round_trip() {
    let bedrock = mock("bedrock");
    let gw = gateway(&yaml(&bedrock, None, ""));
    let response = chat(gw.addr());
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string();
    assert!(!text.is_empty());
    assert!(body["usage"]["prompt_tokens"].as_u64().is_some());

    let recorded = bedrock.last_request().expect("mock saw the request");
    assert_eq!(
        recorded.path,
        "/v1/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    let auth = recorded.header("authorization").expect("signed");
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="));
    assert!(recorded.header("x-amz-date").is_some());
    assert_eq!(recorded.header("x-amz-security-token"), Some("tok"));
    let sent: serde_json::Value = serde_json::from_slice(&recorded.body).expect("json");
    assert_eq!(sent["system"][0]["text"], "You are a helpful assistant.");
    assert_eq!(sent["messages"][0]["content"][0]["text"], "Say hello.");

    let stream = chat_stream(gw.addr());
    assert_eq!(stream.status, 200, "{}", stream.text());
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.sse_data().last().map(String::as_str), Some("[DONE]"));
    assert_eq!(stream.stream_text(), text);
    let recorded = bedrock.last_request().expect("stream request");
    assert!(recorded.path.ends_with("%3A0/converse-stream"));
    gw.shutdown();
    bedrock.shutdown();
}

#[test]
fn throttling_falls_back_and_stream_exceptions_too() {
    let bedrock = mock("bedrock");
    let fallback = mock("fallback");
    let gw = gateway(&yaml(&bedrock, Some(&fallback), "retry: { attempts: 1 }"));
    bedrock.set_fault(fault_status(429));
    let response = chat(gw.addr());
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("x-switchyard-target"),
        Some("fallback/fallback-model")
    );

    bedrock.set_fault(Fault::SseErrorEvent { after_chunks: 0 });
    let stream = chat_stream(gw.addr());
    assert_eq!(stream.status, 200, "{}", stream.text());
    assert_eq!(
        stream.header("x-switchyard-target"),
        Some("fallback/fallback-model")
    );
    assert_eq!(stream.sse_data().last().map(String::as_str), Some("[DONE]"));
    gw.shutdown();
    bedrock.shutdown();
    fallback.shutdown();
}

#[test]
fn errors_reach_the_client_in_openai_shape() {
    let bedrock = mock("bedrock");
    let gw = gateway(&yaml(&bedrock, None, "retry: { attempts: 1 }"));
    bedrock.set_fault(Fault::Status {
        status: 400,
        rate: 1.0,
        retry_after: None,
        body: Some(r#"{"message":"Input is too long for requested model."}"#.into()),
        times: None,
    });
    let response = chat(gw.addr());
    assert_eq!(response.status, 400, "{}", response.text());
    let body = response.json();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_eq!(
        body["error"]["message"],
        "Input is too long for requested model."
    );
    gw.shutdown();
    bedrock.shutdown();
}

#[test]
fn exception_after_commit_ends_the_stream_cleanly() {
    let bedrock = mock("bedrock");
    let gw = gateway(&yaml(&bedrock, None, "retry: { attempts: 1 }"));
    bedrock.set_fault(Fault::SseErrorEvent { after_chunks: 3 });
    let stream = chat_stream(gw.addr());
    assert_eq!(stream.status, 200, "{}", stream.text());
    let data = stream.sse_data();
    assert!(!stream.stream_text().is_empty(), "{data:?}");
    assert!(data.iter().any(|d| d.contains("\"error\"")), "{data:?}");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    gw.shutdown();
    bedrock.shutdown();
}
