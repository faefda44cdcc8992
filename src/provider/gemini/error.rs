//! Google's error answers (`{"error": {"code", "message", "status"}}`) classified
//! onto the failure taxonomy and rewritten in OpenAI's error shape.
//!
//! A safety block is not an error here: Gemini answers it with 200 and the
//! completion carries `finish_reason: "content_filter"`.

use serde::Deserialize;
use serde_json::json;

use crate::outcome::FailureClass;

#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    error: GoogleError,
}

#[derive(Deserialize, Default)]
struct GoogleError {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

impl GoogleError {
    fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("")
    }

    fn message(&self) -> &str {
        self.message.as_deref().unwrap_or("")
    }

    /// "The input token count (1200000) exceeds the maximum number of tokens
    /// allowed (1048576)."
    fn is_context_length(&self) -> bool {
        let message = self.message().to_ascii_lowercase();
        [
            "maximum number of tokens",
            "token limit",
            "input token count",
            "too many tokens",
        ]
        .iter()
        .any(|needle| message.contains(needle))
    }
}

/// Google's error, sent as an object or (by some endpoints) a one-element array.
fn parse(body: &[u8]) -> Option<GoogleError> {
    let listed = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !listed {
        return serde_json::from_slice::<Envelope>(body)
            .ok()
            .map(|e| e.error);
    }
    let mut list = serde_json::from_slice::<Vec<Envelope>>(body).ok()?;
    (!list.is_empty()).then(|| list.swap_remove(0).error)
}

/// A non-2xx answer from Gemini.
pub fn classify_status(status: u16, body: &[u8]) -> FailureClass {
    match status {
        429 => FailureClass::Overloaded,
        408 | 500..=599 => FailureClass::Server,
        400 if parse(body).is_some_and(|e| e.is_context_length()) => FailureClass::ContextLength,
        400..=499 => FailureClass::Client,
        _ => FailureClass::Server,
    }
}

/// An error event inside a 200 `alt=sse` stream.
pub fn classify_stream_error(data: &str) -> FailureClass {
    let error = parse(data.as_bytes()).unwrap_or_default();
    match (error.code, error.status()) {
        (Some(429), _) | (_, "RESOURCE_EXHAUSTED") => FailureClass::Overloaded,
        _ if error.is_context_length() => FailureClass::ContextLength,
        _ => FailureClass::Server,
    }
}

/// Google's error body as OpenAI's `{"error": {message, type, param, code}}`,
/// keeping Google's message; `code` is Google's status (`RESOURCE_EXHAUSTED`),
/// or `context_length_exceeded` where OpenAI clients look for that.
pub fn translate_error(status: u16, body: Vec<u8>) -> Vec<u8> {
    let error = parse(&body);
    let message = match &error {
        Some(e) if !e.message().is_empty() => e.message().to_string(),
        _ => format!(
            "Gemini answered HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(512)])
        ),
    };
    let code = match &error {
        Some(e) if status == 400 && e.is_context_length() => json!("context_length_exceeded"),
        Some(e) if !e.status().is_empty() => json!(e.status()),
        _ => json!(null),
    };
    let out = json!({
        "error": { "message": message, "type": error_type(status), "param": null, "code": code }
    });
    serde_json::to_vec(&out).unwrap_or(body)
}

fn error_type(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const RATE: &[u8] = br#"{"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}"#;
    const OVERLOADED: &[u8] = br#"{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#;
    const INTERNAL: &[u8] = br#"{"error": {"code": 500, "message": "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting", "status": "INTERNAL"}}"#;
    const DEADLINE: &[u8] = br#"{"error": {"code": 504, "message": "Deadline expired before operation could complete.", "status": "DEADLINE_EXCEEDED"}}"#;
    const TOO_LONG: &[u8] = br#"{"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}}"#;
    const BAD_KEY: &[u8] = br#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}"#;
    const DENIED: &[u8] = br#"{"error": {"code": 403, "message": "Method doesn't allow unregistered callers.", "status": "PERMISSION_DENIED"}}"#;
    const NOT_FOUND: &[u8] = br#"{"error": {"code": 404, "message": "models/gemini-9 is not found for API version v1beta, or is not supported for generateContent.", "status": "NOT_FOUND"}}"#;

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(classify_status(429, RATE), FailureClass::Overloaded);
        assert_eq!(classify_status(503, OVERLOADED), FailureClass::Server);
        assert_eq!(classify_status(500, INTERNAL), FailureClass::Server);
        assert_eq!(classify_status(504, DEADLINE), FailureClass::Server);
        assert_eq!(classify_status(400, TOO_LONG), FailureClass::ContextLength);
        assert_eq!(classify_status(400, BAD_KEY), FailureClass::Client);
        assert_eq!(classify_status(401, b"{}"), FailureClass::Client);
        assert_eq!(classify_status(403, DENIED), FailureClass::Client);
        assert_eq!(classify_status(404, NOT_FOUND), FailureClass::Client);
        assert_eq!(classify_status(400, b"<html>"), FailureClass::Client);
        let listed = [b"[".as_slice(), TOO_LONG, b"]"].concat();
        assert_eq!(classify_status(400, &listed), FailureClass::ContextLength);
    }

    #[test]
    fn stream_errors() {
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        assert_eq!(classify_stream_error(&text(RATE)), FailureClass::Overloaded);
        assert_eq!(
            classify_stream_error(&text(OVERLOADED)),
            FailureClass::Server
        );
        assert_eq!(
            classify_stream_error(&text(TOO_LONG)),
            FailureClass::ContextLength
        );
        assert_eq!(classify_stream_error("garbage"), FailureClass::Server);
    }

    #[test]
    fn errors_take_openai_shape() {
        let out: Value = serde_json::from_slice(&translate_error(429, RATE.to_vec())).unwrap();
        assert_eq!(
            out,
            json!({"error": {"message": "Resource has been exhausted (e.g. check quota).",
                "type": "rate_limit_error", "param": null, "code": "RESOURCE_EXHAUSTED"}})
        );
        let long: Value = serde_json::from_slice(&translate_error(400, TOO_LONG.to_vec())).unwrap();
        assert_eq!(long["error"]["code"], "context_length_exceeded");
        assert_eq!(long["error"]["type"], "invalid_request_error");
        let html: Value =
            serde_json::from_slice(&translate_error(502, b"<html>bad</html>".to_vec())).unwrap();
        assert_eq!(
            html["error"]["message"],
            "Gemini answered HTTP 502: <html>bad</html>"
        );
        assert_eq!(html["error"]["code"], Value::Null);
    }
}
