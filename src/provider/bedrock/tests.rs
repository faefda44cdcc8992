//! Golden translations for Bedrock: request, signing, answers, streams, errors.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use super::eventstream::encode;
use super::*;
use crate::config::{AwsCredentials, BaseUrl, Provider, ProviderKind};
use crate::http::sse::SseEvent;
use crate::outcome::FailureClass;
use crate::provider::RequestParts;
use crate::wire::ChatBody;

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn provider(session_token: Option<&str>) -> Provider {
    Provider {
        name: "bedrock".into(),
        kind: ProviderKind::Bedrock,
        base_url: BaseUrl {
            tls: true,
            host: "bedrock-runtime.us-east-1.amazonaws.com".into(),
            port: 443,
            path: String::new(),
        },
        api_key: None,
        headers: vec![("x-extra".into(), "1".into())],
        max_connections: 8,
        pool_idle_timeout: Duration::from_secs(30),
        api_version: None,
        responses: false,
        quota: Default::default(),
        region: Some("us-east-1".into()),
        aws: Some(AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: session_token.map(str::to_string),
        }),
        ca_file: None,
    }
}

fn translate(body: &Value, session_token: Option<&str>) -> Outbound<'static> {
    translate_with_query(body, session_token, &[])
}

fn translate_with_query(
    body: &Value,
    session_token: Option<&str>,
    query: &[(String, String)],
) -> Outbound<'static> {
    let provider = provider(session_token);
    let prepared = crate::provider::prepare(&provider);
    let bytes = serde_json::to_vec(body).expect("json");
    let chat = ChatBody::parse(&bytes).expect("chat body");
    let parts = RequestParts {
        provider: &provider,
        prepared: &prepared,
        api: Api::ChatCompletions,
        model: MODEL,
        body: &bytes,
        chat: &chat,
        query,
        now: UNIX_EPOCH + Duration::from_secs(1_440_938_160),
    };
    translate_request(&parts).expect("translates")
}

#[test]
fn target_query_is_sent_and_signed() {
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    let plain = translate(&body, None);
    let query = [("trace".to_string(), "on now".to_string())];
    let with_query = translate_with_query(&body, None, &query);
    assert_eq!(with_query.path, format!("{}?trace=on%20now", plain.path));
    assert_ne!(
        header(&with_query, "authorization"),
        header(&plain, "authorization")
    );
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("json")
}

fn header<'a>(out: &'a Outbound, name: &str) -> Option<&'a str> {
    out.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn chat_request_becomes_converse() {
    let body = json!({
        "model": "chat",
        "max_tokens": 256,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "user", "content": "And the weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
        }}],
        "tool_choice": "auto"
    });
    let out = translate(&body, None);
    assert_eq!(
        out.path,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    let expected = json!({
        "messages": [
            {"role": "user", "content": [
                {"text": "What is in this image?"},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
                {"text": "And the weather?"}
            ]},
            {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {"city": "Paris"}}}
            ]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}]}},
                {"text": "Thanks"}
            ]}
        ],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 256, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        "toolConfig": {
            "tools": [{"toolSpec": {
                "name": "weather", "description": "Current weather",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}
            }}],
            "toolChoice": {"auto": {}}
        }
    });
    assert_eq!(json_of(&out.body), expected);
}

