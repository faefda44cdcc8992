//! Sliding windows of one-second buckets: what happened to a target lately.
//!
//! [`Ring`] is the generic part: a fixed ring of per-second buckets plus a running
//! total, advanced lazily by the `now` the caller passes in. Expiring buckets are
//! subtracted from the total as time moves past them, so recording and reading are
//! O(1) amortised and nothing allocates after construction. [`Window`] is the health
//! window built on it (requests, outcomes per [`FailureClass`], tokens, latency); the
//! retry budget reuses the same ring with its own bucket.

use std::time::{Duration, Instant};

use crate::outcome::{FailureClass, Outcome};

/// Number of failure classes, the length of every per-class array.
pub const CLASSES: usize = FailureClass::ALL.len();

/// A bucket the ring can keep a running total of. Updates go to a bucket and the
/// total alike ([`Ring::update`]); expiry subtracts the bucket from the total.
pub(crate) trait Bucket: Copy + Default {
    /// Remove `other` from `self` (wrapping, so the total stays exact as long as the
    /// true value fits).
    fn sub(&mut self, other: &Self);
}

/// A ring of `len` one-second buckets covering the seconds `(head - len, head]`.
///
/// Seconds are counted from the first `now` the ring sees; earlier instants (calls
/// arriving slightly out of order) land in the newest bucket.
#[derive(Debug, Clone)]
pub(crate) struct Ring<B> {
    slots: Box<[B]>,
    total: B,
    epoch: Option<Instant>,
    head: u64,
}

impl<B: Bucket> Ring<B> {
    /// A ring of `len` seconds (at least one).
    pub(crate) fn new(len: usize) -> Self {
        Ring {
            slots: vec![B::default(); len.max(1)].into_boxed_slice(),
            total: B::default(),
            epoch: None,
            head: 0,
        }
    }

    /// How many one-second buckets the ring holds.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Apply `f` to the bucket of the second containing `now` (and to the total).
    pub(crate) fn update(&mut self, now: Instant, f: impl Fn(&mut B)) {
        self.advance(now);
        let idx = self.index(self.head);
        f(&mut self.slots[idx]);
        f(&mut self.total);
    }

    /// Sum of the buckets that are still inside the window at `now`.
    pub(crate) fn totals(&self, now: Instant) -> B {
        let mut total = self.total;
        for second in self.expiring(now) {
            total.sub(&self.slots[self.index(second)]);
        }
        total
    }

    /// Forget everything (keeps the epoch and the allocation).
    pub(crate) fn clear(&mut self) {
        self.slots.fill(B::default());
        self.total = B::default();
    }

    /// Move the head up to `now`, emptying the buckets that fall out. The first
    /// call fixes the epoch.
    pub(crate) fn advance(&mut self, now: Instant) {
        if self.epoch.is_none() {
            self.epoch = Some(now);
            return;
        }
        let target = self.second(now);
        for second in self.expiring(now) {
            let idx = self.index(second);
            self.total.sub(&self.slots[idx]);
            self.slots[idx] = B::default();
        }
        self.head = self.head.max(target);
    }

    /// The seconds whose buckets are reused when the head moves up to `now`
    /// (at most `len` of them, so the work per call is bounded).
    fn expiring(&self, now: Instant) -> std::ops::RangeInclusive<u64> {
        let steps = self.second(now).saturating_sub(self.head);
        let steps = steps.min(self.slots.len() as u64);
        self.head + 1..=self.head + steps
    }

    fn second(&self, now: Instant) -> u64 {
        match self.epoch {
            Some(epoch) => now.saturating_duration_since(epoch).as_secs(),
            None => 0,
        }
    }

    fn index(&self, second: u64) -> usize {
        // The remainder is < len, which is a usize.
        (second % self.slots.len() as u64) as usize
    }
}

/// What one second of traffic to a target looked like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    requests: u32,
    successes: u32,
    by_class: [u32; CLASSES],
    tokens: u64,
    latency_us: u64,
    latency_samples: u32,
}

impl Bucket for Counts {
    fn sub(&mut self, o: &Self) {
        self.requests = self.requests.wrapping_sub(o.requests);
        self.successes = self.successes.wrapping_sub(o.successes);
        for (mine, theirs) in self.by_class.iter_mut().zip(o.by_class) {
            *mine = mine.wrapping_sub(theirs);
        }
        self.tokens = self.tokens.wrapping_sub(o.tokens);
        self.latency_us = self.latency_us.wrapping_sub(o.latency_us);
        self.latency_samples = self.latency_samples.wrapping_sub(o.latency_samples);
    }
}

