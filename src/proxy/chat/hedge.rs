//! Hedged requests (`hedge:` on a route): the request's first attempt runs alone
//! for `after` (a duration, or the primary target's observed p95 time to first
//! token); if it has produced nothing committable by then, the same request starts
//! on the next target of the route's order whose breaker is closed, budgeted by the
//! route's hedge budget. The first of the two to commit (a stream's first content,
//! or a whole answer) is served; the other is dropped mid-exchange (its socket
//! closes, it never goes back to the pool) and recorded as abandoned, which says
//! nothing about its target. A failure while the other still runs is kept and the
//! other awaited; when both fail the plan goes on from the primary's failure (the
//! hedge's is recorded, and its target is not tried again by this request).
//!
//! Only the request's first attempt hedges: never a probe, a retry, a later target
//! or a continuation. The executor calls [`send`] instead of its plain `send`.

use std::future::Future;
use std::pin::{pin, Pin};

use super::attempt::{self, AttemptResult};
use super::executor::{self, Sent};
use super::*;
use crate::config::HedgeAfter;
use crate::health::ttft::AUTO_MIN_SAMPLES;
use crate::health::BreakerState;

/// Every request of a hedging route deposits in its hedge budget.
pub(super) fn deposit(req: &Request<'_>, route: usize) {
    if req.routing.table.routes[route].hedge.is_some() {
        let budget = &req.routing.routes[route].hedge_budget;
        budget.borrow_mut().deposit(Instant::now());
    }
}

/// The targets a hedge of `pick`'s attempt may go to (`rest`, the route's order
/// after it), when the route hedges and this is the request's first attempt
/// (not a probe); `None`: a plain send.
pub(super) fn spare<'o>(
    req: &Request<'_>,
    pick: &Pick,
    reply: &Reply<'_>,
    rest: &'o [usize],
) -> Option<&'o [usize]> {
    let hedges = req.routing.table.routes[pick.route].hedge.is_some();
    let first = reply.meta.attempts == 0 && pick.probe.is_none();
    (hedges && first && !rest.is_empty()).then_some(rest)
}

/// The targets a stream that broke after commit may continue on: `rest` (the
/// route's order after the first target), less the hedge's target when the hedge
/// served the stream (it is the one that broke).
pub(super) fn continuing(trail: &Trail, route: usize, rest: &[usize]) -> Vec<usize> {
    let broken = trail.hedged.filter(|_| trail.hedge_served);
    rest.iter()
        .copied()
        .filter(|&target| broken != Some((route, target)))
        .collect()
}

/// Which of the two attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Primary,
    Hedge,
}

impl Lane {
    fn as_str(self) -> &'static str {
        match self {
            Lane::Primary => "primary",
            Lane::Hedge => "hedge",
        }
    }
}

/// What the race came to.
// `Alone` is an attempt's result, answer and returned headers inline; boxing
// it would be an allocation on every unhedged request.
#[allow(clippy::large_enum_variant)]
enum Raced {
    /// No hedge was sent: the first attempt's result, as a plain send's.
    Alone(AttemptResult),
    /// A hedge on `extra` (sent at `sent`) ran: `won` is the committable result
    /// of `winner` or, when both failed, the primary's failure; `other` is the
    /// other lane's failure, or `None` when it was still running (dropped).
    Hedged {
        extra: Box<Pick>,
        sent: Instant,
        winner: Lane,
        won: AttemptResult,
        other: Option<AttemptResult>,
    },
}

/// Sends the request's first attempt on `pick`, hedged on `spare` when it is slow.
pub(super) async fn send(
    req: &Request<'_>,
    pick: &mut Pick,
    spare: &[usize],
    reply: &mut Reply<'_>,
    trail: &mut Trail,
) -> std::io::Result<Sent> {
    let Some(after) = delay(req, pick, Instant::now()) else {
        return executor::send(req, pick, 1, reply, trail).await;
    };
    record::started(req, pick, true);
    reply.meta.attempts += 1;
    let started = Instant::now();
    let Some(raced) = race(req, pick, spare, (started, after), reply.client).await else {
        record::abandoned(req, pick);
        return Err(client_gone());
    };
    // Both lanes ran while the gateway waited: the race is the providers' time.
    reply.meta.waited += started.elapsed();
    let (mut extra, sent, winner, won, other) = match raced {
        Raced::Alone(result) => return executor::serve(req, pick, result, reply, trail).await,
        Raced::Hedged {
            extra,
            sent,
            winner,
            won,
            other,
        } => (extra, sent, winner, won, other),
    };
    reply.meta.attempts += 1;
    trail.hedged = Some((extra.route, extra.target));
    settled(req, pick, &extra, winner);
    match winner {
        Lane::Primary => {
            lost(req, &mut extra, other, sent, reply, trail);
            executor::serve(req, pick, won, reply, trail).await
        }
        Lane::Hedge => {
            lost(req, pick, other, started, reply, trail);
            reply.meta.fallback = true;
            trail.hedge_served = true;
            executor::serve(req, &mut extra, won, reply, trail).await
        }
    }
}

/// How long the first attempt on `pick` runs alone; `None`: no hedge (`p95` with
/// fewer samples than a p95 needs, or a hedge that could not start before the
/// request's deadline).
fn delay(req: &Request<'_>, pick: &Pick, now: Instant) -> Option<Duration> {
    let policy = req.routing.table.routes[pick.route].hedge?;
    let after = match policy.after {
        HedgeAfter::Fixed(after) => after,
        HedgeAfter::P95 => {
            let health = req.routing.targets[pick.slot].health.borrow();
            if health.ttft_samples(now) < AUTO_MIN_SAMPLES {
                return None;
            }
            health.ttft_quantile(now, 0.95)?
        }
    };
    (now + after < req.deadline).then_some(after)
}

