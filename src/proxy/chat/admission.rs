//! Limits as a request meets them: the caller's key (rpm, tpm, concurrency)
//! before anything is sent, each target's and provider's quota as a target is
//! picked, and the corrections once the usage is known. The counting itself is
//! `limits::gate`'s; this says when, and what the client is told.

use std::sync::atomic::Ordering;

use super::*;
use crate::http::{push_decimal, Fields};
use crate::limits::budget::BudgetStatus;
use crate::limits::gate::{self, Charge, InFlight, LimitKind, Refusal, Standing, Subject};
use crate::wire::Usage;

/// What a key's admission holds for its whole request: its place among the
/// key's requests in flight and the charge to correct at the end.
pub(super) struct KeyAdmission {
    key: usize,
    _in_flight: Option<InFlight>,
    charge: Option<Charge>,
}

/// Why a key's request was refused.
pub(super) enum Limited {
    Rate(Refusal),
    Concurrency(u32),
    /// Its budget for the period is spent.
    Budget(BudgetStatus),
    /// Cluster mode, `on_redis_down: closed`: Redis is unreachable, so the
    /// key's limits cannot be enforced fleet-wide.
    FleetDown,
}

/// Admits the caller's request against its key's limits (nothing for an open
/// gateway or an unlimited key), counting it in the key's stats.
pub(super) fn admit_key(
    routing: &Routing,
    caller: Option<Caller<'_>>,
    estimate: u64,
) -> Result<Option<KeyAdmission>, Limited> {
    let Some(caller) = caller else {
        return Ok(None);
    };
    let Some(state) = routing.table.limits.keys.get(caller.index) else {
        return Ok(None);
    };
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let refused = |limited| {
        state.stats.limited.fetch_add(1, Ordering::Relaxed);
        Err(limited)
    };
    if state.fleet_closed.load(Ordering::Acquire) {
        return refused(Limited::FleetDown);
    }
    // Only a key with a budget can run out (the clock and period math are
    // skipped for the others).
    if caller.key.budget.is_some() {
        let book = &routing.table.spend.book;
        if let Some(budget) = book.status(caller.index, std::time::SystemTime::now()) {
            if budget.exhausted {
                return refused(Limited::Budget(budget));
            }
        }
    }
    let in_flight = match state.max_concurrency {
        None => None,
        Some(_) => match gate::enter(state) {
            Ok(guard) => Some(guard),
            Err(max) => return refused(Limited::Concurrency(max)),
        },
    };
    let subject = Subject::Key(caller.index);
    let charge = match routing.leases.charge(subject, estimate, Instant::now()) {
        Ok(charge) => charge,
        Err(refusal) => return refused(Limited::Rate(refusal)),
    };
    Ok(Some(KeyAdmission {
        key: caller.index,
        _in_flight: in_flight,
        charge,
    }))
}

impl KeyAdmission {
    /// Corrects the key's token charge by what the request really used (every
    /// attempt's reported usage).
    pub(super) fn settle(self, routing: &Routing, used: Usage) {
        if let Some(state) = routing.table.limits.keys.get(self.key) {
            let stats = &state.stats;
            stats
                .tokens_in
                .fetch_add(used.prompt_tokens, Ordering::Relaxed);
            stats
                .tokens_out
                .fetch_add(used.completion_tokens, Ordering::Relaxed);
        }
        if let Some(charge) = self.charge {
            let tokens = used.prompt_tokens.saturating_add(used.completion_tokens);
            routing.leases.settle(charge, tokens);
        }
    }
}

/// The caller's key's standing, for the `x-ratelimit-*` headers of its answers
/// (`None`: an open gateway, or a key without rpm and tpm).
pub(super) fn standing(routing: &Routing, caller: Option<Caller<'_>>) -> Option<Standing> {
    let caller = caller?;
    let limited = caller.key.limits.is_limited();
    limited.then(|| {
        routing
            .leases
            .standing(Subject::Key(caller.index), Instant::now())
    })
}

/// Charges one attempt against the target's own quota and its provider's; a
/// refusal (either at its limit) skips the target until the window frees, like a
/// sideline, and is never a failure of the target.
pub(super) fn charge_target(
    req: &Request<'_>,
    slot: usize,
    provider: usize,
) -> Result<[Option<Charge>; 2], Refusal> {
    let leases = &req.routing.leases;
    let now = Instant::now();
    let own = leases.charge(Subject::Slot(slot), req.estimate, now)?;
    match leases.charge(Subject::Provider(provider), req.estimate, now) {
        Ok(shared) => Ok([own, shared]),
        Err(refusal) => {
            if let Some(own) = own {
                leases.refund(own);
            }
            Err(refusal)
        }
    }
}

/// The error a key's refused request gets, with its headers: OpenAI's
/// `rate_limit_exceeded` 429 (Anthropic's `rate_limit_error` on /v1/messages,
/// by the dialect), `Retry-After` and the key's standing.
pub(super) fn refusal_answer(
    limited: &Limited,
    key_name: &str,
    standing: Option<Standing>,
    dialect: Dialect,
) -> (ApiError, Fields) {
    let (message, retry_after, kind) = match limited {
        Limited::Budget(budget) => return budget_answer(budget, key_name),
        Limited::FleetDown => return fleet_down_answer(key_name),
        Limited::Concurrency(max) => (
            format!("key `{key_name}` has {max} requests in flight, its max_concurrency; retry when one finishes"),
            Duration::from_secs(1),
            "requests",
        ),
        Limited::Rate(refusal) => {
            let (what, kind) = match refusal.kind {
                LimitKind::Tokens => ("tokens per window (tpm)", "tokens"),
                _ => ("requests per window (rpm)", "requests"),
            };
            let wait = refusal.reset.as_secs_f64();
            let message = format!(
                "Rate limit reached for key `{key_name}` on {what}: limit {}. Please try again in {wait:.3}s.",
                refusal.limit
            );
            (message, refusal.reset, kind)
        }
    };
    let mut headers = retry_headers(retry_after);
    if let Some(standing) = standing {
        push_rate_headers(&mut headers, &standing, dialect);
    }
    (
        ApiError::new(429, kind, "rate_limit_exceeded", message),
        headers,
    )
}

