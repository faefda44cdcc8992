//! Tables for the Responses translation: requests (each item type, each
//! rejection, stateful features), whole answers, and the stream translator.

use serde_json::{json, Value};

use super::request::{stateful, to_chat_body, RequestError, Stateful};
use super::response::shape_answer;
use super::stream::EventTranslator;
use crate::wire::Usage;

fn chat_of(request: Value) -> Value {
    let translated = to_chat_body(request.to_string().as_bytes()).expect("translates");
    serde_json::from_slice(&translated.chat).expect("chat JSON")
}

fn error_of(request: Value) -> String {
    match to_chat_body(request.to_string().as_bytes()) {
        Ok(t) => panic!(
            "expected an error, got {}",
            String::from_utf8_lossy(&t.chat)
        ),
        Err(e) => e.to_string(),
    }
}

#[test]
fn string_input_and_instructions() {
    let chat = chat_of(json!({"model": "m", "input": "hi", "instructions": "Be terse."}));
    assert_eq!(
        chat,
        json!({"model": "m", "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "hi"},
        ]})
    );
}

#[test]
fn message_items_with_and_without_type() {
    let chat = chat_of(json!({"model": "m", "input": [
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "sys"}]},
        {"role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBO"},
        ]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed", "content": [
            {"type": "output_text", "text": "a ", "annotations": []},
            {"type": "refusal", "refusal": "no"},
        ]},
    ]}));
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "system", "content": "rules"},
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
            ]},
            {"role": "assistant", "content": "a no"},
        ])
    );
}

#[test]
fn function_calls_merge_into_one_assistant_message_and_outputs_become_tool_messages() {
    let chat = chat_of(json!({"model": "m", "input": [
        {"role": "user", "content": "weather?"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"city\":\"Oslo\"}"},
        {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "rain"},
        {"type": "function_call_output", "call_id": "c2", "output": [
            {"type": "input_text", "text": "sun"}, {"type": "input_text", "text": "ny"}
        ]},
        {"type": "function_call", "call_id": "c3", "name": "w", "arguments": "{}"},
    ]}));
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "rain"},
            {"role": "tool", "tool_call_id": "c2", "content": "sunny"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c3", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            ]},
        ])
    );
}

#[test]
fn options_translate() {
    let chat = chat_of(json!({
        "model": "m", "input": "x", "stream": true,
        "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": false, "temperature": 0.5, "top_p": 0.9, "user": "u",
        "max_output_tokens": 77, "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": true, "description": "ds"}},
        "include": ["reasoning.encrypted_content"], "truncation": "disabled", "service_tier": "auto",
        "metadata": {"k": "v"}, "prompt_cache_key": "p", "safety_identifier": "s", "store": false,
        "stream_options": {"include_obfuscation": false}, "top_logprobs": 0,
    }));
    assert_eq!(
        chat,
        json!({
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": true}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "parallel_tool_calls": false, "temperature": 0.5, "top_p": 0.9, "user": "u",
            "max_tokens": 77, "reasoning_effort": "low",
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": true, "description": "ds"}},
        })
    );
    let formats = [
        (json!({"format": {"type": "text"}}), Value::Null),
        (
            json!({"format": {"type": "json_object"}}),
            json!({"type": "json_object"}),
        ),
    ];
    for (text, expected) in formats {
        let chat = chat_of(json!({"model": "m", "input": "x", "text": text}));
        assert_eq!(chat["response_format"], expected);
    }
    for mode in ["auto", "none", "required"] {
        let chat = chat_of(json!({"model": "m", "input": "x", "tool_choice": mode}));
        assert_eq!(chat["tool_choice"], mode);
    }
}