#[test]
fn stream_request_path_and_prefill() {
    let body = json!({
        "model": "chat", "stream": true,
        "messages": [
            {"role": "user", "content": "Count to ten"},
            {"role": "assistant", "content": "1, 2, 3, "}
        ],
        "tools": [{"type": "function", "function": {"name": "t"}}],
        "tool_choice": {"type": "function", "function": {"name": "t"}}
    });
    let out = translate(&body, None);
    assert_eq!(
        out.path,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
    );
    let converse = json_of(&out.body);
    assert_eq!(converse["messages"][1]["content"][0]["text"], "1, 2, 3,");
    assert_eq!(
        converse["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "t"}})
    );
    assert_eq!(
        converse["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
        json!({"type": "object", "properties": {}})
    );
    assert!(converse.get("inferenceConfig").is_none());
}

#[test]
fn untranslatable_requests_are_typed_errors() {
    let remote = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#;
    assert!(matches!(
        convert::request_body(remote),
        Err(TranslateError::Request(_))
    ));
    let bad_args = br#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}"#;
    assert!(matches!(
        convert::request_body(bad_args),
        Err(TranslateError::Request(_))
    ));
    assert!(convert::request_body(b"[]").is_err());
}

#[test]
fn request_is_signed_over_the_double_encoded_path() {
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    let out = translate(&body, Some("TOKEN"));
    assert_eq!(header(&out, "x-amz-date"), Some("20150830T123600Z"));
    assert_eq!(header(&out, "x-amz-security-token"), Some("TOKEN"));
    assert_eq!(header(&out, "x-extra"), Some("1"));
    let signed = [
        ("content-type", "application/json"),
        ("host", "bedrock-runtime.us-east-1.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
        ("x-amz-security-token", "TOKEN"),
    ];
    let request = sigv4::Request {
        method: "POST",
        path: &out.path,
        query: "",
        headers: &signed,
        payload: &out.body,
    };
    let (canonical, signed_headers) = sigv4::canonical_request(&request);
    assert!(canonical
        .starts_with("POST\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n\n"));
    assert_eq!(
        signed_headers,
        "content-type;host;x-amz-date;x-amz-security-token"
    );
    let scope = sigv4::Scope {
        region: "us-east-1",
        service: "bedrock",
    };
    let credentials = provider(Some("TOKEN")).aws.expect("aws");
    let expected = sigv4::authorization(&credentials, scope, "20150830T123600Z", &request);
    assert_eq!(header(&out, "authorization"), Some(expected.as_str()));
    assert!(expected.starts_with(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
    ));
}

#[test]
fn inference_profile_arns_are_one_segment() {
    assert_eq!(
        request_path(
            "",
            "arn:aws:bedrock:us-east-1:1:inference-profile/us.x-v1:0",
            false
        ),
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x-v1%3A0/converse"
    );
}

#[test]
fn converse_answer_becomes_chat_completion() {
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "Let me check."},
            {"toolUse": {"toolUseId": "tu_1", "name": "weather", "input": {"city": "Paris"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19},
        "metrics": {"latencyMs": 120}
    });
    let bytes = serde_json::to_vec(&answer).expect("json");
    let out = json_of(&response::response_body(MODEL, "chatcmpl-x", 5, &bytes).expect("ok"));
    assert_eq!(
        out,
        json!({
            "id": "chatcmpl-x", "object": "chat.completion", "created": 5, "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Let me check.",
                "tool_calls": [{"id": "tu_1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]
            }}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
        })
    );
    assert!(matches!(
        translate_response(Api::ChatCompletions, MODEL, b"{}"),
        Err(TranslateError::Response(_))
    ));
}

/// Found by the property tests: a usage without `totalTokens` whose counts sum
/// past `u64::MAX` overflowed (a panic in debug builds, a wrapped total in release).
#[test]
fn huge_token_counts_saturate() {
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "a"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": u64::MAX, "outputTokens": 1}
    });
    let bytes = serde_json::to_vec(&answer).expect("json");
    let out = json_of(&response::response_body(MODEL, "chatcmpl-x", 5, &bytes).expect("ok"));
    assert_eq!(out["usage"]["total_tokens"], u64::MAX);
}

#[test]
fn stop_reasons_map_to_finish_reasons() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ] {
        assert_eq!(response::finish_reason(stop), finish, "{stop}");
    }
}

fn stream_bytes() -> Vec<u8> {
    [
        encode::event("messageStart", r#"{"p":"abc","role":"assistant"}"#),
        encode::event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"ab"}"#,
        ),
        encode::event("contentBlockStop", r#"{"contentBlockIndex":0}"#),
        encode::event(
            "contentBlockStart",
            r#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tu_1","name":"weather"}}}"#,
        ),
        encode::event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"city\":"}}}"#,
        ),
        encode::event("contentBlockStop", r#"{"contentBlockIndex":1}"#),
        encode::event("messageStop", r#"{"stopReason":"tool_use"}"#),
        encode::event(
            "metadata",
            r#"{"usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7},"metrics":{"latencyMs":9}}"#,
        ),
    ]
    .concat()
}

