//! JSON inputs for the translators: arbitrary `serde_json::Value`s biased towards
//! the field names and values the provider formats use (so generated documents
//! reach deep into the translators instead of failing at the first field), and
//! mutations of realistic seed documents (replace, delete or insert anywhere).

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Field names of the OpenAI, Anthropic, Gemini and Bedrock formats.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "image_url",
    "url",
    "detail",
    "tool_calls",
    "id",
    "function",
    "name",
    "arguments",
    "tools",
    "parameters",
    "tool_choice",
    "stream",
    "stream_options",
    "include_usage",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "response_format",
    "json_schema",
    "schema",
    "strict",
    "input",
    "system",
    "tool_use_id",
    "input_schema",
    "source",
    "media_type",
    "data",
    "choices",
    "message",
    "delta",
    "finish_reason",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "index",
    "is_error",
    "refusal",
    "tool_call_id",
    "disable_parallel_tool_use",
    "properties",
    "items",
    "required",
    "enum",
    "anyOf",
    "oneOf",
    "$ref",
    "$defs",
    "format",
    "description",
    "additionalProperties",
    "default",
    "nullable",
    "input_audio",
    "stop_sequences",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "candidates",
    "parts",
    "functionCall",
    "functionResponse",
    "args",
    "finishReason",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "totalTokenCount",
    "cachedContentTokenCount",
    "modelVersion",
    "responseId",
    "promptFeedback",
    "blockReason",
    "thought",
    "output",
    "stopReason",
    "toolUse",
    "toolUseId",
    "inputTokens",
    "outputTokens",
    "totalTokens",
    "contentBlockIndex",
    "start",
    "error",
    "code",
    "status",
    "innererror",
    "embedding",
    "embeddings",
    "values",
    "encoding_format",
    "dimensions",
    "object",
    "created",
    "logprobs",
    "seed",
    "user",
    "metadata",
    "thinking",
];

/// String values those formats give meaning to.
const WORDS: &[&str] = &[
    "system",
    "user",
    "assistant",
    "tool",
    "developer",
    "function",
    "text",
    "image_url",
    "image",
    "tool_use",
    "tool_result",
    "object",
    "string",
    "array",
    "integer",
    "number",
    "boolean",
    "null",
    "auto",
    "any",
    "none",
    "required",
    "json_object",
    "json_schema",
    "base64",
    "url",
    "input_audio",
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "[DONE]",
    "image/png",
    "data:image/png;base64,iVBORw0KGgo=",
    "data:;base64,",
    "data:image/png,x",
    "https://example.com/cat.png",
    "{\"a\":1}",
    "{",
    "",
    " ",
    "custom",
    "web_search_20250305",
    "#/$defs/x",
    "date-time",
    "overloaded_error",
    "rate_limit_error",
    "context_length_exceeded",
    "RESOURCE_EXHAUSTED",
    "ThrottlingException",
    "chat.completion",
    "chat.completion.chunk",
];

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..10).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,8}",
    ]
}

/// Any JSON value, at most a few levels deep, with format-flavoured keys and strings.
pub fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One edit of a document, at a path chosen by `steps` (each step picks a child
/// modulo the number of children; the walk stops at a leaf or when steps run out).
#[derive(Debug, Clone)]
pub enum Edit {
    Replace(Vec<usize>, Value),
    Remove(Vec<usize>),
    Insert(Vec<usize>, String, Value),
}

pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let steps = prop::collection::vec(any::<usize>(), 0..6);
    let edit = prop_oneof![
        (steps.clone(), value()).prop_map(|(s, v)| Edit::Replace(s, v)),
        steps.clone().prop_map(Edit::Remove),
        (steps, key(), value()).prop_map(|(s, k, v)| Edit::Insert(s, k, v)),
    ];
    prop::collection::vec(edit, 0..4)
}

/// The node `steps` leads to; the walk stops early at a leaf or an empty container.
fn walk<'v>(node: &'v mut Value, steps: &[usize]) -> &'v mut Value {
    let Some((&step, rest)) = steps.split_first() else {
        return node;
    };
    let has_children = match &*node {
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        _ => false,
    };
    if !has_children {
        return node;
    }
    match node {
        Value::Array(items) => {
            let at = step % items.len();
            walk(&mut items[at], rest)
        }
        Value::Object(map) => {
            let at = step % map.len();
            let child = map.values_mut().nth(at).expect("index within the map");
            walk(child, rest)
        }
        other => other,
    }
}

/// Applies `edits` to `doc` in order.
pub fn apply(doc: &mut Value, edits: &[Edit]) {
    for edit in edits {
        match edit {
            Edit::Replace(steps, value) => *walk(doc, steps) = value.clone(),
            // Removes the child that the last step picks from the node the others reach.
            Edit::Remove(steps) => match walk(doc, steps.split_last().map_or(&[], |(_, s)| s)) {
                Value::Array(items) if !items.is_empty() => {
                    let at = steps.last().copied().unwrap_or(0) % items.len();
                    items.remove(at);
                }
                Value::Object(map) if !map.is_empty() => {
                    let at = steps.last().copied().unwrap_or(0) % map.len();
                    if let Some(k) = map.keys().nth(at).cloned() {
                        map.remove(&k);
                    }
                }
                other => *other = Value::Null,
            },
            Edit::Insert(steps, key, value) => match walk(doc, steps) {
                Value::Object(map) => {
                    map.insert(key.clone(), value.clone());
                }
                Value::Array(items) => items.push(value.clone()),
                other => *other = value.clone(),
            },
        }
    }
}

/// A seed document picked from `seeds`, mutated by random edits.
pub fn mutated(seeds: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (prop::sample::select(seeds), edits()).prop_map(|(seed, edits)| {
        let mut doc: Value = serde_json::from_str(seed).expect("seed documents are JSON");
        apply(&mut doc, &edits);
        doc
    })
}

/// Bytes to hand a translator: a mutated seed, an arbitrary value, or a seed's
/// text with byte-level damage (duplicate keys, truncation, broken escapes).
pub fn body(seeds: &'static [&'static str]) -> impl Strategy<Value = crate::Bytes> {
    let bytes = prop_oneof![
        4 => mutated(seeds).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => (prop::sample::select(seeds), prop::collection::vec((any::<usize>(), any::<u8>()), 1..4))
            .prop_map(|(seed, edits)| {
                let mut bytes = seed.as_bytes().to_vec();
                crate::damage(&mut bytes, &edits);
                bytes
            }),
    ];
    bytes.prop_map(crate::Bytes)
}

#[test]
fn edits_reach_inside_documents() {
    let mut doc = serde_json::json!({"a": [1, {"b": 2}]});
    apply(&mut doc, &[Edit::Replace(vec![0, 1, 0], Value::Bool(true))]);
    assert_eq!(doc, serde_json::json!({"a": [1, {"b": true}]}));
    apply(&mut doc, &[Edit::Remove(vec![0, 0])]);
    assert_eq!(doc, serde_json::json!({"a": [{"b": true}]}));
    apply(&mut doc, &[Edit::Insert(vec![], "c".into(), Value::Null)]);
    assert_eq!(doc, serde_json::json!({"a": [{"b": true}], "c": null}));
}
