//! One try against one target: encode the request for the target's kind, send it,
//! and wait for an answer worth committing (a whole body, or a stream's first content).
//!
//! Nothing a provider answers reaches the client unchecked: a final status outside
//! 200..=599, or any 3xx (a redirect is neither followed nor relayed), is a server
//! failure like a malformed answer; a whole answer is read within
//! `limits.max_response_bytes` and decoded when the provider compressed it
//! although asked for `identity`, while an encoded stream fails before commit (so
//! the next target serves it); and the provider's own credentials are blanked out
//! of every body relayed from it.
//!
//! A stream's first content is awaited until the first-byte deadline or, on any
//! target but the last one left, `timeouts.first_token` after sending
//! (`FirstContent`); each stream that reaches it teaches the target's
//! time-to-first-token estimate (what `first_token: auto` is learned from).

use super::*;
use crate::bufpool;
use crate::config::FirstToken;
use crate::http::encoding::{Coding, DecodeError};
use crate::http::response::{parse_retry_after, write_request_head};
use crate::outcome::Failure;
use crate::provider::{self, Secrets};
use crate::proxy::headers;
use crate::proxy::stream::{self, HoldFailure};
use crate::upstream::{
    exchange, BodyError, ConnectError, ExchangeDeadlines, ExchangeError, Response,
};
use crate::wire::Usage;
use std::time::SystemTime;
use whole::WholeError;

/// Largest error body kept for classification and for the client.
const MAX_ERROR_BODY: usize = 256 * 1024;

/// A provider's own error answer, kept to return it unchanged in meaning.
pub(super) struct ProviderAnswer {
    pub(super) status: u16,
    pub(super) content_type: Vec<u8>,
    pub(super) body: Vec<u8>,
    pub(super) retry_after: Option<Vec<u8>>,
    /// Its returned headers (see `proxy::headers::returned`).
    pub(super) upstream: crate::proxy::headers::Returned,
}

/// A failed attempt: its classified failure, the provider's answer when it gave
/// one, and why, in words.
pub(super) struct Failed {
    pub(super) failure: Failure,
    /// Boxed: most failures have none, and a result is moved through races.
    pub(super) answer: Option<Box<ProviderAnswer>>,
    pub(super) reason: String,
}

/// What one attempt came to. `native`: the answer is already in the client's
/// shape (see [`Outgoing`]).
pub(super) enum AttemptResult {
    Complete {
        content_type: Vec<u8>,
        body: Vec<u8>,
        ttfb: Duration,
        native: bool,
        /// Its returned headers (see `proxy::headers::returned`).
        upstream: crate::proxy::headers::Returned,
    },
    Stream {
        held: Box<stream::Held>,
        ttfb: Duration,
        native: bool,
    },
    Failed(Failed),
    /// This target cannot express the request (no attempt was sent).
    Untranslatable(String),
}

/// What reading one answer needs to know about its attempt.
struct Answering<'t> {
    adapter: &'static dyn provider::Adapter,
    api: provider::Api,
    native: bool,
    model: &'t str,
    secrets: &'t Secrets,
    stall: Duration,
    first_content: FirstContent,
    hold_until_content: bool,
    slot: usize,
    ttfb: Duration,
    started: Instant,
}

/// When a stream's first content must arrive: by the first-byte deadline (never
/// past the request's), or sooner when `timeouts.first_token` cuts this attempt.
#[derive(Debug, Clone, Copy)]
struct FirstContent {
    /// Bounds the pre-content hold.
    deadline: Instant,
    /// The first-token limit, when it is what `deadline` comes from (the attempt is
    /// a stream, a later target admits now, `fallback.on_timeout` lets it fall
    /// over, and the limit ends before the first-byte deadline).
    cut: Option<FirstTokenCut>,
}

#[derive(Debug, Clone, Copy)]
struct FirstTokenCut {
    limit: Duration,
    learned: bool,
}