#[test]
fn rejections_name_what_cannot_be_honoured() {
    let cases = [
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            "item_reference",
        ),
        (
            json!({"model": "m", "input": [{"type": "web_search_call", "id": "ws"}]}),
            "web_search_call",
        ),
        (
            json!({"model": "m", "input": [{"type": "computer_call_output", "call_id": "c"}]}),
            "computer_call_output",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}),
            "file_id",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            "input_file",
        ),
        (
            json!({"model": "m", "input": [{"role": "system", "content": [{"type": "input_image", "image_url": "u"}]}]}),
            "input_image",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "output_text", "text": "t"}]}]}),
            "output_text",
        ),
        (
            json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
            "role",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
            "call_id",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": "u"}]}]}),
            "input_image",
        ),
        (json!({"model": "m", "input": [{"content": "x"}]}), "type"),
        (json!({"model": "m", "input": 5}), "input"),
        (json!({"model": "m"}), "input"),
        (json!({"model": "m", "input": []}), "empty"),
        (json!({"input": "x"}), "model"),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            "web_search",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": []}]}),
            "file_search",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "code_interpreter"}]}),
            "code_interpreter",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "computer_use_preview"}]}),
            "computer_use_preview",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "mcp", "server_label": "s"}]}),
            "mcp",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "image_generation"}]}),
            "image_generation",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "custom", "name": "c"}]}),
            "custom",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
            "name",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "file_search"}}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "allowed_tools", "tools": []}}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}}),
            "text.format.name",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}),
            "text.format.type",
        ),
        (
            json!({"model": "m", "input": "x", "truncation": "auto"}),
            "truncation",
        ),
        (
            json!({"model": "m", "input": "x", "max_tool_calls": 3}),
            "max_tool_calls",
        ),
        (
            json!({"model": "m", "input": "x", "stream": "yes"}),
            "stream",
        ),
        (
            json!({"model": "m", "input": "x", "instructions": 3}),
            "instructions",
        ),
        (json!({"model": "m", "input": "x", "store": true}), "store"),
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
    ];
    for (request, needle) in cases {
        let message = error_of(request.clone());
        assert!(message.contains(needle), "{request}: {message}");
    }
    assert!(matches!(
        to_chat_body(b"{not json"),
        Err(RequestError::Json(_))
    ));
    assert!(matches!(to_chat_body(b"[1]"), Err(RequestError::Json(_))));
    assert!(matches!(
        to_chat_body(b"{\"model\":\"\xff\"}"),
        Err(RequestError::NotUtf8(_))
    ));
}

#[test]
fn stateful_features_are_named() {
    let cases = [
        (
            json!({"previous_response_id": "resp_abc"}),
            Some(Stateful::PreviousResponse { translated: false }),
        ),
        (
            json!({"previous_response_id": "resp_sy0123"}),
            Some(Stateful::PreviousResponse { translated: true }),
        ),
        (json!({"store": true}), Some(Stateful::Store)),
        (json!({"background": true}), Some(Stateful::Background)),
        (
            json!({"conversation": "conv_1"}),
            Some(Stateful::Conversation),
        ),
        (json!({"prompt": {"id": "pmpt_1"}}), Some(Stateful::Prompt)),
        (
            json!({"input": [{"role": "user", "content": "x"}, {"type": "item_reference", "id": "i"}]}),
            Some(Stateful::ItemReference { index: 1 }),
        ),
        (
            json!({"store": false, "background": false, "previous_response_id": null, "conversation": null, "prompt": null, "input": "x"}),
            None,
        ),
        (json!({}), None),
    ];
    for (request, expected) in cases {
        assert_eq!(
            stateful(request.to_string().as_bytes()),
            expected,
            "{request}"
        );
    }
    let ours = Stateful::PreviousResponse { translated: true }.message();
    assert!(ours.contains("keeps no state"), "{ours}");
    assert!(Stateful::Store
        .message()
        .contains("serves the Responses API itself"));
}

#[test]
fn echo_keeps_the_request_fields() {
    let tools = json!([{"type": "function", "name": "f", "parameters": {"type": "object"}}]);
    let translated = to_chat_body(
        json!({"model": "m", "input": "x", "tools": tools, "metadata": {"a": "b"}, "temperature": 0.2})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert!(!translated.stream);
    let fields = &translated.echo.fields;
    assert_eq!(fields["tools"], tools);
    assert_eq!(fields["metadata"], json!({"a": "b"}));
    assert_eq!(fields["temperature"], 0.2);
    assert_eq!(fields["tool_choice"], "auto");
    assert_eq!(fields["instructions"], Value::Null);
}

// ---- whole answers ----

fn completion(message: Value, finish: &str) -> Vec<u8> {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-x",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                  "prompt_tokens_details": {"cached_tokens": 3},
                  "completion_tokens_details": {"reasoning_tokens": 1}},
    })
    .to_string()
    .into_bytes()
}

fn answer(body: &[u8], echo: &super::Echo) -> (u16, Value) {
    let (status, body) = shape_answer(200, body, echo);
    (status, serde_json::from_slice(&body).expect("JSON"))
}

