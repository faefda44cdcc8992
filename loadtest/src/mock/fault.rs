//! The provider failures the mock can inject, and their JSON control form.
//!
//! The JSON form is a tagged object: `{"mode":"status","status":503,"rate":1.0,
//! "retry_after":2}` (add `"times":1` to fail only the first request),
//! `{"mode":"latency","base_ms":200,"jitter_ms":50}`,
//! `{"mode":"reset_mid_stream","after_chunks":3}`, `{"mode":"slow_first_token",
//! "ms":500}`, `{"mode":"tool_call_cut","after_chunks":2}`, `{"mode":"none"}`, ...
//!
//! Stream faults count `after_chunks` in events written after the response head
//! (SSE events, or event-stream frames for Bedrock). In the OpenAI dialect event 1
//! is the role delta and event `i + 2` carries word `w{i}`. So `after_chunks: 0`
//! fails right after the head, `after_chunks: 1` after the role delta (the first
//! byte a gateway commits on), and `after_chunks: k + 1` after `k` words; other
//! dialects differ ([`super::Dialect::after_words`] gives the count for `k` words).
//! A count past the end of the stream leaves that stream untouched. Every fault
//! applies to every dialect, shaped as that provider sends it, except
//! `tool_call_cut`, which counts argument chunks of a streamed tool call (OpenAI,
//! Azure, Anthropic; see `tool.rs`) and leaves other streams untouched.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One failure mode, applied to every provider request until changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Answer `status` to a fraction `rate` (0.0..=1.0) of requests with the
    /// dialect's error body (OpenAI: type `rate_limit_error` for 429,
    /// `overloaded_error` for 529, `server_error` for other 5xx,
    /// `invalid_request_error` otherwise; see `dialect.rs` for the others),
    /// or with `body` verbatim; sends `retry-after` when set. With `times`, only
    /// the first `times` injections after the fault was set happen; later requests
    /// are answered normally (`None`: forever).
    Status {
        status: u16,
        #[serde(default = "full_rate")]
        rate: f64,
        #[serde(default)]
        retry_after: Option<u64>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        times: Option<u64>,
    },
    /// Stop listening: connects are refused and open connections are closed until
    /// the fault changes; healing re-binds the same port.
    Refuse,
    /// Read the request, then reset the connection (SO_LINGER 0) without answering.
    ResetOnRequest,
    /// Brownout: each response head waits `base + uniform(0..=jitter)`.
    Latency {
        #[serde(rename = "base_ms", with = "millis", default)]
        base: Duration,
        #[serde(rename = "jitter_ms", with = "millis", default)]
        jitter: Duration,
    },
    /// Streams: head and `after_chunks` events, then silence with the socket open.
    /// Non-streaming requests: silence right after the request is read.
    Stall {
        #[serde(default)]
        after_chunks: usize,
    },
    /// Streams: head and `after_chunks` events, then a connection reset.
    ResetMidStream {
        #[serde(default)]
        after_chunks: usize,
    },
    /// Streams (status 200): `after_chunks` events, then the dialect's error event
    /// (OpenAI, Anthropic: `event: error` with an `overloaded_error` payload;
    /// Gemini: a `data:` error object; Bedrock: an exception frame), and the
    /// stream ends (no `[DONE]`).
    SseErrorEvent {
        #[serde(default)]
        after_chunks: usize,
    },
    /// Streams: one event whose data is `{not json` after `after_chunks` events,
    /// then the stream continues normally.
    MalformedEvent {
        #[serde(default)]
        after_chunks: usize,
    },
    /// Streams: the head and the events before the first content go out at once
    /// (OpenAI, Azure: the role-only chunk; Anthropic: `message_start`,
    /// `content_block_start`, `ping`; Bedrock: `messageStart`; Gemini: only the
    /// head), the first content event (a word, or a tool call's head) only `ms`
    /// milliseconds later, then the rest as usual. Whole answers are untouched.
    SlowFirstToken { ms: u64 },
    /// Streamed tool calls (see `tool.rs`): the call's head and `after_chunks`
    /// argument chunks (`function.arguments` pieces, Anthropic `input_json_delta`s),
    /// then a connection reset, mid-arguments. A count of at least the call's
    /// argument chunks, and any stream that is not a tool call, is untouched.
    ToolCallCut {
        #[serde(default)]
        after_chunks: usize,
    },
    /// Streams: end cleanly but without the dialect's end marker (OpenAI
    /// `data: [DONE]`, Anthropic `message_stop`, Gemini the last chunk's
    /// `finishReason` and usage, Bedrock `messageStop` and `metadata`).
    NoDone,
    /// Answers (whole and streamed) labelled `content-encoding: {encoding}`
    /// whatever the request's `accept-encoding` says, as a misbehaving provider
    /// or proxy does. `gzip` compresses the body (each stream chunk its own gzip
    /// member) and `deflate` zlib-wraps it; any other label is put on the
    /// unchanged body.
    Encode { encoding: String },
    /// Answer `status` with an OpenAI error whose message echoes the whole
    /// request head, credentials included (a provider that quotes what it got).
    EchoRequest { status: u16 },
}

