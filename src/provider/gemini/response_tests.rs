//! Golden response translations (Gemini answers shaped as the API reference shows).

use super::*;

fn stamp() -> Stamp {
    Stamp {
        id: "chatcmpl-fixed".into(),
        created: 1_700_000_000,
    }
}

fn translated(body: Value) -> Value {
    let bytes = serde_json::to_vec(&body).unwrap();
    serde_json::from_slice(&translate(&bytes, "gemini-target", &stamp()).unwrap()).unwrap()
}

#[test]
fn text_answer_with_usage() {
    let out = translated(json!({
        "candidates": [{
            "content": {"parts": [{"text": "1+1 "}, {"text": "equals 2."}], "role": "model"},
            "finishReason": "STOP", "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
        }],
        "usageMetadata": {"promptTokenCount": 15, "candidatesTokenCount": 6, "totalTokenCount": 21},
        "modelVersion": "gemini-2.0-flash",
        "responseId": "Il0taoSYJ5Cez7"
    }));
    assert_eq!(
        out,
        json!({
            "id": "chatcmpl-Il0taoSYJ5Cez7", "object": "chat.completion", "created": 1_700_000_000,
            "model": "gemini-2.0-flash",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "1+1 equals 2."},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 15, "completion_tokens": 6, "total_tokens": 21,
                      "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}}
        })
    );
}

#[test]
fn function_call_answer() {
    let out = translated(json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "thinking...", "thought": true},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}}
            ]},
            "finishReason": "STOP"
        }],
        "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 12, "thoughtsTokenCount": 8, "totalTokenCount": 50}
    }));
    assert_eq!(out["model"], "gemini-target");
    assert_eq!(
        out["choices"][0],
        json!({"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": null, "tool_calls": [
            {"id": "call_fixed_0_0", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_fixed_0_1", "type": "function",
             "function": {"name": "get_time", "arguments": "{}"}}
        ]}})
    );
    assert_eq!(out["usage"]["completion_tokens"], 20);
    assert_eq!(
        out["usage"]["completion_tokens_details"]["reasoning_tokens"],
        8
    );
}

#[test]
fn blocked_prompt_is_a_filtered_completion() {
    let out = translated(json!({
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}
    }));
    assert_eq!(
        out["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": ""},
                "logprobs": null, "finish_reason": "content_filter"}])
    );
    assert_eq!(out["usage"]["total_tokens"], 9);
}

#[test]
fn finish_reasons() {
    let cases = [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
    ];
    for (gemini, openai) in cases {
        assert_eq!(finish_reason(gemini, false), openai, "{gemini}");
    }
    assert_eq!(finish_reason("STOP", true), "tool_calls");
    let out = translated(json!({"candidates": [{"finishReason": "SAFETY", "index": 0}]}));
    assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(out["choices"][0]["message"]["content"], "");
}

#[test]
fn several_candidates_become_choices() {
    let out = translated(json!({"candidates": [
        {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP", "index": 0},
        {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1}
    ]}));
    assert_eq!(out["choices"][1]["index"], 1);
    assert_eq!(out["choices"][1]["message"]["content"], "b");
    assert_eq!(out["choices"][1]["finish_reason"], "length");
    assert!(out.get("usage").is_none());
}

#[test]
fn non_json_is_a_response_error() {
    let err = translate(b"<html>", "m", &stamp()).unwrap_err();
    assert!(matches!(err, TranslateError::Response(_)));
}

/// Found by the property tests: counts near `u64::MAX` overflowed the sums (a
/// panic in debug builds, a wrapped total in release).
#[test]
fn huge_token_counts_saturate() {
    let out = translated(json!({
        "candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": u64::MAX, "thoughtsTokenCount": 1}
    }));
    assert_eq!(out["usage"]["completion_tokens"], u64::MAX);
    assert_eq!(out["usage"]["total_tokens"], u64::MAX);
}
