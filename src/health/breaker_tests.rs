use super::*;
use std::sync::Arc;

fn cfg() -> HealthConfig {
    HealthConfig {
        window: Duration::from_secs(60),
        min_requests: 20,
        failure_rate: 0.5,
        consecutive_failures: 3,
        cooldown: Duration::from_secs(1),
        max_cooldown: Duration::from_secs(8),
        half_open_probes: 1,
    }
}

fn at(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

fn totals(requests: u32, failures: u32) -> WindowTotals {
    WindowTotals {
        requests,
        failures,
        ..WindowTotals::default()
    }
}

fn open(until: u64, reason: TripReason) -> Word {
    Word {
        open: Some((until, reason)),
    }
}

#[test]
fn word_round_trips() {
    for w in [
        Word::CLOSED,
        open(0, TripReason::Rate),
        open(123_456_789, TripReason::Consecutive),
        open(DEADLINE_BITS, TripReason::ProbeFailed),
    ] {
        assert_eq!(Word::unpack(w.pack()), w);
    }
}

#[test]
fn admit_table() {
    use Verdict::*;
    let c = TripReason::Consecutive;
    // (word, sidelined until, probe token free, now) → verdict
    let cases = [
        (Word::CLOSED, 0, true, 10, Allow),
        (Word::CLOSED, 0, false, 10, Allow),
        (Word::CLOSED, 50, true, 10, Reject { until: 50 }),
        (Word::CLOSED, 50, true, 50, Allow),
        (open(100, c), 0, true, 99, Reject { until: 100 }),
        (open(100, c), 0, true, 100, Probe),
        (open(100, c), 0, false, 100, Reject { until: 100 }),
        (open(100, c), 0, false, 150, Reject { until: 150 }),
        (open(100, c), 300, true, 50, Reject { until: 300 }),
        (open(100, c), 300, true, 200, Reject { until: 300 }),
        (open(100, c), 300, true, 300, Probe),
    ];
    for (word, side, free, now, want) in cases {
        assert_eq!(
            admit(word, side, free, now),
            want,
            "{word:?} side {side} free {free} now {now}"
        );
    }
}

#[test]
fn cooldown_doubles_and_is_capped() {
    let got: Vec<u64> = (0..7).map(|k| cooldown(&cfg(), k).as_secs()).collect();
    assert_eq!(got, [1, 2, 4, 8, 8, 8, 8]);
    let flat = HealthConfig {
        cooldown: Duration::from_secs(10),
        max_cooldown: Duration::from_secs(10),
        ..cfg()
    };
    assert_eq!(cooldown(&flat, 30), Duration::from_secs(10));
}

#[test]
fn trip_table() {
    let c = cfg();
    // (window totals, consecutive) → reason
    let cases = [
        (totals(0, 0), 2, None),
        (totals(0, 0), 3, Some(TripReason::Consecutive)),
        (totals(19, 19), 1, None),
        (totals(40, 19), 1, None),
        (totals(20, 10), 1, Some(TripReason::Rate)),
        (totals(20, 10), 3, Some(TripReason::Consecutive)),
    ];
    for (t, n, want) in cases {
        assert_eq!(should_trip(&c, &t, n), want, "{t:?} {n}");
    }
    let no_streak = HealthConfig {
        consecutive_failures: 0,
        ..cfg()
    };
    assert_eq!(should_trip(&no_streak, &totals(0, 0), 1_000), None);
}

#[test]
fn after_failure_table() {
    let c = cfg();
    let (r, p) = (TripReason::Rate, TripReason::ProbeFailed);
    // (word, now, probe, trip, failed probes) → next
    let cases = [
        (Word::CLOSED, 5, false, None, 0, None),
        (
            Word::CLOSED,
            5,
            false,
            Some(r),
            3,
            Some((open(1_005, r), 0)),
        ),
        // A failure that arrives while open is old news.
        (open(100, r), 50, false, Some(r), 0, None),
        (open(100, r), 50, true, Some(r), 0, None),
        // Half-open: only the probe's failure re-opens, for the next cooldown.
        (open(100, r), 100, false, Some(r), 0, None),
        (open(100, r), 100, true, None, 0, Some((open(2_100, p), 1))),
        (open(100, r), 100, true, None, 3, Some((open(8_100, p), 4))),
        (
            open(100, r),
            100,
            true,
            None,
            20,
            Some((open(8_100, p), 20)),
        ),
    ];
    for (word, now, probe, trip, k, want) in cases {
        assert_eq!(
            after_failure(&c, word, now, probe, trip, k),
            want,
            "{word:?} now {now} probe {probe} trip {trip:?} k {k}"
        );
    }
}

#[test]
fn close_table() {
    let two = HealthConfig {
        half_open_probes: 2,
        ..cfg()
    };
    let w = open(100, TripReason::Rate);
    assert!(closes_after_success(&cfg(), w, 100, true, 1));
    assert!(
        !closes_after_success(&cfg(), w, 100, false, 1),
        "not a probe"
    );
    assert!(!closes_after_success(&cfg(), w, 99, true, 1), "still open");
    assert!(!closes_after_success(&cfg(), Word::CLOSED, 100, true, 1));
    assert!(!closes_after_success(&two, w, 100, true, 1));
    assert!(closes_after_success(&two, w, 100, true, 2));
}

#[test]
fn fleet_close_table() {
    let c = TripReason::Consecutive;
    // word → word after the fleet's probe closed the target
    let cases = [
        (Word::CLOSED, None),
        (open(100, c), Some(Word::CLOSED)),
        (open(0, TripReason::ProbeFailed), Some(Word::CLOSED)),
        (open(100, TripReason::RetryAfter), Some(Word::CLOSED)),
    ];
    for (word, want) in cases {
        assert_eq!(after_fleet_close(word), want, "{word:?}");
    }
}

#[test]
fn close_by_fleet_closes_like_a_successful_probe() {
    let t0 = Instant::now();
    let b = SharedBreaker::new(t0);
    let cfg = cfg();
    assert_eq!(b.close_by_fleet(at(t0, 1)), None, "closed: nothing to do");
    for ms in 0..3 {
        b.on_failure(&cfg, at(t0, ms), false, &totals(1, 1));
    }
    assert!(b.tripped());
    // A failed probe makes the next cooldown longer; the fleet's close resets it.
    assert_eq!(b.admit(at(t0, 1_100)), Admission::Probe);
    b.on_failure(&cfg, at(t0, 1_100), true, &totals(1, 1));
    assert_eq!(b.next_cooldown(&cfg), Duration::from_secs(4));
    let closes = b.closes();
    let t = b.close_by_fleet(at(t0, 1_200)).expect("a transition");
    assert_eq!((t.from, t.to), (StateKind::Open, StateKind::Closed));
    assert!(!b.tripped());
    assert_eq!(b.closes(), closes + 1, "shards clear their windows");
    assert_eq!(b.consecutive_failures(), 0);
    assert_eq!(b.next_cooldown(&cfg), Duration::from_secs(2));
    assert_eq!(b.admit(at(t0, 1_201)), Admission::Allow);
    assert_eq!(b.close_by_fleet(at(t0, 1_202)), None, "only once");
}

#[test]
fn lift_sideline_lifts_only_the_sideline_it_was_given() {
    let t0 = Instant::now();
    let b = SharedBreaker::new(t0);
    b.sideline(t0, at(t0, 5_000));
    let until = b.sidelined_until(t0).expect("sidelined");
    assert!(!b.lift_sideline(at(t0, 4_000)), "another deadline: stays");
    assert!(!b.would_admit(t0));
    assert!(b.lift_sideline(until));
    assert_eq!(b.state(at(t0, 10)), BreakerState::Closed);
    assert!(b.would_admit(at(t0, 10)));
    // Extended since (a Retry-After past it): the extension stays.
    b.sideline(t0, at(t0, 1_000));
    let first = b.sidelined_until(t0).expect("sidelined");
    b.sideline(t0, at(t0, 3_000));
    assert!(!b.lift_sideline(first));
    assert_eq!(b.sidelined_until(t0), Some(at(t0, 3_000)));
}

#[test]
fn lift_sideline_never_weakens_a_trip() {
    let t0 = Instant::now();
    let b = SharedBreaker::new(t0);
    let q = WindowTotals::default();
    assert_eq!(b.open_until(), None);
    for _ in 0..3 {
        b.on_failure(&cfg(), t0, false, &q);
    }
    assert_eq!(b.open_until(), Some(at(t0, 1_000)));
    b.sideline(t0, at(t0, 500));
    let until = b.sidelined_until(t0).expect("sidelined");
    assert!(b.lift_sideline(until));
    assert!(b.tripped());
    assert_eq!(
        b.admit(at(t0, 600)),
        Admission::Reject {
            until: at(t0, 1_000)
        }
    );
    assert_eq!(b.open_until(), Some(at(t0, 1_000)), "sideline left out");
}

#[test]
fn trips_on_consecutive_failures_from_any_caller() {
    let t0 = Instant::now();
    let b = SharedBreaker::new(t0);
    let q = WindowTotals::default();
    assert_eq!(b.on_failure(&cfg(), t0, false, &q), None);
    assert_eq!(b.on_failure(&cfg(), t0, false, &q), None);
    let tr = b
        .on_failure(&cfg(), t0, false, &q)
        .expect("third failure trips");
    assert_eq!((tr.from, tr.to), (StateKind::Closed, StateKind::Open));
    assert_eq!(tr.reason, Some(TripReason::Consecutive));
    assert_eq!(
        b.admit(at(t0, 999)),
        Admission::Reject {
            until: at(t0, 1_000)
        }
    );
    assert_eq!(
        b.on_failure(&cfg(), at(t0, 10), false, &q),
        None,
        "no second trip"
    );
}

#[test]
fn success_resets_the_streak() {
    let t0 = Instant::now();
    let b = SharedBreaker::new(t0);
    let q = WindowTotals::default();
    b.on_failure(&cfg(), t0, false, &q);
    b.on_failure(&cfg(), t0, false, &q);
    assert_eq!(b.on_success(&cfg(), t0, false), None);
    assert_eq!(b.consecutive_failures(), 0);
    assert_eq!(b.on_failure(&cfg(), t0, false, &q), None);
    assert_eq!(b.admit(t0), Admission::Allow);
}

#[test]
fn one_probe_at_a_time_and_a_failed_probe_reopens_longer() {
    let t0 = Instant::now();
    let b = SharedBreaker::new(t0);
    let q = WindowTotals::default();
    for _ in 0..3 {
        b.on_failure(&cfg(), t0, false, &q);
    }
    let t1 = at(t0, 1_000);
    assert_eq!(
        b.state(t1),
        BreakerState::HalfOpen {
            reason: TripReason::Consecutive
        }
    );
    assert_eq!(b.admit(t1), Admission::Probe);
    assert_eq!(b.admit(t1), Admission::Reject { until: t1 });
    assert!(!b.would_admit(t1));
    let tr = b
        .on_failure(&cfg(), t1, true, &q)
        .expect("probe failure re-opens");
    assert_eq!(
        (tr.from, tr.reason),
        (StateKind::HalfOpen, Some(TripReason::ProbeFailed))
    );
    assert_eq!(tr.lasts, Some(Duration::from_secs(2)));
    assert_eq!(
        b.admit(at(t1, 1_999)),
        Admission::Reject {
            until: at(t1, 2_000)
        }
    );
    assert_eq!(b.admit(at(t1, 2_000)), Admission::Probe);
}

#[test]
fn probe_success_closes_and_resets_the_cooldown() {
    let t0 = Instant::now();
    let b = SharedBreaker::new(t0);
    let q = WindowTotals::default();
    for _ in 0..3 {
        b.on_failure(&cfg(), t0, false, &q);
    }
    let t1 = at(t0, 1_000);
    assert_eq!(b.admit(t1), Admission::Probe);
    b.on_failure(&cfg(), t1, true, &q);
    let t2 = at(t1, 2_000);
    assert_eq!(b.admit(t2), Admission::Probe);
    let tr = b.on_success(&cfg(), t2, true).map(|t| t.to_string());
    assert_eq!(tr.as_deref(), Some("half_open → closed"));
    assert_eq!(b.closes(), 1);
    assert_eq!(b.admit(t2), Admission::Allow);
    for _ in 0..3 {
        b.on_failure(&cfg(), t2, false, &q);
    }
    assert_eq!(
        b.next_admit(t2),
        Some(at(t2, 1_000)),
        "back to the base cooldown"
    );
}

#[test]
fn several_probes_needed_go_one_at_a_time() {
    let two = HealthConfig {
        half_open_probes: 2,
        ..cfg()
    };
    let t0 = Instant::now();
    let b = SharedBreaker::new(t0);
    let q = WindowTotals::default();
    for _ in 0..3 {
        b.on_failure(&two, t0, false, &q);
    }
    let t1 = at(t0, 1_000);
    assert_eq!(b.admit(t1), Admission::Probe);
    assert_eq!(b.on_success(&two, t1, true), None, "one of two");
    assert_eq!(b.admit(t1), Admission::Probe);
    assert!(b.on_success(&two, t1, true).is_some());
}

#[test]
fn released_probe_frees_the_token() {
    let t0 = Instant::now();
    let b = SharedBreaker::new(t0);
    let q = WindowTotals::default();
    for _ in 0..3 {
        b.on_failure(&cfg(), t0, false, &q);
    }
    let t1 = at(t0, 1_000);
    assert_eq!(b.admit(t1), Admission::Probe);
    b.release_probe();
    assert_eq!(b.admit(t1), Admission::Probe);
}

#[test]
fn sideline_is_distinct_from_open_and_leaves_the_cooldown() {
    let t0 = Instant::now();
    let b = SharedBreaker::new(t0);
    let tr = b.sideline(t0, at(t0, 5_000)).expect("starts a sideline");
    assert_eq!((tr.from, tr.to), (StateKind::Closed, StateKind::Sidelined));
    assert_eq!(
        b.sideline(t0, at(t0, 2_000)),
        None,
        "never shortened, no new transition"
    );
    assert_eq!(
        b.state(at(t0, 10)),
        BreakerState::Sidelined {
            until: at(t0, 5_000)
        }
    );
    assert_eq!(
        b.admit(at(t0, 4_999)),
        Admission::Reject {
            until: at(t0, 5_000)
        }
    );
    assert_eq!(b.admit(at(t0, 5_000)), Admission::Allow);
    assert_eq!(b.next_cooldown(&cfg()), Duration::from_secs(2));
}

#[test]
fn sideline_longer_than_cooldown_extends_the_open_period() {
    let t0 = Instant::now();
    let b = SharedBreaker::new(t0);
    let q = WindowTotals::default();
    for _ in 0..3 {
        b.on_failure(&cfg(), t0, false, &q);
    }
    b.sideline(t0, at(t0, 3_000));
    assert_eq!(
        b.state(at(t0, 500)),
        BreakerState::Open {
            until: at(t0, 3_000),
            reason: TripReason::Consecutive
        }
    );
    assert_eq!(b.next_admit(at(t0, 500)), Some(at(t0, 3_000)));
    assert_eq!(b.admit(at(t0, 3_000)), Admission::Probe);
}

/// Many threads racing for the half-open token: exactly one wins.
#[test]
fn exactly_one_probe_across_threads() {
    let t0 = Instant::now();
    let b = Arc::new(SharedBreaker::new(t0));
    let q = WindowTotals::default();
    for _ in 0..3 {
        b.on_failure(&cfg(), t0, false, &q);
    }
    let t1 = at(t0, 1_000);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || (0..100).filter(|_| b.admit(t1) == Admission::Probe).count())
        })
        .collect();
    let probes: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    assert_eq!(probes, 1);
}

