//! The plan's rules, by table (every failure class × policy), and its invariants by
//! property.

use super::*;
use proptest::prelude::*;

/// The documented defaults (the shared test route's policies) on one target.
fn policy() -> TargetPolicy {
    let route = crate::route::tests_support::route_with(crate::config::Strategy::Priority, vec![]);
    TargetPolicy {
        slot: 0,
        provider: 0,
        retry: route.retry,
        fallback: route.fallback,
        timeouts: route.timeouts,
        stream: route.stream,
        reroute: None,
        prefill: crate::config::Prefill::Auto,
        fallback_tier: false,
        headers: crate::proxy::headers::Forwarding::default(),
    }
}

fn failure(class: FailureClass, status: Option<u16>, retry_after: Option<u64>) -> Failure {
    Failure {
        class,
        status,
        retry_after: retry_after.map(Duration::from_secs),
    }
}

fn tried(tries: u32, others: bool) -> Tried {
    Tried {
        tries,
        probe: false,
        others,
        reroutes_left: true,
    }
}

fn clear() -> Reading {
    Reading {
        tripped: false,
        sidelined_until: None,
        typical: Duration::ZERO,
        budget_allows: true,
    }
}

/// The step for a failure with a healthy reading and a far deadline.
fn step(p: &TargetPolicy, f: &Failure, t: Tried) -> Step {
    let now = Instant::now();
    after_failure(p, f, t, &clear(), now, now + Duration::from_secs(600)).step
}

fn is_retry(s: Step) -> bool {
    matches!(s, Step::Retry(_))
}

/// Every class on its first try (others available, then not) under the default
/// policy: (class, status, retry on try 1, step on the last try with others, with
/// no others).
#[test]
fn every_class_under_the_default_policy() {
    use FailureClass::*;
    type Case = (FailureClass, Option<u16>, bool, Step, Step);
    let cases: &[Case] = &[
        (Connect, None, true, Step::Next, Step::Next),
        (StalePooled, None, true, Step::Next, Step::Next),
        (Server, Some(503), true, Step::Next, Step::Next),
        (Server, None, true, Step::Next, Step::Next),
        (Server, Some(501), false, Step::Return, Step::Return),
        (Overloaded, Some(429), false, Step::Next, Step::Next),
        (Overloaded, Some(529), false, Step::Next, Step::Next),
        (FirstByteTimeout, None, false, Step::Next, Step::Next),
        (Stall, None, false, Step::Next, Step::Next),
        (MidStream, Some(200), false, Step::Next, Step::Next),
        (Local, None, false, Step::Next, Step::Next),
        (ContextLength, Some(400), false, Step::Return, Step::Return),
        (ContentPolicy, Some(400), false, Step::Return, Step::Return),
        (Client, Some(400), false, Step::Return, Step::Return),
    ];
    let p = policy();
    for &(class, status, retries, last_with_others, last_alone) in cases {
        let f = failure(class, status, None);
        assert_eq!(
            is_retry(step(&p, &f, tried(1, true))),
            retries,
            "{class:?} {status:?} first try"
        );
        assert_eq!(
            step(&p, &f, tried(2, true)),
            last_with_others,
            "{class:?} {status:?} last try, others"
        );
        let alone = step(&p, &f, tried(2, false));
        assert_eq!(alone, last_alone, "{class:?} {status:?} last try, alone");
    }
}

#[test]
fn opt_ins_change_what_the_policy_does() {
    let mut p = policy();
    p.fallback.on_content_policy = true;
    let c = failure(FailureClass::ContentPolicy, Some(400), None);
    assert_eq!(step(&p, &c, tried(1, true)), Step::Next);
    p.reroute = Some(3);
    let long = failure(FailureClass::ContextLength, Some(400), None);
    assert_eq!(step(&p, &long, tried(1, true)), Step::Reroute(3));
    let mut no_more = tried(1, true);
    no_more.reroutes_left = false;
    assert_eq!(step(&p, &long, no_more), Step::Return);
    p.fallback.on_timeout = false;
    let t = failure(FailureClass::FirstByteTimeout, None, None);
    assert_eq!(step(&p, &t, tried(1, true)), Step::Return);
    p.fallback.on_connect_error = false;
    let r = failure(FailureClass::Connect, None, None);
    assert_eq!(step(&p, &r, tried(2, true)), Step::Return);
}

