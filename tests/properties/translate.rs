//! The translators, on arbitrary JSON and on mutated realistic documents: the
//! chat body reader and model rewrite, each provider kind's request, response and
//! error translation and classification, the Anthropic Messages dialect (request
//! in, answer, error and stream events out) and the continuation request.
//!
//! Beyond never panicking: what a translator accepts it turns into well-formed
//! JSON, and the model rewrite changes the model and nothing else.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use serde_json::Value;
use switchyard::config::{load_str, Config, ProviderKind};
use switchyard::http::SseEvent;
use switchyard::provider::{self, Api, RequestParts};
use switchyard::proxy::anthropic::response::{error_from_upstream, message_from_completion};
use switchyard::proxy::anthropic::{to_chat_body, EventTranslator};
use switchyard::proxy::stream::inspect;
use switchyard::wire::ChatBody;
use switchyard::wire::Usage;

use crate::cases;
use crate::json::{body, mutated};

const CHAT_REQUESTS: &[&str] = &[
    r##"{"model":"chat","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"max_tokens":100,"temperature":0.5,"top_p":1,"stop":["x"],"stream":true,"stream_options":{"include_usage":true}}"##,
    r##"{"model":"chat","messages":[{"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}],"stream":true}"##,
    r##"{"model":"chat","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"sunny"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string","enum":["Paris"]}},"required":["city"]}}}],"tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false}"##,
    r##"{"model":"chat","messages":[{"role":"developer","content":[{"type":"text","text":"json only"}]},{"role":"user","content":"x"},{"role":"assistant","content":"prefix"}],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object","properties":{"a":{"anyOf":[{"type":"string"},{"type":"null"}]},"b":{"type":"array","items":{"$ref":"#/$defs/x"}}},"$defs":{"x":{"type":"integer"}},"additionalProperties":false}}},"max_completion_tokens":5,"n":1,"seed":3}"##,
    r##"{"model":"chat","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]}],"tool_choice":"required","tools":[{"type":"function","function":{"name":"f"}}],"response_format":{"type":"json_object"}}"##,
];

const EMBEDDING_REQUESTS: &[&str] = &[
    r##"{"model":"embed","input":"hi"}"##,
    r##"{"model":"embed","input":["a","b"],"dimensions":8,"encoding_format":"float"}"##,
];

const ANSWERS: &[&str] = &[
    r##"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":4,"cache_read_input_tokens":1}}"##,
    r##"{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"},{"functionCall":{"name":"f","args":{"a":1}}}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4,"totalTokenCount":7,"thoughtsTokenCount":1},"modelVersion":"gemini-2.0","responseId":"r1"}"##,
    r##"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":3}}"##,
    r##"{"embeddings":[{"values":[0.1,0.2]},{"values":[]}]}"##,
    r##"{"output":{"message":{"role":"assistant","content":[{"text":"hi"},{"toolUse":{"toolUseId":"t1","name":"f","input":{"a":1}}}]}},"stopReason":"tool_use","usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7}}"##,
    r##"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt","choices":[{"index":0,"message":{"role":"assistant","content":"hi","refusal":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"##,
];

const ERRORS: &[&str] = &[
    r##"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded","param":null}}"##,
    r##"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"##,
    r##"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[]}}"##,
    r##"{"message":"Too many tokens","__type":"ThrottlingException"}"##,
    r##"{"error":{"code":"content_filter","message":"no","innererror":{"code":"ResponsibleAIPolicyViolation"}}}"##,
    r##"{"error":{"message":"all targets failed","type":"server_error","code":"no_target","attempts":[{"target":"a","status":503}]}}"##,
];

const MESSAGES_REQUESTS: &[&str] = &[
    r##"{"model":"claude","max_tokens":100,"system":[{"type":"text","text":"be brief"}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBOR"}}]},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":1}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"ok"}],"is_error":true},{"type":"text","text":"next"}]}],"tools":[{"name":"f","description":"d","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f","disable_parallel_tool_use":true},"stop_sequences":["x"],"stream":true,"temperature":1,"top_p":0.9,"top_k":5,"metadata":{"user_id":"u"}}"##,
    r##"{"model":"claude","max_tokens":1,"system":"s","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"x"},{"type":"text","text":"pre"}]}],"tool_choice":{"type":"any"}}"##,
    r##"{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}},{"type":"tool_result","tool_use_id":"t","content":"plain"}]}],"tools":[{"type":"custom","name":"g","input_schema":{}}],"tool_choice":{"type":"none"}}"##,
];