fn drain(source: &mut stream::ConverseEvents, out: &mut Vec<SseEvent>) {
    use crate::provider::EventSource;
    while let Some(event) = source.next_event() {
        out.push(event.expect("event"));
    }
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "id1", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

#[test]
fn converse_stream_becomes_openai_chunks_at_any_split() {
    use crate::provider::EventSource;
    let bytes = stream_bytes();
    let expected = vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Hi"}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "tu_1", "type": "function",
                                   "function": {"name": "weather", "arguments": ""}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls")),
        json!({"id": "id1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
    ];
    for split in (0..=bytes.len()).step_by(7) {
        let mut source = stream::ConverseEvents::new("m", "id1".into(), 1);
        let mut events = Vec::new();
        source.push(&bytes[..split]);
        drain(&mut source, &mut events);
        source.push(&bytes[split..]);
        drain(&mut source, &mut events);
        assert_eq!(events.len(), expected.len() + 1, "split {split}");
        assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
        for (event, want) in events.iter().zip(&expected) {
            assert_eq!(event.event, None);
            assert_eq!(json_of(event.data.as_bytes()), *want, "split {split}");
        }
    }
}

#[test]
fn stream_exception_becomes_error_event() {
    use crate::provider::EventSource;
    let mut source = stream::ConverseEvents::new("m", "id1".into(), 1);
    source.push(&encode::event("messageStart", r#"{"role":"assistant"}"#));
    source.push(&encode::exception(
        "throttlingException",
        "Too many requests",
    ));
    let mut events = Vec::new();
    drain(&mut source, &mut events);
    assert_eq!(events.len(), 2);
    let error = &events[1];
    assert_eq!(error.event.as_deref(), Some("error"));
    assert_eq!(
        json_of(error.data.as_bytes()),
        json!({"error": {"type": "throttlingException", "message": "Too many requests"}})
    );
    assert_eq!(classify_stream_error(&error.data), FailureClass::Overloaded);
}

#[test]
fn broken_framing_is_a_stream_error() {
    use crate::provider::EventSource;
    let mut frame = encode::event("messageStart", r#"{"role":"assistant"}"#);
    let last = frame.len() - 1;
    frame[last] ^= 0xff;
    let mut source = stream::ConverseEvents::new("m", "id1".into(), 1);
    source.push(&frame);
    assert!(matches!(source.next_event(), Some(Err(_))));
}

#[test]
fn stream_errors_classify() {
    let event = |kind: &str, message: &str| {
        json!({"error": {"type": kind, "message": message}}).to_string()
    };
    for (kind, class) in [
        ("throttlingException", FailureClass::Overloaded),
        ("serviceUnavailableException", FailureClass::Server),
        ("modelStreamErrorException", FailureClass::Server),
        ("internalServerException", FailureClass::Server),
        ("validationException", FailureClass::Client),
    ] {
        assert_eq!(classify_stream_error(&event(kind, "x")), class, "{kind}");
    }
    assert_eq!(
        classify_stream_error(&event(
            "validationException",
            "Input is too long for requested model."
        )),
        FailureClass::ContextLength
    );
}

#[test]
fn statuses_classify() {
    let body = |message: &str| json!({ "message": message }).to_string().into_bytes();
    for (status, message, class) in [
        (
            429,
            "Too many requests, please wait before trying again.",
            FailureClass::Overloaded,
        ),
        (
            503,
            "Bedrock is unable to process your request.",
            FailureClass::Server,
        ),
        (500, "Internal error", FailureClass::Server),
        (424, "The model returned an error", FailureClass::Server),
        (408, "Model has timed out", FailureClass::Server),
        (
            400,
            "Input is too long for requested model.",
            FailureClass::ContextLength,
        ),
        (400, "too many input tokens", FailureClass::ContextLength),
        (400, "Malformed input request", FailureClass::Client),
        (
            403,
            "You don't have access to the model",
            FailureClass::Client,
        ),
        (
            404,
            "Could not resolve the foundation model",
            FailureClass::Client,
        ),
    ] {
        assert_eq!(
            classify_status(status, &body(message)),
            class,
            "{status} {message}"
        );
    }
    let typed = br#"{"__type":"com.amazon.bedrock#ThrottlingException","message":"slow down"}"#;
    assert_eq!(classify_status(400, typed), FailureClass::Overloaded);
    assert_eq!(classify_status(502, b"<html>"), FailureClass::Server);
}

#[test]
fn errors_become_openai_shaped() {
    let out = json_of(&translate_error(
        400,
        br#"{"message":"Input is too long for requested model."}"#.to_vec(),
    ));
    assert_eq!(
        out,
        json!({"error": {"message": "Input is too long for requested model.",
            "type": "invalid_request_error", "param": null, "code": "context_length_exceeded"}})
    );
    let out = json_of(&translate_error(
        429,
        br#"{"message":"Too many requests"}"#.to_vec(),
    ));
    assert_eq!(out["error"]["code"], "ThrottlingException");
    assert_eq!(out["error"]["type"], "rate_limit_error");
    assert_eq!(out["error"]["message"], "Too many requests");
    let out = json_of(&translate_error(503, b"upstream down".to_vec()));
    assert_eq!(out["error"]["message"], "upstream down");
    assert_eq!(out["error"]["code"], "ServiceUnavailableException");
}

/// Converse has no response-format field: the format is asked for in the
/// system prompt, after the client's own system text.
#[test]
fn response_format_becomes_a_system_instruction() {
    let body = json!({
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
    });
    let sent = json_of(&convert::request_body(body.to_string().as_bytes()).unwrap());
    let system = sent["system"].as_array().unwrap();
    assert_eq!(system[0]["text"], "Be brief.");
    let instruction = system[1]["text"].as_str().unwrap();
    assert!(
        instruction.contains("JSON schema") && instruction.contains(r#"{"type":"object"}"#),
        "{instruction}"
    );
    let plain = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "text"}});
    let sent = json_of(&convert::request_body(plain.to_string().as_bytes()).unwrap());
    assert!(sent.get("system").is_none(), "{sent}");
}