/// How long a trip made on one thread takes to be seen by another that keeps
/// admitting. Prints a figure; asserts only that it is seen.
#[test]
fn transition_propagation_is_measured() {
    let t0 = Instant::now();
    let b = Arc::new(SharedBreaker::new(t0));
    let watcher = {
        let b = b.clone();
        std::thread::spawn(move || {
            while b.admit(Instant::now()) == Admission::Allow {
                std::hint::spin_loop();
            }
            Instant::now()
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let q = WindowTotals::default();
    let tripped_at = Instant::now();
    for _ in 0..3 {
        b.on_failure(&cfg(), tripped_at, false, &q);
    }
    let seen = watcher.join().expect("watcher ends once it sees the trip");
    eprintln!(
        "breaker transition seen by another thread after {:?}",
        seen.saturating_duration_since(tripped_at)
    );
}

mod properties {
    //! Invariants over random interleavings of admissions and outcomes, as any mix
    //! of shards would produce them.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u64),
        Admit,
        /// An outcome: success?, and whether it reports a held probe.
        Outcome(bool, bool),
        Release,
        Sideline(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..3_000).prop_map(Op::Advance),
            5 => Just(Op::Admit),
            4 => (any::<bool>(), any::<bool>()).prop_map(|(s, p)| Op::Outcome(s, p)),
            1 => Just(Op::Release),
            1 => (0u64..5_000).prop_map(Op::Sideline),
        ]
    }

    proptest! {
        #[test]
        fn one_probe_at_a_time_and_bounded_open_periods(ops in prop::collection::vec(op(), 1..300)) {
            let c = cfg();
            let t0 = Instant::now();
            let b = SharedBreaker::new(t0);
            let q = WindowTotals::default();
            let (mut now, mut held, mut sidelined) = (t0, 0u32, t0);
            for op in ops {
                let before = b.state(now);
                match op {
                    Op::Advance(ms) => now += Duration::from_millis(ms),
                    Op::Admit => match b.admit(now) {
                        Admission::Allow => prop_assert_eq!(before, BreakerState::Closed),
                        Admission::Probe => {
                            let half_open = matches!(before, BreakerState::HalfOpen { .. });
                            prop_assert!(half_open, "a probe only while half-open: {:?}", before);
                            held += 1;
                        }
                        Admission::Reject { until } => prop_assert!(until >= now),
                    },
                    Op::Outcome(success, probe) => {
                        let probe = probe && held > 0;
                        held -= u32::from(probe);
                        if success {
                            b.on_success(&c, now, probe);
                            prop_assert_eq!(b.consecutive_failures(), 0);
                        } else {
                            b.on_failure(&c, now, probe, &q);
                        }
                    }
                    Op::Release => {
                        if held > 0 {
                            held -= 1;
                            b.release_probe();
                        }
                    }
                    Op::Sideline(ms) => {
                        let until = now + Duration::from_millis(ms);
                        b.sideline(now, until);
                        sidelined = sidelined.max(until);
                    }
                }
                prop_assert!(held <= 1, "two probes in flight");
                let longest = c.max_cooldown.max(sidelined.saturating_duration_since(now));
                if let BreakerState::Open { until, .. } = b.state(now) {
                    prop_assert!(until.saturating_duration_since(now) <= longest);
                }
            }
        }
    }
}
