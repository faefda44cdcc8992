//! Golden translations taken from the shapes in Anthropic's Messages API reference
//! and OpenAI's chat-completions reference.

use serde_json::{json, Value};

use super::*;
use crate::config::{BaseUrl, Provider, ProviderKind};
use crate::http::sse::{SseError, SseEvent};
use crate::outcome::FailureClass;
use crate::provider::{Adapter, EventSource, PreparedProvider};
use crate::proxy::stream::{inspect, EventKind};
use crate::wire::ChatBody;
use crate::wire::Usage as RelayUsage;

fn translated(body: Value) -> Value {
    let bytes = serde_json::to_vec(&body).unwrap();
    let request = request::translate(&bytes, "claude-sonnet-4-5").unwrap();
    serde_json::to_value(request).unwrap()
}

fn translate_err(body: Value) -> TranslateError {
    let bytes = serde_json::to_vec(&body).unwrap();
    request::translate(&bytes, "claude-sonnet-4-5").unwrap_err()
}

#[test]
fn system_messages_become_system_and_max_tokens_defaults() {
    let got = translated(json!({
        "model": "chat",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hello"}
        ],
        "temperature": 1.7,
        "top_p": 0.9,
        "stop": "\n\nHuman:",
        "stream": true,
        "user": "user-123",
        "frequency_penalty": 0.5,
        "presence_penalty": 0.1,
        "seed": 7,
        "logprobs": true,
        "stream_options": {"include_usage": true}
    }));
    assert_eq!(
        got,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": "You are terse.\n\nAnswer in French.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
            "temperature": 1.0,
            "stop_sequences": ["\n\nHuman:"],
            "stream": true,
            "metadata": {"user_id": "user-123"}
        })
    );
}

#[test]
fn max_tokens_and_stop_lists() {
    let got = translated(json!({
        "model": "chat",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 100,
        "max_completion_tokens": 200,
        "stop": ["END", "STOP"],
        "stream": false
    }));
    assert_eq!(got["max_tokens"], 200);
    assert_eq!(got["stop_sequences"], json!(["END", "STOP"]));
    assert!(got.get("stream").is_none());
    let sampled =
        translated(json!({"messages": [{"role": "user", "content": "Hi"}], "top_p": 0.5}));
    assert_eq!(sampled["top_p"], 0.5);
    let only_max =
        translated(json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 100}));
    assert_eq!(only_max["max_tokens"], 100);
}

#[test]
fn multi_part_content_and_images() {
    let got = translated(json!({
        "model": "chat",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in these images?"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
            {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/a.jpg", "detail": "high"}}
        ]}]
    }));
    assert_eq!(
        got["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "What is in these images?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
            {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/a.jpg"}}
        ]}])
    );
    let bad = json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}]});
    assert!(matches!(translate_err(bad), TranslateError::Request(_)));
    let audio = json!({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]});
    assert!(matches!(
        translate_err(audio),
        TranslateError::Unsupported(_)
    ));
}

#[test]
fn tools_tool_calls_and_tool_results() {
    let got = translated(json!({
        "model": "chat",
        "messages": [
            {"role": "user", "content": "Weather in Paris and London?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"London\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12C rain"}]},
            {"role": "user", "content": "Thanks. Which is warmer?"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
        }}],
        "tool_choice": "required",
        "parallel_tool_calls": false
    }));
    assert_eq!(
        got["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and London?"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"location": "London"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "12C rain"},
                {"type": "text", "text": "Thanks. Which is warmer?"}
            ]}
        ])
    );
    assert_eq!(
        got["tools"],
        json!([{
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
        }])
    );
    assert_eq!(
        got["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
}

#[test]
fn tool_choice_modes() {
    let with = |choice: Value| {
        translated(json!({
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": choice
        }))
    };
    assert_eq!(with(json!("auto"))["tool_choice"], json!({"type": "auto"}));
    assert_eq!(with(json!("none"))["tool_choice"], json!({"type": "none"}));
    assert_eq!(
        with(json!({"type": "function", "function": {"name": "f"}}))["tool_choice"],
        json!({"type": "tool", "name": "f"})
    );
    assert_eq!(
        with(json!("auto"))["tools"][0]["input_schema"],
        json!({"type": "object", "properties": {}})
    );
    let no_tools =
        translated(json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}));
    assert!(no_tools.get("tool_choice").is_none());
}

