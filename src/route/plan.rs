//! The attempt plan: every rule that decides what a request does after a failed
//! attempt — retry the same target after a wait, move on to the next target,
//! re-route to another route, or return this answer — and what the client is told
//! when the chain runs out.
//!
//! Pure functions over data: the target's resolved [`TargetPolicy`], what this
//! request has tried so far ([`Tried`]), a [`Reading`] of the target's health taken
//! after the failure was recorded, and the clock passed in. The executor
//! (`proxy::chat`) sends, classifies, records and then asks here; it never decides.
//! So "where does a 503 from Anthropic decide fallback?" has one answer: the
//! provider classifies the 503 as [`FailureClass::Server`], and [`after_failure`]
//! decides.
//!
//! Retries never make an outage worse: exponential backoff with full jitter,
//! `Retry-After` honoured (capped) and turned into a sideline, a retry budget per
//! (route, target), no retry that cannot finish before the deadline, none to a
//! target whose breaker is open (a trip made by this very failure, or anywhere in
//! the gateway), and none at all for a half-open probe: a probe is one attempt.

use std::time::{Duration, Instant};

use crate::outcome::{Failure, FailureClass};
use crate::route::table::TargetPolicy;

/// What the request does next after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Try the same target again after this wait.
    Retry(Duration),
    /// Move on to the next target of the chain (keep this answer in case nothing
    /// better comes).
    Next,
    /// Send the request to this route instead (context-length overflow).
    Reroute(usize),
    /// Stop: the client gets this attempt's answer (or, without one, the list of
    /// attempts).
    Return,
}

/// A step, and whether the target sits out until an instant first (a provider's
/// `Retry-After`, on every shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub step: Step,
    pub sideline_until: Option<Instant>,
}

/// What this request has done on the target that just failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tried {
    /// Attempts made on this target, including the one that failed.
    pub tries: u32,
    /// The attempt was the breaker's half-open probe.
    pub probe: bool,
    /// The chain has another target after this one.
    pub others: bool,
    /// Re-routes still allowed for this request.
    pub reroutes_left: bool,
}

/// The target's health as the plan needs it, read after the failure was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The breaker has tripped (open, or half-open: only a probe goes there).
    pub tripped: bool,
    /// A `Retry-After` sidelines the target until this instant.
    pub sidelined_until: Option<Instant>,
    /// The target's usual time to first byte (peak EWMA).
    pub typical: Duration,
    /// The (route, target) retry budget has room for one more retry.
    pub budget_allows: bool,
}

/// Re-routes on context-length overflow allowed per request.
pub const MAX_REROUTES: usize = 2;

/// Decides after a failed attempt. The class says what kind of failure it was; the
/// policy says what this (route, target) does about it; the reading and deadline
/// say whether a retry can still happen.
pub fn after_failure(
    policy: &TargetPolicy,
    failure: &Failure,
    tried: Tried,
    reading: &Reading,
    now: Instant,
    deadline: Instant,
) -> Decision {
    let sideline_until = sideline(policy, failure, now);
    let wanted = by_class(policy, failure, tried.tries, tried.others);
    let step = match wanted {
        Step::Retry(wait) if may_retry(tried, reading, sideline_until, wait, now, deadline) => {
            Step::Retry(wait)
        }
        // Out of budget, time or breaker: act as after the target's last try.
        Step::Retry(_) => match by_class(policy, failure, u32::MAX, tried.others) {
            Step::Retry(_) => Step::Next,
            other => other,
        },
        other => other,
    };
    let step = match step {
        Step::Reroute(_) if !tried.reroutes_left => Step::Return,
        other => other,
    };
    Decision {
        step,
        sideline_until,
    }
}

/// A 429/529 with `Retry-After` sidelines the target for that long (capped).
fn sideline(policy: &TargetPolicy, failure: &Failure, now: Instant) -> Option<Instant> {
    let (FailureClass::Overloaded, Some(pause)) = (failure.class, failure.retry_after) else {
        return None;
    };
    Some(now + pause.min(policy.retry.max_retry_after))
}

/// A retry must be allowed for this attempt (never a probe), fit the deadline with
/// the target's usual latency, fit the budget, and find the target admitted when it
/// would go: a sideline for this very `Retry-After` ends by then; a tripped breaker
/// (by this failure, or anywhere in the gateway) admits only its probe.
fn may_retry(
    tried: Tried,
    reading: &Reading,
    sideline_until: Option<Instant>,
    wait: Duration,
    now: Instant,
    deadline: Instant,
) -> bool {
    let at = now + wait;
    let blocked = reading.sidelined_until.max(sideline_until);
    !tried.probe
        && !reading.tripped
        && reading.budget_allows
        && at + reading.typical < deadline
        && !matches!(blocked, Some(until) if until > at)
}

