//! Recording what an attempt did: the target's health (and its breaker, through
//! the probe token), the shard's counters, the retry budget, and the log lines.
//! Nothing here decides what happens next.

use super::attempt::Failed;
use super::*;
use crate::health::Transition;
use crate::outcome::Outcome;
use crate::wire::Usage;

/// An attempt on `pick` is about to be sent; the first on a target deposits in its
/// (route, target) retry budget.
pub(super) fn started(req: &Request<'_>, pick: &Pick, first: bool) {
    let routing = &req.routing;
    routing.targets[pick.slot].health.borrow_mut().start();
    if first {
        let budget = &routing.routes[pick.route].budgets[pick.target];
        budget.borrow_mut().deposit(Instant::now());
    }
}

/// The plan chose a retry: it takes one from the budget and is counted.
pub(super) fn retry(req: &Request<'_>, pick: &Pick, now: Instant) {
    let route = &req.routing.routes[pick.route];
    route.budgets[pick.target].borrow_mut().try_withdraw(now);
    route.counters.borrow_mut().retries += 1;
}

/// An attempt that ended before anything was sent upstream (the client left): it
/// says nothing about the target, and a probe's token goes back.
pub(super) fn abandoned(req: &Request<'_>, pick: &mut Pick) {
    req.routing.targets[pick.slot].health.borrow_mut().finish();
    pick.probe = None;
}

/// One attempt's outcome: health (handing a probe's token back to the breaker),
/// counters and tokens.
pub(super) fn outcome(
    req: &Request<'_>,
    pick: &mut Pick,
    outcome: Outcome,
    ttfb: Option<Duration>,
    usage: Option<Usage>,
) {
    let now = Instant::now();
    let tokens = usage.map_or(0, |u| u.prompt_tokens + u.completion_tokens);
    settle_quota(req, pick, tokens);
    if let Some(u) = usage {
        charge_spend(req, pick, u);
    }
    let probe = pick.probe.take().map(ProbeToken::settle).is_some();
    let cell = &req.routing.targets[pick.slot];
    let transition = {
        let mut health = cell.health.borrow_mut();
        health.finish();
        let tokens = tokens.min(u64::from(u32::MAX)) as u32;
        health.record(now, outcome, ttfb, tokens, probe)
    };
    {
        let mut counters = cell.counters.borrow_mut();
        counters.record(outcome);
        if let Some(u) = usage {
            counters.tokens_in += u.prompt_tokens;
            counters.tokens_out += u.completion_tokens;
        }
    }
    self::transition(req, pick.slot, transition);
}

/// A stream reached its first content `ttft` after its attempt was sent: a sample
/// of the target's time to first token on this shard (what `first_token: auto`
/// learns from).
pub(super) fn ttft(req: &Request<'_>, slot: usize, ttft: Duration) {
    req.routing.targets[slot]
        .health
        .borrow_mut()
        .observe_ttft(Instant::now(), ttft);
}

/// A failed attempt: its outcome, and its line in the client's attempt list.
pub(super) fn failed(
    req: &Request<'_>,
    pick: &mut Pick,
    failed: &Failed,
    started: Instant,
    trail: &mut Trail,
) {
    outcome(
        req,
        pick,
        Outcome::Failure(failed.failure.class),
        None,
        None,
    );
    trail.attempts.push(AttemptLog {
        target: req.label(pick.slot).to_string(),
        class: failed.failure.class,
        status: failed.failure.status,
        elapsed: started.elapsed(),
        detail: failed.reason.clone(),
    });
}

/// Charges the caller's key what the attempt's usage costs on its target (what
/// the provider bills: every attempt that reported usage, served or not), and
/// counts its tokens in the request's total (what the key's tpm is settled by).
fn charge_spend(req: &Request<'_>, pick: &Pick, usage: Usage) {
    let mut used = req.used.get();
    used.prompt_tokens = used.prompt_tokens.saturating_add(usage.prompt_tokens);
    used.completion_tokens = used
        .completion_tokens
        .saturating_add(usage.completion_tokens);
    req.used.set(used);
    let slot = &req.routing.table.slots[pick.slot];
    let tokens = crate::limits::prices::TokenUsage {
        input: usage.prompt_tokens,
        output: usage.completion_tokens,
        cached_input: 0,
    };
    let key = req.caller.map(|caller| caller.index);
    let now = std::time::SystemTime::now();
    req.routing
        .table
        .spend
        .charge(key, slot.provider, &slot.model, &tokens, now);
}

/// An attempt dropped after it was sent, before it reported usage (a hedge that
/// lost its race): charged its prompt as an estimate, against the key's spend
/// and tokens.
pub(super) fn charge_unreported(req: &Request<'_>, pick: &Pick) {
    let usage = Usage {
        prompt_tokens: crate::wire::usage::estimate_tokens_of_bytes(req.body.len()),
        completion_tokens: 0,
    };
    charge_spend(req, pick, usage);
}