#[test]
fn text_answer_becomes_a_response() {
    let echo = to_chat_body(br#"{"model":"m","input":"x","instructions":"I"}"#)
        .unwrap()
        .echo;
    let (status, response) = answer(
        &completion(json!({"role": "assistant", "content": "Hello."}), "stop"),
        &echo,
    );
    assert_eq!(status, 200);
    assert!(response["id"].as_str().unwrap().starts_with("resp_sy"));
    assert!(response["id"].as_str().unwrap().len() >= 7 + 24);
    assert_eq!(response["object"], "response");
    assert_eq!(response["status"], "completed");
    assert_eq!(response["model"], "gpt-x");
    assert_eq!(response["created_at"], 1700000000);
    assert_eq!(response["instructions"], "I");
    assert_eq!(response["incomplete_details"], Value::Null);
    assert_eq!(response["error"], Value::Null);
    assert_eq!(response["store"], false);
    assert!(response.get("output_text").is_none());
    let item = &response["output"][0];
    assert!(item["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(item["type"], "message");
    assert_eq!(item["role"], "assistant");
    assert_eq!(item["status"], "completed");
    assert_eq!(
        item["content"],
        json!([{"type": "output_text", "text": "Hello.", "annotations": []}])
    );
    assert_eq!(
        response["usage"],
        json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 3},
               "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 14})
    );
}

#[test]
fn tool_calls_become_function_call_items() {
    let message = json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{\"x\":1}"}},
        {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
    ]});
    let (_, response) = answer(&completion(message, "tool_calls"), &Default::default());
    let output = response["output"].as_array().unwrap();
    assert_eq!(output.len(), 2);
    for (item, (call_id, name)) in output.iter().zip([("call_1", "a"), ("call_2", "b")]) {
        assert_eq!(item["type"], "function_call");
        assert!(item["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!(item["call_id"], call_id);
        assert_eq!(item["name"], name);
        assert_eq!(item["status"], "completed");
    }
    assert_eq!(output[0]["arguments"], "{\"x\":1}");
    assert_eq!(response["status"], "completed");
}

#[test]
fn finish_reasons_and_bad_answers() {
    let text = json!({"role": "assistant", "content": "t"});
    for (finish, status, reason) in [
        (
            "length",
            "incomplete",
            json!({"reason": "max_output_tokens"}),
        ),
        (
            "content_filter",
            "incomplete",
            json!({"reason": "content_filter"}),
        ),
        ("stop", "completed", Value::Null),
    ] {
        let (_, response) = answer(&completion(text.clone(), finish), &Default::default());
        assert_eq!(response["status"], status, "{finish}");
        assert_eq!(response["incomplete_details"], reason, "{finish}");
    }
    for bad in [&b"{}"[..], b"not json", br#"{"choices":[{"index":0}]}"#] {
        let (status, body) = shape_answer(200, bad, &Default::default());
        assert_eq!(status, 502);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["type"], "server_error", "{body}");
    }
    let error = br#"{"error":{"message":"nope","type":"invalid_request_error"}}"#;
    assert_eq!(
        shape_answer(429, error, &Default::default()),
        (429, error.to_vec())
    );
}

// ---- streams ----

/// (type, data) of every event in `bytes`, checking each event's framing.
pub(super) fn parse_events(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(bytes).expect("UTF-8 events");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').expect("event and data lines");
            let name = name.strip_prefix("event: ").expect("event line");
            let data: Value =
                serde_json::from_str(data.strip_prefix("data: ").expect("data line")).unwrap();
            assert_eq!(data["type"], name);
            (name.to_string(), data)
        })
        .collect()
}

/// The sequence numbers count 0, 1, 2, ... across the whole stream.
pub(super) fn assert_sequenced(events: &[(String, Value)]) {
    for (n, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], n as u64, "{data}");
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-x",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

