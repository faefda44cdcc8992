//! The executor: carries out the plan. For each target in the route's order it
//! asks the breaker, sends one attempt, records it, and asks `route::plan` what
//! next — it decides nothing itself.
//!
//! Where what comes next fits: a target skipped at its quota, or a fleet-wide
//! probe lease, is one more refusal in [`admit`] (remembered in the trail like an
//! open breaker, never counted as a failure); a hedged request races a second
//! [`send`] on the next admitted pick and keeps the first to commit ([`hedge`]); another
//! client dialect is another `Dialect` on the reply — the plan does not change.

use super::attempt::AttemptResult;
use super::hedge;
use super::*;
use crate::health::Admission;
use crate::outcome::Outcome;
use crate::route::plan::{self, Attempted, Ending, Reading, Step, Tried, MAX_REROUTES};
use crate::route::select;

/// How one route's chain ended.
enum RouteEnd {
    /// The client has its answer (or is gone).
    Answered { status: u16 },
    /// Send the request to another route (context-length overflow).
    Reroute(usize),
    /// Nothing committed; `returned` says the plan stopped the chain.
    Ended { returned: bool },
}

/// How trying one target ended.
pub(super) enum TargetEnd {
    Answered {
        status: u16,
    },
    Next,
    Reroute(usize),
    Return,
    /// A committed stream broke and the route continues streams on other targets.
    StreamBroken {
        stats: crate::proxy::stream::StreamStats,
        reason: String,
    },
    /// A continuation did not line up with the partial answer (nothing of it was
    /// sent); only a continuation can end so.
    Misaligned {
        stats: crate::proxy::stream::StreamStats,
    },
}

/// Runs the request's route (and any re-routes), then answers the client.
pub(super) async fn run(
    req: &Request<'_>,
    first_route: usize,
    reply: &mut Reply<'_>,
) -> std::io::Result<()> {
    let mut trail = Trail::default();
    let mut route = first_route;
    let mut reroutes = 0;
    let status = loop {
        let reroutes_left = reroutes < MAX_REROUTES;
        match run_route(req, route, reroutes_left, reply, &mut trail).await? {
            RouteEnd::Answered { status } => break status,
            RouteEnd::Reroute(next) => {
                reroutes += 1;
                reply.meta.fallback = true;
                route = next;
            }
            RouteEnd::Ended { returned } => {
                let ending = ending_of(req, &trail, returned);
                break reply.end(req, route, ending, &mut trail).await?;
            }
        }
    };
    record::finished(req, route, &reply.meta, status);
    super::trace::finished(req, route, &reply.meta, status, &trail);
    Ok(())
}

fn ending_of(req: &Request<'_>, trail: &Trail, returned: bool) -> Ending {
    let attempted: Vec<Attempted> = trail
        .attempts
        .iter()
        .map(|a| Attempted { class: a.class })
        .collect();
    let kept = trail.kept.as_ref().map(|(answer, _)| answer.status);
    let now = Instant::now();
    plan::ending(
        &attempted,
        kept,
        returned,
        trail.refused_until,
        now,
        req.deadline,
    )
}

async fn run_route(
    req: &Request<'_>,
    route: usize,
    reroutes_left: bool,
    reply: &mut Reply<'_>,
    trail: &mut Trail,
) -> std::io::Result<RouteEnd> {
    let pinned = req.pinned().is_some();
    // Provider state lives with one account: a stateful request goes to the
    // first target (in config order) that serves its API, whatever the strategy
    // would pick, and to no other (a closed breaker there fails it fast).
    let order = match pinned {
        true => (0..req.routing.table.routes[route].targets.len())
            .find(|&target| req.takes_native_at(route, target))
            .into_iter()
            .collect(),
        false => order(req, route),
    };
    hedge::deposit(req, route);
    for (position, &target) in order.iter().enumerate() {
        if Instant::now() >= req.deadline {
            break;
        }
        if trail.hedged == Some((route, target)) {
            // Its hedge already failed on this request.
            continue;
        }
        // A pinned request never moves on, so its plan retries as on a last target.
        let others = position + 1 < order.len() && !pinned;
        let Some(mut pick) = admit(req, route, target, others, trail) else {
            continue;
        };
        pick.fallback_ready = others && any_admits(req, route, &order[position + 1..]);
        if position > 0 || req.policy(&pick).fallback_tier {
            reply.meta.fallback = true;
        }
        let spare = hedge::spare(req, &pick, reply, &order[position + 1..]).filter(|_| !pinned);
        let reroutes_left = reroutes_left && !pinned;
        match try_target(req, &mut pick, spare, reroutes_left, reply, trail).await? {
            TargetEnd::Answered { status } => return Ok(RouteEnd::Answered { status }),
            // The provider state it relies on lives with this target only.
            TargetEnd::Next if pinned => return Ok(RouteEnd::Ended { returned: true }),
            TargetEnd::Next => req.routing.routes[route].counters.borrow_mut().fallbacks += 1,
            TargetEnd::Reroute(next) => return Ok(RouteEnd::Reroute(next)),
            TargetEnd::Return => return Ok(RouteEnd::Ended { returned: true }),
            // Not produced by a first stream (it has no aligner): treated as served.
            TargetEnd::Misaligned { .. } => return Ok(RouteEnd::Answered { status: 200 }),
            TargetEnd::StreamBroken { stats, reason } => {
                let rest = hedge::continuing(trail, route, &order[position + 1..]);
                relay::continue_stream(req, route, &rest, stats, &reason, reply).await?;
                return Ok(RouteEnd::Answered { status: 200 });
            }
        }
    }
    Ok(RouteEnd::Ended { returned: false })
}

