//! Errors the gateway itself answers with, shaped like OpenAI's so client SDKs parse
//! them: `{"error":{"message":"...","type":"...","param":null,"code":"..."}}`.

use super::response::{finish_response_head, write_status_line};
use super::{push_header, BodyLen, HeadError};

/// An error response for a client, with its status and OpenAI-style type and code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// The OpenAI `type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// The OpenAI `code`, e.g. `invalid_api_key`.
    pub code: &'static str,
}

#[derive(serde::Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(serde::Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

const INVALID_REQUEST: &str = "invalid_request_error";
const SERVER_ERROR: &str = "server_error";

impl ApiError {
    pub fn new(
        status: u16,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            code,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, INVALID_REQUEST, "invalid_request", message)
    }

    /// 401: missing or unknown client key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, INVALID_REQUEST, "invalid_api_key", message)
    }

    /// 404: unknown model or path.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, INVALID_REQUEST, "not_found", message)
    }

    /// 405: the path exists but not with this method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, INVALID_REQUEST, "method_not_allowed", message)
    }

    /// 408: the client was too slow sending its request.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(408, INVALID_REQUEST, "request_timeout", message)
    }

    /// 413: the body exceeds the configured limit.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(413, INVALID_REQUEST, "payload_too_large", message)
    }

    /// 431: the head exceeds the configured limit.
    pub fn headers_too_large(message: impl Into<String>) -> Self {
        Self::new(431, INVALID_REQUEST, "headers_too_large", message)
    }

    /// 501: a feature of HTTP the gateway does not implement (e.g. a transfer coding).
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(501, INVALID_REQUEST, "not_implemented", message)
    }

    /// 502: the upstream answered with something unusable.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(502, SERVER_ERROR, "bad_gateway", message)
    }

    /// 503: no target can take the request now.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, SERVER_ERROR, "service_unavailable", message)
    }

    /// 504: no target answered in time.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(504, SERVER_ERROR, "gateway_timeout", message)
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let envelope = Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                param: None,
                code: self.code,
            },
        };
        // Serialising plain strings into a Vec cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    /// Full response: head with content-type: application/json, the extra headers,
    /// content-length, then the body.
    pub fn write_response(
        &self,
        out: &mut Vec<u8>,
        extra_headers: &[(&str, &[u8])],
        keep_alive: bool,
    ) {
        let body = self.body();
        write_status_line(out, self.status);
        push_header(out, "content-type", b"application/json");
        for (name, value) in extra_headers {
            push_header(out, name, value);
        }
        finish_response_head(out, self.status, BodyLen::Fixed(body.len()), keep_alive);
        out.extend_from_slice(&body);
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<&HeadError> for ApiError {
    fn from(err: &HeadError) -> Self {
        let message = err.to_string();
        match err {
            HeadError::TooLarge => ApiError::headers_too_large(message),
            HeadError::UnsupportedTransferEncoding => ApiError::not_implemented(message),
            _ => ApiError::bad_request(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped_and_escaped() {
        let err = ApiError::bad_request("bad \"quote\"\n</x>");
        let v: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(v["error"]["message"], "bad \"quote\"\n</x>");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_request");
        assert!(v["error"]["param"].is_null());
    }

    #[test]
    fn constructors_have_their_statuses() {
        let cases = [
            (ApiError::bad_request("m"), 400, "invalid_request"),
            (ApiError::unauthorized("m"), 401, "invalid_api_key"),
            (ApiError::not_found("m"), 404, "not_found"),
            (ApiError::method_not_allowed("m"), 405, "method_not_allowed"),
            (ApiError::request_timeout("m"), 408, "request_timeout"),
            (ApiError::payload_too_large("m"), 413, "payload_too_large"),
            (ApiError::headers_too_large("m"), 431, "headers_too_large"),
            (ApiError::not_implemented("m"), 501, "not_implemented"),
            (ApiError::bad_gateway("m"), 502, "bad_gateway"),
            (
                ApiError::service_unavailable("m"),
                503,
                "service_unavailable",
            ),
            (ApiError::gateway_timeout("m"), 504, "gateway_timeout"),
        ];
        for (err, status, code) in cases {
            assert_eq!((err.status, err.code), (status, code));
        }
    }

    #[test]
    fn from_head_error_keeps_status() {
        for e in [
            HeadError::TooLarge,
            HeadError::UnsupportedTransferEncoding,
            HeadError::LengthAndEncoding,
            HeadError::Malformed(httparse::Error::Version),
        ] {
            let api = ApiError::from(&e);
            assert_eq!(api.status, e.status());
            assert_eq!(api.message, e.to_string());
        }
    }

    #[test]
    fn writes_a_full_response() {
        let err = ApiError::unauthorized("no key");
        let mut out = Vec::new();
        let extra: [(&str, &[u8]); 1] = [("x-request-id", b"r1")];
        err.write_response(&mut out, &extra, false);
        let head = crate::http::parse_response_head(&out, 4096, false)
            .unwrap()
            .unwrap();
        assert_eq!(head.status, 401);
        assert_eq!(head.header("content-type"), Some(&b"application/json"[..]));
        assert_eq!(head.header("x-request-id"), Some(&b"r1"[..]));
        assert!(!head.keep_alive);
        assert_eq!(&out[head.head_len..], err.body().as_slice());
        assert_eq!(
            head.framing,
            crate::http::BodyFraming::ContentLength(err.body().len() as u64)
        );
    }
}
