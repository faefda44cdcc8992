//! What to do after a failed attempt: retry the same target, fall back to the next,
//! re-route, or return the provider's answer — and how long to wait first.
//!
//! Retries never make an outage worse: exponential backoff with full jitter,
//! `Retry-After` honoured (and capped), a per-target retry budget (checked by the
//! caller), and no retry that cannot finish before the request's deadline.

use std::time::{Duration, SystemTime};

use crate::config::{FallbackPolicy, RetryPolicy};
use crate::outcome::{Failure, FailureClass};

/// The attempt loop's next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try the same target again after this wait.
    Retry(Duration),
    /// Move on to the next target of the chain.
    Fallback,
    /// Send the request to the route's context-length overflow route.
    Reroute,
    /// Stop: give the client this attempt's answer (or error).
    Return,
}

/// Decides from the failure class and the route's policies. `tries` counts the
/// attempts already made on this target; `other_targets` says whether the chain
/// has somewhere else to go.
pub fn decide(
    failure: &Failure,
    tries: u32,
    retry: &RetryPolicy,
    fallback: &FallbackPolicy,
    other_targets: bool,
) -> Next {
    let can_retry = tries < retry.attempts;
    let status_retry = failure.status.is_some_and(|s| retry.on_status.contains(&s));
    let status_fallback = failure
        .status
        .is_some_and(|s| fallback.on_status.contains(&s));
    let fall_back_or_return = |allowed: bool| {
        if allowed {
            Next::Fallback
        } else {
            Next::Return
        }
    };
    match failure.class {
        FailureClass::Connect | FailureClass::StalePooled => {
            if can_retry {
                Next::Retry(backoff(retry, tries))
            } else {
                fall_back_or_return(fallback.on_connect_error)
            }
        }
        FailureClass::Overloaded => overloaded(failure, tries, retry, fallback, other_targets),
        // A connection reset or malformed answer (no status) is a server failure
        // worth one more try, like a listed 5xx.
        FailureClass::Server => {
            if can_retry && (status_retry || failure.status.is_none()) {
                Next::Retry(backoff(retry, tries))
            } else {
                fall_back_or_return(status_fallback || failure.status.is_none())
            }
        }
        // Retrying a silent target only multiplies the wait.
        FailureClass::FirstByteTimeout | FailureClass::Stall | FailureClass::MidStream => {
            fall_back_or_return(fallback.on_timeout)
        }
        // The gateway's own limit: another target may have room; this one will not
        // have more in a backoff's time.
        FailureClass::Local => Next::Fallback,
        FailureClass::ContextLength if fallback.on_context_length.is_some() => Next::Reroute,
        FailureClass::ContentPolicy => fall_back_or_return(fallback.on_content_policy),
        FailureClass::ContextLength | FailureClass::Client => Next::Return,
    }
}