const CHUNKS: &[&str] = &[
    r##"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":null}]}"##,
    r##"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\""}}]}}]}"##,
    r##"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":":1}"}}]}}]}"##,
    r##"{"id":"c","choices":[{"index":0,"delta":{"refusal":"no"},"finish_reason":"content_filter"}]}"##,
    r##"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"##,
    r##"{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"##,
];

/// One provider of every kind, loaded the way a user's config is.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let yaml = "\
providers:
  openai: { kind: openai, base_url: https://api.openai.com/v1, api_key: k }
  compatible: { kind: openai-compatible, base_url: http://127.0.0.1:9/v1 }
  azure: { kind: azure, base_url: https://r.openai.azure.com, api_key: k, api_version: 2024-10-21 }
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
    targets: [{ provider: openai, model: m }]
";
        load_str(yaml, "properties.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
    })
}

const KINDS: [ProviderKind; 6] = [
    ProviderKind::OpenAi,
    ProviderKind::OpenAiCompatible,
    ProviderKind::Azure,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::Bedrock,
];

fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes).is_ok()
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => prop::sample::select(vec![400u16, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503, 504, 529]),
        1 => 100u16..600,
    ]
}

fn model() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("gpt-4o".to_owned()),
        1 => Just("anthropic.claude-3-5-haiku-20241022-v1:0".to_owned()),
        1 => "\\PC{0,10}",
    ]
}