#[test]
fn trailing_assistant_is_prefill_and_roles_alternate() {
    let got = translated(json!({
        "messages": [
            {"role": "user", "content": "Tell me a story."},
            {"role": "user", "content": "Make it short."},
            {"role": "assistant", "content": "Once upon a time "}
        ]
    }));
    assert_eq!(
        got["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": "Tell me a story."},
                {"type": "text", "text": "Make it short."}
            ]},
            {"role": "assistant", "content": [{"type": "text", "text": "Once upon a time"}]}
        ])
    );
}

#[test]
fn response_format_becomes_a_system_instruction() {
    let got = translated(json!({
        "messages": [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}
    }));
    let system = got["system"].as_str().unwrap();
    assert!(system.starts_with("Be helpful.\n\nRespond only with a single JSON value"));
    assert!(system.ends_with("{\"type\":\"object\"}"));
    let object = translated(json!({
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"}
    }));
    assert!(object["system"].as_str().unwrap().contains("JSON object"));
    let text = translated(json!({
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "text"}
    }));
    assert!(text.get("system").is_none());
}

#[test]
fn untranslatable_requests_are_typed_errors() {
    assert!(matches!(
        translate_err(json!({"messages": [{"role": "wizard", "content": "x"}]})),
        TranslateError::Request(_)
    ));
    assert!(matches!(
        translate_err(json!({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1,"}}]}]})),
        TranslateError::Request(_)
    ));
    assert!(matches!(
        translate_err(json!({"messages": [{"role": "user", "content": "x"}], "n": 2})),
        TranslateError::Unsupported(_)
    ));
    assert!(request::translate(b"not json", "m").is_err());
}

fn provider(base: &str, key: Option<&str>) -> (Provider, PreparedProvider) {
    let provider = Provider {
        name: "anthropic".into(),
        kind: ProviderKind::Anthropic,
        base_url: BaseUrl {
            tls: true,
            host: "api.anthropic.com".into(),
            port: 443,
            path: base.into(),
        },
        api_key: key.map(str::to_string),
        headers: vec![("anthropic-beta".into(), "prompt-caching-2024-07-31".into())],
        max_connections: 8,
        pool_idle_timeout: std::time::Duration::from_secs(90),
        api_version: None,
        responses: false,
        quota: Default::default(),
        region: None,
        aws: None,
        ca_file: None,
    };
    let prepared = PreparedProvider {
        name: provider.name.clone(),
        adapter: &Anthropic,
        host_header: "api.anthropic.com".into(),
        base_path: base.into(),
        chat_path: String::new(),
        embeddings_path: String::new(),
        completions_path: String::new(),
        responses_path: String::new(),
        serves: Anthropic.serves(&provider),
        headers: Vec::new(),
    };
    (provider, prepared)
}

#[test]
fn outbound_request_has_path_and_auth_headers() {
    let body = br#"{"model":"chat","messages":[{"role":"user","content":"Hi"}]}"#;
    let chat = ChatBody::parse(body).unwrap();
    let (provider, prepared) = provider("", Some("sk-ant-test"));
    let parts = RequestParts {
        provider: &provider,
        prepared: &prepared,
        api: Api::ChatCompletions,
        model: "claude-sonnet-4-5",
        body,
        chat: &chat,
        query: &[],
        now: std::time::SystemTime::now(),
    };
    let out = Anthropic.encode(&parts).unwrap();
    assert_eq!(out.path, "/v1/messages");
    assert_eq!(
        out.headers,
        vec![
            ("x-api-key".to_string(), "sk-ant-test".to_string()),
            ("anthropic-version".to_string(), "2023-06-01".to_string()),
            (
                "anthropic-beta".to_string(),
                "prompt-caching-2024-07-31".to_string()
            ),
        ]
    );
    let sent: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(messages_path("/v1"), "/v1/messages");
    assert_eq!(messages_path("/proxy/"), "/proxy/v1/messages");
    let embeddings = RequestParts {
        api: Api::Embeddings,
        ..parts
    };
    assert!(Anthropic.encode(&embeddings).is_err());
}

#[test]
fn text_response_with_usage() {
    let body = br#"{
      "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
      "type": "message",
      "role": "assistant",
      "model": "claude-sonnet-4-5-20250929",
      "content": [{"type": "text", "text": "Hi! My name is Claude."}],
      "stop_reason": "end_turn",
      "stop_sequence": null,
      "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_read_input_tokens": 5}
    }"#;
    let got: Value =
        serde_json::from_slice(&response::translate(body, 1700000000).unwrap()).unwrap();
    assert_eq!(
        got,
        json!({
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "claude-sonnet-4-5-20250929",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hi! My name is Claude."},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": 2100,
                "completion_tokens": 503,
                "total_tokens": 2603,
                "prompt_tokens_details": {"cached_tokens": 5}
            }
        })
    );
}