/// Every overloaded case: (status, Retry-After s, tries, other targets,
/// wait_retry_after_up_to s) → next step.
#[test]
fn overloaded_table() {
    use Step::*;
    let secs = Duration::from_secs;
    type Case = (Option<u16>, Option<u64>, u32, bool, u64, Step);
    let cases: &[Case] = &[
        // Somewhere else to go: move on at once, whatever the Retry-After.
        (Some(429), None, 1, true, 0, Next),
        (Some(429), Some(3), 1, true, 0, Next),
        (Some(529), None, 1, true, 0, Next),
        (Some(529), Some(1), 1, true, 0, Next),
        // Opted in: a short Retry-After is waited for on the same target...
        (Some(429), Some(3), 1, true, 3, Retry(secs(3))),
        (Some(529), Some(0), 1, true, 3, Retry(Duration::ZERO)),
        // ...a longer one, none, or no tries left still move on.
        (Some(429), Some(4), 1, true, 3, Next),
        (Some(429), None, 1, true, 3, Next),
        (Some(429), Some(3), 2, true, 3, Next),
        // Nowhere else: wait the Retry-After (capped at max_retry_after).
        (Some(429), Some(3), 1, false, 0, Retry(secs(3))),
        (Some(429), Some(600), 1, false, 0, Retry(secs(10))),
        // 529 is not in this policy's retry list: nothing more to do.
        (Some(529), Some(3), 1, false, 0, Next),
        (Some(429), Some(3), 2, false, 0, Next),
    ];
    for &(status, ra, tries, others, up_to, want) in cases {
        let mut p = policy();
        p.retry.wait_retry_after_up_to = secs(up_to);
        let f = failure(FailureClass::Overloaded, status, ra);
        assert_eq!(
            step(&p, &f, tried(tries, others)),
            want,
            "{status:?} ra {ra:?} tries {tries} others {others} up_to {up_to}"
        );
    }
    // No Retry-After and nowhere to go: the usual jittered backoff.
    let f = failure(FailureClass::Overloaded, Some(429), None);
    assert!(is_retry(step(&policy(), &f, tried(1, false))));
    // A status the route neither retries nor falls back on is returned.
    let mut strict = policy();
    strict.fallback.on_status.clear();
    assert_eq!(step(&strict, &f, tried(2, true)), Return);
}

#[test]
fn a_retry_after_sidelines_the_target_capped() {
    let now = Instant::now();
    let far = now + Duration::from_secs(600);
    let f = failure(FailureClass::Overloaded, Some(429), Some(3));
    let d = after_failure(&policy(), &f, tried(1, true), &clear(), now, far);
    assert_eq!(d.sideline_until, Some(now + Duration::from_secs(3)));
    let long = failure(FailureClass::Overloaded, Some(429), Some(600));
    let d = after_failure(&policy(), &long, tried(1, true), &clear(), now, far);
    assert_eq!(d.sideline_until, Some(now + Duration::from_secs(10)));
    let server = failure(FailureClass::Server, Some(503), Some(3));
    let d = after_failure(&policy(), &server, tried(1, true), &clear(), now, far);
    assert_eq!(d.sideline_until, None, "only overload sidelines");
    // Waiting out its own sideline is allowed; the retry lands when it ends.
    let d = after_failure(&policy(), &f, tried(1, false), &clear(), now, far);
    assert_eq!(d.step, Step::Retry(Duration::from_secs(3)));
}

/// The gates on a retry the class asked for: (probe, budget, tripped, sidelined
/// for s, deadline in s, typical latency s) → retried?
#[test]
fn retry_gates() {
    type Case = (bool, bool, bool, Option<u64>, u64, u64, bool);
    let cases: &[Case] = &[
        (false, true, false, None, 600, 0, true),
        (true, true, false, None, 600, 0, false),
        (false, false, false, None, 600, 0, false),
        (false, true, true, None, 600, 0, false),
        (false, true, false, Some(5), 600, 0, false),
        (false, true, false, Some(0), 600, 0, true),
        (false, true, false, None, 0, 0, false),
        (false, true, false, None, 3, 5, false),
    ];
    let f = failure(FailureClass::Server, Some(503), None);
    for &(probe, budget, tripped, blocked, deadline, typical, want) in cases {
        let now = Instant::now();
        let reading = Reading {
            tripped,
            sidelined_until: blocked.map(|s| now + Duration::from_secs(s)),
            typical: Duration::from_secs(typical),
            budget_allows: budget,
        };
        let mut t = tried(1, true);
        t.probe = probe;
        let deadline_at = now + Duration::from_secs(deadline);
        let d = after_failure(&policy(), &f, t, &reading, now, deadline_at);
        assert_eq!(
            is_retry(d.step),
            want,
            "probe {probe} budget {budget} tripped {tripped} sidelined {blocked:?} deadline {deadline} typical {typical}"
        );
        if !want {
            assert_eq!(d.step, Step::Next, "a retry refused acts as the last try");
        }
    }
}