/// Arbitrary `data:` of stream events: mutated chunks, any JSON, or text.
fn chunk_data() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => mutated(CHUNKS).prop_map(|v| v.to_string()),
        1 => crate::json::value().prop_map(|v| v.to_string()),
        1 => Just("[DONE]".to_owned()),
        1 => "\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    /// A body the gateway accepts is rewritten to valid JSON whose model is the
    /// target's and whose other fields are untouched (a stream also asks for usage).
    #[test]
    fn model_rewrite_changes_only_the_model(body in body(CHAT_REQUESTS), target in model()) {
        let Ok(chat) = ChatBody::parse(&body) else { return Ok(()) };
        let mut out = Vec::new();
        chat.rewrite(&body, &target, &mut out);
        let before: Value = serde_json::from_slice(&body).expect("accepted bodies are JSON");
        let after: Value = serde_json::from_slice(&out).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out))))?;
        prop_assert_eq!(&after["model"], &Value::from(target.as_str()));
        let (Value::Object(before), Value::Object(after)) = (before, after) else {
            return Err(TestCaseError::fail("not an object"));
        };
        for (key, value) in &before {
            if key != "model" && key != "stream_options" {
                prop_assert_eq!(after.get(key), Some(value), "{} changed", key);
            }
        }
        if chat.stream {
            prop_assert_eq!(&after["stream_options"]["include_usage"], &Value::Bool(true));
        } else {
            prop_assert_eq!(after.get("stream_options"), before.get("stream_options"));
        }
        prop_assert_eq!(after.len(), before.len() + usize::from(chat.stream && !before.contains_key("stream_options")));
    }

    /// Every kind's request translation, chat and embeddings: no panic, and a
    /// translated request has a path and a JSON body.
    #[test]
    fn request_translation_yields_json_or_an_error(
        body in prop_oneof![4 => body(CHAT_REQUESTS), 1 => body(EMBEDDING_REQUESTS)],
        target in model(),
        embeddings in any::<bool>(),
        with_query in any::<bool>(),
    ) {
        let Ok(chat) = ChatBody::parse(&body) else { return Ok(()) };
        let query = [("api-version".to_owned(), "x y&z".to_owned())];
        for provider in &config().providers {
            let prepared = provider::prepare(provider);
            let parts = RequestParts {
                provider,
                prepared: &prepared,
                api: if embeddings { Api::Embeddings } else { Api::ChatCompletions },
                model: &target,
                body: &body,
                chat: &chat,
                query: if with_query { &query } else { &[] },
                now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            };
            if let Ok(outbound) = prepared.adapter.encode(&parts) {
                prop_assert!(outbound.path.starts_with('/'), "{}", outbound.path);
                prop_assert!(is_json(&outbound.body), "{}: {}", provider.name, String::from_utf8_lossy(&outbound.body));
            }
        }
    }

    /// Every kind's answer, error and classification paths on any body: no panic;
    /// translated answers and errors are JSON.
    #[test]
    fn answers_and_errors_translate_to_json_or_an_error(
        answer in body(ANSWERS),
        error in body(ERRORS),
        status in status(),
        target in model(),
        data in chunk_data(),
    ) {
        for kind in KINDS {
            let adapter = provider::adapter(kind);
            // The kinds that relay OpenAI's own shapes relay what they got.
            let translates = !matches!(kind, ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Azure);
            let json = b"application/json".to_vec();
            for api in [Api::ChatCompletions, Api::Embeddings] {
                if let Ok((_, out)) = adapter.whole_answer(api, &target, json.clone(), answer.0.clone()) {
                    if translates {
                        prop_assert!(is_json(&out), "{:?}: {}", kind, String::from_utf8_lossy(&out));
                    }
                }
            }
            let (_, translated) = adapter.error_answer(status, json, error.0.clone());
            if translates && is_json(&error) {
                prop_assert!(is_json(&translated), "{:?}: {}", kind, String::from_utf8_lossy(&translated));
            }
            let _ = adapter.classify_status(status, &error);
            let _ = adapter.classify_stream_error(&data);
        }
    }

    /// The Anthropic Messages dialect: requests in, answers and errors out. An
    /// accepted request becomes a chat body the gateway accepts, with its model.
    #[test]
    fn messages_dialect_yields_json_or_an_error(
        request in body(MESSAGES_REQUESTS),
        answer in body(ANSWERS),
        error in body(ERRORS),
        status in status(),
    ) {
        if let Ok(chat) = to_chat_body(&request) {
            let parsed = ChatBody::parse(&chat).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let original: Value = serde_json::from_slice(&request).expect("accepted requests are JSON");
            prop_assert_eq!(Some(parsed.model.as_str()), original["model"].as_str());
        }
        if let Ok(message) = message_from_completion(&answer) {
            prop_assert!(is_json(&message));
        }
        prop_assert!(is_json(&error_from_upstream(status, &error)));
    }

    /// Relayed chunks written as Anthropic stream events: whatever the chunks,
    /// the frame is a well-formed event stream of JSON events that ends with
    /// `message_stop` exactly once, and `inspect` classifies every chunk.
    #[test]
    fn anthropic_stream_events_are_well_formed(
        chunks in prop::collection::vec(chunk_data(), 0..12),
        usage in prop::option::of((any::<u64>(), any::<u64>())),
    ) {
        let mut translator = EventTranslator::default();
        let mut frame = Vec::new();
        for data in &chunks {
            let _ = inspect(&SseEvent { event: None, data: data.clone(), id: None });
            translator.chunk(data, &mut frame);
        }
        let usage = usage.map(|(prompt_tokens, completion_tokens)| Usage { prompt_tokens, completion_tokens });
        translator.done(usage, &mut frame);
        translator.done(usage, &mut frame);
        let mut parser = switchyard::http::SseParser::new();
        parser.push(&frame);
        let mut names = Vec::new();
        for _ in 0..=frame.len() {
            let Some(event) = parser.next_event() else { break };
            let event = event.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(is_json(event.data.as_bytes()), "{}", event.data);
            names.push(event.event.unwrap_or_default());
        }
        prop_assert_eq!(names.first().map(String::as_str), Some("message_start"));
        prop_assert_eq!(names.last().map(String::as_str), Some("message_stop"));
        prop_assert_eq!(names.iter().filter(|n| *n == "message_stop").count(), 1);
    }

    /// The continuation request: any original body and partial answer; when one
    /// is built it is JSON, streams, and ends with the partial answer less its
    /// withheld words (prefill) or the instruction to continue.
    #[test]
    fn continuation_requests_are_json(
        original in body(CHAT_REQUESTS),
        partial in "\\PC{0,20}",
        prefill in any::<bool>(),
    ) {
        use switchyard::proxy::continuation::{request_body, Style};
        let style = if prefill { Style::Prefill } else { Style::Instruction };
        if let Ok(out) = request_body(&original, &partial, style, 0) {
            let out: Value = serde_json::from_slice(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&out["stream"], &Value::Bool(true));
            let last = out["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
            if prefill {
                // The partial less the words it withholds (to be written again).
                let said = &partial[..switchyard::proxy::continuation::prefill_split(&partial)];
                prop_assert_eq!(&last["content"], &Value::from(said));
            } else {
                prop_assert_eq!(&last["role"], &Value::from("user"));
            }
        }
    }
}
