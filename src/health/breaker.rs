//! The circuit breaker: one per target per gateway, shared by every shard.
//!
//! Closed → Open when the failure rate (window volume of all shards) crosses the
//! threshold with enough volume, or after N consecutive health-counting failures
//! counted gateway-wide. Open lasts a cooldown of `min(cooldown × 2^k, max_cooldown)`
//! where k is the number of probes that failed in a row; then the breaker is
//! half-open and admits exactly one probe at a time, gateway-wide. A probe is a
//! single attempt: its failure re-opens the breaker (k + 1), its success counts
//! toward `half_open_probes` successes, which close it (k back to 0). Separately, a
//! provider can *sideline* a target (429 + `Retry-After`): no traffic until then,
//! without touching the cooldown. Sidelined and open are distinct states.
//!
//! The decisions are pure functions over a small [`Word`] and the time passed in (in
//! milliseconds since the breaker's epoch); [`SharedBreaker`] only loads, decides and
//! publishes with compare-and-swap, so no shard ever takes a lock and a transition
//! made by one shard is seen by the next admission on any shard.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::HealthConfig;

use super::window::WindowTotals;

/// What the breaker says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: send it.
    Allow,
    /// Half-open: send it as the gateway's one probe; report its outcome with
    /// `probe = true`, or give the token back ([`SharedBreaker::release_probe`]) if
    /// it never produced one.
    Probe,
    /// No traffic. `until` is when it may next admit; while half-open with the probe
    /// in flight it is `now` (the answer comes with that probe).
    Reject { until: Instant },
}

/// Why a breaker stopped sending traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TripReason {
    /// The window's failure rate crossed the threshold.
    Rate,
    /// `consecutive_failures` failures in a row, gateway-wide.
    Consecutive,
    /// A half-open probe failed.
    ProbeFailed,
    /// The provider asked for a pause (429/529 + `Retry-After`).
    RetryAfter,
}

impl TripReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TripReason::Rate => "failure_rate",
            TripReason::Consecutive => "consecutive_failures",
            TripReason::ProbeFailed => "probe_failed",
            TripReason::RetryAfter => "retry_after",
        }
    }

    fn code(self) -> u64 {
        match self {
            TripReason::Rate => 1,
            TripReason::Consecutive => 2,
            TripReason::ProbeFailed => 3,
            TripReason::RetryAfter => 4,
        }
    }

    fn from_code(code: u64) -> Option<TripReason> {
        match code {
            1 => Some(TripReason::Rate),
            2 => Some(TripReason::Consecutive),
            3 => Some(TripReason::ProbeFailed),
            4 => Some(TripReason::RetryAfter),
            _ => None,
        }
    }
}

/// The breaker's state at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Tripped: no traffic until `until` (a sideline may extend it).
    Open {
        until: Instant,
        reason: TripReason,
    },
    /// The cooldown is over: one probe at a time.
    HalfOpen {
        reason: TripReason,
    },
    /// Not tripped, but paused at the provider's request until `until`.
    Sidelined {
        until: Instant,
    },
}

impl BreakerState {
    pub fn kind(self) -> StateKind {
        match self {
            BreakerState::Closed => StateKind::Closed,
            BreakerState::Open { .. } => StateKind::Open,
            BreakerState::HalfOpen { .. } => StateKind::HalfOpen,
            BreakerState::Sidelined { .. } => StateKind::Sidelined,
        }
    }

    /// Why it is not closed; `None` while closed.
    pub fn reason(self) -> Option<TripReason> {
        match self {
            BreakerState::Closed => None,
            BreakerState::Open { reason, .. } | BreakerState::HalfOpen { reason } => Some(reason),
            BreakerState::Sidelined { .. } => Some(TripReason::RetryAfter),
        }
    }
}

/// A [`BreakerState`] without its deadline, for logs and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    Closed,
    Open,
    HalfOpen,
    Sidelined,
}

