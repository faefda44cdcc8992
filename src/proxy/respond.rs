//! Writing answers to the client: the gateway's own headers on every response.
//!
//! Every response carries `x-request-id`; proxied ones also say who served them
//! (`x-switchyard-target`), after how many upstream attempts, and whether the
//! request had to fall back, the gateway's own time on it
//! (`x-switchyard-overhead-ms`) and the served provider answer's returned
//! headers (`x-switchyard-upstream-*`). Bodies are written in the client's [`Dialect`].

use std::time::{Duration, Instant};

use std::rc::Rc;
use std::sync::Arc;

use super::anthropic;
use super::headers;
use super::responses::{self, Echo};
use crate::http::response::{finish_response_head, write_status_line, BodyLen};
use crate::http::{push_decimal, push_header, ApiError, Fields};
use crate::request_id::RequestId;

/// The API shape a client speaks; answers and errors are written in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI's shapes, which the gateway speaks internally (nothing is translated).
    #[default]
    OpenAi,
    /// Anthropic's Messages API shapes (see [`super::anthropic`]).
    Anthropic,
    /// OpenAI's Responses API shapes (see [`super::responses`]); errors are
    /// OpenAI's.
    Responses,
}

/// The gateway's view of one response, for its headers and body shape.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub request_id: RequestId,
    pub target: Option<Arc<str>>,
    pub attempts: u32,
    pub fallback: bool,
    pub keep_alive: bool,
    pub dialect: Dialect,
    /// Headers of the gateway's own for this response (the caller's key's
    /// `x-ratelimit-*`).
    pub gateway_headers: Fields,
    /// What a Responses answer echoes of its request (`Dialect::Responses`
    /// only: shared, so other dialects pay nothing).
    pub echo: Option<Rc<Echo>>,
    /// The served provider answer's returned headers (renamed rate limits and
    /// request id, see `proxy::headers::returned`); empty on the gateway's own.
    pub upstream_headers: super::headers::Returned,
    /// When the request was read: proxied answers carry
    /// `x-switchyard-overhead-ms` from it, less `waited`.
    pub started: Option<Instant>,
    /// Time spent waiting on providers (attempts until commit) and retry backoff.
    pub waited: Duration,
}

impl Meta {
    /// Writes the whole head: status line, the gateway's headers, the upstream's
    /// returned ones, `extra`, the content type and the framing — straight into
    /// `out`, numbers included, so a head costs no allocation of its own.
    fn write_head(
        &self,
        out: &mut Vec<u8>,
        status: u16,
        content_type: &[u8],
        body: BodyLen,
        extra: &[(&str, &[u8])],
    ) {
        write_status_line(out, status);
        push_header(out, "x-request-id", self.request_id.as_bytes());
        if let Some(target) = &self.target {
            push_header(out, "x-switchyard-target", target.as_bytes());
        }
        if self.attempts > 0 {
            out.extend_from_slice(b"x-switchyard-attempts: ");
            push_decimal(out, u64::from(self.attempts));
            out.extend_from_slice(b"\r\n");
        }
        if self.fallback {
            out.extend_from_slice(b"x-switchyard-fallback: true\r\n");
        }
        if let Some(started) = self.started {
            out.extend_from_slice(b"x-switchyard-overhead-ms: ");
            headers::push_overhead_ms(out, started, self.waited, Instant::now());
            out.extend_from_slice(b"\r\n");
        }
        let returned = self.upstream_headers.iter();
        let all = returned
            .chain(self.gateway_headers.iter())
            .chain(extra.iter().copied());
        for (name, value) in all {
            push_header(out, name, value);
        }
        push_header(out, "content-type", content_type);
        finish_response_head(out, status, body, self.keep_alive);
    }

    /// A complete response with a known body.
    pub fn write_full(
        &self,
        out: &mut Vec<u8>,
        status: u16,
        content_type: &[u8],
        body: &[u8],
        extra: &[(&str, &[u8])],
    ) {
        self.write_full_head(out, status, content_type, body.len(), extra);
        out.extend_from_slice(body);
    }

    /// The head of a complete response whose `len`-byte body the caller writes.
    pub fn write_full_head(
        &self,
        out: &mut Vec<u8>,
        status: u16,
        content_type: &[u8],
        len: usize,
        extra: &[(&str, &[u8])],
    ) {
        self.write_head(out, status, content_type, BodyLen::Fixed(len), extra);
    }

    /// The head of a chunked response (an event stream).
    pub fn write_stream_head(&self, out: &mut Vec<u8>, status: u16, content_type: &[u8]) {
        let extra: [(&str, &[u8]); 1] = [("cache-control", b"no-cache")];
        self.write_head(out, status, content_type, BodyLen::Chunked, &extra);
    }

    /// A whole proxied answer (success or error) with its OpenAI-shaped `body`,
    /// written in the client's dialect.
    pub fn write_answer(
        &self,
        out: &mut Vec<u8>,
        status: u16,
        content_type: &[u8],
        body: &[u8],
        extra: &[(&str, &[u8])],
    ) {
        match self.dialect {
            Dialect::OpenAi => self.write_full(out, status, content_type, body, extra),
            Dialect::Anthropic => {
                let (status, body) = anthropic::shape_answer(status, body);
                self.write_full(out, status, b"application/json", &body, extra)
            }
            Dialect::Responses => {
                let (status, body) = responses::shape_answer(status, body, &self.echo());
                self.write_full(out, status, b"application/json", &body, extra)
            }
        }
    }

    /// A whole proxied answer (its OpenAI-shaped `body`) as the client's dialect
    /// has it: status, content type and body. OpenAI clients get it as it is
    /// (moved, not copied).
    pub fn shape_answer(
        &self,
        status: u16,
        content_type: Vec<u8>,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>, Vec<u8>) {
        match self.dialect {
            Dialect::OpenAi => (status, content_type, body),
            Dialect::Anthropic => {
                let (status, body) = anthropic::shape_answer(status, &body);
                (status, b"application/json".to_vec(), body)
            }
            Dialect::Responses => {
                let (status, body) = responses::shape_answer(status, &body, &self.echo());
                (status, b"application/json".to_vec(), body)
            }
        }
    }

    /// The echoed request fields of a Responses answer (none known: defaults).
    pub fn echo(&self) -> Rc<Echo> {
        self.echo.clone().unwrap_or_default()
    }

    /// One of the gateway's own errors, in the client's dialect.
    pub fn write_error(&self, out: &mut Vec<u8>, error: &ApiError, extra: &[(&str, &[u8])]) {
        let body = match self.dialect {
            Dialect::OpenAi | Dialect::Responses => error.body(),
            Dialect::Anthropic => anthropic::error_body(error),
        };
        self.write_full(out, error.status, b"application/json", &body, extra);
    }
}
