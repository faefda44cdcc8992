//! Everything one shard knows about one target's health, in one place.
//!
//! `TargetHealth` ties the window, breaker, consecutive-failure count, peak-EWMA,
//! in-flight count and retry budget together, and folds in what peer shards report:
//! a fresh peer summary with an open breaker keeps this shard off the target too, and
//! peers' window counts join the local ones when deciding to trip, so a target failing
//! on one shard is judged with the volume of all of them. No I/O, no clock reads, no
//! allocation after construction (except when a reload changes the window length).
//! The caller keeps one per target key and carries it across config reloads
//! ([`TargetHealth::reconfigure`]).

use std::time::{Duration, Instant};

use crate::config::HealthConfig;
use crate::outcome::Outcome;

use super::breaker::{Admission, Breaker, BreakerState, StateKind, Transition};
use super::budget::RetryBudget;
use super::ewma::PeakEwma;
use super::summary::{TargetSummary, PEER_SUMMARY_TTL};
use super::window::{Window, WindowTotals};

/// A summary received from a peer shard, and when.
#[derive(Debug, Clone, Copy)]
struct Peer {
    received: Instant,
    summary: TargetSummary,
}

impl Peer {
    fn fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.received) < PEER_SUMMARY_TTL
    }

    /// The peer's open-breaker deadline, if it is fresh and still open at `now`.
    fn open_until(&self, now: Instant) -> Option<Instant> {
        match self.summary.breaker {
            BreakerState::Open { until } if now < until && self.fresh(now) => Some(until),
            _ => None,
        }
    }

    /// Until when this summary can keep the target blocked, whatever else happens.
    fn blocks_until(&self) -> Option<Instant> {
        match self.summary.breaker {
            BreakerState::Open { until } => Some(until.min(self.received + PEER_SUMMARY_TTL)),
            _ => None,
        }
    }
}

/// One target's health as seen by one shard.
#[derive(Debug, Clone)]
pub struct TargetHealth {
    window: Window,
    breaker: Breaker,
    consecutive: u32,
    ewma: PeakEwma,
    in_flight: u32,
    budget: RetryBudget,
    /// Latest summary per peer shard, indexed by shard (our own slot stays `None`).
    peers: Box<[Option<Peer>]>,
    me: usize,
    /// Latest instant any peer summary can block the target (cached on merge so
    /// `admit` is O(1) while no peer blocks).
    peer_block: Option<Instant>,
}

impl TargetHealth {
    /// Health for one target on shard `me` of `shards`.
    pub fn new(
        cfg: &HealthConfig,
        budget_ratio: f64,
        budget_min_per_sec: u32,
        shards: usize,
        me: usize,
    ) -> Self {
        TargetHealth {
            window: Window::new(cfg.window),
            breaker: Breaker::new(cfg),
            consecutive: 0,
            ewma: PeakEwma::default(),
            in_flight: 0,
            budget: RetryBudget::new(budget_ratio, budget_min_per_sec),
            peers: vec![None; shards].into_boxed_slice(),
            me,
            peer_block: None,
        }
    }

    /// Take new thresholds after a config reload, keeping what was learned. The
    /// window is rebuilt (emptied) only if its length changed.
    pub fn reconfigure(&mut self, cfg: &HealthConfig, budget_ratio: f64, budget_min_per_sec: u32) {
        self.breaker.reconfigure(cfg);
        self.budget.set_limits(budget_ratio, budget_min_per_sec);
        if Window::buckets_for(cfg.window) != self.window.buckets() {
            self.window = Window::new(cfg.window);
        }
    }

    /// Decide about one request: rejected while the local breaker is open or a fresh
    /// peer summary says the peer's breaker is open; a `Probe` takes a probe slot.
    pub fn admit(&mut self, now: Instant) -> Admission {
        if let Some(peer_until) = self.peer_until(now) {
            let until = self.breaker.next_admit(now).max(Some(peer_until));
            return Admission::Reject {
                until: until.unwrap_or(peer_until),
            };
        }
        self.breaker.admit(now)
    }

    /// Whether `admit` would let a request through at `now` (what load balancers
    /// filter on). Pure.
    pub fn available(&self, now: Instant) -> bool {
        self.peer_until(now).is_none() && self.breaker.would_admit(now)
    }

    /// How long until it admits again; `None` if it admits now. Pure.
    pub fn retry_after(&self, now: Instant) -> Option<Duration> {
        let until = self.breaker.next_admit(now).max(self.peer_until(now))?;
        Some(until.saturating_duration_since(now))
    }

