//! One proxied call (a chat completion or embeddings), end to end: match the route, then the attempt loop —
//! pick a target, send, classify, and retry, fall back, re-route or answer.

mod answer;
mod attempt;
mod relay;
mod whole;

use attempt::{usage_of, AttemptResult, ProviderAnswer};
use whole::WholeError;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::downstream::ClientStream;

use super::respond::{Dialect, Meta};
use super::stream::{self, HoldFailure, RelayPolicy, StreamEnd, StreamStats};
use crate::config::Route;
use crate::health::{Admission, SharedBreaker, Transition};
use crate::http::request::RequestHead;
use crate::http::response::write_request_head;
use crate::http::ApiError;
use crate::outcome::{Failure, FailureClass, Outcome};
use crate::provider;
use crate::route::retry::{decide, parse_retry_after, Next};
use crate::route::{select, Table};
use crate::shard::Shard;
use crate::upstream::{exchange, BodyError, ExchangeError};
use crate::wire::{ChatBody, Usage};

/// Header a client may send to shorten the route's total deadline.
pub const TIMEOUT_HEADER: &str = "x-switchyard-timeout-ms";
/// Largest error body kept for classification and for the client.
const MAX_ERROR_BODY: usize = 256 * 1024;
/// Re-routes on context-length overflow allowed per request.
const MAX_REROUTES: usize = 2;

pub use crate::provider::Api;

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

/// One upstream attempt, as the client's error body lists it.
#[derive(Debug, Clone)]
struct AttemptLog {
    target: String,
    class: FailureClass,
    status: Option<u16>,
    elapsed: Duration,
    detail: String,
}

/// How one route's chain ended.
enum RouteEnd {
    /// The client has its answer (or is gone).
    Answered { status: u16 },
    /// Send the request to another route (context-length overflow).
    Reroute(usize),
    /// Return this provider answer to the client.
    Provider {
        answer: ProviderAnswer,
        target: String,
    },
    /// Nothing left to try.
    Exhausted { rejected_until: Option<Instant> },
}

struct Call<'a> {
    api: Api,
    shard: &'a Shard,
    table: Arc<Table>,
    body: &'a [u8],
    chat: ChatBody,
    meta: Meta,
    deadline: Instant,
    started: Instant,
    attempts: Vec<AttemptLog>,
    request_buf: Vec<u8>,
    /// While continuing a broken stream: the body sent instead of the client's.
    continuation: Option<(Vec<u8>, ChatBody)>,
    /// The half-open probe token this request holds, if any (given back on drop).
    probe: Option<ProbeToken>,
}

/// The gateway's one half-open probe token for a slot, held by this request. A
/// recorded outcome consumes it (the breaker takes it back); dropped unused (client
/// gone, untranslatable, any early return) it is given back, so a probe that says
/// nothing never blocks the target.
struct ProbeToken {
    slot: usize,
    breaker: Option<Arc<SharedBreaker>>,
}

impl ProbeToken {
    /// Marks the token as handed back through an outcome.
    fn consume(mut self) {
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
        ..Meta::default()
    };
    let chat = match ChatBody::parse(req.body) {
        Ok(mut chat) => {
            // Embeddings never stream, whatever the body says.
            chat.stream &= req.api == Api::ChatCompletions;
            chat
        }
        Err(e) => {
            return reject(
                shard,
                client,
                out,
                &meta,
                &ApiError::bad_request(e.to_string()),
            )
            .await
        }
    };
    let table = shard.table();
    let header = |name: &str| req.head.header(name);
    let Some(route) = table.match_route(&chat.model, req.key_name, header) else {
        let known = table.models_for(req.key_name).join(", ");
        let error = ApiError::new(
            404,
            "invalid_request_error",
            "model_not_found",
            format!(
                "The model `{}` does not exist or no route matches it. Known models: {known}",
                chat.model
            ),
        );
        return reject(shard, client, out, &meta, &error).await;
    };
    let deadline = deadline_for(req, &table.config.routes[route]);
    let mut call = Call {
        api: req.api,
        shard,
        table,
        body: req.body,
        chat,
        meta,
        deadline,
        started: req.started,
        attempts: Vec::new(),
        request_buf: Vec::with_capacity(req.body.len() + 512),
        continuation: None,
        probe: None,
    };
    call.run(route, client, out).await
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

async fn reject(
    shard: &Shard,
    client: &mut ClientStream,
    out: &mut Vec<u8>,
    meta: &Meta,
    error: &ApiError,
) -> std::io::Result<()> {
    shard.metrics.borrow_mut().record_bad_request(error.status);
    meta.write_error(out, error, &[]);
    write_out(client, out).await
}

fn client_gone() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the client hung up while its request was in flight",
    )
}