impl FirstContent {
    /// `started + first_token` (the fixed limit, or the one the target's recent
    /// times to first token give `auto`), for every stream attempt but one on the
    /// last target that could take the request; that one, and every whole answer,
    /// keeps only `first_byte` and `total`, as without the limit.
    fn of(
        req: &Request<'_>,
        pick: &Pick,
        outgoing: Outgoing<'_>,
        started: Instant,
        first_byte_deadline: Instant,
    ) -> FirstContent {
        let uncut = FirstContent {
            deadline: first_byte_deadline,
            cut: None,
        };
        let policy = req.policy(pick);
        if !outgoing.chat.stream || !pick.fallback_ready || !policy.fallback.on_timeout {
            return uncut;
        }
        let (limit, learned) = match policy.timeouts.first_token {
            FirstToken::Fixed(limit) => (limit, false),
            FirstToken::Auto => {
                let health = req.routing.targets[pick.slot].health.borrow();
                (health.first_token_auto(Instant::now()), true)
            }
        };
        let deadline = started + limit;
        if deadline >= first_byte_deadline {
            return uncut;
        }
        FirstContent {
            deadline,
            cut: Some(FirstTokenCut { limit, learned }),
        }
    }

    /// Why an attempt cut by the first-token limit failed, in words.
    fn cut_reason(&self, what: &str) -> String {
        let Some(cut) = self.cut else {
            return format!("{what} before the first-byte deadline");
        };
        let limit = crate::config::format_duration(cut.limit);
        let how = if cut.learned { "auto, " } else { "" };
        format!("{what} within first_token ({how}{limit}); another target takes the stream")
    }
}

/// One attempt, unless the client hangs up first: then the attempt is dropped
/// with its upstream socket (never pooled mid-exchange), nothing counts against
/// the provider, and `None` says the client is gone.
pub(super) async fn for_client(
    req: &Request<'_>,
    pick: &mut Pick,
    outgoing: Outgoing<'_>,
    client: &ClientStream,
    started: Instant,
) -> Option<AttemptResult> {
    let outcome = monoio::select! {
        result = attempt(req, pick, outgoing, started) => Some(result),
        _ = client.hung_up() => None,
    };
    if outcome.is_none() {
        record::abandoned(req, pick);
    }
    outcome
}

/// One try against one target: send, then wait for an answer worth committing.
pub(super) async fn attempt(
    req: &Request<'_>,
    pick: &Pick,
    outgoing: Outgoing<'_>,
    started: Instant,
) -> AttemptResult {
    let policy = req.policy(pick);
    let table = &req.routing.table;
    let target = &req.route(pick.route).targets[pick.target];
    let (Some(pool), Some(entry), Some(provider)) = (
        req.routing.pools.get(policy.provider),
        table.providers.get(policy.provider),
        table.config.providers.get(policy.provider),
    ) else {
        return failed(
            FailureClass::Connect,
            None,
            "provider has no pool on this shard",
        );
    };
    let request = match encode_request(req, outgoing, provider, &entry.prepared, target, policy) {
        Ok(request) => request,
        Err(e) => return AttemptResult::Untranslatable(e.to_string()),
    };
    let timeouts = policy.timeouts;
    let remaining = req.deadline.saturating_duration_since(started);
    let first_byte_deadline = (started + timeouts.first_byte).min(req.deadline);
    let first_content = FirstContent::of(req, pick, outgoing, started, first_byte_deadline);
    let deadlines = ExchangeDeadlines {
        connect: timeouts.connect.min(remaining),
        first_byte: timeouts.first_byte,
        // The head cannot come later than the first content may.
        first_byte_at: first_content.deadline,
        total: req.deadline,
    };
    let (result, request) = exchange(pool, request, deadlines).await;
    bufpool::give(request);
    let response = match result {
        Ok(response) => response,
        Err(ExchangeError::FirstByteTimeout) if first_content.cut.is_some() => {
            return failed(
                FailureClass::FirstByteTimeout,
                None,
                &first_content.cut_reason("no response head"),
            )
        }
        Err(e) => return exchange_failure(e),
    };
    let answering = Answering {
        adapter: entry.prepared.adapter,
        api: outgoing.api,
        native: outgoing.native,
        model: &target.model,
        secrets: &entry.secrets,
        stall: timeouts.between_chunks,
        first_content,
        hold_until_content: policy.stream.hold_until_content,
        slot: pick.slot,
        ttfb: started.elapsed(),
        started,
    };
    answer_of(req, outgoing, response, &answering).await
}

