//! The circuit breaker: decides whether a target gets traffic right now.
//!
//! Closed → Open when the window's failure rate crosses the threshold with enough
//! volume, or after N consecutive health-counting failures. Open lasts a cooldown
//! that doubles on every re-trip (up to a maximum) and resets after a close. When
//! the cooldown has passed the breaker is half-open: it lets a few concurrent probes
//! through; a probe success closes it, a probe failure re-opens it. Separately, a
//! provider can *sideline* a target (429 + `Retry-After`): no traffic until then,
//! without growing the cooldown. Time only moves by the `now` the caller passes in;
//! "half-open" is computed from it, never stored.

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::HealthConfig;

use super::window::WindowTotals;

/// What the breaker says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: send it.
    Allow,
    /// Half-open: send it as a probe; report its outcome (or
    /// [`Breaker::probe_abandoned`] if it never produced one).
    Probe,
    /// No traffic. `until` is when it next admits a probe; while half-open with every
    /// probe slot taken it is `now` (the answer comes with the probes in flight).
    Reject { until: Instant },
}

/// The breaker's state at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// No traffic until `until` (a cooldown, a sideline, or both).
    Open {
        until: Instant,
    },
    HalfOpen,
}

impl BreakerState {
    pub fn kind(self) -> StateKind {
        match self {
            BreakerState::Closed => StateKind::Closed,
            BreakerState::Open { .. } => StateKind::Open,
            BreakerState::HalfOpen => StateKind::HalfOpen,
        }
    }
}

/// A [`BreakerState`] without its deadline, for logs and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    Closed,
    Open,
    HalfOpen,
}

impl StateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Closed => "closed",
            StateKind::Open => "open",
            StateKind::HalfOpen => "half_open",
        }
    }
}

/// A state change worth logging and counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: StateKind,
    pub to: StateKind,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.from.as_str(), self.to.as_str())
    }
}

/// One target's breaker on one shard.
#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: HealthConfig,
    /// `None` while closed; `Some(t)`: open until `t`, half-open from `t` on.
    open_until: Option<Instant>,
    /// The cooldown of the current (or next) trip.
    cooldown: Duration,
    /// Probes admitted in the current half-open period and not yet answered.
    probes: u32,
    sidelined_until: Option<Instant>,
}

impl Breaker {
    pub fn new(cfg: &HealthConfig) -> Self {
        Breaker {
            cfg: *cfg,
            open_until: None,
            cooldown: cfg.cooldown,
            probes: 0,
            sidelined_until: None,
        }
    }

    /// Take new thresholds (config reload), keeping the current state.
    pub fn reconfigure(&mut self, cfg: &HealthConfig) {
        self.cfg = *cfg;
        self.cooldown = self.cooldown.clamp(cfg.cooldown, self.max_cooldown());
    }

    /// The state at `now`, sideline included. Pure.
    pub fn state(&self, now: Instant) -> BreakerState {
        let base = self.phase(now);
        let Some(sidelined) = self.sidelined_until.filter(|s| now < *s) else {
            return base;
        };
        match base {
            BreakerState::Open { until } => BreakerState::Open {
                until: until.max(sidelined),
            },
            _ => BreakerState::Open { until: sidelined },
        }
    }