/// 429/529. With somewhere else to go (a listed status, another target) it moves on
/// at once: the target is sidelined for its `Retry-After` and another may have room.
/// Only a `Retry-After` no longer than `wait_retry_after_up_to` is waited for on
/// the same target. With nowhere else to go it retries (listed status or none)
/// after the `Retry-After` (capped) or the backoff.
fn overloaded(
    failure: &Failure,
    tries: u32,
    retry: &RetryPolicy,
    fallback: &FallbackPolicy,
    other_targets: bool,
) -> Next {
    let can_retry = tries < retry.attempts;
    let listed = |list: &[u16]| failure.status.is_some_and(|s| list.contains(&s));
    let may_fall_back =
        listed(&fallback.on_status) || (failure.status.is_none() && fallback.on_connect_error);
    let short_pause = failure.retry_after.filter(|ra| {
        *ra <= retry.wait_retry_after_up_to && !retry.wait_retry_after_up_to.is_zero()
    });
    if let (Some(pause), true) = (short_pause, can_retry) {
        return Next::Retry(pause);
    }
    if may_fall_back && other_targets {
        return Next::Fallback;
    }
    if can_retry && (listed(&retry.on_status) || failure.status.is_none()) {
        let wait = failure
            .retry_after
            .map_or(backoff(retry, tries), |ra| ra.min(retry.max_retry_after));
        return Next::Retry(wait);
    }
    if may_fall_back {
        Next::Fallback
    } else {
        Next::Return
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(max, base × 2^(tries-1))].
pub fn backoff(retry: &RetryPolicy, tries: u32) -> Duration {
    let exponent = tries.saturating_sub(1).min(20);
    let ceiling = retry
        .backoff
        .saturating_mul(1 << exponent)
        .min(retry.max_backoff);
    ceiling.mul_f64(fastrand::f64())
}

/// Parses `Retry-After`: delta-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            on_status: vec![429, 500, 502, 503, 504],
            budget_ratio: 0.2,
            budget_min_per_sec: 10,
            max_retry_after: Duration::from_secs(10),
            wait_retry_after_up_to: Duration::ZERO,
        }
    }

    fn fallback() -> FallbackPolicy {
        FallbackPolicy {
            on_status: vec![429, 500, 502, 503, 504, 529],
            on_timeout: true,
            on_connect_error: true,
            on_context_length: None,
            on_content_policy: false,
        }
    }

    fn failure(class: FailureClass, status: Option<u16>, retry_after: Option<u64>) -> Failure {
        Failure {
            class,
            status,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn server_error_retries_then_falls_back() {
        let f = failure(FailureClass::Server, Some(503), None);
        assert!(matches!(
            decide(&f, 1, &retry(), &fallback(), true),
            Next::Retry(_)
        ));
        assert_eq!(decide(&f, 2, &retry(), &fallback(), true), Next::Fallback);
    }

    #[test]
    fn resets_without_status_are_retried_then_fall_back() {
        let f = failure(FailureClass::Server, None, None);
        assert!(matches!(
            decide(&f, 1, &retry(), &fallback(), true),
            Next::Retry(_)
        ));
        assert_eq!(decide(&f, 2, &retry(), &fallback(), true), Next::Fallback);
    }

    #[test]
    fn status_not_listed_is_returned() {
        let f = failure(FailureClass::Server, Some(501), None);
        assert_eq!(decide(&f, 1, &retry(), &fallback(), true), Next::Return);
    }

    #[test]
    fn client_errors_are_returned_never_retried() {
        let f = failure(FailureClass::Client, Some(400), None);
        assert_eq!(decide(&f, 1, &retry(), &fallback(), true), Next::Return);
        let c = failure(FailureClass::ContentPolicy, Some(400), None);
        assert_eq!(decide(&c, 1, &retry(), &fallback(), true), Next::Return);
        let mut opt_in = fallback();
        opt_in.on_content_policy = true;
        assert_eq!(decide(&c, 1, &retry(), &opt_in, true), Next::Fallback);
    }

    #[test]
    fn context_length_reroutes_only_when_configured() {
        let f = failure(FailureClass::ContextLength, Some(400), None);
        assert_eq!(decide(&f, 1, &retry(), &fallback(), true), Next::Return);
        let mut with_route = fallback();
        with_route.on_context_length = Some("long".into());
        assert_eq!(decide(&f, 1, &retry(), &with_route, true), Next::Reroute);
    }

    #[test]
    fn timeouts_fall_back_without_retry() {
        let f = failure(FailureClass::FirstByteTimeout, None, None);
        assert_eq!(decide(&f, 1, &retry(), &fallback(), true), Next::Fallback);
    }

    #[test]
    fn rate_limit_with_retry_after_moves_on_or_waits_when_alone() {
        let f = failure(FailureClass::Overloaded, Some(429), Some(3));
        assert_eq!(decide(&f, 1, &retry(), &fallback(), true), Next::Fallback);
        assert_eq!(
            decide(&f, 1, &retry(), &fallback(), false),
            Next::Retry(Duration::from_secs(3))
        );
        let long = failure(FailureClass::Overloaded, Some(429), Some(600));
        assert_eq!(
            decide(&long, 1, &retry(), &fallback(), false),
            Next::Retry(Duration::from_secs(10))
        );
    }

    /// Every overloaded case: (status, Retry-After s, tries, other targets,
    /// wait_retry_after_up_to s) → next step.
    #[test]
    fn overloaded_table() {
        use Next::*;
        type Case = (Option<u16>, Option<u64>, u32, bool, u64, Next);
        let cases: &[Case] = &[
            // Somewhere else to go: move on at once, whatever the Retry-After.
            (Some(429), None, 1, true, 0, Fallback),
            (Some(429), Some(3), 1, true, 0, Fallback),
            (Some(529), None, 1, true, 0, Fallback),
            (Some(529), Some(1), 1, true, 0, Fallback),
            // Opted in: a short Retry-After is waited for on the same target...
            (
                Some(429),
                Some(3),
                1,
                true,
                3,
                Retry(Duration::from_secs(3)),
            ),
            (Some(529), Some(0), 1, true, 3, Retry(Duration::ZERO)),
            // ...a longer one, none, or no tries left still move on.
            (Some(429), Some(4), 1, true, 3, Fallback),
            (Some(429), None, 1, true, 3, Fallback),
            (Some(429), Some(3), 2, true, 3, Fallback),
            // Nowhere else: wait the Retry-After (capped at max_retry_after).
            (
                Some(429),
                Some(3),
                1,
                false,
                0,
                Retry(Duration::from_secs(3)),
            ),
            (
                Some(429),
                Some(600),
                1,
                false,
                0,
                Retry(Duration::from_secs(10)),
            ),
            // 529 is not in this policy's retry list: nothing more to do.
            (Some(529), Some(3), 1, false, 0, Fallback),
            (Some(429), Some(3), 2, false, 0, Fallback),
        ];
        for &(status, ra, tries, others, up_to, want) in cases {
            let mut r = retry();
            r.wait_retry_after_up_to = Duration::from_secs(up_to);
            let f = failure(FailureClass::Overloaded, status, ra);
            assert_eq!(
                decide(&f, tries, &r, &fallback(), others),
                want,
                "{status:?} ra {ra:?} tries {tries} others {others} up_to {up_to}"
            );
        }
        // No Retry-After and nowhere to go: the usual jittered backoff.
        let f = failure(FailureClass::Overloaded, Some(429), None);
        assert!(matches!(
            decide(&f, 1, &retry(), &fallback(), false),
            Retry(_)
        ));
        // A status the route neither retries nor falls back on is returned.
        let mut strict = fallback();
        strict.on_status.clear();
        assert_eq!(decide(&f, 2, &retry(), &strict, true), Return);
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let r = retry();
        for tries in 1..12 {
            let ceiling = Duration::from_millis(100 * (1 << (tries - 1))).min(r.max_backoff);
            for _ in 0..50 {
                assert!(backoff(&r, tries) <= ceiling);
            }
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after(b"7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(b" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(later.as_bytes(), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(past.as_bytes(), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(b"soon", now), None);
    }
}