/// Sorts a response by status: a stream to hold, a whole answer, a provider
/// error, or a status no client may be shown.
async fn answer_of(
    req: &Request<'_>,
    outgoing: Outgoing<'_>,
    response: Response,
    at: &Answering<'_>,
) -> AttemptResult {
    let status = response.status();
    if !is_final_answer(status) {
        // Dropping the response closes the socket: its body is never read.
        return failed(
            FailureClass::Server,
            None,
            &format!("provider answered HTTP {status}, which is not a final answer (only 2xx, 4xx and 5xx are; redirects are never followed)"),
        );
    }
    let coding = Coding::parse(response.head.header("content-encoding"));
    let content_type = response
        .head
        .header("content-type")
        .unwrap_or(b"application/json")
        .to_vec();
    if !(200..300).contains(&status) {
        return error_answer(req, response, coding, content_type, at).await;
    }
    if outgoing.chat.stream && at.adapter.is_event_stream(&content_type) {
        return held_stream(req, response, coding, at).await;
    }
    whole_answer(req, response, coding, content_type, at).await
}

/// A 2xx event stream, held until its first content. Streams are not decoded:
/// one that arrives encoded anyway fails here, before the client saw anything,
/// so the next target serves it.
async fn held_stream(
    req: &Request<'_>,
    response: Response,
    coding: Result<Coding, DecodeError>,
    at: &Answering<'_>,
) -> AttemptResult {
    match coding {
        Ok(Coding::Identity) => {}
        Ok(coding) => {
            let reason = format!(
                "provider streamed with content-encoding `{}` although asked for identity; encoded streams are not relayed",
                coding.as_str()
            );
            return failed(FailureClass::Server, None, &reason);
        }
        Err(e) => return failed(FailureClass::Server, None, &e.to_string()),
    }
    let source = at.adapter.event_source(at.model);
    let policy = stream::HoldPolicy {
        first_content_deadline: at.first_content.deadline,
        between_chunks: at.stall,
        deadline: req.deadline,
        until_content: at.hold_until_content,
        max_held_bytes: req.routing.table.config.limits.max_stream_buffer_bytes,
    };
    match stream::hold(response, source, policy).await {
        Ok(held) => {
            let ttft = at.started.elapsed();
            // Committed on content (not on a first event of any kind): a sample of
            // the target's time to first token.
            if at.hold_until_content {
                record::ttft(req, at.slot, ttft);
            }
            AttemptResult::Stream {
                held: Box::new(held),
                ttfb: ttft,
                native: at.native,
            }
        }
        Err(mut failure) => {
            if failure.overflowed {
                record::stream_overflow(req, at.slot);
            }
            if failure.class == FailureClass::FirstByteTimeout && at.first_content.cut.is_some() {
                failure.reason = at.first_content.cut_reason("no content");
            }
            hold_failed(at.adapter, failure)
        }
    }
}

/// A 2xx whole answer: read within the limit, decoded, translated, scrubbed.
/// An answer over the limit is the provider's failure (it sent it).
async fn whole_answer(
    req: &Request<'_>,
    mut response: Response,
    coding: Result<Coding, DecodeError>,
    content_type: Vec<u8>,
    at: &Answering<'_>,
) -> AttemptResult {
    let coding = match coding {
        Ok(coding) => coding,
        Err(e) => return failed(FailureClass::Server, None, &e.to_string()),
    };
    let limit = req.routing.table.config.limits.max_response_bytes;
    let body = match whole::read(&mut response, coding, limit, at.stall, req.deadline).await {
        Ok(body) => body,
        Err(WholeError::Body(BodyError::Stalled)) => {
            return failed(FailureClass::Stall, None, "body stalled")
        }
        Err(e) => return failed(FailureClass::Server, None, &e.to_string()),
    };
    let upstream = headers::returned(&response.head);
    response.finish();
    match at
        .adapter
        .whole_answer(at.api, at.model, content_type, body)
    {
        Ok((content_type, body)) => AttemptResult::Complete {
            content_type,
            body: at.secrets.scrub(body),
            ttfb: at.ttfb,
            native: at.native,
            upstream,
        },
        // Translation errors may quote the body.
        Err(e) => failed(
            FailureClass::Server,
            None,
            &at.secrets.scrub_str(e.to_string()),
        ),
    }
}

