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
    let settings = format!(
        "{{ kind: bedrock, base_url: \"{}\", region: us-east-1, aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: secret, aws_session_token: tok }}",
        bedrock.base_url()
    );
    translated_route_yaml("bedrock", &settings, MODEL, fallback, route_extra)
}

#[test]
fn converse_and_converse_stream_round_trip() {
    let bedrock = mock("bedrock");
    let gw = gateway(&yaml(&bedrock, None, ""));
    let response = chat(gw.addr());
    let text = completion_text(&response);
    assert_eq!(response.json()["model"], MODEL);

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

    assert_stream_text(&chat_stream(gw.addr()), &text);
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
    assert_falls_back_on_status_and_stream_error(&gw, &bedrock, 429);
    gw.shutdown();
    bedrock.shutdown();
    fallback.shutdown();
}

#[test]
fn errors_reach_the_client_in_openai_shape() {
    let bedrock = mock("bedrock");
    let gw = gateway(&yaml(&bedrock, None, "retry: { attempts: 1 }"));
    assert_context_length_error(
        &gw,
        &bedrock,
        r#"{"message":"Input is too long for requested model."}"#,
        "Input is too long for requested model.",
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
