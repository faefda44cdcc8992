//! Golden translations, Responses ↔ each provider kind, through the real
//! adapters: a Responses request → `to_chat_body` → the kind's `encode` → its
//! provider body; a native whole answer → `whole_answer` → `shape_answer` → a
//! `response`; a native stream → `event_source` (fed in one piece, split at every
//! byte boundary, and byte by byte) → `EventTranslator` → the same Responses
//! events every time.
//!
//! Each kind's expected results live in `golden/<kind>.json` (ids and
//! timestamps the gateway makes up are normalised). After a deliberate change,
//! rewrite them with `SWITCHYARD_UPDATE_GOLDEN=1 cargo test -p switchyard --lib
//! golden` and review the diff.

use serde_json::{json, Value};

use super::request::to_chat_body;
use super::response::shape_answer;
use super::stream::EventTranslator;
use crate::config::ProviderKind;
use crate::http::sse::is_done_marker;
use crate::provider::bedrock::eventstream::encode;
use crate::provider::{prepare, Api, RequestParts};
use crate::wire::{ChatBody, Usage};

const PROVIDERS: &str = "\
providers:
  compatible: { kind: openai-compatible, base_url: http://127.0.0.1:9/v1 }
  azure: { kind: azure, base_url: https://r.openai.azure.com, api_key: k }
  anthropic: { kind: anthropic, base_url: https://api.anthropic.com, api_key: k }
  gemini: { kind: gemini, base_url: https://generativelanguage.googleapis.com/v1beta, api_key: k }
  bedrock:
    kind: bedrock
    base_url: https://bedrock-runtime.us-east-1.amazonaws.com
    region: us-east-1
    aws_access_key_id: AKIDEXAMPLE
    aws_secret_access_key: secret
routes:
  - name: r
    targets: [{ provider: compatible, model: m }]
";

/// A Responses request using everything that translates: instructions, text and
/// an image, a function call and its output, a tool, tool choice, a JSON schema.
fn request() -> Value {
    json!({
        "model": "chat",
        "instructions": "You are terse.",
        "input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "What is in this image, and how is the weather in Oslo?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
            ]},
            {"type": "function_call", "call_id": "call_w1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
            {"type": "function_call_output", "call_id": "call_w1", "output": "{\"temp\":3}"},
        ],
        "tools": [{
            "type": "function", "name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": true,
        }],
        "tool_choice": "auto",
        "text": {"format": {
            "type": "json_schema", "name": "answer", "strict": true,
            "schema": {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"], "additionalProperties": false},
        }},
        "max_output_tokens": 256,
        "temperature": 0.2,
    })
}

/// One kind's native answers: whole (text, tool call) and streamed (text, tool
/// call).
struct Native {
    text_answer: Value,
    tool_answer: Value,
    text_stream: Vec<u8>,
    tool_stream: Vec<u8>,
}

fn sse(events: &[(Option<&str>, Value)], done: bool) -> Vec<u8> {
    let mut out = String::new();
    for (name, data) in events {
        if let Some(name) = name {
            out.push_str(&format!("event: {name}\n"));
        }
        out.push_str(&format!("data: {data}\n\n"));
    }
    if done {
        out.push_str("data: [DONE]\n\n");
    }
    out.into_bytes()
}

fn openai_chunk(delta: Value, finish: Value) -> (Option<&'static str>, Value) {
    let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    (None, chunk)
}

fn openai_usage() -> (Option<&'static str>, Value) {
    let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [],
                       "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25,
                                 "prompt_tokens_details": {"cached_tokens": 4}}});
    (None, usage)
}

fn openai() -> Native {
    let completion = |message: Value, finish: &str| {
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
               "choices": [{"index": 0, "message": message, "finish_reason": finish}],
               "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}})
    };
    let call = json!({"id": "call_g1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}});
    Native {
        text_answer: completion(
            json!({"role": "assistant", "content": "A cat. 3 °C."}),
            "stop",
        ),
        tool_answer: completion(
            json!({"role": "assistant", "content": null, "tool_calls": [call]}),
            "tool_calls",
        ),
        text_stream: sse(
            &[
                openai_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                openai_chunk(json!({"content": "A cat. "}), Value::Null),
                openai_chunk(json!({"content": "3 °C."}), Value::Null),
                openai_chunk(json!({}), "stop".into()),
                openai_usage(),
            ],
            true,
        ),
        tool_stream: sse(
            &[
                openai_chunk(
                    json!({"role": "assistant", "content": null, "tool_calls": [
                    {"index": 0, "id": "call_g1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                    Value::Null,
                ),
                openai_chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                    Value::Null,
                ),
                openai_chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}),
                    Value::Null,
                ),
                openai_chunk(json!({}), "tool_calls".into()),
                openai_usage(),
            ],
            true,
        ),
    }
}

fn anthropic() -> Native {
    let message = |content: Value, stop: &str| {
        json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
               "content": content, "stop_reason": stop, "stop_sequence": null,
               "usage": {"input_tokens": 20, "output_tokens": 5}})
    };
    let start = (
        Some("message_start"),
        json!({"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant",
               "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": 20, "output_tokens": 1}}}),
    );
    let end = |stop: &str| {
        [
            (
                Some("message_delta"),
                json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 5}}),
            ),
            (Some("message_stop"), json!({"type": "message_stop"})),
        ]
    };
    let block = |name: &'static str, value: Value| (Some(name), value);
    let mut text = vec![
        start.clone(),
        block(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        block("ping", json!({"type": "ping"})),
        block(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "A cat. "}}),
        ),
        block(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "3 °C."}}),
        ),
        block(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
    ];
    text.extend(end("end_turn"));
    let mut tool = vec![
        start,
        block(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
        ),
        block(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
        ),
        block(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"Oslo\"}"}}),
        ),
        block(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
    ];
    tool.extend(end("tool_use"));
    Native {
        text_answer: message(
            json!([{"type": "text", "text": "A cat. 3 °C."}]),
            "end_turn",
        ),
        tool_answer: message(
            json!([{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]),
            "tool_use",
        ),
        text_stream: sse(&text, false),
        tool_stream: sse(&tool, false),
    }
}