/// Runs the first attempt alone until `after`, then races it against a hedge (if
/// one is admitted). `None`: the client hung up (a hedge sent is recorded as
/// abandoned here; the primary is the caller's).
async fn race(
    req: &Request<'_>,
    pick: &Pick,
    spare: &[usize],
    (started, after): (Instant, Duration),
    client: &ClientStream,
) -> Option<Raced> {
    let mut primary = pin!(attempt::attempt(req, pick, req.original(pick), started));
    monoio::select! {
        result = &mut primary => return Some(Raced::Alone(result)),
        _ = monoio::time::sleep(after) => {}
        _ = client.hung_up() => return None,
    }
    let Some(mut extra) = admit(req, pick, spare, after) else {
        return monoio::select! {
            result = primary => Some(Raced::Alone(result)),
            _ = client.hung_up() => None,
        };
    };
    let sent = Instant::now();
    let Some((winner, won, other)) = both(req, &extra, primary.as_mut(), sent, client).await else {
        record::abandoned(req, &mut extra);
        return None;
    };
    Some(Raced::Hedged {
        extra: Box::new(extra),
        sent,
        winner,
        won,
        other,
    })
}

/// Races the running `primary` against a hedge on `extra` until one commits or
/// both failed (then the primary's failure leads). `None`: the client hung up.
async fn both<F: Future<Output = AttemptResult>>(
    req: &Request<'_>,
    extra: &Pick,
    mut primary: Pin<&mut F>,
    sent: Instant,
    client: &ClientStream,
) -> Option<(Lane, AttemptResult, Option<AttemptResult>)> {
    let mut hedged = pin!(attempt::attempt(req, extra, req.original(extra), sent));
    let (lane, first) = monoio::select! {
        result = &mut primary => (Lane::Primary, result),
        result = &mut hedged => (Lane::Hedge, result),
        _ = client.hung_up() => return None,
    };
    if committable(&first) {
        return Some((lane, first, None));
    }
    // One failed: keep waiting for the other.
    let second = match lane {
        Lane::Primary => monoio::select! {
            result = &mut hedged => result,
            _ = client.hung_up() => return None,
        },
        Lane::Hedge => monoio::select! {
            result = &mut primary => result,
            _ = client.hung_up() => return None,
        },
    };
    Some(match lane {
        Lane::Primary if committable(&second) => (Lane::Hedge, second, Some(first)),
        Lane::Primary => (Lane::Primary, first, Some(second)),
        Lane::Hedge => (Lane::Primary, second, Some(first)),
    })
}

fn committable(result: &AttemptResult) -> bool {
    matches!(
        result,
        AttemptResult::Stream { .. } | AttemptResult::Complete { .. }
    )
}

/// The first target of `spare` whose breaker is closed (never an open or
/// half-open one), admitted, with one hedge taken from the route's budget, and
/// its attempt started; `None`: no hedge.
fn admit(req: &Request<'_>, pick: &Pick, spare: &[usize], after: Duration) -> Option<Pick> {
    let now = Instant::now();
    let policies = &req.routing.table.routes[pick.route].targets;
    let closed = |target: &&usize| {
        policies.get(**target).is_some_and(|policy| {
            let health = req.routing.targets[policy.slot].health.borrow();
            health.state(now) == BreakerState::Closed
        })
    };
    let &target = spare.iter().find(closed)?;
    let cell = &req.routing.routes[pick.route];
    if !cell.hedge_budget.borrow_mut().try_withdraw(now) {
        return None;
    }
    let mut refusals = Trail::default();
    let extra = executor::admit(req, pick.route, target, false, &mut refusals)?;
    if extra.probe.is_some() {
        // Half-open after all: dropping the pick gives its probe token back.
        return None;
    }
    record::started(req, &extra, false);
    cell.counters.borrow_mut().hedges += 1;
    crate::event!(
        crate::log::Level::Info,
        "hedge sent",
        id = req.request_id,
        route = req.route(pick.route).name,
        primary = req.label(pick.slot),
        hedge = req.label(extra.slot),
        after_ms = after.as_millis()
    );
    Some(extra)
}

/// The lane that did not win: its failure recorded (health, the attempt list), or,
/// still running when the winner committed, abandoned (not held against it) and
/// its prompt charged as an estimate.
fn lost(
    req: &Request<'_>,
    pick: &mut Pick,
    result: Option<AttemptResult>,
    started: Instant,
    reply: &mut Reply<'_>,
    trail: &mut Trail,
) {
    match result {
        Some(AttemptResult::Failed(failed)) => record::failed(req, pick, &failed, started, trail),
        Some(AttemptResult::Untranslatable(reason)) => {
            record::untranslatable(req, pick, &reason, &mut reply.meta, trail);
        }
        // It was sent, and the provider may bill its prompt: charged an estimate.
        Some(_) | None => {
            record::abandoned(req, pick);
            record::charge_unreported(req, pick);
        }
    }
}

/// Counts and logs which lane the race went to.
fn settled(req: &Request<'_>, pick: &Pick, extra: &Pick, winner: Lane) {
    let hedge_won = winner == Lane::Hedge;
    if hedge_won {
        req.routing.routes[pick.route]
            .counters
            .borrow_mut()
            .hedge_wins += 1;
    }
    let served = if hedge_won { extra.slot } else { pick.slot };
    crate::event!(
        crate::log::Level::Info,
        "hedge settled",
        id = req.request_id,
        route = req.route(pick.route).name,
        won = winner.as_str(),
        target = req.label(served)
    );
}
