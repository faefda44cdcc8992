//! Everything one shard knows about one target's health, in one place.
//!
//! `TargetHealth` ties the shard's window, peak-EWMA, time-to-first-token estimate and
//! in-flight count to the
//! target's gateway-wide [`SharedBreaker`]: trips, cooldowns, the
//! probe token and the consecutive-failure count live there, so every shard sees a
//! transition at its next admission. Peers' window counts (from their summaries)
//! join the local ones when deciding a failure-rate trip, so a target failing on one
//! shard is judged with the volume of all of them. No I/O, no clock reads, no
//! allocation after construction (except when a reload changes the window length).
//! The caller keeps one per target key and carries it across config reloads
//! ([`TargetHealth::reconfigure`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::HealthConfig;
use crate::outcome::Outcome;

use super::breaker::{Admission, BreakerState, SharedBreaker, Transition};
use super::ewma::PeakEwma;
use super::summary::{TargetSummary, PEER_SUMMARY_TTL};
use super::ttft::TtftEstimator;
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
}

/// One target's health as seen by one shard.
#[derive(Debug, Clone)]
pub struct TargetHealth {
    cfg: HealthConfig,
    window: Window,
    breaker: Arc<SharedBreaker>,
    /// The breaker's close count when this window was last cleared.
    seen_closes: u64,
    ewma: PeakEwma,
    /// Time to first token of this shard's committed streams.
    ttft: TtftEstimator,
    in_flight: u32,
    /// Latest summary per peer shard, indexed by shard (our own slot stays `None`).
    peers: Box<[Option<Peer>]>,
    me: usize,
}

impl TargetHealth {
    /// Health for one target on shard `me` of `shards`, judged by `breaker` (the
    /// same `Arc` on every shard).
    pub fn new(cfg: &HealthConfig, breaker: Arc<SharedBreaker>, shards: usize, me: usize) -> Self {
        let seen_closes = breaker.closes();
        TargetHealth {
            cfg: *cfg,
            window: Window::new(cfg.window),
            breaker,
            seen_closes,
            ewma: PeakEwma::default(),
            ttft: TtftEstimator::default(),
            in_flight: 0,
            peers: vec![None; shards].into_boxed_slice(),
            me,
        }
    }

    /// Take new thresholds after a config reload, keeping what was learned. The
    /// window is rebuilt (emptied) only if its length changed.
    pub fn reconfigure(&mut self, cfg: &HealthConfig) {
        self.cfg = *cfg;
        if Window::buckets_for(cfg.window) != self.window.buckets() {
            self.window = Window::new(cfg.window);
        }
    }

    /// The gateway-wide breaker this shard reports to.
    pub fn breaker(&self) -> &Arc<SharedBreaker> {
        &self.breaker
    }

    /// Decide about one request; a `Probe` holds the gateway's probe token.
    pub fn admit(&mut self, now: Instant) -> Admission {
        self.breaker.admit(now)
    }

    /// Whether `admit` would let a request through at `now` (what load balancers
    /// filter on). Pure.
    pub fn available(&self, now: Instant) -> bool {
        self.breaker.would_admit(now)
    }