fn gemini() -> Native {
    let answer = |parts: Value, finish: Option<&str>, usage: Value| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = finish.into();
        }
        json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.0-flash", "responseId": "r1"})
    };
    let usage = json!({"promptTokenCount": 20, "candidatesTokenCount": 5, "totalTokenCount": 25});
    let partial = json!({"promptTokenCount": 20, "totalTokenCount": 20});
    let call = json!([{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}]);
    Native {
        text_answer: answer(
            json!([{"text": "A cat. 3 °C."}]),
            Some("STOP"),
            usage.clone(),
        ),
        tool_answer: answer(call.clone(), Some("STOP"), usage.clone()),
        text_stream: sse(
            &[
                (
                    None,
                    answer(json!([{"text": "A cat. "}]), None, partial.clone()),
                ),
                (
                    None,
                    answer(json!([{"text": "3 °C."}]), Some("STOP"), usage.clone()),
                ),
            ],
            false,
        ),
        tool_stream: sse(&[(None, answer(call, Some("STOP"), usage))], false),
    }
}

fn bedrock() -> Native {
    let converse = |content: Value, stop: &str| {
        json!({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
               "usage": {"inputTokens": 20, "outputTokens": 5, "totalTokens": 25}, "metrics": {"latencyMs": 9}})
    };
    let metadata = encode::event(
        "metadata",
        r#"{"usage":{"inputTokens":20,"outputTokens":5,"totalTokens":25},"metrics":{"latencyMs":9}}"#,
    );
    let start = encode::event("messageStart", r#"{"role":"assistant"}"#);
    Native {
        text_answer: converse(json!([{"text": "A cat. 3 °C."}]), "end_turn"),
        tool_answer: converse(
            json!([{"toolUse": {"toolUseId": "tu_1", "name": "get_weather", "input": {"city": "Oslo"}}}]),
            "tool_use",
        ),
        text_stream: [
            start.clone(),
            encode::event("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"A cat. "}}"#),
            encode::event("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"3 °C."}}"#),
            encode::event("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            encode::event("messageStop", r#"{"stopReason":"end_turn"}"#),
            metadata.clone(),
        ]
        .concat(),
        tool_stream: [
            start,
            encode::event(
                "contentBlockStart",
                r#"{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"tu_1","name":"get_weather"}}}"#,
            ),
            encode::event("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{\"city\":"}}}"#),
            encode::event("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":"\"Oslo\"}"}}}"#),
            encode::event("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            encode::event("messageStop", r#"{"stopReason":"tool_use"}"#),
            metadata,
        ]
        .concat(),
    }
}

/// Ids the gateway makes up (`resp_sy…`, `msg_…`, `fc_…`, `call_…` with 32 hex
/// digits) become `<prefix>*`; `created_at` becomes 0.
fn normalise(value: &mut Value) {
    match value {
        Value::String(s) => {
            for prefix in ["resp_sy", "msg_", "fc_", "call_"] {
                let made_up = s.strip_prefix(prefix).is_some_and(|rest| {
                    rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit())
                });
                if made_up {
                    *s = format!("{prefix}*");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "created_at" {
                    *item = 0.into();
                } else {
                    normalise(item);
                }
            }
        }
        _ => {}
    }
}

/// The Responses events for a native stream fed to `source` in `pieces`, as the
/// relay would drive the translator (usage from the chunks, ended at `[DONE]` or
/// at the end of the bytes).
fn translate_stream(
    adapter: &dyn crate::provider::Adapter,
    echo: &super::Echo,
    pieces: &[&[u8]],
) -> Vec<Value> {
    let mut source = adapter.event_source("m");
    let mut translator = EventTranslator::new(echo.clone());
    let mut out = Vec::new();
    let mut usage: Option<Usage> = None;
    'feed: for piece in pieces {
        source.push(piece);
        while let Some(event) = source.next_event() {
            let event = event.expect("a readable stream");
            if is_done_marker(&event.data) {
                break 'feed;
            }
            #[derive(serde::Deserialize)]
            struct WithUsage {
                usage: Option<Usage>,
            }
            if let Ok(WithUsage { usage: Some(u) }) = serde_json::from_str(&event.data) {
                usage = Some(u);
            }
            translator.chunk(&event.data, &mut out);
        }
    }
    translator.done(usage, &mut out);
    let events = super::tests::parse_events(&out);
    super::tests::assert_sequenced(&events);
    events
        .into_iter()
        .map(|(_, mut data)| {
            normalise(&mut data);
            data
        })
        .collect()
}

