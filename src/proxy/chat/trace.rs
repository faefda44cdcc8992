//! A request's spans, built once it is answered: a server span for the
//! request (continuing the client's `traceparent`) and a client span per
//! attempt in its trail, then handed to `telemetry::queue`.
//!
//! Attempt timings come from the trail (each attempt's elapsed, back to back
//! from the request's start), so a retry's backoff is inside the next attempt.

use super::*;
use crate::telemetry::{context, queue, AttrValue, SpanKind, SpanRecord, TraceContext};

/// The request's span and its parent, when `telemetry:` is set and the trace is
/// sampled (the client's flag, else `sample_ratio`); `None` costs one check.
pub(super) fn start(
    config: &crate::config::Config,
    head: &crate::http::request::RequestHead,
) -> Option<(TraceContext, [u8; 8])> {
    let telemetry = config.telemetry.as_ref()?;
    let client = head.header("traceparent").and_then(TraceContext::parse);
    let (root, parent) = context::root(client, telemetry.sample_ratio, fastrand::f64());
    root.sampled.then_some((root, parent))
}

/// Builds and queues the request's spans when its trace is sampled.
pub(super) fn finished(req: &Request<'_>, route: usize, meta: &Meta, status: u16, trail: &Trail) {
    let Some((root, parent)) = req.trace else {
        return;
    };
    let config = &req.routing.table.config;
    let end = unix_nanos();
    let start = end.saturating_sub(req.started.elapsed().as_nanos() as u64);
    attempt_spans(req, &root, meta, status, trail, start, end);
    let used = req.used.get();
    let overhead = req.started.elapsed().saturating_sub(meta.waited);
    let mut attrs = vec![
        (
            "http.route",
            AttrValue::Str(
                config
                    .routes
                    .get(route)
                    .map_or("", |r| r.name.as_str())
                    .into(),
            ),
        ),
        (
            "switchyard.key",
            AttrValue::Str(req.caller.map_or("-", |c| c.key.name.as_str()).into()),
        ),
        (
            "gen_ai.request.model",
            AttrValue::Str(req.chat.model.clone()),
        ),
        (
            "http.response.status_code",
            AttrValue::Int(i64::from(status)),
        ),
        (
            "gen_ai.usage.input_tokens",
            AttrValue::Int(used.prompt_tokens as i64),
        ),
        (
            "gen_ai.usage.output_tokens",
            AttrValue::Int(used.completion_tokens as i64),
        ),
        (
            "switchyard.attempts",
            AttrValue::Int(i64::from(meta.attempts).max(trail.attempts.len() as i64)),
        ),
        (
            "switchyard.overhead_ms",
            AttrValue::Float(overhead.as_secs_f64() * 1e3),
        ),
    ];
    if trail.hedged.is_some() {
        attrs.push(("switchyard.hedged", AttrValue::Bool(true)));
        attrs.push(("switchyard.hedge_won", AttrValue::Bool(trail.hedge_served)));
    }
    queue::push(SpanRecord {
        trace_id: root.trace_id,
        span_id: root.span_id,
        parent_span_id: parent,
        name: format!("POST {}", req.head.target.split('?').next().unwrap_or("")),
        kind: SpanKind::Server,
        start_unix_nanos: start,
        end_unix_nanos: end,
        attributes: attrs,
        error: status >= 500,
    });
}

/// One client span per attempt: the trail's failures back to back from `start`,
/// then the served attempt up to `end`.
fn attempt_spans(
    req: &Request<'_>,
    root: &TraceContext,
    meta: &Meta,
    status: u16,
    trail: &Trail,
    start: u64,
    end: u64,
) {
    let mut at = start;
    for (i, attempt) in trail.attempts.iter().enumerate() {
        let finish = (at + attempt.elapsed.as_nanos() as u64).min(end);
        let next = trail.attempts.get(i + 1).map(|a| a.target.as_str());
        let decision = match (next, meta.target.as_deref()) {
            (Some(n), _) | (None, Some(n)) if n == attempt.target => "retry",
            (Some(_), _) | (None, Some(_)) => "fallback",
            (None, None) => "return",
        };
        let mut attrs = vec![
            ("switchyard.target", AttrValue::Str(attempt.target.clone())),
            (
                "switchyard.failure_class",
                AttrValue::Str(attempt.class.as_str().into()),
            ),
            ("switchyard.decision", AttrValue::Str(decision.into())),
            ("switchyard.detail", AttrValue::Str(attempt.detail.clone())),
        ];
        if let Some(s) = attempt.status {
            attrs.push(("http.response.status_code", AttrValue::Int(i64::from(s))));
        }
        queue::push(span(root, &attempt.target, at, finish, attrs, true));
        at = finish;
    }
    if let Some(target) = &meta.target {
        let mut attrs = vec![
            ("switchyard.target", AttrValue::Str(target.to_string())),
            (
                "http.response.status_code",
                AttrValue::Int(i64::from(status)),
            ),
            ("switchyard.decision", AttrValue::Str("return".into())),
        ];
        if let Some(ttft) = req.ttft.get() {
            attrs.push((
                "switchyard.ttft_ms",
                AttrValue::Float(ttft.as_secs_f64() * 1e3),
            ));
        }
        queue::push(span(root, target, at, end, attrs, status >= 400));
    }
}

fn span(
    root: &TraceContext,
    target: &str,
    start: u64,
    end: u64,
    attributes: Vec<(&'static str, AttrValue)>,
    error: bool,
) -> SpanRecord {
    SpanRecord {
        trace_id: root.trace_id,
        span_id: context::new_span_id(),
        parent_span_id: root.span_id,
        name: format!("attempt {target}"),
        kind: SpanKind::Client,
        start_unix_nanos: start,
        end_unix_nanos: end,
        attributes,
        error,
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
