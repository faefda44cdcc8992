//! One proxied call (a chat completion or embeddings), end to end, in phases:
//! match the route, then the executor ([`executor`]) runs the chain — pick a target,
//! send one attempt ([`attempt`]), record it ([`record`]), and ask the plan
//! (`route::plan`) what comes next; a committed stream is relayed (and continued)
//! by [`relay`]; every answer the gateway writes itself comes from [`answer`].
//!
//! The pieces share three values with plain roles: the [`Request`] (what the
//! client asked, by when, routed with which generation — never changes), the
//! [`Reply`] (the client's socket and the response being written) and the
//! [`Trail`] (what this request has tried so far).

mod admission;
mod answer;
mod attempt;
mod executor;
mod hedge;
mod record;
mod relay;
mod trace;
mod whole;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::downstream::ClientStream;

use super::respond::{Dialect, Meta};
use crate::config::Route;
use crate::health::SharedBreaker;
use crate::http::request::RequestHead;
use crate::http::ApiError;
use crate::outcome::FailureClass;
use crate::request_id::RequestId;
use crate::route::table::TargetPolicy;
use crate::shard::state::Routing;
use crate::shard::Shard;
use crate::wire::ChatBody;

pub use crate::provider::Api;

/// Header a client may send to shorten the route's total deadline.
pub const TIMEOUT_HEADER: &str = "x-switchyard-timeout-ms";

/// A parsed client request, ready to be proxied.
pub struct Incoming<'a> {
    pub api: Api,
    pub head: &'a RequestHead,
    pub body: &'a [u8],
    pub request_id: RequestId,
    /// The caller's key (none on an open gateway).
    pub key: Option<Caller<'a>>,
    pub started: Instant,
    pub keep_alive: bool,
    /// The API shape the client speaks; the body above is always OpenAI's.
    pub dialect: Dialect,
    /// The client's own body when `body` translates it and some targets take the
    /// original as it is (a Responses request: see [`Native`]).
    pub native: Option<NativeBody<'a>>,
    /// What a Responses answer echoes of the client's request.
    pub echo: Option<Rc<crate::proxy::responses::Echo>>,
}

/// The key a request came with: its index in the config and its settings.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub index: usize,
    pub key: &'a crate::config::ClientKey,
}

/// A client body in its own API's shape, for the targets that serve that API.
#[derive(Clone, Copy)]
pub struct NativeBody<'a> {
    pub api: Api,
    pub body: &'a [u8],
    /// Set when it relies on state kept by the provider (e.g.
    /// `previous_response_id`), saying so: only a target serving `api` may take
    /// it, and only one target (never another on failure).
    pub stateful: Option<&'a str>,
    /// Why `body` could not be translated, when it could not (then only targets
    /// serving `api` may take the request, and `Incoming::body` is this one).
    pub untranslatable: Option<&'a str>,
}

/// What the client asked, by when, and the routing generation it is served with.
/// Fixed for the whole request.
struct Request<'a> {
    api: Api,
    request_id: &'a RequestId,
    /// The caller's key (its name for logs, its index for spend).
    caller: Option<Caller<'a>>,
    /// The client's request head (its headers are forwarded by policy).
    head: &'a RequestHead,
    shard: &'a Shard,
    routing: Rc<Routing>,
    /// The client's body (OpenAI's shape) and its parsed view.
    body: &'a [u8],
    chat: ChatBody,
    /// Whether an answer to `body` is already in the client's shape (nothing for
    /// the dialect to translate): OpenAI clients, and Anthropic's count_tokens.
    body_answers_natively: bool,
    /// The client's own body for targets that serve its API (see [`NativeBody`]).
    native: Option<Native<'a>>,
    /// The tokens the request is charged against token limits before its usage
    /// is known.
    estimate: u64,
    /// The usage every attempt reported so far (what the key is charged).
    used: std::cell::Cell<crate::wire::Usage>,
    /// When a stream reached its first content, after `started` (for the log line).
    ttft: std::cell::Cell<Option<Duration>>,
    /// The request's span (and its parent) when `telemetry:` is set and the
    /// trace sampled: providers get it as their `traceparent`.
    trace: Option<(crate::telemetry::TraceContext, [u8; 8])>,
    started: Instant,
    deadline: Instant,
}