#[test]
fn tool_use_response_becomes_tool_calls() {
    let body = br#"{
      "id": "msg_01Aq9w938a90dw8q",
      "model": "claude-sonnet-4-5",
      "stop_reason": "tool_use",
      "role": "assistant",
      "content": [
        {"type": "thinking", "thinking": "...", "signature": "abc"},
        {"type": "text", "text": "I'll check the weather."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA", "unit": "celsius"}}
      ],
      "usage": {"input_tokens": 10, "output_tokens": 20}
    }"#;
    let got: Value = serde_json::from_slice(&response::translate(body, 1).unwrap()).unwrap();
    let choice = &got["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "I'll check the weather.");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        arguments,
        json!({"location": "San Francisco, CA", "unit": "celsius"})
    );
    assert_eq!(got["usage"]["total_tokens"], 30);
}

#[test]
fn stop_reasons_map_to_finish_reasons() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ] {
        assert_eq!(response::finish_reason(stop), finish, "{stop}");
    }
    assert!(response::translate(b"{\"content\":[]}", 1).is_err());
}

/// A text answer then a tool call, as Anthropic's streaming reference shows them.
const STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"output_tokens\":2},\"content\":[],\"stop_reason\":null}}\n",
    "\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n",
    "\n",
    "event: ping\n",
    "data: {\"type\": \"ping\"}\n",
    "\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay, let's check the weather \u{e9}\"}}\n",
    "\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n",
    "\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n",
    "\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n",
    "\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\":\"}}\n",
    "\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"San Francisco, CA\\\"}\"}}\n",
    "\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n",
    "\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n",
    "\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n",
    "\n",
);

fn chunk(delta: Value, finish: Value) -> Value {
    json!({
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    })
}

fn expected_stream() -> Vec<Value> {
    vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(
            json!({"content": "Okay, let's check the weather \u{e9}"}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"San Francisco, CA\"}"}}]}),
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls")),
        json!({
            "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "claude-sonnet-4-5-20250929",
            "choices": [],
            "usage": {"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561}
        }),
    ]
}

fn drain(source: &mut stream::MessageStream, out: &mut Vec<SseEvent>) {
    for _ in 0..10_000 {
        match source.next_event() {
            Some(event) => out.push(event.unwrap()),
            None => return,
        }
    }
    panic!("event source did not run dry");
}

fn decode(pieces: &[&[u8]]) -> Vec<SseEvent> {
    let mut source = stream::MessageStream::new("claude-sonnet-4-5", 1700000000);
    let mut out = Vec::new();
    for piece in pieces {
        source.push(piece);
        drain(&mut source, &mut out);
    }
    out
}

/// Found by review while writing the property tests: every tool_use block was
/// remembered for good and each argument fragment searched them all, so a stream
/// of tool calls grew without bound and took quadratic time. Past
/// `MAX_TOOL_CALLS` the stream ends with a typed error, after the events already
/// translated.
#[test]
fn too_many_tool_calls_end_the_stream() {
    let mut wire = String::new();
    for index in 0..=stream::MAX_TOOL_CALLS {
        wire.push_str(&format!(
            "event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"t{index}\",\"name\":\"f\",\"input\":{{}}}}}}\n\n"
        ));
    }
    let mut source = stream::MessageStream::new("claude-sonnet-4-5", 1700000000);
    source.push(wire.as_bytes());
    let mut events = 0;
    let error = loop {
        match source.next_event() {
            Some(Ok(_)) if events < stream::MAX_TOOL_CALLS => events += 1,
            other => break other,
        }
    };
    assert_eq!(events, stream::MAX_TOOL_CALLS);
    let too_many = SseError::TooMany {
        what: "tool calls",
        limit: stream::MAX_TOOL_CALLS,
    };
    assert_eq!(error, Some(Err(too_many.clone())));
    assert_eq!(source.next_event(), Some(Err(too_many)));
}

fn assert_openai_stream(events: &[SseEvent]) {
    let expected = expected_stream();
    assert_eq!(events.len(), expected.len() + 1, "{events:?}");
    for (event, want) in events.iter().zip(&expected) {
        assert_eq!(event.event, None);
        let got: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(&got, want);
    }
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
}

