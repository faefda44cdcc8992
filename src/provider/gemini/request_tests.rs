//! Golden request translations (Gemini shapes from the `generateContent` reference).

use super::*;
use serde_json::json;

fn translated(request: Value) -> Value {
    let body = serde_json::to_vec(&request).unwrap();
    serde_json::from_slice(&translate(&body).unwrap()).unwrap()
}

#[test]
fn system_and_multi_turn() {
    let out = translated(json!({
        "model": "chat",
        "messages": [
            {"role": "system", "content": "You are a cat."},
            {"role": "developer", "content": [{"type": "text", "text": "Your name is Neko."}]},
            {"role": "user", "content": "Hello"},
            {"role": "user", "content": "Are you there?"},
            {"role": "assistant", "content": "Meow."},
            {"role": "user", "content": [{"type": "text", "text": "What is your name?"}]}
        ]
    }));
    assert_eq!(
        out,
        json!({
            "systemInstruction": {"parts": [{"text": "You are a cat."}, {"text": "Your name is Neko."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hello"}, {"text": "Are you there?"}]},
                {"role": "model", "parts": [{"text": "Meow."}]},
                {"role": "user", "parts": [{"text": "What is your name?"}]}
            ]
        })
    );
}

#[test]
fn data_url_image_becomes_inline_data() {
    let out = translated(json!({
        "model": "chat",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Caption this image."},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}}
        ]}]
    }));
    assert_eq!(
        out["contents"],
        json!([{"role": "user", "parts": [
            {"text": "Caption this image."},
            {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}}
        ]}])
    );
    let web = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let err = translate(&serde_json::to_vec(&web).unwrap()).unwrap_err();
    assert!(matches!(err, TranslateError::Request(_)));
}

#[test]
fn tools_calls_and_results() {
    let out = translated(json!({
        "model": "chat",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{\"city\":\"Tokyo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":21}"},
            {"role": "tool", "tool_call_id": "call_2", "content": "09:00"}
        ],
        "tools": [
            {"type": "function", "function": {
                "name": "get_weather", "description": "Current weather", "strict": true,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
        ],
        "tool_choice": "required"
    }));
    assert_eq!(
        out,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Weather in Paris and Tokyo?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_time", "args": {"city": "Tokyo"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "get_time", "response": {"content": "09:00"}}}
                ]}
            ],
            "tools": [{"functionDeclarations": [
                {"name": "get_weather", "description": "Current weather",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "get_time"}
            ]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}
        })
    );
}

#[test]
fn tool_choice_forms() {
    let tool_config = |choice: Value| tool_config(&serde_json::from_value(choice).unwrap());
    let named = json!({"type": "function", "function": {"name": "f"}});
    assert_eq!(
        tool_config(named).unwrap(),
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}})
    );
    assert_eq!(
        tool_config(json!("none")).unwrap(),
        json!({"functionCallingConfig": {"mode": "NONE"}})
    );
    assert_eq!(
        tool_config(json!("auto")).unwrap(),
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    assert!(tool_config(json!("sometimes")).is_err());
}

#[test]
fn unknown_tool_call_id_is_refused() {
    let body = json!({"model": "m", "messages": [
        {"role": "tool", "tool_call_id": "nope", "content": "x"}]});
    let err = translate(&serde_json::to_vec(&body).unwrap()).unwrap_err();
    assert!(matches!(err, TranslateError::Request(_)));
}

#[test]
fn generation_config_fields() {
    let out = translated(json!({
        "model": "chat",
        "messages": [{"role": "user", "content": "List cookies"}],
        "temperature": 0.7, "top_p": 0.9, "max_tokens": 10, "max_completion_tokens": 800,
        "stop": "END", "n": 2, "presence_penalty": 0.5, "frequency_penalty": 0.25, "seed": 42,
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": true, "schema": {
            "type": "array", "items": {"type": "object", "properties": {"recipeName": {"type": "string"}},
            "required": ["recipeName"], "additionalProperties": false}}}}
    }));
    assert_eq!(
        out["generationConfig"],
        json!({
            "temperature": 0.7, "topP": 0.9, "maxOutputTokens": 800, "stopSequences": ["END"],
            "candidateCount": 2, "presencePenalty": 0.5, "frequencyPenalty": 0.25, "seed": 42,
            "responseMimeType": "application/json",
            "responseSchema": {"type": "array", "items": {"type": "object",
                "properties": {"recipeName": {"type": "string"}}, "required": ["recipeName"]}}
        })
    );
    let json_mode = translated(json!({"model": "m", "messages": [], "stop": ["a", "b"],
        "response_format": {"type": "json_object"}}));
    assert_eq!(
        json_mode["generationConfig"],
        json!({"stopSequences": ["a", "b"], "responseMimeType": "application/json"})
    );
}

#[test]
fn trailing_assistant_is_a_model_turn() {
    let out = translated(json!({"model": "m", "messages": [
        {"role": "user", "content": "Write a haiku"},
        {"role": "assistant", "content": "Autumn moonlight"}]}));
    assert_eq!(
        out["contents"][1],
        json!({"role": "model", "parts": [{"text": "Autumn moonlight"}]})
    );
}

#[test]
fn malformed_input_is_a_request_error() {
    for body in [&b"not json"[..], br#"{"messages": [{"role": "robot", "content": "x"}]}"#,
        br#"{"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{"}}]}]}"#,
        br#"{"messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]}"#] {
        assert!(matches!(translate(body), Err(TranslateError::Request(_))));
    }
}