/// The route's targets in the order its strategy tries them.
fn order(req: &Request<'_>, route: usize) -> select::Order {
    let now = Instant::now();
    let routing = &req.routing;
    let targets = &routing.table.routes[route].targets;
    let candidates = select::candidates(
        targets
            .iter()
            .map(|t| routing.targets[t.slot].health.borrow()),
        now,
    );
    let mut balancer = routing.routes[route].balancer.borrow_mut();
    select::order(
        req.route(route),
        &candidates,
        &mut balancer,
        &mut fastrand::Rng::new(),
    )
}

/// Whether any of the route's `targets` would be admitted now (a breaker that is
/// closed, or due for its half-open probe).
fn any_admits(req: &Request<'_>, route: usize, targets: &[usize]) -> bool {
    let now = Instant::now();
    let policies = &req.routing.table.routes[route].targets;
    targets.iter().any(|&target| {
        policies.get(target).is_some_and(|policy| {
            let health = req.routing.targets[policy.slot].health.borrow();
            health.available(now)
        })
    })
}

/// Asks the target's breaker. A refusal is remembered (for the fail-fast answer);
/// a probe carries the gateway's token with the pick. `fallback_ready` starts as
/// `others`; the chain's loop narrows it to targets that admit now.
pub(super) fn admit(
    req: &Request<'_>,
    route: usize,
    target: usize,
    others: bool,
    trail: &mut Trail,
) -> Option<Pick> {
    let policy = &req.routing.table.routes[route].targets[target];
    let (slot, provider) = (policy.slot, policy.provider);
    if let Some(why) = req.refused_by(route, target) {
        // Stateful requests skip translated targets silently; others say why.
        if req.pinned().is_none() {
            trail.skipped(req.label(slot), why);
        }
        return None;
    }
    let now = Instant::now();
    let breaker = &req.routing.table.breakers[slot];
    let probe = match breaker.admit(now) {
        Admission::Reject { until } => {
            trail.refused_until = Some(trail.refused_until.map_or(until, |r| r.min(until)));
            return None;
        }
        Admission::Allow => None,
        // Only a probe holds on to the breaker (to give its token back).
        Admission::Probe => {
            record::transition(req, slot, breaker.entered_half_open());
            Some(ProbeToken {
                breaker: Some(breaker.clone()),
            })
        }
    };
    // At its quota the target is skipped until its window frees, like a
    // sideline: never a failure (a probe's token goes back unused).
    let quota = match super::admission::charge_target(req, slot, provider) {
        Ok(quota) => quota,
        Err(refusal) => {
            record::at_quota(req, slot);
            let until = refusal.until;
            trail.refused_until = Some(trail.refused_until.map_or(until, |r| r.min(until)));
            return None;
        }
    };
    Some(Pick {
        route,
        target,
        slot,
        others,
        fallback_ready: others,
        probe,
        quota,
    })
}

/// Tries one target until the plan moves on: send, record, ask the plan, repeat.
/// The first attempt of the request races a hedge on `spare` when the route
/// hedges (see [`hedge`]); every other attempt is a plain [`send`].
async fn try_target(
    req: &Request<'_>,
    pick: &mut Pick,
    spare: Option<&[usize]>,
    reroutes_left: bool,
    reply: &mut Reply<'_>,
    trail: &mut Trail,
) -> std::io::Result<TargetEnd> {
    let mut tries = 0;
    loop {
        tries += 1;
        let started = Instant::now();
        let sent = match spare.filter(|_| tries == 1) {
            Some(spare) => hedge::send(req, pick, spare, reply, trail).await?,
            None => send(req, pick, tries, reply, trail).await?,
        };
        let failed = match sent {
            Sent::Ended(end) => return Ok(end),
            Sent::Failed(failed) => failed,
        };
        let tried = Tried {
            tries,
            probe: pick.probe.is_some(),
            others: pick.others,
            reroutes_left,
        };
        record::failed(req, pick, &failed, started, trail);
        let now = Instant::now();
        let decision = plan::after_failure(
            req.policy(pick),
            &failed.failure,
            tried,
            &reading(req, pick, now),
            now,
            req.deadline,
        );
        record::sideline(req, pick.slot, now, decision.sideline_until);
        trail.keep(
            failed.answer.map(|a| *a),
            req.slot_label(pick.slot),
            decision.step,
        );
        match decision.step {
            Step::Retry(wait) => {
                record::retry(req, pick, now);
                monoio::time::sleep(wait).await;
                // Backoff is waiting, not the gateway's own time.
                reply.meta.waited += now.elapsed();
            }
            Step::Next => return Ok(TargetEnd::Next),
            Step::Reroute(next) => return Ok(TargetEnd::Reroute(next)),
            Step::Return => return Ok(TargetEnd::Return),
        }
    }
}