/// A [`NativeBody`] with its parsed view.
struct Native<'a> {
    api: Api,
    body: &'a [u8],
    chat: ChatBody,
    stateful: Option<&'a str>,
    untranslatable: Option<&'a str>,
}

impl Request<'_> {
    fn route(&self, route: usize) -> &Route {
        &self.routing.table.config.routes[route]
    }

    fn policy(&self, pick: &Pick) -> &TargetPolicy {
        &self.routing.table.routes[pick.route].targets[pick.target]
    }

    fn label(&self, slot: usize) -> &str {
        &self.routing.table.slots[slot].label
    }

    /// [`Self::label`], shared.
    fn slot_label(&self, slot: usize) -> Arc<str> {
        Arc::clone(&self.routing.table.slots[slot].label)
    }

    /// Whether the provider of `pick` takes the client's own body as it is.
    fn takes_native(&self, pick: &Pick) -> bool {
        self.takes_native_at(pick.route, pick.target)
    }

    /// [`Self::takes_native`] for the route's `target`.
    fn takes_native_at(&self, route: usize, target: usize) -> bool {
        let Some(native) = &self.native else {
            return false;
        };
        let provider = self.routing.table.routes[route].targets[target].provider;
        self.routing
            .table
            .providers
            .get(provider)
            .is_some_and(|entry| entry.prepared.serves.serves(native.api))
    }

    /// The stateful feature the request relies on: it is pinned to one target that
    /// serves its API natively.
    fn pinned(&self) -> Option<&str> {
        self.native.as_ref().and_then(|native| native.stateful)
    }

    /// Why the route's `target` cannot take this request, when it cannot: the
    /// request has no translation (or relies on provider state) and the target
    /// does not serve the client's API itself.
    fn refused_by(&self, route: usize, target: usize) -> Option<&str> {
        let native = self.native.as_ref()?;
        if self.takes_native_at(route, target) {
            return None;
        }
        native.untranslatable.or(native.stateful)
    }

    /// The body an attempt on `pick` sends when it is not a continuation: the
    /// client's own where the target serves its API, else the translation.
    fn original(&self, pick: &Pick) -> Outgoing<'_> {
        match &self.native {
            Some(native) if self.takes_native(pick) => Outgoing {
                api: native.api,
                body: native.body,
                chat: &native.chat,
                native: true,
            },
            _ => Outgoing {
                api: self.api,
                body: self.body,
                chat: &self.chat,
                native: self.body_answers_natively,
            },
        }
    }
}

/// The body one attempt sends (the client's, its translation, or a
/// continuation's), the API it calls, and whether the answer is already in the
/// client's shape.
#[derive(Clone, Copy)]
struct Outgoing<'a> {
    api: Api,
    body: &'a [u8],
    chat: &'a ChatBody,
    native: bool,
}

/// The client's side: its socket, the reused output buffer, and the headers and
/// shape of the response being written.
struct Reply<'c> {
    client: &'c mut ClientStream,
    out: &'c mut Vec<u8>,
    meta: Meta,
}

/// One upstream attempt, as the client's error body lists it.
#[derive(Debug, Clone)]
struct AttemptLog {
    target: String,
    class: FailureClass,
    status: Option<u16>,
    elapsed: Duration,
    detail: String,
}

/// What this request has tried: every attempt, the provider answer worth
/// returning if nothing better comes, and when a refused target would next admit.
#[derive(Default)]
struct Trail {
    attempts: Vec<AttemptLog>,
    kept: Option<(attempt::ProviderAnswer, Arc<str>)>,
    refused_until: Option<Instant>,
    /// The (route, target) a hedge was sent to: not tried again if both failed.
    hedged: Option<(usize, usize)>,
    /// The hedge won: what was served came from `hedged`.
    hedge_served: bool,
}