#[test]
fn stream_translates_event_by_event() {
    assert_openai_stream(&decode(&[STREAM.as_bytes()]));
}

#[test]
fn stream_split_at_every_byte_boundary_gives_the_same_events() {
    let bytes = STREAM.as_bytes();
    let whole = decode(&[bytes]);
    for split in 0..=bytes.len() {
        let (a, b) = bytes.split_at(split);
        assert_eq!(decode(&[a, b]), whole, "split at {split}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode(&singles), whole);
    let crlf = STREAM.replace('\n', "\r\n");
    assert_eq!(decode(&[crlf.as_bytes()]), whole);
}

#[test]
fn relay_reads_the_translated_stream() {
    let events = decode(&[STREAM.as_bytes()]);
    let kinds: Vec<EventKind> = events.iter().map(inspect).collect();
    assert_eq!(kinds[0], EventKind::Empty { usage: None });
    assert_eq!(
        kinds[1],
        EventKind::Content {
            text: "Okay, let's check the weather \u{e9}".into(),
            finished: false
        }
    );
    assert_eq!(kinds[2], EventKind::ToolCall { finished: false });
    assert!(matches!(
        kinds[5],
        EventKind::Content { finished: true, .. }
    ));
    assert_eq!(
        kinds[6],
        EventKind::UsageOnly(RelayUsage {
            prompt_tokens: 472,
            completion_tokens: 89
        })
    );
    assert_eq!(kinds[7], EventKind::Done);
}

#[test]
fn stream_errors_pings_and_garbage() {
    let text = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: something_new\ndata: {\"type\": \"something_new\"}\n\n",
        "event: content_block_delta\ndata: {not json\n\n",
        "event: error\n",
        "data: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
    );
    let events = decode(&[text.as_bytes()]);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(inspect(&events[0]), EventKind::Empty { usage: None });
    assert_eq!(events[1].data, "{not json");
    assert_eq!(inspect(&events[1]), EventKind::Malformed);
    assert_eq!(events[2].event.as_deref(), Some("error"));
    assert_eq!(inspect(&events[2]), EventKind::Error);
    assert_eq!(
        classify_stream_error(&events[2].data),
        FailureClass::Overloaded
    );
}

#[test]
fn statuses_and_error_types_classify() {
    let overloaded =
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#;
    assert_eq!(classify_status(529, overloaded), FailureClass::Overloaded);
    let rate = br#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization"}}"#;
    assert_eq!(classify_status(429, rate), FailureClass::Overloaded);
    let api = br#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#;
    assert_eq!(classify_status(500, api), FailureClass::Server);
    let long = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#;
    assert_eq!(classify_status(400, long), FailureClass::ContextLength);
    let bad = br#"{"type":"error","error":{"type":"invalid_request_error","message":"messages: roles must alternate"}}"#;
    assert_eq!(classify_status(400, bad), FailureClass::Client);
    let auth = br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
    assert_eq!(classify_status(401, auth), FailureClass::Client);
    let policy = br#"{"type":"error","error":{"type":"invalid_request_error","message":"Output blocked by content filtering policy"}}"#;
    assert_eq!(classify_status(400, policy), FailureClass::ContentPolicy);
    assert_eq!(
        classify_status(502, b"<html>bad gateway</html>"),
        FailureClass::Server
    );
    let api_event =
        r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#;
    assert_eq!(classify_stream_error(api_event), FailureClass::Server);
    assert_eq!(
        classify_stream_error(std::str::from_utf8(long).unwrap()),
        FailureClass::ContextLength
    );
}

#[test]
fn errors_are_rewritten_in_openai_shape() {
    let long = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"},"request_id":"req_1"}"#;
    let got: Value = serde_json::from_slice(&translate_error(400, long)).unwrap();
    assert_eq!(
        got,
        json!({"error": {
            "message": "prompt is too long: 208310 tokens > 200000 maximum",
            "type": "invalid_request_error",
            "param": null,
            "code": "context_length_exceeded"
        }})
    );
    let api = br#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#;
    let got: Value = serde_json::from_slice(&translate_error(500, api)).unwrap();
    assert_eq!(got["error"]["type"], "server_error");
    assert_eq!(got["error"]["message"], "Internal server error");
    let got: Value = serde_json::from_slice(&translate_error(502, b"upstream down")).unwrap();
    assert_eq!(got["error"]["message"], "upstream down");
    assert_eq!(got["error"]["type"], "server_error");
}