#[test]
fn endings() {
    use FailureClass::*;
    let now = Instant::now();
    let later = now + Duration::from_secs(60);
    let at = |classes: &[FailureClass]| -> Vec<Attempted> {
        classes.iter().map(|&class| Attempted { class }).collect()
    };
    type Case = (&'static [FailureClass], Option<u16>, bool, bool, Ending);
    let until = now + Duration::from_secs(5);
    let cases: &[Case] = &[
        (&[Client], Some(400), true, false, Ending::ProviderAnswer),
        (
            &[Overloaded, Overloaded],
            Some(429),
            false,
            false,
            Ending::ProviderAnswer,
        ),
        (
            &[Overloaded, Server],
            Some(429),
            false,
            false,
            Ending::Failed,
        ),
        (&[Server], Some(503), false, false, Ending::Failed),
        (&[], None, false, true, Ending::FailFast { until }),
        (&[Server], None, false, true, Ending::Failed),
        (
            &[Server, FirstByteTimeout],
            None,
            false,
            false,
            Ending::TimedOut,
        ),
        (&[Stall], None, false, false, Ending::TimedOut),
        (&[Client], None, true, true, Ending::Failed),
    ];
    for &(classes, kept, returned, refused, want) in cases {
        let refused_until = refused.then_some(until);
        let got = ending(&at(classes), kept, returned, refused_until, now, later);
        assert_eq!(got, want, "{classes:?} kept {kept:?} returned {returned}");
    }
    assert_eq!(
        ending(&at(&[Server]), None, false, None, later, later),
        Ending::TimedOut
    );
}

#[test]
fn backoff_is_bounded_and_grows() {
    let r = policy().retry;
    for tries in 1..12 {
        let ceiling = Duration::from_millis(100 * (1 << (tries - 1))).min(r.max_backoff);
        for _ in 0..50 {
            assert!(backoff(&r, tries) <= ceiling);
        }
    }
}

fn any_class() -> impl Strategy<Value = FailureClass> {
    proptest::sample::select(FailureClass::ALL.to_vec())
}

proptest! {
    /// Whatever happened: no retry past the attempts, the deadline, the budget or
    /// an open breaker; none for a probe, a client error or a content-policy
    /// rejection; a re-route only where configured and allowed.
    #[test]
    fn invariants(
        class in any_class(),
        status in proptest::option::of(prop_oneof![Just(200u16), 400u16..=404, 429u16..=429, 500u16..=504, Just(529u16)]),
        retry_after in proptest::option::of(0u64..30),
        tries in 1u32..6,
        attempts in 1u32..5,
        probe: bool,
        others: bool,
        reroutes_left: bool,
        reroute: bool,
        budget: bool,
        tripped: bool,
        blocked_ms in proptest::option::of(0u64..20_000),
        deadline_ms in 0u64..20_000,
        up_to in 0u64..5,
    ) {
        let mut p = policy();
        p.retry.attempts = attempts;
        p.retry.wait_retry_after_up_to = Duration::from_secs(up_to);
        p.reroute = reroute.then_some(1);
        let f = Failure { class, status, retry_after: retry_after.map(Duration::from_secs) };
        let now = Instant::now();
        let reading = Reading {
            tripped,
            sidelined_until: blocked_ms.map(|ms| now + Duration::from_millis(ms)),
            typical: Duration::from_millis(5),
            budget_allows: budget,
        };
        let deadline = now + Duration::from_millis(deadline_ms);
        let t = Tried { tries, probe, others, reroutes_left };
        let d = after_failure(&p, &f, t, &reading, now, deadline);
        if let Step::Retry(wait) = d.step {
            prop_assert!(tries < attempts, "never past the attempts");
            prop_assert!(!probe, "never retries a probe");
            prop_assert!(budget, "never past the budget");
            prop_assert!(now + wait < deadline, "never past the deadline");
            prop_assert!(!tripped, "never to a tripped target");
            prop_assert!(!matches!(reading.sidelined_until, Some(u) if u > now + wait), "never into a sideline");
            prop_assert!(!matches!(class, FailureClass::ContentPolicy | FailureClass::Client | FailureClass::ContextLength));
        }
        if let Step::Reroute(_) = d.step {
            prop_assert!(reroute && reroutes_left && class == FailureClass::ContextLength);
        }
        if d.sideline_until.is_some() {
            prop_assert_eq!(class, FailureClass::Overloaded);
        }
    }
}