/// Why a JSON fault description was rejected.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("invalid fault JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("fault status {0} is outside 100..=999")]
    Status(u16),
    #[error("fault rate {0} is outside 0.0..=1.0")]
    Rate(f64),
}

impl Fault {
    /// Parses and validates the JSON control form.
    pub fn from_json(bytes: &[u8]) -> Result<Fault, FaultError> {
        let fault: Fault = serde_json::from_slice(bytes)?;
        fault.validate()?;
        Ok(fault)
    }

    /// Checks the ranges serde cannot express.
    pub fn validate(&self) -> Result<(), FaultError> {
        match self {
            Fault::Status { status, rate, .. } => {
                if !(100..=999).contains(status) {
                    return Err(FaultError::Status(*status));
                }
                if !(0.0..=1.0).contains(rate) {
                    return Err(FaultError::Rate(*rate));
                }
            }
            Fault::EchoRequest { status } if !(100..=999).contains(status) => {
                return Err(FaultError::Status(*status));
            }
            _ => {}
        }
        Ok(())
    }

    /// The JSON control form of this fault.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"mode\":\"none\"}"))
    }

    /// True when the listeners must be closed.
    pub fn refuses(&self) -> bool {
        matches!(self, Fault::Refuse)
    }
}

fn full_rate() -> f64 {
    1.0
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_mode() {
        let cases = [
            (r#"{"mode":"none"}"#, Fault::None),
            (r#"{"mode":"refuse"}"#, Fault::Refuse),
            (r#"{"mode":"reset_on_request"}"#, Fault::ResetOnRequest),
            (r#"{"mode":"no_done"}"#, Fault::NoDone),
            (
                r#"{"mode":"status","status":503,"retry_after":2}"#,
                Fault::Status {
                    status: 503,
                    rate: 1.0,
                    retry_after: Some(2),
                    body: None,
                    times: None,
                },
            ),
            (
                r#"{"mode":"status","status":429,"times":1}"#,
                Fault::Status {
                    status: 429,
                    rate: 1.0,
                    retry_after: None,
                    body: None,
                    times: Some(1),
                },
            ),
            (
                r#"{"mode":"latency","base_ms":200,"jitter_ms":50}"#,
                Fault::Latency {
                    base: Duration::from_millis(200),
                    jitter: Duration::from_millis(50),
                },
            ),
            (
                r#"{"mode":"stall","after_chunks":2}"#,
                Fault::Stall { after_chunks: 2 },
            ),
            (
                r#"{"mode":"reset_mid_stream","after_chunks":3}"#,
                Fault::ResetMidStream { after_chunks: 3 },
            ),
            (
                r#"{"mode":"sse_error_event"}"#,
                Fault::SseErrorEvent { after_chunks: 0 },
            ),
            (
                r#"{"mode":"malformed_event","after_chunks":1}"#,
                Fault::MalformedEvent { after_chunks: 1 },
            ),
            (
                r#"{"mode":"encode","encoding":"gzip"}"#,
                Fault::Encode {
                    encoding: "gzip".into(),
                },
            ),
            (
                r#"{"mode":"echo_request","status":401}"#,
                Fault::EchoRequest { status: 401 },
            ),
            (
                r#"{"mode":"slow_first_token","ms":500}"#,
                Fault::SlowFirstToken { ms: 500 },
            ),
            (
                r#"{"mode":"tool_call_cut","after_chunks":2}"#,
                Fault::ToolCallCut { after_chunks: 2 },
            ),
            (
                r#"{"mode":"tool_call_cut"}"#,
                Fault::ToolCallCut { after_chunks: 0 },
            ),
        ];
        for (json, want) in cases {
            let got = Fault::from_json(json.as_bytes()).expect(json);
            assert_eq!(got, want, "{json}");
            assert_eq!(
                Fault::from_json(got.to_json().as_bytes()).expect("round trip"),
                want
            );
        }
    }

    #[test]
    fn rejects_bad_input() {
        for json in [
            r#"{"mode":"explode"}"#,
            r#"{"mode":"status"}"#,
            r#"{"mode":"status","status":42}"#,
            r#"{"mode":"status","status":500,"rate":1.5}"#,
            r#"{"mode":"stall","after":1}"#,
            r#"{"mode":"encode"}"#,
            r#"{"mode":"echo_request","status":7}"#,
            r#"{"mode":"slow_first_token","ms":-1}"#,
            r#"{"mode":"slow_first_token"}"#,
            r#"{"mode":"tool_call_cut","after":1}"#,
            "not json",
        ] {
            assert!(Fault::from_json(json.as_bytes()).is_err(), "{json}");
        }
    }
}