/// Totals over the buckets inside the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowTotals {
    /// Every recorded attempt, whatever its outcome.
    pub requests: u32,
    pub successes: u32,
    /// Failures of the classes that count against health only.
    pub failures: u32,
    /// Failures per class, indexed by [`FailureClass::index`] (all classes).
    pub by_class: [u32; CLASSES],
    pub tokens: u64,
    /// Mean of the latencies recorded with a value; `None` when there were none.
    pub mean_latency: Option<Duration>,
}

impl WindowTotals {
    /// Health-counting failures per request; 0 when there were no requests.
    pub fn failure_rate(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        f64::from(self.failures) / f64::from(self.requests)
    }

    /// Failures recorded for one class.
    pub fn class(&self, class: FailureClass) -> u32 {
        self.by_class[class.index()]
    }

    fn from_counts(c: &Counts) -> Self {
        let failures = FailureClass::ALL
            .iter()
            .filter(|class| class.counts_against_health())
            .fold(0u32, |sum, class| {
                sum.wrapping_add(c.by_class[class.index()])
            });
        let mean_latency = match c.latency_samples {
            0 => None,
            n => Some(Duration::from_micros(c.latency_us / u64::from(n))),
        };
        WindowTotals {
            requests: c.requests,
            successes: c.successes,
            failures,
            by_class: c.by_class,
            tokens: c.tokens,
            mean_latency,
        }
    }
}

/// The health window of one target on one shard: a ring of one-second buckets
/// covering `HealthConfig::window`.
#[derive(Debug, Clone)]
pub struct Window {
    ring: Ring<Counts>,
}

impl Window {
    /// A window of `length`, rounded up to whole seconds (at least one).
    pub fn new(length: Duration) -> Self {
        Window {
            ring: Ring::new(Self::buckets_for(length)),
        }
    }

    /// How many one-second buckets a window of `length` needs.
    pub fn buckets_for(length: Duration) -> usize {
        let secs = length.as_secs() + u64::from(length.subsec_nanos() > 0);
        usize::try_from(secs).unwrap_or(usize::MAX).max(1)
    }

    /// How many one-second buckets this window holds.
    pub fn buckets(&self) -> usize {
        self.ring.len()
    }

    /// Count one attempt that ended at `now`.
    pub fn record(
        &mut self,
        now: Instant,
        outcome: Outcome,
        latency: Option<Duration>,
        tokens: u32,
    ) {
        let latency_us = latency.map(|l| u64::try_from(l.as_micros()).unwrap_or(u64::MAX));
        self.ring.update(now, |b| {
            b.requests = b.requests.wrapping_add(1);
            match outcome {
                Outcome::Success => b.successes = b.successes.wrapping_add(1),
                Outcome::Failure(class) => {
                    let n = &mut b.by_class[class.index()];
                    *n = n.wrapping_add(1);
                }
            }
            b.tokens = b.tokens.wrapping_add(u64::from(tokens));
            if let Some(us) = latency_us {
                b.latency_us = b.latency_us.wrapping_add(us);
                b.latency_samples = b.latency_samples.wrapping_add(1);
            }
        });
    }

    /// Totals of the buckets still inside the window at `now`.
    pub fn totals(&self, now: Instant) -> WindowTotals {
        WindowTotals::from_counts(&self.ring.totals(now))
    }