    /// A request to this target started.
    pub fn start(&mut self) {
        self.in_flight = self.in_flight.saturating_add(1);
    }

    /// A request to this target finished (whatever the outcome).
    pub fn finish(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Record one attempt's outcome at `now`: window, consecutive count, EWMA (on
    /// success, from `ttfb`), breaker. Returns the breaker's transition, if any.
    /// Failures that do not count against health only free a probe slot.
    pub fn record(
        &mut self,
        now: Instant,
        outcome: Outcome,
        ttfb: Option<Duration>,
        tokens: u32,
    ) -> Option<Transition> {
        self.window.record(now, outcome, ttfb, tokens);
        let transition = match outcome {
            Outcome::Success => self.on_success(now, ttfb),
            Outcome::Failure(class) if class.counts_against_health() => self.on_failure(now),
            Outcome::Failure(_) => {
                self.abandon_probe();
                None
            }
        };
        if transition.is_some_and(|t| t.to == StateKind::Closed) {
            // A recovered target starts with a clean slate, or the failures that
            // opened the breaker would re-open it on the next single failure.
            self.window.clear();
        }
        transition
    }

    /// An admitted request ended without any outcome (cancelled): free its probe slot.
    pub fn abandon_probe(&mut self) {
        self.breaker.probe_abandoned();
    }

    /// No traffic until `until` (429 + `Retry-After`), without growing the cooldown.
    pub fn sideline(&mut self, now: Instant, until: Instant) {
        self.breaker.sideline(now, until);
    }

    /// This shard's own view, to send to the peers.
    pub fn summary(&self, now: Instant) -> TargetSummary {
        let totals = self.window.totals(now);
        TargetSummary {
            requests: totals.requests,
            failures: totals.failures,
            consecutive_failures: self.consecutive,
            breaker: self.breaker.state(now),
            ewma_us: self.ewma.estimate(now),
        }
    }

    /// Keep the latest summary from peer `shard`, received at `now`. Our own index
    /// and unknown shards are ignored.
    pub fn merge_peer(&mut self, shard: usize, now: Instant, summary: TargetSummary) {
        if shard == self.me {
            return;
        }
        let Some(slot) = self.peers.get_mut(shard) else {
            return;
        };
        *slot = Some(Peer {
            received: now,
            summary,
        });
        self.peer_block = self
            .peers
            .iter()
            .flatten()
            .filter_map(Peer::blocks_until)
            .max();
    }

    /// A fresh summary from peer `shard`, if there is one.
    pub fn peer_summary(&self, shard: usize, now: Instant) -> Option<TargetSummary> {
        let peer = self.peers.get(shard).copied().flatten()?;
        peer.fresh(now).then_some(peer.summary)
    }

    /// The local breaker's state (sideline included, peers not).
    pub fn state(&self, now: Instant) -> BreakerState {
        self.breaker.state(now)
    }

    /// The local window's totals.
    pub fn totals(&self, now: Instant) -> WindowTotals {
        self.window.totals(now)
    }

    /// Peak-EWMA of time-to-first-byte, µs.
    pub fn ewma_us(&self, now: Instant) -> f64 {
        self.ewma.estimate(now)
    }

    /// What latency-based selection minimises: the EWMA weighted by the requests
    /// already in flight (so one fast target does not take everything at once).
    pub fn latency_cost(&self, now: Instant) -> f64 {
        self.ewma.estimate(now) * (f64::from(self.in_flight) + 1.0)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Health-counting failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// The target's retry budget: deposit per original request, withdraw per retry.
    pub fn budget(&mut self) -> &mut RetryBudget {
        &mut self.budget
    }

    fn on_success(&mut self, now: Instant, ttfb: Option<Duration>) -> Option<Transition> {
        self.consecutive = 0;
        if let Some(ttfb) = ttfb {
            self.ewma.observe(now, ttfb);
        }
        self.breaker.on_success(now)
    }

    fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive = self.consecutive.saturating_add(1);
        let totals = self.combined_totals(now);
        self.breaker.on_failure(now, &totals, self.consecutive)
    }

    /// The local window plus the counts of every fresh peer summary.
    fn combined_totals(&self, now: Instant) -> WindowTotals {
        let mut totals = self.window.totals(now);
        for peer in self.peers.iter().flatten().filter(|p| p.fresh(now)) {
            totals.requests = totals.requests.saturating_add(peer.summary.requests);
            totals.failures = totals.failures.saturating_add(peer.summary.failures);
        }
        totals
    }

    /// The latest deadline of a fresh, still-open peer breaker. O(1) unless some
    /// peer summary may be blocking.
    fn peer_until(&self, now: Instant) -> Option<Instant> {
        match self.peer_block {
            Some(block) if now < block => {}
            _ => return None,
        }
        self.peers
            .iter()
            .flatten()
            .filter_map(|p| p.open_until(now))
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailureClass;

    const SERVER: Outcome = Outcome::Failure(FailureClass::Server);
    const CLIENT: Outcome = Outcome::Failure(FailureClass::Client);

    fn cfg() -> HealthConfig {
        HealthConfig {
            window: Duration::from_secs(60),
            min_requests: 20,
            failure_rate: 0.5,
            consecutive_failures: 5,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(300),
            half_open_probes: 1,
        }
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn target() -> TargetHealth {
        TargetHealth::new(&cfg(), 0.2, 1, 4, 0)
    }

    fn open_summary(until: Instant) -> TargetSummary {
        TargetSummary {
            breaker: BreakerState::Open { until },
            ..TargetSummary::QUIET
        }
    }

    /// Record `n` failures at `now`, returning the transitions seen.
    fn fail(h: &mut TargetHealth, now: Instant, n: u32) -> Vec<String> {
        (0..n)
            .filter_map(|_| h.record(now, SERVER, None, 0))
            .map(|t| t.to_string())
            .collect()
    }

    #[test]
    fn consecutive_failures_open_the_breaker() {
        let t0 = Instant::now();
        let mut h = target();
        assert_eq!(fail(&mut h, t0, 5), ["closed → open"]);
        assert_eq!(h.consecutive_failures(), 5);
        assert!(!h.available(t0));
        assert_eq!(h.retry_after(t0), Some(Duration::from_secs(10)));
        assert_eq!(
            h.admit(at(t0, 1)),
            Admission::Reject {
                until: at(t0, 10_000)
            }
        );
    }

    #[test]
    fn success_resets_the_streak_and_client_errors_do_not_count() {
        let t0 = Instant::now();
        let mut h = target();
        fail(&mut h, t0, 4);
        h.record(t0, Outcome::Success, None, 0);
        fail(&mut h, t0, 4);
        for _ in 0..10 {
            assert_eq!(h.record(t0, CLIENT, None, 0), None);
        }
        assert_eq!(h.consecutive_failures(), 4);
        assert!(h.available(t0));
        assert_eq!(h.admit(t0), Admission::Allow);
    }

    #[test]
    fn probe_success_closes_and_starts_a_clean_window() {
        let t0 = Instant::now();
        let mut h = target();
        fail(&mut h, t0, 5);
        let t1 = at(t0, 10_000);
        assert!(h.available(t1));
        assert_eq!(h.admit(t1), Admission::Probe);
        assert!(!h.available(t1));
        let tr = h.record(t1, Outcome::Success, Some(Duration::from_millis(50)), 9);
        assert_eq!(
            tr.map(|t| t.to_string()).as_deref(),
            Some("half_open → closed")
        );
        assert_eq!(h.consecutive_failures(), 0);
        assert_eq!(h.totals(t1), WindowTotals::default());
        assert_eq!(
            h.record(t1, SERVER, None, 0),
            None,
            "old failures are forgotten"
        );
    }

    #[test]
    fn cancelled_probe_frees_its_slot() {
        let t0 = Instant::now();
        let mut h = target();
        fail(&mut h, t0, 5);
        let t1 = at(t0, 10_000);
        assert_eq!(h.admit(t1), Admission::Probe);
        assert_eq!(h.admit(t1), Admission::Reject { until: t1 });
        h.abandon_probe();
        assert_eq!(h.admit(t1), Admission::Probe);
    }

    #[test]
    fn peer_open_summary_rejects_within_one_merge() {
        let t0 = Instant::now();
        let mut h = target();
        h.merge_peer(2, t0, open_summary(at(t0, 5_000)));
        assert!(!h.available(at(t0, 1)));
        assert_eq!(
            h.admit(at(t0, 1)),
            Admission::Reject {
                until: at(t0, 5_000)
            }
        );
        assert_eq!(h.retry_after(at(t0, 1)), Some(Duration::from_millis(4_999)));
        assert_eq!(
            h.state(at(t0, 1)),
            BreakerState::Closed,
            "local breaker untouched"
        );
    }

    #[test]
    fn peer_block_ends_when_the_summary_goes_stale() {
        let t0 = Instant::now();
        let mut h = target();
        h.merge_peer(1, t0, open_summary(at(t0, 60_000)));
        assert!(!h.available(at(t0, 499)));
        assert!(h.available(at(t0, 500)));
        assert_eq!(h.admit(at(t0, 500)), Admission::Allow);
        assert_eq!(h.peer_summary(1, at(t0, 500)), None);
    }

    #[test]
    fn peer_block_ends_when_the_peer_reports_closed_or_its_cooldown_passes() {
        let t0 = Instant::now();
        let mut h = target();
        h.merge_peer(1, t0, open_summary(at(t0, 60_000)));
        h.merge_peer(1, at(t0, 50), TargetSummary::QUIET);
        assert_eq!(h.admit(at(t0, 50)), Admission::Allow);
        h.merge_peer(3, at(t0, 100), open_summary(at(t0, 200)));
        assert!(!h.available(at(t0, 199)));
        assert!(h.available(at(t0, 200)));
    }

    #[test]
    fn the_latest_open_peer_sets_the_deadline() {
        let t0 = Instant::now();
        let mut h = target();
        h.merge_peer(1, t0, open_summary(at(t0, 1_000)));
        h.merge_peer(2, t0, open_summary(at(t0, 3_000)));
        assert_eq!(
            h.admit(t0),
            Admission::Reject {
                until: at(t0, 3_000)
            }
        );
    }

    #[test]
    fn own_and_unknown_shards_are_ignored() {
        let t0 = Instant::now();
        let mut h = target();
        h.merge_peer(0, t0, open_summary(at(t0, 1_000)));
        h.merge_peer(99, t0, open_summary(at(t0, 1_000)));
        assert!(h.available(t0));
    }

    #[test]
    fn peer_volume_joins_the_failure_rate_decision() {
        let t0 = Instant::now();
        let mut h = target();
        let busy = TargetSummary {
            requests: 30,
            failures: 20,
            ..TargetSummary::QUIET
        };
        h.merge_peer(1, t0, busy);
        let tr = h.record(at(t0, 10), SERVER, None, 0);
        assert_eq!(tr.map(|t| t.to_string()).as_deref(), Some("closed → open"));
    }

    #[test]
    fn stale_peer_volume_does_not_count() {
        let t0 = Instant::now();
        let mut h = target();
        let busy = TargetSummary {
            requests: 30,
            failures: 20,
            ..TargetSummary::QUIET
        };
        h.merge_peer(1, t0, busy);
        assert_eq!(h.record(at(t0, 600), SERVER, None, 0), None);
    }

    #[test]
    fn sideline_blocks_until_the_given_instant() {
        let t0 = Instant::now();
        let mut h = target();
        h.sideline(t0, at(t0, 2_000));
        assert_eq!(
            h.retry_after(at(t0, 500)),
            Some(Duration::from_millis(1_500))
        );
        assert!(h.available(at(t0, 2_000)));
        assert_eq!(h.retry_after(at(t0, 2_000)), None);
    }

    #[test]
    fn summary_reports_the_local_view() {
        let t0 = Instant::now();
        let mut h = target();
        h.merge_peer(
            1,
            t0,
            TargetSummary {
                requests: 100,
                ..TargetSummary::QUIET
            },
        );
        h.record(t0, Outcome::Success, Some(Duration::from_millis(20)), 0);
        fail(&mut h, t0, 2);
        let s = h.summary(t0);
        assert_eq!((s.requests, s.failures, s.consecutive_failures), (3, 2, 2));
        assert_eq!(s.breaker, BreakerState::Closed);
        assert!((s.ewma_us - 20_000.0).abs() < 1e-6);
    }

    #[test]
    fn in_flight_weights_the_latency_cost() {
        let t0 = Instant::now();
        let mut h = target();
        h.record(t0, Outcome::Success, Some(Duration::from_millis(10)), 0);
        h.start();
        h.start();
        assert_eq!(h.in_flight(), 2);
        assert!((h.latency_cost(t0) - 30_000.0).abs() < 1e-6);
        h.finish();
        h.finish();
        h.finish();
        assert_eq!(h.in_flight(), 0);
    }

    #[test]
    fn reload_keeps_state_unless_the_window_changes() {
        let t0 = Instant::now();
        let mut h = target();
        h.record(t0, Outcome::Success, None, 0);
        h.reconfigure(&cfg(), 0.1, 0);
        assert_eq!(h.totals(t0).requests, 1);
        let longer = HealthConfig {
            window: Duration::from_secs(120),
            ..cfg()
        };
        h.reconfigure(&longer, 0.1, 0);
        assert_eq!(h.totals(t0).requests, 0);
        assert!(!h.budget().try_withdraw(t0), "new budget limits apply");
    }
}