/// The target was skipped at its quota (or its provider's).
pub(super) fn at_quota(req: &Request<'_>, slot: usize) {
    req.routing.targets[slot].counters.borrow_mut().at_quota += 1;
}

/// Corrects the quota charges of the attempt on `pick` by the tokens it used.
fn settle_quota(req: &Request<'_>, pick: &mut Pick, tokens: u64) {
    for charge in pick.quota.iter_mut().filter_map(Option::take) {
        req.routing.leases.settle(charge, tokens);
    }
}

/// A target that cannot express the request was never sent anything: no health
/// outcome, not counted as an attempt (a probe's token goes back), but listed for
/// the client.
pub(super) fn untranslatable(
    req: &Request<'_>,
    pick: &mut Pick,
    reason: &str,
    meta: &mut crate::proxy::respond::Meta,
    trail: &mut Trail,
) {
    abandoned(req, pick);
    for charge in pick.quota.iter_mut().filter_map(Option::take) {
        req.routing.leases.refund(charge);
    }
    meta.attempts = meta.attempts.saturating_sub(1);
    trail.skipped(req.label(pick.slot), reason);
}

/// A probe whose stream committed (a 200 with content) has shown the target
/// answers: the breaker closes now rather than when the stream ends, which may be
/// minutes later. The stream's own outcome is recorded when it ends, as an
/// ordinary request.
pub(super) fn probe_committed(req: &Request<'_>, pick: &mut Pick) {
    let Some(token) = pick.probe.take() else {
        return;
    };
    token.settle();
    let cell = &req.routing.targets[pick.slot];
    let transition = cell.health.borrow_mut().probe_succeeded(Instant::now());
    self::transition(req, pick.slot, transition);
}

/// The plan sidelined the target (a `Retry-After`), on every shard.
pub(super) fn sideline(req: &Request<'_>, slot: usize, now: Instant, until: Option<Instant>) {
    let Some(until) = until else {
        return;
    };
    let transition = req.routing.targets[slot]
        .health
        .borrow_mut()
        .sideline(now, until);
    self::transition(req, slot, transition);
}

/// Counts and logs a breaker transition. The breaker is shared, so only the shard
/// whose outcome (or admission) made the change gets it: one line per transition.
pub(super) fn transition(req: &Request<'_>, slot: usize, transition: Option<Transition>) {
    let Some(t) = transition else {
        return;
    };
    let reason = t.reason.map_or("recovered", |r| r.as_str());
    *req.routing.targets[slot]
        .counters
        .borrow_mut()
        .transitions
        .entry((t.from.as_str(), t.to.as_str(), reason))
        .or_default() += 1;
    crate::event!(
        crate::log::Level::Warn,
        "breaker transition",
        target = req.label(slot),
        shard = req.shard.id,
        change = t,
        reason = reason,
        lasts_ms = t.lasts.map_or(0, |d| d.as_millis() as u64)
    );
}

/// A stream that passed `limits.max_stream_buffer_bytes`.
pub(super) fn stream_overflow(req: &Request<'_>, slot: usize) {
    req.routing.targets[slot]
        .counters
        .borrow_mut()
        .stream_buffer_overflows += 1;
}

/// The request is answered: the route's response counters, and its sampled log line.
pub(super) fn finished(
    req: &Request<'_>,
    route: usize,
    meta: &crate::proxy::respond::Meta,
    status: u16,
) {
    let elapsed = req.started.elapsed();
    if let Some(cell) = req.routing.routes.get(route) {
        let mut counters = cell.counters.borrow_mut();
        *counters.responses.entry(status).or_default() += 1;
        counters.latency.observe(elapsed);
    }
    let config = &req.routing.table.config;
    if config.log.request_sample <= 0.0 || fastrand::f64() >= config.log.request_sample {
        return;
    }
    let used = req.used.get();
    let overhead = elapsed.saturating_sub(meta.waited);
    crate::event!(
        crate::log::Level::Info,
        "request",
        id = meta.request_id,
        key = req.caller.map_or("-", |caller| caller.key.name.as_str()),
        route = config.routes.get(route).map_or("", |r| r.name.as_str()),
        model = req.chat.model,
        target = meta.target.as_deref().unwrap_or("-"),
        attempts = meta.attempts,
        status = status,
        tokens_in = used.prompt_tokens,
        tokens_out = used.completion_tokens,
        ttft_ms = req.ttft.get().map(millis),
        overhead_ms = millis(overhead),
        latency_ms = millis(elapsed),
    );
}

/// A duration in milliseconds, to the microsecond (a JSON number in the log).
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
