//! OpenAI embeddings as Gemini `batchEmbedContents`: one request per input
//! string, and `embeddings[].values` back as OpenAI's embedding list.
//!
//! Vectors are always returned as float arrays (`encoding_format: "base64"` is
//! answered with floats, which the OpenAI SDKs accept); Gemini reports no token
//! counts here, so usage is zero.

use serde::Deserialize;
use serde_json::{json, Value};

use super::TranslateError;

#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: Input,
    #[serde(default)]
    dimensions: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
    /// Token arrays: Gemini embeds text only.
    Tokens(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct BatchResponse {
    #[serde(default)]
    embeddings: Vec<Embedding>,
}

#[derive(Deserialize)]
struct Embedding {
    #[serde(default)]
    values: Vec<f64>,
}

/// `resource` is the `models/...` name each request must repeat.
pub fn translate_request(body: &[u8], resource: &str) -> Result<Vec<u8>, TranslateError> {
    let request: EmbeddingsRequest =
        serde_json::from_slice(body).map_err(|e| TranslateError::Request(e.to_string()))?;
    let inputs = match request.input {
        Input::One(text) => vec![text],
        Input::Many(texts) => texts,
        Input::Tokens(_) => {
            return Err(TranslateError::Request(
                "Gemini embeds text; token array inputs are not supported".into(),
            ))
        }
    };
    if inputs.is_empty() {
        return Err(TranslateError::Request("`input` is empty".into()));
    }
    let requests: Vec<Value> = inputs
        .iter()
        .map(|text| {
            let mut one = json!({ "model": resource, "content": { "parts": [{ "text": text }] } });
            if let Some(dimensions) = request.dimensions {
                one["outputDimensionality"] = dimensions.into();
            }
            one
        })
        .collect();
    serde_json::to_vec(&json!({ "requests": requests }))
        .map_err(|e| TranslateError::Request(e.to_string()))
}

/// Gemini's batch answer as OpenAI's `list` of embeddings for `model`.
pub fn translate_response(body: &[u8], model: &str) -> Result<Vec<u8>, TranslateError> {
    let response: BatchResponse =
        serde_json::from_slice(body).map_err(|e| TranslateError::Response(e.to_string()))?;
    let data: Vec<Value> = response
        .embeddings
        .iter()
        .enumerate()
        .map(|(index, e)| json!({ "object": "embedding", "index": index, "embedding": e.values }))
        .collect();
    let out = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": 0, "total_tokens": 0 }
    });
    serde_json::to_vec(&out).map_err(|e| TranslateError::Response(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn request_per_input() {
        let body = br#"{"model":"embed","input":["What is the meaning of life?","How much wood?"],"dimensions":768,"encoding_format":"float"}"#;
        let out = translate_request(body, "models/text-embedding-004").unwrap();
        assert_eq!(
            json_of(&out),
            json!({"requests": [
                {"model": "models/text-embedding-004", "content": {"parts": [{"text": "What is the meaning of life?"}]}, "outputDimensionality": 768},
                {"model": "models/text-embedding-004", "content": {"parts": [{"text": "How much wood?"}]}, "outputDimensionality": 768}
            ]})
        );
        let single = translate_request(br#"{"input":"hi"}"#, "models/m").unwrap();
        assert_eq!(
            json_of(&single),
            json!({"requests": [{"model": "models/m", "content": {"parts": [{"text": "hi"}]}}]})
        );
    }

    #[test]
    fn unsupported_inputs() {
        for body in [&br#"{"input":[1,2,3]}"#[..], br#"{"input":[]}"#, b"{}"] {
            assert!(matches!(
                translate_request(body, "models/m"),
                Err(TranslateError::Request(_))
            ));
        }
    }

    #[test]
    fn response_as_openai_list() {
        let body =
            br#"{"embeddings": [{"values": [0.013168523, -0.008711934]}, {"values": [0.5]}]}"#;
        let out = translate_response(body, "text-embedding-004").unwrap();
        assert_eq!(
            json_of(&out),
            json!({"object": "list", "model": "text-embedding-004",
                   "data": [{"object": "embedding", "index": 0, "embedding": [0.013168523, -0.008711934]},
                            {"object": "embedding", "index": 1, "embedding": [0.5]}],
                   "usage": {"prompt_tokens": 0, "total_tokens": 0}})
        );
        assert!(translate_response(b"nope", "m").is_err());
    }
}
