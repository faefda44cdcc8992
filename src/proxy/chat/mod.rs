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

mod answer;
mod attempt;
mod executor;
mod hedge;
mod record;
mod relay;
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
    pub request_id: String,
    pub key_name: Option<&'a str>,
    pub started: Instant,
    pub keep_alive: bool,
    /// The API shape the client speaks; the body above is always OpenAI's.
    pub dialect: Dialect,
}

/// What the client asked, by when, and the routing generation it is served with.
/// Fixed for the whole request.
struct Request<'a> {
    api: Api,
    request_id: &'a str,
    /// The client's request head (its headers are forwarded by policy).
    head: &'a RequestHead,
    shard: &'a Shard,
    routing: Rc<Routing>,
    /// The client's body (OpenAI's shape) and its parsed view.
    body: &'a [u8],
    chat: ChatBody,
    started: Instant,
    deadline: Instant,
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

    /// The body an attempt sends when it is not a continuation.
    fn original(&self) -> Outgoing<'_> {
        Outgoing {
            body: self.body,
            chat: &self.chat,
        }
    }
}

/// The OpenAI-shaped body one attempt sends: the client's, or a continuation's.
#[derive(Clone, Copy)]
struct Outgoing<'a> {
    body: &'a [u8],
    chat: &'a ChatBody,
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
    kept: Option<(attempt::ProviderAnswer, String)>,
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
        request_id: req.request_id.clone(),
        keep_alive: req.keep_alive,
        dialect: req.dialect,
        started: Some(req.started),
        ..Meta::default()
    };
    let mut reply = Reply { client, out, meta };
    let chat = match ChatBody::parse(req.body) {
        Ok(mut chat) => {
            // Embeddings never stream, whatever the body says.
            chat.stream &= req.api == Api::ChatCompletions;
            chat
        }
        Err(e) => return reject(shard, &mut reply, &ApiError::bad_request(e.to_string())).await,
    };
    let routing = shard.routing();
    let header = |name: &str| req.head.header(name);
    let table = &routing.table;
    let Some(route) = table.match_route(&chat.model, req.key_name, header) else {
        let error = model_not_found(&chat.model, &table.models_for(req.key_name));
        return reject(shard, &mut reply, &error).await;
    };
    let deadline = deadline_for(req, &table.config.routes[route]);
    let request = Request {
        api: req.api,
        request_id: &req.request_id,
        head: req.head,
        shard,
        routing: routing.clone(),
        body: req.body,
        chat,
        started: req.started,
        deadline,
    };
    executor::run(&request, route, &mut reply).await
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
    shard.record_bad_request(error.status);
    reply.meta.write_error(reply.out, error, &[]);
    reply.flush().await
}

fn client_gone() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the client hung up while its request was in flight",
    )
}