/// What the failure class and the policy ask for, before time, budget and the
/// breaker have their say. `tries` counts attempts already made on this target.
fn by_class(policy: &TargetPolicy, failure: &Failure, tries: u32, others: bool) -> Step {
    let retry = &policy.retry;
    let fallback = &policy.fallback;
    let can_retry = tries < retry.attempts;
    let listed = |list: &[u16]| failure.status.is_some_and(|s| list.contains(&s));
    let move_on_or_return = |allowed: bool| if allowed { Step::Next } else { Step::Return };
    match failure.class {
        FailureClass::Connect | FailureClass::StalePooled if can_retry => {
            Step::Retry(backoff(retry, tries))
        }
        FailureClass::Connect | FailureClass::StalePooled => {
            move_on_or_return(fallback.on_connect_error)
        }
        FailureClass::Overloaded => overloaded(policy, failure, tries, others),
        // A connection reset or malformed answer (no status) is a server failure
        // worth one more try, like a listed 5xx.
        FailureClass::Server
            if can_retry && (listed(&retry.on_status) || failure.status.is_none()) =>
        {
            Step::Retry(backoff(retry, tries))
        }
        FailureClass::Server => {
            move_on_or_return(listed(&fallback.on_status) || failure.status.is_none())
        }
        // Retrying a silent target only multiplies the wait.
        FailureClass::FirstByteTimeout | FailureClass::Stall | FailureClass::MidStream => {
            move_on_or_return(fallback.on_timeout)
        }
        // The gateway's own limit: another target may have room; this one will not
        // have more in a backoff's time.
        FailureClass::Local => Step::Next,
        FailureClass::ContextLength => policy.reroute.map_or(Step::Return, Step::Reroute),
        FailureClass::ContentPolicy => move_on_or_return(fallback.on_content_policy),
        FailureClass::Client => Step::Return,
    }
}

/// 429/529. With somewhere else to go (a listed status, another target) it moves on
/// at once: the target is sidelined for its `Retry-After` and another may have room.
/// Only a `Retry-After` no longer than `wait_retry_after_up_to` is waited for on
/// the same target. With nowhere else to go it retries (listed status or none)
/// after the `Retry-After` (capped) or the backoff.
fn overloaded(policy: &TargetPolicy, failure: &Failure, tries: u32, others: bool) -> Step {
    let retry = &policy.retry;
    let can_retry = tries < retry.attempts;
    let listed = |list: &[u16]| failure.status.is_some_and(|s| list.contains(&s));
    let may_move_on = listed(&policy.fallback.on_status)
        || (failure.status.is_none() && policy.fallback.on_connect_error);
    let short_pause = failure.retry_after.filter(|pause| {
        !retry.wait_retry_after_up_to.is_zero() && *pause <= retry.wait_retry_after_up_to
    });
    if let (Some(pause), true) = (short_pause, can_retry) {
        return Step::Retry(pause);
    }
    if may_move_on && others {
        return Step::Next;
    }
    if can_retry && (listed(&retry.on_status) || failure.status.is_none()) {
        let wait = failure.retry_after.map_or_else(
            || backoff(retry, tries),
            |pause| pause.min(retry.max_retry_after),
        );
        return Step::Retry(wait);
    }
    if may_move_on {
        Step::Next
    } else {
        Step::Return
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(max, base × 2^(tries-1))].
pub fn backoff(retry: &crate::config::RetryPolicy, tries: u32) -> Duration {
    let exponent = tries.saturating_sub(1).min(20);
    let ceiling = retry
        .backoff
        .saturating_mul(1 << exponent)
        .min(retry.max_backoff);
    ceiling.mul_f64(fastrand::f64())
}

/// The class of the last attempt of a chain, as the ending needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempted {
    pub class: FailureClass,
}

/// What the client gets when the chain ends without a committed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The provider answer kept from the chain, returned as it is.
    ProviderAnswer,
    /// Nothing was tried: every target's breaker refused it until this instant.
    FailFast { until: Instant },
    /// 504: the deadline passed, or the last attempt timed out.
    TimedOut,
    /// 502: every attempt failed.
    Failed,
}

/// Decides the ending. `kept` is the status of the provider answer the chain kept
/// (the last one that fell back or was returned), if any; `returned` says the plan
/// stopped the chain with `Return`.
pub fn ending(
    attempts: &[Attempted],
    kept: Option<u16>,
    returned: bool,
    refused_until: Option<Instant>,
    now: Instant,
    deadline: Instant,
) -> Ending {
    if returned && kept.is_some() {
        return Ending::ProviderAnswer;
    }
    // A chain that only saw rate limits answers with the last provider's own 429,
    // so clients back off as they were asked to.
    let only_rate_limits =
        !attempts.is_empty() && attempts.iter().all(|a| a.class == FailureClass::Overloaded);
    if kept == Some(429) && only_rate_limits {
        return Ending::ProviderAnswer;
    }
    if let (true, Some(until), false) = (attempts.is_empty(), refused_until, returned) {
        return Ending::FailFast { until };
    }
    let timed_out = now >= deadline
        || attempts.last().is_some_and(|a| {
            matches!(
                a.class,
                FailureClass::FirstByteTimeout | FailureClass::Stall
            )
        });
    if timed_out {
        Ending::TimedOut
    } else {
        Ending::Failed
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