/// A non-2xx answer: classified from its (bounded, decoded) body and kept,
/// translated and scrubbed, in case it is what the client finally gets.
async fn error_answer(
    req: &Request<'_>,
    mut response: Response,
    coding: Result<Coding, DecodeError>,
    content_type: Vec<u8>,
    at: &Answering<'_>,
) -> AttemptResult {
    let status = response.status();
    let retry_after_raw = response.head.header("retry-after").map(<[u8]>::to_vec);
    let upstream = headers::returned(&response.head);
    let limit = MAX_ERROR_BODY.min(req.routing.table.config.limits.max_response_bytes);
    let identity = Coding::Identity;
    let read = whole::read(&mut response, identity, limit, at.stall, req.deadline).await;
    // An unreadable error body still has its status to classify by.
    let raw = read.map_or_else(
        |_| Vec::new(),
        |body| {
            response.finish();
            body
        },
    );
    let decoded = match coding {
        _ if raw.is_empty() => Ok(raw),
        Ok(coding) => crate::http::encoding::decode(coding, raw, limit),
        Err(e) => Err(e),
    };
    let class = at
        .adapter
        .classify_status(status, decoded.as_deref().unwrap_or(&[]));
    let retry_after = retry_after_raw
        .as_deref()
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let (content_type, body) = match decoded {
        Ok(body) => at.adapter.error_answer(status, content_type, body),
        Err(e) => (b"application/json".to_vec(), undecodable_error(status, &e)),
    };
    AttemptResult::Failed(Failed {
        failure: Failure {
            class,
            status: Some(status),
            retry_after,
        },
        answer: Some(Box::new(ProviderAnswer {
            status,
            content_type,
            body: at.secrets.scrub(body),
            retry_after: retry_after_raw,
            upstream,
        })),
        reason: format!("HTTP {status}"),
    })
}

/// The bytes of one upstream request: the target's adapter encodes its path,
/// headers and body; the HTTP head is written around them.
fn encode_request(
    req: &Request<'_>,
    outgoing: Outgoing<'_>,
    provider: &crate::config::Provider,
    prepared: &provider::PreparedProvider,
    target: &crate::config::Target,
    policy: &TargetPolicy,
) -> Result<Vec<u8>, provider::TranslateError> {
    let parts = provider::RequestParts {
        provider,
        prepared,
        api: outgoing.api,
        model: &target.model,
        body: outgoing.body,
        chat: outgoing.chat,
        query: &target.query,
        now: SystemTime::now(),
    };
    let outbound = prepared.adapter.encode(&parts)?;
    let mut request = bufpool::take(outbound.body.len() + 512);
    let client = &req.head.headers;
    let user_agent = policy.headers.user_agent(req.head.header("user-agent"));
    let traceparent = req.trace.map(|(span, _)| span.header());
    let forwarded = headers::with_traceparent(
        policy.headers.select(client),
        traceparent.as_deref().map(str::as_bytes),
        policy.headers.forwards("traceparent"),
    );
    let merged = headers::merge(
        &outbound.headers,
        &provider.headers,
        &target.headers,
        &forwarded,
        &user_agent,
    );
    let headers = request_headers(merged, req.request_id, outgoing.chat.stream);
    write_request_head(
        &mut request,
        "POST",
        &outbound.path,
        &prepared.host_header,
        &headers,
        outbound.body.len(),
    );
    request.extend_from_slice(&outbound.body);
    bufpool::give(outbound.body);
    Ok(request)
}