/// What sending one attempt came to.
pub(super) enum Sent {
    /// Served (a whole answer written, a stream relayed) or passed over.
    Ended(TargetEnd),
    /// Failed before commit: the plan decides.
    Failed(attempt::Failed),
}

/// Sends attempt number `tries` on `pick` and serves what commits.
pub(super) async fn send(
    req: &Request<'_>,
    pick: &mut Pick,
    tries: u32,
    reply: &mut Reply<'_>,
    trail: &mut Trail,
) -> std::io::Result<Sent> {
    record::started(req, pick, tries == 1);
    reply.meta.attempts += 1;
    let started = Instant::now();
    let result = attempt::for_client(req, pick, req.original(pick), reply.client, started)
        .await
        .ok_or_else(client_gone)?;
    // Until the answer (a whole body read, a stream's commit): the provider's time.
    reply.meta.waited += started.elapsed();
    serve(req, pick, result, reply, trail).await
}

/// Serves what one attempt on `pick` came to: a whole answer written, a stream
/// relayed, a failure handed back for the plan.
pub(super) async fn serve(
    req: &Request<'_>,
    pick: &mut Pick,
    result: AttemptResult,
    reply: &mut Reply<'_>,
    trail: &mut Trail,
) -> std::io::Result<Sent> {
    let end = match result {
        AttemptResult::Failed(failed) => return Ok(Sent::Failed(failed)),
        AttemptResult::Untranslatable(reason) => {
            record::untranslatable(req, pick, &reason, &mut reply.meta, trail);
            TargetEnd::Next
        }
        AttemptResult::Complete {
            content_type,
            body,
            ttfb,
            native,
            upstream,
        } => {
            let usage = attempt::usage_of(&body);
            record::outcome(req, pick, Outcome::Success, Some(ttfb), usage);
            reply.meta.target = Some(req.slot_label(pick.slot));
            reply.meta.upstream_headers = upstream;
            let answer = (200, content_type, body);
            let status = reply.send_whole(answer, native, &[]).await?;
            TargetEnd::Answered { status }
        }
        AttemptResult::Stream { held, ttfb, native } => {
            reply.meta.target = Some(req.slot_label(pick.slot));
            reply.meta.upstream_headers = crate::proxy::headers::returned(&held.response.head);
            let opening = relay::Opening::New { native };
            relay::relay(req, pick, *held, ttfb, opening, reply).await?
        }
    };
    Ok(Sent::Ended(end))
}

/// The target's health as the plan reads it, now that the failure is recorded.
fn reading(req: &Request<'_>, pick: &Pick, now: Instant) -> Reading {
    let routing = &req.routing;
    let health = routing.targets[pick.slot].health.borrow();
    let budget = routing.routes[pick.route].budgets[pick.target].borrow();
    let breaker = &routing.table.breakers[pick.slot];
    Reading {
        tripped: breaker.tripped(),
        sidelined_until: breaker.sidelined_until(now),
        typical: Duration::from_micros(health.ewma_us(now) as u64),
        budget_allows: budget.allows(now),
    }
}

impl Trail {
    /// A target that could not take the request, listed with why (nothing was
    /// sent, nothing counts against it).
    pub(super) fn skipped(&mut self, label: &str, why: &str) {
        self.attempts.push(AttemptLog {
            target: label.to_string(),
            class: FailureClass::Client,
            status: None,
            elapsed: Duration::ZERO,
            detail: why.to_string(),
        });
    }

    /// Keeps a provider answer in case nothing better comes. The plan's `Return`
    /// gives the client this attempt's answer or, without one, the attempt list.
    fn keep(&mut self, answer: Option<attempt::ProviderAnswer>, label: Arc<str>, step: Step) {
        match answer {
            Some(answer) => self.kept = Some((answer, label)),
            None if step == Step::Return => self.kept = None,
            None => {}
        }
    }
}