    /// Whether [`Breaker::admit`] would let a request through at `now`. Pure.
    pub fn would_admit(&self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen => self.probes < self.max_probes(),
        }
    }

    /// When it next admits a request; `None` if it admits one at `now`. Pure.
    pub fn next_admit(&self, now: Instant) -> Option<Instant> {
        match self.state(now) {
            BreakerState::Closed => None,
            BreakerState::Open { until } => Some(until),
            BreakerState::HalfOpen if self.probes < self.max_probes() => None,
            BreakerState::HalfOpen => Some(now),
        }
    }

    /// Decide about one request; a `Probe` takes a probe slot.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state(now) {
            BreakerState::Closed => Admission::Allow,
            BreakerState::Open { until } => Admission::Reject { until },
            BreakerState::HalfOpen if self.probes < self.max_probes() => {
                self.probes += 1;
                Admission::Probe
            }
            BreakerState::HalfOpen => Admission::Reject { until: now },
        }
    }

    /// A request succeeded. While half-open this closes the breaker (the caller
    /// resets its consecutive-failure count).
    pub fn on_success(&mut self, now: Instant) -> Option<Transition> {
        if self.phase(now) != BreakerState::HalfOpen {
            return None;
        }
        self.open_until = None;
        self.probes = 0;
        self.cooldown = self.base_cooldown();
        Some(Transition {
            from: StateKind::HalfOpen,
            to: StateKind::Closed,
        })
    }

    /// A request failed in a way that counts against health. `totals` is the window
    /// (this failure included) and `consecutive` the failures since the last success.
    /// Failures of requests admitted before a trip are ignored while open.
    pub fn on_failure(
        &mut self,
        now: Instant,
        totals: &WindowTotals,
        consecutive: u32,
    ) -> Option<Transition> {
        match self.phase(now) {
            BreakerState::Closed if self.should_trip(totals, consecutive) => {
                self.cooldown = self.base_cooldown();
                Some(self.open(now, StateKind::Closed))
            }
            BreakerState::HalfOpen => {
                self.cooldown = self.cooldown.saturating_mul(2).min(self.max_cooldown());
                Some(self.open(now, StateKind::HalfOpen))
            }
            _ => None,
        }
    }

    /// A probe ended without an outcome that says anything (cancelled, client
    /// error): free its slot.
    pub fn probe_abandoned(&mut self) {
        self.probes = self.probes.saturating_sub(1);
    }

    /// No traffic until `until` (e.g. a 429 with `Retry-After`). Never shortens an
    /// earlier sideline and leaves the cooldown alone.
    pub fn sideline(&mut self, now: Instant, until: Instant) {
        if until <= now {
            return;
        }
        let current = self.sidelined_until.unwrap_or(until);
        self.sidelined_until = Some(current.max(until));
    }

    /// The cooldown the current (or next) trip lasts.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    fn should_trip(&self, totals: &WindowTotals, consecutive: u32) -> bool {
        let by_rate = totals.requests > 0
            && totals.requests >= self.cfg.min_requests
            && totals.failure_rate() >= self.cfg.failure_rate;
        let by_streak =
            self.cfg.consecutive_failures > 0 && consecutive >= self.cfg.consecutive_failures;
        by_rate || by_streak
    }

    fn open(&mut self, now: Instant, from: StateKind) -> Transition {
        self.open_until = Some(now + self.cooldown);
        self.probes = 0;
        Transition {
            from,
            to: StateKind::Open,
        }
    }

    /// The state ignoring any sideline.
    fn phase(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open { until },
            Some(_) => BreakerState::HalfOpen,
        }
    }

    fn max_probes(&self) -> u32 {
        self.cfg.half_open_probes.max(1)
    }

    fn base_cooldown(&self) -> Duration {
        self.cfg.cooldown.min(self.max_cooldown())
    }

    fn max_cooldown(&self) -> Duration {
        self.cfg.max_cooldown.max(self.cfg.cooldown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            window: Duration::from_secs(60),
            min_requests: 20,
            failure_rate: 0.5,
            consecutive_failures: 3,
            cooldown: Duration::from_secs(1),
            max_cooldown: Duration::from_secs(8),
            half_open_probes: 2,
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

    const QUIET: WindowTotals = WindowTotals {
        requests: 0,
        successes: 0,
        failures: 0,
        by_class: [0; crate::outcome::FailureClass::ALL.len()],
        tokens: 0,
        mean_latency: None,
    };

    #[test]
    fn trips_on_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&cfg());
        assert_eq!(b.on_failure(t0, &QUIET, 2), None);
        assert_eq!(b.admit(t0), Admission::Allow);
        let tr = b.on_failure(t0, &QUIET, 3).map(|t| t.to_string());
        assert_eq!(tr.as_deref(), Some("closed → open"));
        assert_eq!(
            b.admit(at(t0, 999)),
            Admission::Reject {
                until: at(t0, 1_000)
            }
        );
    }

    #[test]
    fn trips_on_failure_rate_only_with_volume() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&cfg());
        assert_eq!(b.on_failure(t0, &totals(19, 19), 1), None);
        assert_eq!(b.on_failure(t0, &totals(40, 19), 1), None);
        assert!(b.on_failure(t0, &totals(20, 10), 1).is_some());
        assert_eq!(
            b.state(t0),
            BreakerState::Open {
                until: at(t0, 1_000)
            }
        );
    }

    #[test]
    fn half_open_admits_limited_probes_and_closes_on_success() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&cfg());
        b.on_failure(t0, &QUIET, 3);
        let t1 = at(t0, 1_000);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        assert_eq!(b.admit(t1), Admission::Probe);
        assert_eq!(b.admit(t1), Admission::Probe);
        assert_eq!(b.admit(t1), Admission::Reject { until: t1 });
        assert!(!b.would_admit(t1));
        b.probe_abandoned();
        assert!(b.would_admit(t1));
        let tr = b.on_success(t1).map(|t| t.to_string());
        assert_eq!(tr.as_deref(), Some("half_open → closed"));
        assert_eq!(b.admit(t1), Admission::Allow);
    }

    #[test]
    fn cooldown_doubles_on_retrip_up_to_max_and_resets_after_close() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&cfg());
        b.on_failure(t0, &QUIET, 3);
        let mut now = t0;
        let mut seen = Vec::new();
        for _ in 0..6 {
            let BreakerState::Open { until } = b.state(now) else {
                panic!("expected open");
            };
            seen.push(until.duration_since(now).as_secs());
            now = until;
            assert_eq!(b.admit(now), Admission::Probe);
            let tr = b.on_failure(now, &QUIET, 0).map(|t| t.to_string());
            assert_eq!(tr.as_deref(), Some("half_open → open"));
        }
        assert_eq!(seen, [1, 2, 4, 8, 8, 8]);
        now += b.cooldown();
        assert!(b.on_success(now).is_some());
        b.on_failure(now, &QUIET, 3);
        assert_eq!(b.cooldown(), Duration::from_secs(1));
    }

    #[test]
    fn late_outcomes_while_open_change_nothing() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&cfg());
        b.on_failure(t0, &QUIET, 3);
        assert_eq!(b.on_success(at(t0, 10)), None);
        assert_eq!(b.on_failure(at(t0, 10), &QUIET, 9), None);
        assert_eq!(b.cooldown(), Duration::from_secs(1));
        assert_eq!(b.state(at(t0, 1_000)), BreakerState::HalfOpen);
    }

    #[test]
    fn sideline_blocks_without_growing_cooldown() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&cfg());
        b.sideline(t0, at(t0, 5_000));
        b.sideline(t0, at(t0, 2_000));
        assert_eq!(
            b.admit(at(t0, 4_999)),
            Admission::Reject {
                until: at(t0, 5_000)
            }
        );
        assert_eq!(b.admit(at(t0, 5_000)), Admission::Allow);
        assert_eq!(b.cooldown(), Duration::from_secs(1));
    }

    #[test]
    fn sideline_longer_than_cooldown_extends_reject() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&cfg());
        b.on_failure(t0, &QUIET, 3);
        b.sideline(t0, at(t0, 3_000));
        assert_eq!(
            b.state(at(t0, 500)),
            BreakerState::Open {
                until: at(t0, 3_000)
            }
        );
        assert_eq!(b.next_admit(at(t0, 500)), Some(at(t0, 3_000)));
        assert_eq!(b.admit(at(t0, 3_000)), Admission::Probe);
    }

    #[test]
    fn zero_consecutive_threshold_disables_streak_trips() {
        let t0 = Instant::now();
        let mut b = Breaker::new(&HealthConfig {
            consecutive_failures: 0,
            ..cfg()
        });
        assert_eq!(b.on_failure(t0, &QUIET, 1_000), None);
    }

    mod model {
        //! A plain reference model of the breaker, time in milliseconds, with the
        //! Open → HalfOpen step taken explicitly whenever time advances.
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone, Copy, PartialEq)]
        enum M {
            Closed,
            Open { until: u64 },
            HalfOpen { probes: u32 },
        }

        #[derive(Debug, Clone, Copy, PartialEq)]
        enum Said {
            Allow,
            Probe,
            Reject(u64),
        }

        struct Model {
            now: u64,
            state: M,
            cooldown: u64,
            sidelined: u64,
        }

        impl Model {
            fn advance(&mut self, ms: u64) {
                self.now += ms;
                if let M::Open { until } = self.state {
                    if self.now >= until {
                        self.state = M::HalfOpen { probes: 0 };
                    }
                }
            }

            fn visible(&self) -> M {
                if self.now < self.sidelined {
                    let until = match self.state {
                        M::Open { until } => until.max(self.sidelined),
                        _ => self.sidelined,
                    };
                    return M::Open { until };
                }
                self.state
            }

            fn admit(&mut self) -> Said {
                match self.visible() {
                    M::Open { until } => Said::Reject(until),
                    M::Closed => Said::Allow,
                    M::HalfOpen { probes } if probes < 2 => {
                        self.state = M::HalfOpen { probes: probes + 1 };
                        Said::Probe
                    }
                    M::HalfOpen { .. } => Said::Reject(self.now),
                }
            }

            fn success(&mut self) -> Option<(StateKind, StateKind)> {
                if let M::HalfOpen { .. } = self.state {
                    self.state = M::Closed;
                    self.cooldown = 1_000;
                    return Some((StateKind::HalfOpen, StateKind::Closed));
                }
                None
            }

            fn failure(&mut self, trips: bool) -> Option<(StateKind, StateKind)> {
                match self.state {
                    M::Closed if trips => {
                        self.state = M::Open {
                            until: self.now + self.cooldown,
                        };
                        Some((StateKind::Closed, StateKind::Open))
                    }
                    M::HalfOpen { .. } => {
                        self.cooldown = (self.cooldown * 2).min(8_000);
                        self.state = M::Open {
                            until: self.now + self.cooldown,
                        };
                        Some((StateKind::HalfOpen, StateKind::Open))
                    }
                    _ => None,
                }
            }

            fn abandon(&mut self) {
                if let M::HalfOpen { probes } = self.state {
                    self.state = M::HalfOpen {
                        probes: probes.saturating_sub(1),
                    };
                }
            }
        }

        #[derive(Debug, Clone)]
        enum Op {
            Advance(u64),
            Admit,
            Success,
            /// Consecutive count and whether the window is over the rate threshold.
            Failure(u32, bool),
            Abandon,
            Sideline(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => (0u64..3_000).prop_map(Op::Advance),
                4 => Just(Op::Admit),
                2 => Just(Op::Success),
                3 => (0u32..5, any::<bool>()).prop_map(|(c, r)| Op::Failure(c, r)),
                1 => Just(Op::Abandon),
                1 => (0u64..5_000).prop_map(Op::Sideline),
            ]
        }

        fn said(a: Admission, t0: Instant) -> Said {
            let ms = |t: Instant| t.duration_since(t0).as_millis() as u64;
            match a {
                Admission::Allow => Said::Allow,
                Admission::Probe => Said::Probe,
                Admission::Reject { until } => Said::Reject(ms(until)),
            }
        }

        fn same_state(real: BreakerState, model: M, t0: Instant) -> bool {
            match (real, model) {
                (BreakerState::Closed, M::Closed) => true,
                (BreakerState::HalfOpen, M::HalfOpen { .. }) => true,
                (BreakerState::Open { until }, M::Open { until: m }) => {
                    until.duration_since(t0).as_millis() as u64 == m
                }
                _ => false,
            }
        }

        proptest! {
            #[test]
            fn breaker_matches_reference_model(ops in prop::collection::vec(op(), 1..300)) {
                let t0 = Instant::now();
                let mut real = Breaker::new(&cfg());
                let mut model = Model { now: 0, state: M::Closed, cooldown: 1_000, sidelined: 0 };
                for op in ops {
                    let now = at(t0, model.now);
                    match op {
                        Op::Advance(ms) => model.advance(ms),
                        Op::Admit => {
                            let got = said(real.admit(now), t0);
                            prop_assert_eq!(got, model.admit());
                        }
                        Op::Success => {
                            let got = real.on_success(now).map(|t| (t.from, t.to));
                            prop_assert_eq!(got, model.success());
                        }
                        Op::Failure(consecutive, over_rate) => {
                            let t = if over_rate { totals(20, 10) } else { totals(19, 19) };
                            let got = real.on_failure(now, &t, consecutive).map(|t| (t.from, t.to));
                            prop_assert_eq!(got, model.failure(over_rate || consecutive >= 3));
                        }
                        Op::Abandon => {
                            real.probe_abandoned();
                            model.abandon();
                        }
                        Op::Sideline(ms) => {
                            real.sideline(now, at(t0, model.now + ms));
                            model.sidelined = model.sidelined.max(model.now + ms);
                        }
                    }
                    let now = at(t0, model.now);
                    prop_assert!(same_state(real.state(now), model.visible(), t0),
                        "state {:?} vs model {:?}", real.state(now), model.visible());
                    let model_admits = matches!(model.visible(), M::Closed)
                        || matches!(model.visible(), M::HalfOpen { probes } if probes < 2);
                    prop_assert_eq!(real.would_admit(now), model_admits);
                }
            }
        }
    }
}