    /// How long until it admits again; `None` if it admits now. Pure.
    pub fn retry_after(&self, now: Instant) -> Option<Duration> {
        let until = self.breaker.next_admit(now)?;
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

    /// Record one attempt's outcome at `now`: window, EWMA (on success, from
    /// `ttfb`), breaker. `probe` says the attempt held the probe token (which this
    /// gives back). Returns the breaker's transition if this call made one.
    /// Failures that do not count against health only give the token back.
    pub fn record(
        &mut self,
        now: Instant,
        outcome: Outcome,
        ttfb: Option<Duration>,
        tokens: u32,
        probe: bool,
    ) -> Option<Transition> {
        self.forget_if_closed();
        self.window.record(now, outcome, ttfb, tokens);
        let transition = match outcome {
            Outcome::Success => {
                if let Some(ttfb) = ttfb {
                    self.ewma.observe(now, ttfb);
                }
                self.breaker.on_success(&self.cfg, now, probe)
            }
            Outcome::Failure(class) if class.counts_against_health() => {
                let totals = self.combined_totals(now);
                self.breaker.on_failure(&self.cfg, now, probe, &totals)
            }
            Outcome::Failure(_) => {
                if probe {
                    self.breaker.release_probe();
                }
                None
            }
        };
        self.forget_if_closed();
        transition
    }

    /// A probe showed the target answers before its outcome is known in full (a
    /// stream committed): settles the probe with the breaker only; the attempt's
    /// outcome is recorded later, as a non-probe.
    pub fn probe_succeeded(&mut self, now: Instant) -> Option<Transition> {
        let transition = self.breaker.on_success(&self.cfg, now, true);
        self.forget_if_closed();
        transition
    }

    /// A recovered target starts with a clean slate on every shard, or the failures
    /// that opened the breaker would re-open it on the next single failure.
    fn forget_if_closed(&mut self) {
        let closes = self.breaker.closes();
        if closes != self.seen_closes {
            self.seen_closes = closes;
            self.window.clear();
        }
    }

    /// No traffic until `until` (429 + `Retry-After`), without growing the cooldown.
    pub fn sideline(&mut self, now: Instant, until: Instant) -> Option<Transition> {
        self.breaker.sideline(now, until)
    }

    /// This shard's own view, to send to the peers (empty if the breaker closed
    /// since this window was last cleared: those failures are forgotten).
    pub fn summary(&self, now: Instant) -> TargetSummary {
        let forgotten = self.breaker.closes() != self.seen_closes;
        let totals = if forgotten {
            WindowTotals::default()
        } else {
            self.window.totals(now)
        };
        TargetSummary {
            requests: totals.requests,
            failures: totals.failures,
            ewma_us: self.ewma.estimate(now),
        }
    }

    /// Keep the latest summary from peer `shard`, received at `now`. Our own index
    /// and unknown shards are ignored.
    pub fn merge_peer(&mut self, shard: usize, now: Instant, summary: TargetSummary) {
        if shard == self.me {
            return;
        }
        if let Some(slot) = self.peers.get_mut(shard) {
            *slot = Some(Peer {
                received: now,
                summary,
            });
        }
    }

    /// A fresh summary from peer `shard`, if there is one.
    pub fn peer_summary(&self, shard: usize, now: Instant) -> Option<TargetSummary> {
        let peer = self.peers.get(shard).copied().flatten()?;
        peer.fresh(now).then_some(peer.summary)
    }

    /// The gateway-wide breaker's state (sideline included).
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

    /// One stream's time to first token (send to first content), observed at `now`
    /// when it committed.
    pub fn observe_ttft(&mut self, now: Instant, ttft: Duration) {
        self.ttft.observe(now, ttft);
    }

    /// The `q` quantile (e.g. 0.95) of this shard's recent times to first token
    /// (the last [`super::ttft::WINDOW`]); `None` without samples. Pure.
    pub fn ttft_quantile(&self, now: Instant, q: f64) -> Option<Duration> {
        self.ttft.quantile(now, q)
    }

    /// Time-to-first-token samples in the window at `now`. Pure.
    pub fn ttft_samples(&self, now: Instant) -> u32 {
        self.ttft.samples(now)
    }

    /// What `timeouts.first_token: auto` means for this target right now:
    /// `max(10 s, 4 × p95 TTFT)`, the 10 s floor until 20 samples. Pure.
    pub fn first_token_auto(&self, now: Instant) -> Duration {
        self.ttft.auto_limit(now)
    }

    /// What latency-based selection minimises: the EWMA weighted by the requests
    /// already in flight (so one fast target does not take everything at once).
    pub fn latency_cost(&self, now: Instant) -> f64 {
        self.ewma.estimate(now) * (f64::from(self.in_flight) + 1.0)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Health-counting failures since the last success, gateway-wide.
    pub fn consecutive_failures(&self) -> u32 {
        self.breaker.consecutive_failures()
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{StateKind, TripReason};
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

    /// Two shards' views of one target, sharing its breaker.
    fn pair(t0: Instant) -> (TargetHealth, TargetHealth) {
        let shared = Arc::new(SharedBreaker::new(t0));
        (
            TargetHealth::new(&cfg(), shared.clone(), 2, 0),
            TargetHealth::new(&cfg(), shared, 2, 1),
        )
    }

    fn target(t0: Instant) -> TargetHealth {
        pair(t0).0
    }

    /// Record `n` failures at `now`, returning the transitions seen.
    fn fail(h: &mut TargetHealth, now: Instant, n: u32) -> Vec<String> {
        (0..n)
            .filter_map(|_| h.record(now, SERVER, None, 0, false))
            .map(|t| t.to_string())
            .collect()
    }

    #[test]
    fn consecutive_failures_open_the_breaker() {
        let t0 = Instant::now();
        let mut h = target(t0);
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
    fn failures_on_both_shards_count_toward_one_streak() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        assert!(fail(&mut a, t0, 2).is_empty());
        assert!(fail(&mut b, t0, 2).is_empty());
        assert_eq!(
            fail(&mut a, t0, 1),
            ["closed → open"],
            "the 5th overall trips"
        );
        assert!(!b.available(t0), "the other shard sees it at once");
        assert_eq!(b.consecutive_failures(), 5);
    }

    #[test]
    fn success_resets_the_streak_and_client_errors_do_not_count() {
        let t0 = Instant::now();
        let mut h = target(t0);
        fail(&mut h, t0, 4);
        h.record(t0, Outcome::Success, None, 0, false);
        fail(&mut h, t0, 4);
        for _ in 0..10 {
            assert_eq!(h.record(t0, CLIENT, None, 0, false), None);
        }
        assert_eq!(h.consecutive_failures(), 4);
        assert!(h.available(t0));
        assert_eq!(h.admit(t0), Admission::Allow);
    }

    #[test]
    fn probe_success_closes_and_every_shard_starts_a_clean_window() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        fail(&mut b, t0, 3);
        fail(&mut a, t0, 2);
        let t1 = at(t0, 10_000);
        assert!(a.available(t1));
        assert_eq!(b.admit(t1), Admission::Probe);
        assert!(!a.available(t1), "the probe token is gateway-wide");
        assert_eq!(a.admit(t1), Admission::Reject { until: t1 });
        let tr = b.record(
            t1,
            Outcome::Success,
            Some(Duration::from_millis(50)),
            9,
            true,
        );
        assert_eq!(
            tr.map(|t| t.to_string()).as_deref(),
            Some("half_open → closed")
        );
        assert_eq!(a.summary(t1).failures, 0, "peer's failures are forgotten");
        assert_eq!(a.record(t1, SERVER, None, 0, false), None);
        assert_eq!(a.totals(t1).failures, 1, "only the new failure is left");
    }

    #[test]
    fn a_failed_probe_reopens_for_everyone() {
        let t0 = Instant::now();
        let (mut a, b) = pair(t0);
        fail(&mut a, t0, 5);
        let t1 = at(t0, 10_000);
        assert_eq!(a.admit(t1), Admission::Probe);
        let tr = a.record(t1, SERVER, None, 0, true).expect("re-opens");
        assert_eq!((tr.from, tr.to), (StateKind::HalfOpen, StateKind::Open));
        assert_eq!(
            b.state(t1),
            BreakerState::Open {
                until: at(t1, 20_000),
                reason: TripReason::ProbeFailed
            }
        );
    }

    #[test]
    fn a_probe_ending_in_a_client_error_gives_the_token_back() {
        let t0 = Instant::now();
        let mut h = target(t0);
        fail(&mut h, t0, 5);
        let t1 = at(t0, 10_000);
        assert_eq!(h.admit(t1), Admission::Probe);
        assert_eq!(h.admit(t1), Admission::Reject { until: t1 });
        assert_eq!(h.record(t1, CLIENT, None, 0, true), None);
        assert_eq!(h.admit(t1), Admission::Probe);
    }

    #[test]
    fn peer_volume_joins_the_failure_rate_decision() {
        let t0 = Instant::now();
        let mut h = target(t0);
        let busy = TargetSummary {
            requests: 30,
            failures: 20,
            ..TargetSummary::QUIET
        };
        h.merge_peer(1, t0, busy);
        let tr = h.record(at(t0, 10), SERVER, None, 0, false).expect("trips");
        assert_eq!(tr.reason, Some(TripReason::Rate));
    }

    #[test]
    fn stale_peer_volume_does_not_count() {
        let t0 = Instant::now();
        let mut h = target(t0);
        let busy = TargetSummary {
            requests: 30,
            failures: 20,
            ..TargetSummary::QUIET
        };
        h.merge_peer(1, t0, busy);
        assert_eq!(h.record(at(t0, 600), SERVER, None, 0, false), None);
        assert_eq!(h.peer_summary(1, at(t0, 600)), None);
    }

    #[test]
    fn own_and_unknown_shards_are_ignored() {
        let t0 = Instant::now();
        let mut h = target(t0);
        let busy = TargetSummary {
            requests: 30,
            failures: 30,
            ..TargetSummary::QUIET
        };
        h.merge_peer(0, t0, busy);
        h.merge_peer(99, t0, busy);
        assert_eq!(h.record(t0, SERVER, None, 0, false), None);
    }

    #[test]
    fn sideline_blocks_until_the_given_instant() {
        let t0 = Instant::now();
        let mut h = target(t0);
        assert!(h.sideline(t0, at(t0, 2_000)).is_some());
        assert_eq!(
            h.retry_after(at(t0, 500)),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(h.state(at(t0, 500)).kind(), StateKind::Sidelined);
        assert!(h.available(at(t0, 2_000)));
        assert_eq!(h.retry_after(at(t0, 2_000)), None);
    }

    #[test]
    fn summary_reports_the_local_view() {
        let t0 = Instant::now();
        let mut h = target(t0);
        h.merge_peer(
            1,
            t0,
            TargetSummary {
                requests: 100,
                ..TargetSummary::QUIET
            },
        );
        h.record(
            t0,
            Outcome::Success,
            Some(Duration::from_millis(20)),
            0,
            false,
        );
        fail(&mut h, t0, 2);
        let s = h.summary(t0);
        assert_eq!((s.requests, s.failures), (3, 2));
        assert!((s.ewma_us - 20_000.0).abs() < 1e-6);
    }

    #[test]
    fn in_flight_weights_the_latency_cost() {
        let t0 = Instant::now();
        let mut h = target(t0);
        h.record(
            t0,
            Outcome::Success,
            Some(Duration::from_millis(10)),
            0,
            false,
        );
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
    fn ttft_is_learned_per_shard_and_survives_trips_and_reloads() {
        let t0 = Instant::now();
        let (mut a, b) = pair(t0);
        assert_eq!(a.ttft_quantile(t0, 0.95), None);
        assert_eq!(a.first_token_auto(t0), crate::health::ttft::AUTO_FLOOR);
        for _ in 0..30 {
            a.observe_ttft(t0, Duration::from_millis(400));
        }
        assert_eq!(a.ttft_samples(t0), 30);
        let p95 = a.ttft_quantile(t0, 0.95).expect("samples");
        assert!(p95 >= Duration::from_millis(400) && p95 <= Duration::from_millis(500));
        // Fast answers keep `auto` at its floor: 4 × p95 is far below 10 s.
        assert_eq!(a.first_token_auto(t0), Duration::from_secs(10));
        assert_eq!(b.ttft_samples(t0), 0, "each shard learns on its own");
        // A breaker close forgets failures, not latency; a reload keeps it too.
        fail(&mut a, t0, 5);
        let t1 = at(t0, 10_000);
        assert_eq!(a.admit(t1), Admission::Probe);
        a.record(t1, Outcome::Success, None, 0, true);
        a.reconfigure(&HealthConfig {
            window: Duration::from_secs(120),
            ..cfg()
        });
        assert_eq!(a.ttft_samples(t1), 30);
    }

    #[test]
    fn reload_keeps_state_unless_the_window_changes() {
        let t0 = Instant::now();
        let mut h = target(t0);
        h.record(t0, Outcome::Success, None, 0, false);
        h.reconfigure(&cfg());
        assert_eq!(h.totals(t0).requests, 1);
        let longer = HealthConfig {
            window: Duration::from_secs(120),
            ..cfg()
        };
        h.reconfigure(&longer);
        assert_eq!(h.totals(t0).requests, 0);
    }
}