impl StateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Closed => "closed",
            StateKind::Open => "open",
            StateKind::HalfOpen => "half_open",
            StateKind::Sidelined => "sidelined",
        }
    }
}

/// A state change worth logging and counting; only the shard that made it gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: StateKind,
    pub to: StateKind,
    /// Why it opened or was sidelined; `None` for a close.
    pub reason: Option<TripReason>,
    /// How long the new state lasts at most (open or sidelined).
    pub lasts: Option<Duration>,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.from.as_str(), self.to.as_str())
    }
}

/// The trip state packed in one `u64`: bits 0..=55 the open deadline (ms since the
/// epoch), bits 56..=59 the reason, 0 meaning closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word {
    /// `None` while closed; else open until this ms (half-open from then on).
    pub open: Option<(u64, TripReason)>,
}

const DEADLINE_BITS: u64 = (1 << 56) - 1;

impl Word {
    pub const CLOSED: Word = Word { open: None };

    pub fn pack(self) -> u64 {
        match self.open {
            None => 0,
            Some((until, reason)) => (reason.code() << 56) | (until & DEADLINE_BITS),
        }
    }

    pub fn unpack(bits: u64) -> Word {
        Word {
            open: TripReason::from_code(bits >> 56).map(|r| (bits & DEADLINE_BITS, r)),
        }
    }
}

/// The phase of a [`Word`] at `now` (ms), ignoring any sideline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Closed,
    Open { until: u64, reason: TripReason },
    HalfOpen { reason: TripReason },
}

pub fn phase(word: Word, now: u64) -> Phase {
    match word.open {
        None => Phase::Closed,
        Some((until, reason)) if now < until => Phase::Open { until, reason },
        Some((_, reason)) => Phase::HalfOpen { reason },
    }
}

/// A pure admission verdict (times in ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Take the probe token (only if it is free).
    Probe,
    Reject {
        until: u64,
    },
}

/// Whether a request may go at `now`, from the word, the sideline deadline and
/// whether the probe token is free. A sideline blocks probes too.
pub fn admit(word: Word, sidelined_until: u64, probe_free: bool, now: u64) -> Verdict {
    let blocked = match phase(word, now) {
        Phase::Closed => None,
        Phase::Open { until, .. } => Some(until),
        Phase::HalfOpen { .. } if probe_free => None,
        Phase::HalfOpen { .. } => Some(now),
    };
    let sidelined = (now < sidelined_until).then_some(sidelined_until);
    match blocked.max(sidelined) {
        Some(until) => Verdict::Reject { until },
        None if matches!(phase(word, now), Phase::HalfOpen { .. }) => Verdict::Probe,
        None => Verdict::Allow,
    }
}

/// How long the breaker stays open after `failed_probes` probes failed in a row.
pub fn cooldown(cfg: &HealthConfig, failed_probes: u32) -> Duration {
    let max = cfg.max_cooldown.max(cfg.cooldown);
    cfg.cooldown
        .saturating_mul(1u32 << failed_probes.min(20))
        .min(max)
}

/// Whether a closed breaker trips, and why (consecutive wins: it is the sharper
/// signal and the one tests of "exactly N failures" rely on).
pub fn should_trip(
    cfg: &HealthConfig,
    totals: &WindowTotals,
    consecutive: u32,
) -> Option<TripReason> {
    if cfg.consecutive_failures > 0 && consecutive >= cfg.consecutive_failures {
        return Some(TripReason::Consecutive);
    }
    let by_rate = totals.requests > 0
        && totals.requests >= cfg.min_requests
        && totals.failure_rate() >= cfg.failure_rate;
    by_rate.then_some(TripReason::Rate)
}