/// The same events however the stream's bytes are split.
fn stream_golden(
    adapter: &dyn crate::provider::Adapter,
    echo: &super::Echo,
    bytes: &[u8],
) -> Value {
    let whole = translate_stream(adapter, echo, &[bytes]);
    for split in 1..bytes.len() {
        let (a, b) = bytes.split_at(split);
        assert_eq!(
            translate_stream(adapter, echo, &[a, b]),
            whole,
            "split at {split}"
        );
    }
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(
        translate_stream(adapter, echo, &bytewise),
        whole,
        "byte by byte"
    );
    Value::Array(whole)
}

fn whole_golden(
    adapter: &dyn crate::provider::Adapter,
    echo: &super::Echo,
    native: &Value,
) -> Value {
    let (_, body) = adapter
        .whole_answer(
            Api::ChatCompletions,
            "m",
            b"application/json".to_vec(),
            native.to_string().into_bytes(),
        )
        .expect("the adapter translates its answer");
    let (status, response) = shape_answer(200, &body, echo);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&response));
    let mut response: Value = serde_json::from_slice(&response).expect("JSON");
    normalise(&mut response);
    response
}

/// Everything one kind's golden file holds, computed now.
fn computed(provider: &crate::config::Provider, native: &Native) -> Value {
    let translated = to_chat_body(request().to_string().as_bytes()).expect("translates");
    let chat = ChatBody::parse(&translated.chat).expect("chat body");
    let prepared = prepare(provider);
    let parts = RequestParts {
        provider,
        prepared: &prepared,
        api: Api::ChatCompletions,
        model: "m",
        body: &translated.chat,
        chat: &chat,
        query: &[],
        now: std::time::SystemTime::UNIX_EPOCH,
    };
    let outbound = prepared.adapter.encode(&parts).expect("encodes");
    let provider_body: Value = serde_json::from_slice(&outbound.body).expect("provider JSON");
    let adapter = prepared.adapter;
    let echo = &translated.echo;
    json!({
        "provider_request": {"path": outbound.path.to_string(), "body": provider_body},
        "text_answer": whole_golden(adapter, echo, &native.text_answer),
        "tool_answer": whole_golden(adapter, echo, &native.tool_answer),
        "text_stream": stream_golden(adapter, echo, &native.text_stream),
        "tool_stream": stream_golden(adapter, echo, &native.tool_stream),
    })
}

fn check(kind: ProviderKind, native: Native, file: &str) {
    let config = crate::config::load_str(PROVIDERS, "t.yaml", &|_| None).expect("config");
    let provider = config
        .providers
        .iter()
        .find(|p| p.kind == kind)
        .expect("the kind is configured");
    let got = computed(provider, &native);
    let path = format!(
        "{}/src/proxy/responses/golden/{file}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    if std::env::var_os("SWITCHYARD_UPDATE_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&got).expect("JSON") + "\n";
        std::fs::write(&path, text).expect("golden written");
        return;
    }
    let text = std::fs::read_to_string(&path).expect("golden file present");
    let expected: Value = serde_json::from_str(&text).expect("golden JSON");
    for key in [
        "provider_request",
        "text_answer",
        "tool_answer",
        "text_stream",
        "tool_stream",
    ] {
        assert_eq!(
            got[key],
            expected[key],
            "{file}: {key}\n got: {}",
            serde_json::to_string_pretty(&got[key]).unwrap_or_default()
        );
    }
}

#[test]
fn golden_openai_compatible() {
    check(
        ProviderKind::OpenAiCompatible,
        openai(),
        "openai-compatible",
    );
}

#[test]
fn golden_azure() {
    check(ProviderKind::Azure, openai(), "azure");
}

#[test]
fn golden_anthropic() {
    check(ProviderKind::Anthropic, anthropic(), "anthropic");
}

#[test]
fn golden_gemini() {
    check(ProviderKind::Gemini, gemini(), "gemini");
}

#[test]
fn golden_bedrock() {
    check(ProviderKind::Bedrock, bedrock(), "bedrock");
}