/// A spent budget: OpenAI's `insufficient_quota` 429 naming the budget and when
/// it resets, with `x-should-retry: false` so the official SDKs do not retry it
/// (and no `Retry-After`, which would invite them to).
fn budget_answer(budget: &BudgetStatus, key_name: &str) -> (ApiError, Fields) {
    let usd = |micros: u64| micros as f64 / 1e6;
    let limit = budget.limit_micros.unwrap_or(0);
    let resets = match budget.resets_at {
        Some(at) => format!("it resets at {}", humantime::format_rfc3339_seconds(at)),
        None => "it is a total budget and does not reset".to_string(),
    };
    let message = format!(
        "Key `{key_name}` has spent its budget: ${:.2} of ${:.2}; {resets}.",
        usd(budget.spent_micros),
        usd(limit)
    );
    let error = ApiError::new(429, "insufficient_quota", "insufficient_quota", message);
    let headers = [("x-should-retry", "false")].into_iter().collect();
    (error, headers)
}

/// A limited key while the fleet's Redis is unreachable and the cluster says
/// `on_redis_down: closed`: a 503 (the SDKs retry it) with a short
/// `Retry-After`.
fn fleet_down_answer(key_name: &str) -> (ApiError, Fields) {
    let message = format!(
        "Key `{key_name}` has limits enforced fleet-wide and the fleet's Redis is unreachable (cluster.on_redis_down: closed); retry shortly."
    );
    let error = ApiError::new(503, "server_error", "fleet_limits_unavailable", message);
    (error, retry_headers(Duration::from_secs(1)))
}

/// `Retry-After` in whole seconds (rounded up, at least 1) and OpenAI's
/// `retry-after-ms`, which its SDKs read first.
fn retry_headers(wait: Duration) -> Fields {
    let ms = wait.as_millis().max(1) as u64;
    let mut headers = Fields::default();
    headers.push_with("retry-after", |v| push_decimal(v, ms.div_ceil(1000)));
    headers.push_with("retry-after-ms", |v| push_decimal(v, ms));
    headers
}

/// The headers that describe a key's standing: OpenAI's `x-ratelimit-*` (reset
/// as a wait), or on Anthropic's API `anthropic-ratelimit-*` (reset as a time).
pub(super) fn push_rate_headers(headers: &mut Fields, standing: &Standing, dialect: Dialect) {
    let names: [&'static str; 6] = match dialect {
        Dialect::Anthropic => [
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
            "anthropic-ratelimit-tokens-limit",
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-reset",
        ],
        _ => [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ],
    };
    let write_reset = |out: &mut Vec<u8>| match dialect {
        Dialect::Anthropic => {
            use std::io::Write;
            let at = std::time::SystemTime::now() + standing.reset;
            let _ = write!(out, "{}", humantime::format_rfc3339_seconds(at));
        }
        _ => push_reset(out, standing.reset),
    };
    for (counted, names) in [standing.requests, standing.tokens]
        .iter()
        .zip(names.chunks(3))
    {
        if let Some((limit, remaining)) = *counted {
            headers.push_with(names[0], |v| push_decimal(v, limit));
            headers.push_with(names[1], |v| push_decimal(v, remaining));
            headers.push_with(names[2], write_reset);
        }
    }
}

/// A wait as OpenAI writes it in `x-ratelimit-reset-*`: `850ms`, `12s`.
fn push_reset(out: &mut Vec<u8>, wait: Duration) {
    let ms = wait.as_millis() as u64;
    if ms < 1000 {
        push_decimal(out, ms);
        out.extend_from_slice(b"ms");
    } else {
        push_decimal(out, ms.div_ceil(1000));
        out.push(b's');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset(wait: Duration) -> String {
        let mut out = Vec::new();
        push_reset(&mut out, wait);
        String::from_utf8(out).unwrap_or_default()
    }

    fn rate_headers(standing: &Standing, dialect: Dialect) -> Vec<(String, Vec<u8>)> {
        let mut headers = Fields::default();
        push_rate_headers(&mut headers, standing, dialect);
        headers.to_pairs()
    }

    #[test]
    fn resets_are_written_as_openai_does() {
        assert_eq!(reset(Duration::from_millis(850)), "850ms");
        assert_eq!(reset(Duration::from_millis(11_001)), "12s");
        assert_eq!(reset(Duration::ZERO), "0ms");
        let headers = retry_headers(Duration::from_millis(1_200)).to_pairs();
        assert_eq!(headers[0], ("retry-after".to_string(), b"2".to_vec()));
        assert_eq!(headers[1], ("retry-after-ms".to_string(), b"1200".to_vec()));
        let standing = Standing {
            requests: Some((60, 0)),
            tokens: None,
            reset: Duration::from_secs(3),
        };
        let headers = rate_headers(&standing, Dialect::OpenAi);
        let pairs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("x-ratelimit-limit-requests", &b"60"[..]),
                ("x-ratelimit-remaining-requests", b"0"),
                ("x-ratelimit-reset-requests", b"3s")
            ]
        );
        let anthropic = rate_headers(&standing, Dialect::Anthropic);
        assert_eq!(anthropic[0].0, "anthropic-ratelimit-requests-limit");
        assert!(anthropic[2].1.ends_with(b"Z"), "{anthropic:?}");
    }
}