fn run(chunks: &[String], usage: Option<Usage>) -> Vec<(String, Value)> {
    let mut translator = EventTranslator::default();
    let mut out = Vec::new();
    for data in chunks {
        translator.chunk(data, &mut out);
    }
    translator.done(usage, &mut out);
    let events = parse_events(&out);
    assert_sequenced(&events);
    events
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn text_stream() {
    let usage_chunk = json!({"id": "c", "model": "gpt-x", "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "prompt_tokens_details": {"cached_tokens": 2}}})
    .to_string();
    let events = run(
        &[
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Hel"}), None),
            chunk(json!({"content": "lo"}), None),
            chunk(json!({}), Some("stop")),
            usage_chunk,
        ],
        Some(Usage {
            prompt_tokens: 5,
            completion_tokens: 2,
        }),
    );
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    assert_eq!(events[0].1["response"]["output"], json!([]));
    assert_eq!(events[2].1["item"]["type"], "message");
    assert_eq!(events[2].1["item"]["status"], "in_progress");
    assert_eq!(events[4].1["delta"], "Hel");
    assert_eq!(events[4].1["logprobs"], json!([]));
    assert_eq!(events[6].1["text"], "Hello");
    let item_id = &events[2].1["item"]["id"];
    assert!(events[3..9]
        .iter()
        .all(|(_, d)| d["item_id"] == *item_id || d["item"]["id"] == *item_id));
    let response = &events[9].1["response"];
    assert_eq!(response["status"], "completed");
    assert_eq!(response["id"], events[0].1["response"]["id"]);
    assert_eq!(response["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(response["usage"]["input_tokens"], 5);
    assert_eq!(response["usage"]["total_tokens"], 7);
    assert_eq!(
        response["usage"]["input_tokens_details"]["cached_tokens"],
        2
    );
}

#[test]
fn usage_only_chunk_opens_nothing() {
    let mut translator = EventTranslator::default();
    let mut out = Vec::new();
    translator.chunk(&chunk(json!({"content": "x"}), Some("stop")), &mut out);
    let before = parse_events(&out).len();
    let usage = json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}});
    translator.chunk(&usage.to_string(), &mut out);
    assert_eq!(parse_events(&out).len(), before);
    translator.chunk("not json", &mut out);
    assert_eq!(parse_events(&out).len(), before);
}

#[test]
fn two_interleaved_tool_calls() {
    let call = |index: u64, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut function = json!({"arguments": args});
        if let Some(name) = name {
            function["name"] = name.into();
        }
        let mut call = json!({"index": index, "function": function});
        if let Some(id) = id {
            call["id"] = id.into();
            call["type"] = "function".into();
        }
        chunk(json!({"tool_calls": [call]}), None)
    };
    let events = run(
        &[
            chunk(json!({"content": "Let me check."}), None),
            call(0, Some("call_a"), Some("a"), ""),
            call(1, Some("call_b"), Some("b"), "{\"y\""),
            call(0, None, None, "{\"x\":"),
            call(1, None, None, ":2}"),
            call(0, None, None, "1}"),
            chunk(json!({}), Some("tool_calls")),
        ],
        None,
    );
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(events[8].1["item"]["arguments"], "");
    assert_eq!(events[8].1["item"]["call_id"], "call_a");
    assert_eq!(events[8].1["output_index"], 1);
    assert_eq!(events[9].1["item"]["call_id"], "call_b");
    assert_eq!(events[9].1["output_index"], 2);
    assert_eq!(events[14].1["arguments"], "{\"x\":1}");
    assert_eq!(events[16].1["arguments"], "{\"y\":2}");
    let output = &events[18].1["response"]["output"];
    assert_eq!(output[1]["arguments"], "{\"x\":1}");
    assert_eq!(output[2]["name"], "b");
    assert_eq!(output[2]["status"], "completed");
    assert_eq!(events[18].1["response"]["usage"], Value::Null);
}

#[test]
fn length_finish_is_incomplete() {
    let events = run(
        &[
            chunk(json!({"content": "cut"}), None),
            chunk(json!({}), Some("length")),
        ],
        Some(Usage {
            prompt_tokens: 1,
            completion_tokens: 9,
        }),
    );
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "response.incomplete");
    assert_eq!(data["response"]["status"], "incomplete");
    assert_eq!(
        data["response"]["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(data["response"]["usage"]["output_tokens"], 9);
}

#[test]
fn error_after_commit_numbers_on_and_carries_an_error_object() {
    let mut translator = EventTranslator::default();
    let mut out = Vec::new();
    translator.chunk(&chunk(json!({"content": "par"}), None), &mut out);
    translator.error("upstream_stream_interrupted", "boom", &mut out);
    translator.done(None, &mut out);
    let events = parse_events(&out);
    assert_sequenced(&events);
    let last = names(&events)[events.len() - 2..].to_vec();
    assert_eq!(last, ["response.failed", "error"]);
    let (_, error) = events.last().unwrap();
    assert_eq!(error["code"], "upstream_stream_interrupted");
    assert_eq!(error["message"], "boom");
    assert_eq!(error["param"], Value::Null);
    assert_eq!(error["error"]["message"], "boom");
    let failed = &events[events.len() - 2].1["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["message"], "boom");
    assert_eq!(failed["output"][0]["status"], "incomplete");
    assert_eq!(failed["output"][0]["content"][0]["text"], "par");
}

#[test]
fn done_without_chunks_still_starts_and_completes() {
    let events = run(&[], None);
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.completed"
        ]
    );
}