/// The word after a health-counting failure at `now`, if it changes: a failed probe
/// re-opens for the next cooldown; a closed breaker opens on `trip`. Failures of
/// requests admitted before a trip change nothing (their news is old).
pub fn after_failure(
    cfg: &HealthConfig,
    word: Word,
    now: u64,
    probe: bool,
    trip: Option<TripReason>,
    failed_probes: u32,
) -> Option<(Word, u32)> {
    let open_for = |k: u32, reason| {
        let until = now.saturating_add(cooldown(cfg, k).as_millis() as u64);
        (
            Word {
                open: Some((until, reason)),
            },
            k,
        )
    };
    match phase(word, now) {
        Phase::HalfOpen { .. } if probe => Some(open_for(
            failed_probes.saturating_add(1).min(20),
            TripReason::ProbeFailed,
        )),
        Phase::Closed => trip.map(|reason| open_for(0, reason)),
        _ => None,
    }
}

/// Whether a success at `now` closes the breaker: only a probe's, once
/// `half_open_probes` probes in a row succeeded (`successes` includes this one).
pub fn closes_after_success(
    cfg: &HealthConfig,
    word: Word,
    now: u64,
    probe: bool,
    successes: u32,
) -> bool {
    probe
        && matches!(phase(word, now), Phase::HalfOpen { .. })
        && successes >= cfg.half_open_probes.max(1)
}

/// The word after the fleet's probe of this target succeeded (another node's
/// breaker closed while this one deferred its probe to it): a tripped word
/// closes as after its own successful probe; a closed one has nothing to do.
pub fn after_fleet_close(word: Word) -> Option<Word> {
    word.open.map(|_| Word::CLOSED)
}

/// One target's breaker, shared (in an `Arc`) by every shard of the gateway.
#[derive(Debug)]
pub struct SharedBreaker {
    epoch: Instant,
    word: AtomicU64,
    /// Sidelined until this ms (0: never).
    sidelined: AtomicU64,
    /// The half-open probe token: `true` while a probe is in flight.
    probing: AtomicBool,
    /// Health-counting failures since the last success, all shards together.
    consecutive: AtomicU32,
    /// Probes that failed in a row (the cooldown's exponent).
    failed_probes: AtomicU32,
    /// Probes that succeeded in the current half-open period.
    probe_successes: AtomicU32,
    /// Bumped on every close, so shards know to forget their windows' failures.
    closes: AtomicU64,
}