/// One target chosen from the chain and admitted by its breaker.
struct Pick {
    route: usize,
    /// Index into the route's targets.
    target: usize,
    slot: usize,
    /// Whether the chain has another target after this one.
    others: bool,
    /// A later target of the chain admits now: only then may a stream slow to its
    /// first content be cut (`timeouts.first_token`); the last one left never is.
    fallback_ready: bool,
    /// The breaker's half-open probe token, when this attempt is the probe.
    probe: Option<ProbeToken>,
    /// What the attempt is charged against the target's and its provider's
    /// quotas (corrected by its usage when recorded).
    quota: [Option<crate::limits::gate::Charge>; 2],
}

/// The gateway's one half-open probe token for a target, held by this request. A
/// recorded outcome hands it back to the breaker ([`ProbeToken::settle`]); dropped
/// unused (client gone, untranslatable, any early return) it is given back, so a
/// probe that says nothing never blocks the target.
struct ProbeToken {
    breaker: Option<Arc<SharedBreaker>>,
}

impl ProbeToken {
    /// The outcome about to be recorded gives the token back to the breaker.
    fn settle(mut self) {
        self.breaker = None;
    }
}

impl Drop for ProbeToken {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take() {
            breaker.release_probe();
        }
    }
}

/// Serves one chat completion on `client`. An `Err` means the client is gone.
pub async fn handle(
    shard: &Rc<Shard>,
    req: &Incoming<'_>,
    client: &mut ClientStream,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let meta = Meta {
        request_id: req.request_id,
        keep_alive: req.keep_alive,
        dialect: req.dialect,
        echo: req.echo.clone(),
        started: Some(req.started),
        ..Meta::default()
    };
    let mut reply = Reply { client, out, meta };
    let (chat, native) = match parse_bodies(req) {
        Ok(parsed) => parsed,
        Err(e) => return reject(shard, &mut reply, &ApiError::bad_request(e.to_string())).await,
    };
    let routing = shard.routing();
    let route = match route_of(req, &routing.table, &chat.model) {
        Ok(route) => route,
        Err(error) => return reject(shard, &mut reply, &error).await,
    };
    let estimate = chat.token_estimate(req.body.len());
    let admitted = match admission::admit_key(&routing, req.key, estimate) {
        Ok(admitted) => admitted,
        Err(limited) => return refuse(shard, &routing, req, &limited, &mut reply).await,
    };
    if let Some(standing) = admission::standing(&routing, req.key) {
        // Room for the six headers of a key with both limits.
        reply.meta.gateway_headers = crate::http::Fields::with_capacity(256, 6);
        admission::push_rate_headers(&mut reply.meta.gateway_headers, &standing, req.dialect);
    }
    let request = Request {
        api: req.api,
        request_id: &req.request_id,
        caller: req.key,
        head: req.head,
        shard,
        routing: routing.clone(),
        body: req.body,
        chat,
        body_answers_natively: req.dialect == Dialect::OpenAi || req.api == Api::CountTokens,
        native,
        estimate,
        used: Default::default(),
        ttft: Default::default(),
        trace: trace::start(&routing.table.config, req.head),
        started: req.started,
        deadline: deadline_for(req, &routing.table.config.routes[route]),
    };
    let served = executor::run(&request, route, &mut reply).await;
    if let Some(admitted) = admitted {
        admitted.settle(&routing, request.used.get());
    }
    served
}

/// Answers a request its dialect's endpoint could not read with a 400 in that
/// dialect's shape (before any routing). An `Err` means the client is gone.
pub async fn refuse_unreadable(
    shard: &Shard,
    req: &Incoming<'_>,
    dialect: Dialect,
    message: String,
    client: &mut ClientStream,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let meta = Meta {
        request_id: req.request_id,
        keep_alive: req.keep_alive,
        dialect,
        ..Meta::default()
    };
    let mut reply = Reply { client, out, meta };
    reject(shard, &mut reply, &ApiError::bad_request(message)).await
}

/// The first route matching the request that can serve it: a 404 when none
/// matches (the model does not exist for the caller), a 400 when the match has
/// no target for what the request needs (see [`unservable`]).
fn route_of(
    req: &Incoming<'_>,
    table: &crate::route::table::Table,
    model: &str,
) -> Result<usize, ApiError> {
    let key = req.key.map(|caller| caller.key);
    let header = |name: &str| req.head.header(name);
    let route = table
        .match_route(model, key, header)
        .ok_or_else(|| model_not_found(model, &table.models_for(key)))?;
    match unservable(req, table, route) {
        Some(error) => Err(error),
        None => Ok(route),
    }
}