async fn write_out(client: &mut ClientStream, out: &mut Vec<u8>) -> std::io::Result<()> {
    let (res, buf) = client.write_all(std::mem::take(out)).await;
    *out = buf;
    out.clear();
    res
}

impl Call<'_> {
    async fn run(
        &mut self,
        first_route: usize,
        client: &mut ClientStream,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let mut route = first_route;
        let mut reroutes = 0;
        let end = loop {
            match self.run_route(route, client, out).await? {
                RouteEnd::Reroute(next) if reroutes < MAX_REROUTES => {
                    reroutes += 1;
                    self.meta.fallback = true;
                    route = next;
                }
                RouteEnd::Reroute(_) => {
                    break RouteEnd::Exhausted {
                        rejected_until: None,
                    }
                }
                other => break other,
            }
        };
        let status = match end {
            RouteEnd::Answered { status } => status,
            RouteEnd::Provider { answer, target } => {
                self.answer_provider(answer, target, client, out).await?
            }
            RouteEnd::Exhausted { rejected_until } => {
                self.answer_exhausted(route, rejected_until, client, out)
                    .await?
            }
            RouteEnd::Reroute(_) => 502,
        };
        self.finish_metrics(route, status);
        Ok(())
    }

    fn finish_metrics(&self, route: usize, status: u16) {
        let elapsed = self.started.elapsed();
        let mut metrics = self.shard.metrics.borrow_mut();
        if let Some(counters) = metrics.route(&self.table, route) {
            *counters.responses.entry(status).or_default() += 1;
            counters.latency.observe(elapsed);
        }
        let config = &self.table.config;
        if config.log.request_sample > 0.0 && fastrand::f64() < config.log.request_sample {
            let route_name = config.routes.get(route).map_or("", |r| r.name.as_str());
            crate::event!(
                crate::log::Level::Info,
                "request",
                id = self.meta.request_id,
                route = route_name,
                target = self.meta.target.as_deref().unwrap_or("-"),
                attempts = self.meta.attempts,
                status = status,
                latency_ms = format!("{:.3}", elapsed.as_secs_f64() * 1e3),
            );
        }
    }

    async fn run_route(
        &mut self,
        route_index: usize,
        client: &mut ClientStream,
        out: &mut Vec<u8>,
    ) -> std::io::Result<RouteEnd> {
        let table = self.table.clone();
        let route = &table.config.routes[route_index];
        let slots = &table.route_slots[route_index];
        let order = self.order(route_index, route, slots);
        let mut rejected_until: Option<Instant> = None;
        let mut last_answer: Option<(ProviderAnswer, String)> = None;
        for (position, &target_index) in order.iter().enumerate() {
            let slot = slots[target_index];
            let now = Instant::now();
            if now >= self.deadline {
                break;
            }
            let probe = match self.admit(slot, now) {
                Admission::Reject { until } => {
                    rejected_until = Some(rejected_until.map_or(until, |r| r.min(until)));
                    continue;
                }
                Admission::Probe => true,
                Admission::Allow => false,
            };
            if position > 0 || self.not_first_choice(route, target_index) {
                self.meta.fallback = true;
            }
            let other_targets = position + 1 < order.len();
            let step = self
                .try_target(
                    route_index,
                    route,
                    Pick {
                        target: target_index,
                        slot,
                        others: other_targets,
                        probe,
                    },
                    client,
                    out,
                )
                .await?;
            match step {
                TargetEnd::Answered { status } => return Ok(RouteEnd::Answered { status }),
                TargetEnd::Reroute => {
                    let Some(next) = route
                        .fallback
                        .on_context_length
                        .as_deref()
                        .and_then(|name| table.config.routes.iter().position(|r| r.name == name))
                    else {
                        continue;
                    };
                    return Ok(RouteEnd::Reroute(next));
                }
                TargetEnd::Return(answer) => {
                    let target = table.slots[slot].label.clone();
                    return Ok(RouteEnd::Provider { answer, target });
                }
                TargetEnd::Stop => {
                    return Ok(RouteEnd::Exhausted {
                        rejected_until: None,
                    })
                }
                TargetEnd::StreamBroken { stats, reason } => {
                    let rest = &order[position + 1..];
                    self.continue_stream(route_index, rest, stats, &reason, client, out)
                        .await?;
                    return Ok(RouteEnd::Answered { status: 200 });
                }
                TargetEnd::Fallback(answer) => {
                    if let Some(answer) = answer {
                        last_answer = Some((answer, table.slots[slot].label.clone()));
                    }
                    if let Some(counters) =
                        self.shard.metrics.borrow_mut().route(&table, route_index)
                    {
                        counters.fallbacks += 1;
                    }
                }
            }
        }
        // Nothing served. A chain that only saw rate limits answers with the last
        // provider's own 429 so clients back off as they were asked to.
        if let Some((answer, target)) = last_answer {
            if answer.status == 429
                && self
                    .attempts
                    .iter()
                    .all(|a| a.class == FailureClass::Overloaded)
            {
                return Ok(RouteEnd::Provider { answer, target });
            }
        }
        Ok(RouteEnd::Exhausted { rejected_until })
    }

    /// Asks the slot's breaker; a probe's token is kept on the call until its
    /// outcome is recorded (or dropped with it).
    fn admit(&mut self, slot: usize, now: Instant) -> Admission {
        let verdict = self
            .shard
            .with_health(&self.table, slot, |h| (h.admit(now), h.breaker().clone()));
        match verdict {
            Some((Admission::Probe, breaker)) => {
                self.probe = Some(ProbeToken {
                    slot,
                    breaker: Some(breaker),
                });
                Admission::Probe
            }
            Some((admission, _)) => admission,
            None => Admission::Allow,
        }
    }

    /// Whether this request holds `slot`'s probe token; consumes it (the outcome
    /// about to be recorded hands it back to the breaker).
    fn take_probe(&mut self, slot: usize) -> bool {
        match self.probe.take() {
            Some(token) if token.slot == slot => {
                token.consume();
                true
            }
            other => {
                self.probe = other;
                false
            }
        }
    }

    /// Under `priority`, a target outside the best tier is a fallback even when the
    /// better ones were skipped (breaker open) rather than tried.
    fn not_first_choice(&self, route: &Route, target_index: usize) -> bool {
        let best = route.targets.iter().map(|t| t.priority).min().unwrap_or(0);
        route.strategy == crate::config::Strategy::Priority
            && route
                .targets
                .get(target_index)
                .is_some_and(|t| t.priority > best)
    }

    fn order(&self, route_index: usize, route: &Route, slots: &[usize]) -> Vec<usize> {
        let now = Instant::now();
        let candidates = self
            .shard
            .with_all_health(|health| select::candidates(slots, health, now));
        let mut rng = fastrand::Rng::new();
        self.shard
            .with_balancer(route_index, |balancer| {
                select::order(route, &candidates, balancer, &mut rng)
            })
            .unwrap_or_else(|| (0..slots.len()).collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn try_target(
        &mut self,
        route_index: usize,
        route: &Route,
        pick: Pick,
        client: &mut ClientStream,
        out: &mut Vec<u8>,
    ) -> std::io::Result<TargetEnd> {
        let Pick {
            target: target_index,
            slot,
            others: other_targets,
            probe,
        } = pick;
        let table = self.table.clone();
        let target = &route.targets[target_index];
        let retry = target.retry.as_ref().unwrap_or(&route.retry);
        let label = &table.slots[slot].label;
        let mut tries = 0;
        loop {
            tries += 1;
            let started = Instant::now();
            self.shard.with_health(&table, slot, |h| {
                h.start();
                if tries == 1 {
                    h.budget().deposit(started);
                }
            });
            self.meta.attempts += 1;
            let Some(result) = self
                .attempt_for_client(client, route, target_index, slot, started)
                .await
            else {
                return Err(client_gone());
            };
            match result {
                AttemptResult::Untranslatable(reason) => {
                    self.skip_untranslatable(slot, label, &reason);
                    return Ok(TargetEnd::Fallback(None));
                }
                AttemptResult::Complete {
                    content_type,
                    body,
                    ttfb,
                } => {
                    self.record(slot, Outcome::Success, Some(ttfb), usage_of(&body));
                    self.meta.target = Some(label.clone());
                    let status = self
                        .send_whole(client, out, (200, content_type, body), &[])
                        .await?;
                    return Ok(TargetEnd::Answered { status });
                }
                AttemptResult::Stream { held, ttfb } => {
                    self.meta.target = Some(label.clone());
                    return self
                        .relay(
                            route_index,
                            route,
                            (target_index, slot),
                            *held,
                            ttfb,
                            None,
                            client,
                            out,
                        )
                        .await;
                }
                AttemptResult::Failed {
                    failure,
                    answer,
                    reason,
                } => {
                    self.record(slot, Outcome::Failure(failure.class), None, None);
                    self.log_attempt(label, &failure, started, &reason);
                    self.sideline_if_asked(slot, &failure, retry);
                    // A probe is a single attempt: its failure re-opened the breaker.
                    let tries = if probe { u32::MAX } else { tries };
                    match decide(&failure, tries, retry, &route.fallback, other_targets) {
                        Next::Retry(wait) if self.may_retry(slot, wait) => {
                            if let Some(counters) =
                                self.shard.metrics.borrow_mut().route(&table, route_index)
                            {
                                counters.retries += 1;
                            }
                            monoio::time::sleep(wait).await;
                        }
                        // Out of budget or time: act as after the last try.
                        Next::Retry(_) => {
                            return Ok(after_last_try(
                                &failure,
                                answer,
                                retry,
                                route,
                                other_targets,
                            ))
                        }
                        Next::Fallback => return Ok(TargetEnd::Fallback(answer)),
                        Next::Reroute => return Ok(TargetEnd::Reroute),
                        Next::Return => {
                            return Ok(answer.map_or(TargetEnd::Stop, TargetEnd::Return))
                        }
                    }
                }
            }
        }
    }

    /// A 429/529 with `Retry-After` sidelines the target for that long (capped), on
    /// every shard; logged once, by the shard that started the sideline.
    fn sideline_if_asked(
        &self,
        slot: usize,
        failure: &Failure,
        retry: &crate::config::RetryPolicy,
    ) {
        let (FailureClass::Overloaded, Some(pause)) = (failure.class, failure.retry_after) else {
            return;
        };
        let now = Instant::now();
        let until = now + pause.min(retry.max_retry_after);
        let transition = self
            .shard
            .with_health(&self.table, slot, |h| h.sideline(now, until))
            .flatten();
        self.note_transition(slot, transition);
    }

    /// A target that cannot express the request was never sent anything: no
    /// health outcome, not counted as an attempt, but listed for the client.
    fn skip_untranslatable(&mut self, slot: usize, label: &str, reason: &str) {
        // A half-open probe that was never sent gives its token back, or the
        // breaker would wait for its outcome forever.
        if self.take_probe(slot) {
            self.shard
                .with_health(&self.table, slot, |h| h.breaker().release_probe());
        }
        self.shard.with_health(&self.table, slot, |h| h.finish());
        self.meta.attempts = self.meta.attempts.saturating_sub(1);
        self.attempts.push(AttemptLog {
            target: label.to_string(),
            class: FailureClass::Client,
            status: None,
            elapsed: Duration::ZERO,
            detail: reason.to_string(),
        });
    }

    /// A retry must fit the deadline (with the target's usual latency) and the
    /// budget, and the breaker must still admit the target: a trip (made by this
    /// failure or on another shard) ends the retries at once.
    fn may_retry(&self, slot: usize, wait: Duration) -> bool {
        let now = Instant::now();
        self.shard
            .with_health(&self.table, slot, |h| {
                let typical = Duration::from_micros(h.ewma_us(now) as u64);
                // Judged when the retry would go: a sideline for this very
                // Retry-After ends by then, an open breaker does not.
                h.available(now + wait)
                    && now + wait + typical < self.deadline
                    && h.budget().try_withdraw(now)
            })
            .unwrap_or(false)
    }

    fn record(
        &mut self,
        slot: usize,
        outcome: Outcome,
        ttfb: Option<Duration>,
        usage: Option<Usage>,
    ) {
        let now = Instant::now();
        let tokens = usage.map_or(0, |u| u.prompt_tokens + u.completion_tokens);
        let probe = self.take_probe(slot);
        let transition = self
            .shard
            .with_health(&self.table, slot, |h| {
                h.finish();
                h.record(
                    now,
                    outcome,
                    ttfb,
                    tokens.min(u64::from(u32::MAX)) as u32,
                    probe,
                )
            })
            .flatten();
        {
            let mut metrics = self.shard.metrics.borrow_mut();
            metrics.record_attempt(&self.table, slot, outcome);
            if let (Some(counters), Some(u)) = (metrics.target(&self.table, slot), usage) {
                counters.tokens_in += u.prompt_tokens;
                counters.tokens_out += u.completion_tokens;
            }
        }
        self.note_transition(slot, transition);
    }

    /// Counts and logs a breaker transition. The breaker is shared, so only the
    /// shard whose outcome made the change gets it: one line per transition.
    fn note_transition(&self, slot: usize, transition: Option<Transition>) {
        let Some(t) = transition else {
            return;
        };
        if let Some(counters) = self.shard.metrics.borrow_mut().target(&self.table, slot) {
            *counters
                .transitions
                .entry((
                    t.from.as_str(),
                    t.to.as_str(),
                    t.reason.map_or("recovered", |r| r.as_str()),
                ))
                .or_default() += 1;
        }
        crate::event!(
            crate::log::Level::Warn,
            "breaker transition",
            target = self.table.slots[slot].label,
            shard = self.shard.id,
            change = t,
            reason = t.reason.map_or("recovered", |r| r.as_str()),
            lasts_ms = t.lasts.map_or(0, |d| d.as_millis() as u64)
        );
    }

    fn log_attempt(&mut self, label: &str, failure: &Failure, started: Instant, reason: &str) {
        self.attempts.push(AttemptLog {
            target: label.to_string(),
            class: failure.class,
            status: failure.status,
            elapsed: started.elapsed(),
            detail: reason.to_string(),
        });
    }
}

/// One target chosen from the chain: its index in the route, its health slot,
/// whether others follow it, and whether the breaker let it through as a probe.
#[derive(Debug, Clone, Copy)]
struct Pick {
    target: usize,
    slot: usize,
    others: bool,
    probe: bool,
}

/// How trying one target ended.
enum TargetEnd {
    Answered {
        status: u16,
    },
    Reroute,
    /// Give the client this provider answer.
    Return(ProviderAnswer),
    /// Stop the chain without a provider answer (the client gets the attempt list).
    Stop,
    /// Next target; keep this answer in case nothing better comes.
    Fallback(Option<ProviderAnswer>),
    /// A committed stream broke and the route continues streams on other targets.
    StreamBroken {
        stats: StreamStats,
        reason: String,
    },
}

fn after_last_try(
    failure: &Failure,
    answer: Option<ProviderAnswer>,
    retry: &crate::config::RetryPolicy,
    route: &Route,
    other_targets: bool,
) -> TargetEnd {
    // The target's own retry policy, as for every earlier try on it.
    match decide(failure, u32::MAX, retry, &route.fallback, other_targets) {
        Next::Fallback | Next::Retry(_) => TargetEnd::Fallback(answer),
        Next::Reroute => TargetEnd::Reroute,
        Next::Return => answer.map_or(TargetEnd::Stop, TargetEnd::Return),
    }
}