impl SharedBreaker {
    /// A closed breaker whose clock starts at `epoch` (instants before it read as 0).
    pub fn new(epoch: Instant) -> Self {
        SharedBreaker {
            epoch,
            word: AtomicU64::new(0),
            sidelined: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            consecutive: AtomicU32::new(0),
            failed_probes: AtomicU32::new(0),
            probe_successes: AtomicU32::new(0),
            closes: AtomicU64::new(0),
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn load(&self) -> Word {
        Word::unpack(self.word.load(Ordering::Acquire))
    }

    /// Publishes `next` if the word is still `seen`; only the winner reports.
    fn publish(&self, seen: Word, next: Word) -> bool {
        self.word
            .compare_exchange(
                seen.pack(),
                next.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Decide about one request; `Probe` means this caller now holds the token.
    pub fn admit(&self, now: Instant) -> Admission {
        let now_ms = self.ms(now);
        let sidelined = self.sidelined.load(Ordering::Acquire);
        let free = !self.probing.load(Ordering::Acquire);
        match admit(self.load(), sidelined, free, now_ms) {
            Verdict::Allow => Admission::Allow,
            Verdict::Probe => {
                // Exactly one winner gateway-wide; a loser waits for its answer.
                match self.probing.compare_exchange(
                    false,
                    true,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => Admission::Probe,
                    Err(_) => Admission::Reject { until: now },
                }
            }
            Verdict::Reject { until } => Admission::Reject {
                until: self.instant(until).max(now),
            },
        }
    }

    /// Whether `admit` would let a request through at `now`. Pure read.
    pub fn would_admit(&self, now: Instant) -> bool {
        self.next_admit(now).is_none()
    }

    /// When it next admits a request; `None` if it would at `now`.
    pub fn next_admit(&self, now: Instant) -> Option<Instant> {
        let now_ms = self.ms(now);
        let sidelined = self.sidelined.load(Ordering::Acquire);
        let free = !self.probing.load(Ordering::Acquire);
        match admit(self.load(), sidelined, free, now_ms) {
            Verdict::Allow | Verdict::Probe => None,
            Verdict::Reject { until } => Some(self.instant(until).max(now)),
        }
    }

    /// Called by the winner of a probe token: the transition open → half-open when
    /// this is the first probe since the breaker opened (later probes of the same
    /// half-open period, when more successes are needed, are no transition). No
    /// shard makes this change (time does), so the one that first sends into it
    /// reports it.
    pub fn entered_half_open(&self) -> Option<Transition> {
        let (_, reason) = self.load().open?;
        (self.probe_successes.load(Ordering::Acquire) == 0).then_some(Transition {
            from: StateKind::Open,
            to: StateKind::HalfOpen,
            reason: Some(reason),
            lasts: None,
        })
    }

    /// Whether the breaker has tripped (open, or half-open after its cooldown):
    /// only a probe may go there until it closes.
    pub fn tripped(&self) -> bool {
        self.load().open.is_some()
    }

    /// Until when a `Retry-After` sidelines the target, if it does at `now`.
    pub fn sidelined_until(&self, now: Instant) -> Option<Instant> {
        let until = self.sidelined.load(Ordering::Acquire);
        (self.ms(now) < until).then(|| self.instant(until))
    }

    /// A probe ended without an outcome that says anything: free the token.
    pub fn release_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    /// A request succeeded (`probe`: it held the token).
    pub fn on_success(&self, cfg: &HealthConfig, now: Instant, probe: bool) -> Option<Transition> {
        self.consecutive.store(0, Ordering::Release);
        if !probe {
            return None;
        }
        let word = self.load();
        let successes = self.probe_successes.fetch_add(1, Ordering::AcqRel) + 1;
        let closed = closes_after_success(cfg, word, self.ms(now), probe, successes)
            && self.publish(word, Word::CLOSED);
        if closed {
            self.failed_probes.store(0, Ordering::Release);
            self.probe_successes.store(0, Ordering::Release);
            self.closes.fetch_add(1, Ordering::AcqRel);
        }
        // The token goes back after the word is published, so the next probe (if
        // more successes are needed) sees the current state.
        self.release_probe();
        closed.then_some(Transition {
            from: StateKind::HalfOpen,
            to: StateKind::Closed,
            reason: None,
            lasts: None,
        })
    }

    /// Closes a tripped breaker because the fleet's probe (another node's)
    /// closed the target: counters reset and `closes` bumped as after a
    /// successful probe of its own, so shards forget their windows' failures.
    /// Reports the transition when it closed (not when already closed).
    pub fn close_by_fleet(&self, now: Instant) -> Option<Transition> {
        let word = self.load();
        let next = after_fleet_close(word)?;
        if !self.publish(word, next) {
            return None;
        }
        self.consecutive.store(0, Ordering::Release);
        self.failed_probes.store(0, Ordering::Release);
        self.probe_successes.store(0, Ordering::Release);
        self.closes.fetch_add(1, Ordering::AcqRel);
        let from = match phase(word, self.ms(now)) {
            Phase::Open { .. } => StateKind::Open,
            _ => StateKind::HalfOpen,
        };
        Some(Transition {
            from,
            to: StateKind::Closed,
            reason: None,
            lasts: None,
        })
    }

    /// A health-counting failure. `totals` is the window of all shards (this failure
    /// included); the consecutive count is the gateway's.
    pub fn on_failure(
        &self,
        cfg: &HealthConfig,
        now: Instant,
        probe: bool,
        totals: &WindowTotals,
    ) -> Option<Transition> {
        let consecutive = self
            .consecutive
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        let word = self.load();
        let now_ms = self.ms(now);
        let trip = should_trip(cfg, totals, consecutive);
        let failed = self.failed_probes.load(Ordering::Acquire);
        let next = after_failure(cfg, word, now_ms, probe, trip, failed);
        let transition = next.filter(|(n, _)| self.publish(word, *n)).map(|(n, k)| {
            self.failed_probes.store(k, Ordering::Release);
            self.probe_successes.store(0, Ordering::Release);
            let from = match phase(word, now_ms) {
                Phase::Closed => StateKind::Closed,
                _ => StateKind::HalfOpen,
            };
            Transition {
                from,
                to: StateKind::Open,
                reason: n.open.map(|(_, r)| r),
                lasts: Some(cooldown(cfg, k)),
            }
        });
        if probe {
            self.release_probe();
        }
        transition
    }

    /// No traffic until `until` (429/529 + `Retry-After`); never shortens an
    /// earlier sideline and leaves the cooldown alone. Reports a transition when it
    /// starts a sideline (not when it extends one).
    pub fn sideline(&self, now: Instant, until: Instant) -> Option<Transition> {
        let (now_ms, until_ms) = (self.ms(now), self.ms(until));
        if until_ms <= now_ms {
            return None;
        }
        let before = self.sidelined.fetch_max(until_ms, Ordering::AcqRel);
        let from = match phase(self.load(), now_ms) {
            Phase::Closed => StateKind::Closed,
            Phase::Open { .. } => StateKind::Open,
            Phase::HalfOpen { .. } => StateKind::HalfOpen,
        };
        (before <= now_ms).then_some(Transition {
            from,
            to: StateKind::Sidelined,
            reason: Some(TripReason::RetryAfter),
            lasts: Some(until.saturating_duration_since(now)),
        })
    }

    /// Until when the breaker itself is open (its cooldown's end; half-open
    /// from then on), sideline left out; `None` while closed. Pure read: the
    /// fleet's health thread compares it between ticks to see local trips.
    pub fn open_until(&self) -> Option<Instant> {
        self.load().open.map(|(until, _)| self.instant(until))
    }

    /// Lifts the sideline if it still ends at `until` (the one a caller set and
    /// read back with [`SharedBreaker::sidelined_until`]); a sideline extended
    /// since (a `Retry-After` past it) stays, and the trip word is never
    /// touched, so a local trip is not weakened. Returns whether it lifted.
    pub fn lift_sideline(&self, until: Instant) -> bool {
        self.sidelined
            .compare_exchange(self.ms(until), 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The state at `now`, sideline included.
    pub fn state(&self, now: Instant) -> BreakerState {
        let now_ms = self.ms(now);
        let sidelined = self.sidelined.load(Ordering::Acquire);
        let side = (now_ms < sidelined).then(|| self.instant(sidelined));
        match (phase(self.load(), now_ms), side) {
            (Phase::Open { until, reason }, side) => BreakerState::Open {
                until: self.instant(until).max(side.unwrap_or(now)),
                reason,
            },
            (_, Some(until)) => BreakerState::Sidelined { until },
            (Phase::HalfOpen { reason }, None) => BreakerState::HalfOpen { reason },
            (Phase::Closed, None) => BreakerState::Closed,
        }
    }

    /// Health-counting failures since the last success, gateway-wide.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Acquire)
    }

    /// How many times it has closed; a change tells a shard to clear its window.
    pub fn closes(&self) -> u64 {
        self.closes.load(Ordering::Acquire)
    }

    /// The cooldown the next re-open after a failed probe would last.
    pub fn next_cooldown(&self, cfg: &HealthConfig) -> Duration {
        cooldown(
            cfg,
            self.failed_probes.load(Ordering::Acquire).saturating_add(1),
        )
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