/// A key's request refused by its limits: 429 with `Retry-After` and its standing.
async fn refuse(
    shard: &Shard,
    routing: &Routing,
    req: &Incoming<'_>,
    limited: &admission::Limited,
    reply: &mut Reply<'_>,
) -> std::io::Result<()> {
    let name = req.key.map_or("", |caller| caller.key.name.as_str());
    let standing = admission::standing(routing, req.key);
    let (error, headers) = admission::refusal_answer(limited, name, standing, req.dialect);
    let extra: Vec<(&str, &[u8])> = headers.iter().collect();
    shard.record_bad_request(&error);
    reply.meta.write_error(reply.out, &error, &extra);
    reply.flush().await
}

/// The body's parsed view, and the client's own body's when there is one. Only
/// the APIs that stream may ask to (embeddings never do, whatever the body says).
fn parse_bodies<'a>(
    req: &Incoming<'a>,
) -> Result<(ChatBody, Option<Native<'a>>), crate::wire::body::BodyError> {
    let mut chat = ChatBody::parse(req.body)?;
    chat.stream &= req.api.streams();
    let Some(native) = req.native else {
        return Ok((chat, None));
    };
    let mut native_chat = ChatBody::parse(native.body)?;
    native_chat.stream &= native.api.streams();
    let native = Native {
        api: native.api,
        body: native.body,
        chat: native_chat,
        stateful: native.stateful,
        untranslatable: native.untranslatable,
    };
    Ok((chat, Some(native)))
}

/// A request only targets serving its API natively can take, on a route with no
/// such target: legacy completions and token counting (nothing translates
/// them), and a stateful request (translated targets keep no state, so the
/// answer would silently ignore it). Refused as the client's mistake.
fn unservable(
    req: &Incoming<'_>,
    table: &crate::route::table::Table,
    route: usize,
) -> Option<ApiError> {
    let native = req.native;
    let api = match (native, req.api) {
        (Some(n), _) if n.stateful.is_some() || n.untranslatable.is_some() => n.api,
        (_, api @ (Api::Completions | Api::CountTokens)) => api,
        _ => return None,
    };
    let serves = table.routes[route].targets.iter().any(|target| {
        table
            .providers
            .get(target.provider)
            .is_some_and(|entry| entry.prepared.serves.serves(api))
    });
    if serves {
        return None;
    }
    let route_name = &table.config.routes[route].name;
    let api_name = api.as_str();
    let message = match (native.and_then(|n| n.stateful), native.and_then(|n| n.untranslatable), api) {
        (Some(stateful), _, _) => format!(
            "{stateful} (route `{route_name}` has no target serving {api_name} natively: set `responses: true` on a provider that does)"
        ),
        (None, Some(why), _) => format!(
            "{why} (and no target of route `{route_name}` serves {api_name} natively)"
        ),
        (None, None, Api::CountTokens) => format!(
            "route `{route_name}` has no Anthropic-kind target: {api_name} is served only by Anthropic"
        ),
        (None, None, _) => format!(
            "route `{route_name}` has no target that serves {api_name} (openai, openai-compatible and azure providers do; it is not translated for other kinds)"
        ),
    };
    Some(ApiError::bad_request(message))
}

fn model_not_found(model: &str, known: &[&str]) -> ApiError {
    ApiError::new(
        404,
        "invalid_request_error",
        "model_not_found",
        format!(
            "The model `{model}` does not exist or no route matches it. Known models: {}",
            known.join(", ")
        ),
    )
}

fn deadline_for(req: &Incoming<'_>, route: &Route) -> Instant {
    let client_limit = req
        .head
        .header(TIMEOUT_HEADER)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    let total = client_limit.map_or(route.timeouts.total, |c| c.min(route.timeouts.total));
    req.started + total
}

async fn reject(shard: &Shard, reply: &mut Reply<'_>, error: &ApiError) -> std::io::Result<()> {
    shard.record_bad_request(error);
    reply.meta.write_error(reply.out, error, &[]);
    reply.flush().await
}

fn client_gone() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the client hung up while its request was in flight",
    )
}