    /// Forget everything recorded so far.
    pub fn clear(&mut self) {
        self.ring.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    const SERVER: Outcome = Outcome::Failure(FailureClass::Server);
    const CLIENT: Outcome = Outcome::Failure(FailureClass::Client);

    #[test]
    fn counts_outcomes_tokens_and_latency() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(10));
        w.record(t0, Outcome::Success, Some(Duration::from_millis(100)), 7);
        w.record(at(t0, 10), SERVER, Some(Duration::from_millis(300)), 0);
        w.record(at(t0, 20), CLIENT, None, 3);
        let t = w.totals(at(t0, 30));
        assert_eq!(t.requests, 3);
        assert_eq!(t.successes, 1);
        assert_eq!(t.failures, 1, "client errors do not count against health");
        assert_eq!(t.class(FailureClass::Server), 1);
        assert_eq!(t.class(FailureClass::Client), 1);
        assert_eq!(t.tokens, 10);
        assert_eq!(t.mean_latency, Some(Duration::from_millis(200)));
        assert!((t.failure_rate() - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn empty_window_has_zero_rate_and_no_latency() {
        let w = Window::new(Duration::from_secs(60));
        let t = w.totals(Instant::now());
        assert_eq!(t, WindowTotals::default());
        assert_eq!(t.failure_rate(), 0.0);
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(3));
        w.record(t0, SERVER, None, 0);
        w.record(at(t0, 1_500), Outcome::Success, None, 0);
        assert_eq!(w.totals(at(t0, 2_999)).requests, 2);
        // Second 0 has left a 3-bucket window at second 3; second 1 leaves at 4.
        assert_eq!(w.totals(at(t0, 3_000)).requests, 1);
        assert_eq!(w.totals(at(t0, 3_000)).failures, 0);
        assert_eq!(w.totals(at(t0, 4_000)).requests, 0);
    }

    #[test]
    fn reused_buckets_start_empty() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(2));
        w.record(t0, SERVER, None, 5);
        w.record(at(t0, 2_100), Outcome::Success, None, 1);
        let t = w.totals(at(t0, 2_100));
        assert_eq!((t.requests, t.failures, t.tokens), (1, 0, 1));
    }

    #[test]
    fn long_idle_gap_empties_the_window() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(60));
        for i in 0..60 {
            w.record(at(t0, i * 1_000), SERVER, None, 1);
        }
        assert_eq!(w.totals(at(t0, 59_000)).requests, 60);
        let later = at(t0, 10_000_000);
        assert_eq!(w.totals(later), WindowTotals::default());
        w.record(later, Outcome::Success, None, 0);
        assert_eq!(w.totals(later).requests, 1);
    }

    #[test]
    fn earlier_instants_land_in_the_newest_bucket() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(5));
        w.record(at(t0, 4_000), Outcome::Success, None, 0);
        w.record(t0, SERVER, None, 0);
        assert_eq!(w.totals(at(t0, 4_000)).requests, 2);
        assert_eq!(w.totals(at(t0, 8_000)).requests, 2);
        assert_eq!(w.totals(at(t0, 9_000)).requests, 0);
    }

    #[test]
    fn window_length_rounds_up_to_whole_seconds() {
        assert_eq!(Window::buckets_for(Duration::from_secs(60)), 60);
        assert_eq!(Window::buckets_for(Duration::from_millis(1_500)), 2);
        assert_eq!(Window::buckets_for(Duration::ZERO), 1);
    }

    #[test]
    fn clear_forgets_everything() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(10));
        w.record(t0, SERVER, None, 1);
        w.clear();
        assert_eq!(w.totals(t0), WindowTotals::default());
        w.record(at(t0, 20_000), SERVER, None, 1);
        assert_eq!(w.totals(at(t0, 20_000)).requests, 1);
    }

    proptest::proptest! {
        /// The running total always equals a plain recount of the events in the window.
        #[test]
        fn running_total_matches_recount(
            steps in proptest::collection::vec((0u64..2_500, 0usize..CLASSES + 1), 1..200),
            len in 1u64..8,
        ) {
            let t0 = Instant::now();
            let mut w = Window::new(Duration::from_secs(len));
            let mut log: Vec<(u64, usize)> = Vec::new();
            // The ring counts seconds from the first instant it sees: start there.
            let mut now_ms = 0u64;
            for (i, (dt, class)) in steps.into_iter().enumerate() {
                now_ms += if i == 0 { 0 } else { dt };
                let outcome = FailureClass::ALL
                    .get(class)
                    .map_or(Outcome::Success, |c| Outcome::Failure(*c));
                w.record(at(t0, now_ms), outcome, None, 1);
                let sec = now_ms / 1_000;
                log.push((sec, class));
                let live = log.iter().filter(|(s, _)| s + len > sec).count() as u32;
                let t = w.totals(at(t0, now_ms));
                proptest::prop_assert_eq!(t.requests, live);
                proptest::prop_assert_eq!(t.tokens, u64::from(live));
            }
        }
    }
}