/// The headers of one upstream request: the kind's own (auth), the target's and
/// the forwarded client headers (`merged`, see `proxy::headers::merge`), then the
/// gateway's.
fn request_headers<'a>(
    mut headers: headers::HeaderList<'a>,
    request_id: &'a str,
    stream: bool,
) -> headers::HeaderList<'a> {
    headers.push(("content-type", b"application/json"));
    headers.push(("x-request-id", request_id.as_bytes()));
    // Without it any coding is acceptable (RFC 9110), and streams are not decoded.
    // An operator's own `accept-encoding` header wins (whole answers are decoded
    // either way; encoded streams fail over).
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("accept-encoding"))
    {
        headers.push(("accept-encoding", b"identity"));
    }
    if stream {
        headers.push(("accept", b"text/event-stream"));
    }
    headers
}

/// Whether a client may be shown `status` as a provider's answer: 2xx, 4xx, 5xx.
/// 1xx cannot be final (the exchange skips interim ones), a redirect points the
/// gateway somewhere it was not configured to go, and anything outside
/// 200..=599 is not HTTP.
pub(super) fn is_final_answer(status: u16) -> bool {
    matches!(status, 200..=299 | 400..=599)
}

/// The error body kept for a provider error whose body could not be decoded: the
/// status still counts, the bytes are never relayed as if they were JSON.
fn undecodable_error(status: u16, error: &DecodeError) -> Vec<u8> {
    let message =
        format!("provider answered HTTP {status} with a body the gateway cannot read: {error}");
    crate::http::ApiError::new(
        status,
        "upstream_error",
        "undecodable_upstream_body",
        message,
    )
    .body()
}

pub(super) fn failed(class: FailureClass, status: Option<u16>, reason: &str) -> AttemptResult {
    AttemptResult::Failed(Failed {
        failure: Failure {
            class,
            status,
            retry_after: None,
        },
        answer: None,
        reason: reason.to_string(),
    })
}

pub(super) fn exchange_failure(error: ExchangeError) -> AttemptResult {
    let class = match &error {
        // A full connection cap is the gateway's limit, not the provider's failure.
        ExchangeError::Connect(ConnectError::LimitReached) => FailureClass::Local,
        ExchangeError::Connect(_) => FailureClass::Connect,
        ExchangeError::FirstByteTimeout | ExchangeError::SendTimeout => {
            FailureClass::FirstByteTimeout
        }
        ExchangeError::ClosedBeforeResponse
        | ExchangeError::Send(_)
        | ExchangeError::Receive(_)
        | ExchangeError::Malformed(_) => FailureClass::Server,
    };
    failed(class, None, &error.to_string())
}

pub(super) fn hold_failed(adapter: &dyn provider::Adapter, failure: HoldFailure) -> AttemptResult {
    let class = failure
        .error_data
        .as_deref()
        .map_or(failure.class, |data| adapter.classify_stream_error(data));
    failed(class, None, &failure.reason)
}

/// The usage a whole answer reports, in either naming (see `ReportedUsage`):
/// the value of its last `"usage"` key, read without parsing the rest of the
/// answer (a whole answer's usage comes last, and the body is the provider's,
/// relayed as it is).
pub(super) fn usage_of(body: &[u8]) -> Option<Usage> {
    crate::wire::usage::scan_usage(body).map(Usage::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2xx_4xx_5xx_are_answers() {
        for status in [200, 204, 299, 400, 404, 429, 499, 500, 529, 599] {
            assert!(is_final_answer(status), "{status}");
        }
        for status in [
            0, 99, 100, 101, 199, 300, 301, 302, 304, 307, 308, 399, 600, 999,
        ] {
            assert!(!is_final_answer(status), "{status}");
        }
    }

    #[test]
    fn undecodable_errors_are_openai_shaped() {
        let body = undecodable_error(503, &DecodeError::Unsupported("br".into()));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "undecodable_upstream_body");
        assert!(v["error"]["message"].as_str().unwrap().contains("`br`"));
    }
}
