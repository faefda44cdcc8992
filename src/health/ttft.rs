//! Time to first token (TTFT) of one target on one shard: a small histogram over
//! a sliding window, and the `auto` first-token limit learned from it.
//!
//! A sample is the time from sending an attempt to the first content of its
//! stream (recorded when the stream commits). Samples land in fixed log-spaced
//! buckets — four per doubling from 1 ms up to 2^30 µs (about 17.9 min; longer
//! samples count in the last bucket) — in one of [`SLOTS`] time slots of
//! [`SLOT`] each, so the estimator covers the last [`WINDOW`] and forgets older
//! samples a slot at a time. Everything is fixed-size arrays: nothing allocates,
//! ever, and time only moves by the `now` the caller passes in.
//!
//! A quantile is reported as the upper edge of the bucket holding it: never below
//! the true sample quantile, at most 25 % above it (or below 1 ms). That errs on
//! the side of waiting longer, which is what a timeout or a hedge delay wants.

use std::time::{Duration, Instant};

/// Time slots the window is made of.
pub const SLOTS: usize = 10;
/// Length of one time slot.
pub const SLOT: Duration = Duration::from_secs(30);
/// How far back samples count: `SLOTS × SLOT` (5 minutes).
pub const WINDOW: Duration = Duration::from_secs(SLOT.as_secs() * SLOTS as u64);

/// The `auto` first-token limit is never below this.
pub const AUTO_FLOOR: Duration = Duration::from_secs(10);
/// The `auto` limit is this many times the target's p95 TTFT...
pub const AUTO_FACTOR: u32 = 4;
/// ...at this quantile...
pub const AUTO_QUANTILE: f64 = 0.95;
/// ...once the window holds at least this many samples (until then: the floor).
pub const AUTO_MIN_SAMPLES: u32 = 20;

/// Sub-buckets per doubling (two mantissa bits).
const PER_OCTAVE: u32 = 4;
/// The first bucketed octave: 2^10 µs ≈ 1 ms (bucket 0 holds everything below).
const MIN_OCTAVE: u32 = 10;
/// Octaves covered: 2^10 .. 2^30 µs.
const OCTAVES: u32 = 20;
/// Buckets per histogram.
pub const BUCKETS: usize = 1 + (OCTAVES * PER_OCTAVE) as usize;

/// Sample counts per bucket, and their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Histogram {
    counts: [u32; BUCKETS],
    samples: u32,
}

impl Histogram {
    const EMPTY: Histogram = Histogram {
        counts: [0; BUCKETS],
        samples: 0,
    };

    fn add(&mut self, bucket: usize) {
        self.counts[bucket] = self.counts[bucket].wrapping_add(1);
        self.samples = self.samples.wrapping_add(1);
    }

    /// Removes `other` (wrapping: the running total stays exact as long as the
    /// true counts fit).
    fn sub(&mut self, other: &Histogram) {
        for (count, gone) in self.counts.iter_mut().zip(&other.counts) {
            *count = count.wrapping_sub(*gone);
        }
        self.samples = self.samples.wrapping_sub(other.samples);
    }
}

/// Recent TTFT samples of one target on one shard.
#[derive(Debug, Clone)]
pub struct TtftEstimator {
    slots: [Histogram; SLOTS],
    /// The sum of `slots` as of `head`.
    total: Histogram,
    /// The first instant seen; slot numbers count from it.
    epoch: Option<Instant>,
    /// The newest slot number written.
    head: u64,
}

impl Default for TtftEstimator {
    fn default() -> Self {
        TtftEstimator {
            slots: [Histogram::EMPTY; SLOTS],
            total: Histogram::EMPTY,
            epoch: None,
            head: 0,
        }
    }
}

impl TtftEstimator {
    /// Records one stream's time to first token, observed at `now`.
    pub fn observe(&mut self, now: Instant, ttft: Duration) {
        self.advance(now);
        let bucket = bucket_of(ttft);
        let slot = self.index(self.head);
        self.slots[slot].add(bucket);
        self.total.add(bucket);
    }

    /// Samples inside the window at `now`.
    pub fn samples(&self, now: Instant) -> u32 {
        self.live(now).samples
    }

    /// The `q` quantile (0..=1; 0.5 the median, 0.95 the p95) of the samples inside
    /// the window at `now`, as the upper edge of its bucket; `None` without samples.
    pub fn quantile(&self, now: Instant, q: f64) -> Option<Duration> {
        let live = self.live(now);
        if live.samples == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let n = u64::from(live.samples);
        // The smallest sample with at least `rank` samples at or below it.
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        for (bucket, &count) in live.counts.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                return Some(upper_edge(bucket));
            }
        }
        Some(upper_edge(BUCKETS - 1))
    }

    /// The `auto` first-token limit at `now`: `max(AUTO_FLOOR, AUTO_FACTOR × p95)`
    /// once the window holds `AUTO_MIN_SAMPLES`, the floor until then.
    pub fn auto_limit(&self, now: Instant) -> Duration {
        if self.samples(now) < AUTO_MIN_SAMPLES {
            return AUTO_FLOOR;
        }
        self.quantile(now, AUTO_QUANTILE)
            .map_or(AUTO_FLOOR, |p95| p95.saturating_mul(AUTO_FACTOR))
            .max(AUTO_FLOOR)
    }

    /// The window's counts at `now`, without the slots that have expired since the
    /// last write. Pure.
    fn live(&self, now: Instant) -> Histogram {
        let mut live = self.total;
        for slot in self.expiring(now) {
            live.sub(&self.slots[self.index(slot)]);
        }
        live
    }

    /// Moves the head up to `now`, emptying the slots that fall out of the window.
    /// The first call fixes the epoch.
    fn advance(&mut self, now: Instant) {
        if self.epoch.is_none() {
            self.epoch = Some(now);
            return;
        }
        let target = self.slot_of(now);
        for slot in self.expiring(now) {
            let index = self.index(slot);
            let gone = self.slots[index];
            self.total.sub(&gone);
            self.slots[index] = Histogram::EMPTY;
        }
        self.head = self.head.max(target);
    }

    /// The slot numbers reused when the head moves up to `now` (at most `SLOTS`).
    fn expiring(&self, now: Instant) -> std::ops::RangeInclusive<u64> {
        let steps = self
            .slot_of(now)
            .saturating_sub(self.head)
            .min(SLOTS as u64);
        self.head + 1..=self.head + steps
    }

    /// Instants before the epoch (or before the head) land in the newest slot.
    fn slot_of(&self, now: Instant) -> u64 {
        self.epoch.map_or(0, |epoch| {
            now.saturating_duration_since(epoch).as_secs() / SLOT.as_secs()
        })
    }

    fn index(&self, slot: u64) -> usize {
        // The remainder is < SLOTS.
        (slot % SLOTS as u64) as usize
    }
}

/// The bucket of `ttft`: 0 below 2^10 µs, then four per doubling, the last one
/// open-ended.
fn bucket_of(ttft: Duration) -> usize {
    let us = u64::try_from(ttft.as_micros()).unwrap_or(u64::MAX);
    if us < 1 << MIN_OCTAVE {
        return 0;
    }
    let octave = 63 - us.leading_zeros();
    if octave >= MIN_OCTAVE + OCTAVES {
        return BUCKETS - 1;
    }
    let sub = (us >> (octave - 2)) & u64::from(PER_OCTAVE - 1);
    1 + ((octave - MIN_OCTAVE) * PER_OCTAVE) as usize + sub as usize
}

/// The upper edge of `bucket` (exclusive): what a quantile falling in it reports.
fn upper_edge(bucket: usize) -> Duration {
    if bucket == 0 {
        return Duration::from_micros(1 << MIN_OCTAVE);
    }
    let i = (bucket - 1) as u32;
    let octave = MIN_OCTAVE + i / PER_OCTAVE;
    let sub = u64::from(i % PER_OCTAVE);
    Duration::from_micros((u64::from(PER_OCTAVE) + sub + 1) << (octave - 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn filled(t0: Instant, ttft: Duration, n: u32) -> TtftEstimator {
        let mut e = TtftEstimator::default();
        for _ in 0..n {
            e.observe(t0, ttft);
        }
        e
    }

    #[test]
    fn buckets_are_contiguous_and_log_spaced() {
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(Duration::from_micros(1023)), 0);
        assert_eq!(bucket_of(Duration::from_micros(1024)), 1);
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS - 1);
        assert_eq!(bucket_of(Duration::MAX), BUCKETS - 1);
        // Every bucket's upper edge is the next bucket's lower edge.
        for bucket in 0..BUCKETS - 1 {
            let edge = upper_edge(bucket);
            assert_eq!(bucket_of(edge), bucket + 1, "edge of {bucket}");
            assert_eq!(
                bucket_of(edge - Duration::from_micros(1)),
                bucket,
                "below the edge of {bucket}"
            );
        }
        // Four per doubling: an edge is at most 25 % above the one before it.
        for bucket in 1..BUCKETS {
            let (low, high) = (upper_edge(bucket - 1), upper_edge(bucket));
            assert!(high > low && high.as_secs_f64() <= low.as_secs_f64() * 1.25 + 1e-9);
        }
        assert_eq!(upper_edge(BUCKETS - 1), Duration::from_micros(1 << 30));
    }

    #[test]
    fn quantiles_are_bucket_upper_edges_never_below_the_sample() {
        let t0 = Instant::now();
        let mut e = TtftEstimator::default();
        assert_eq!(e.quantile(t0, 0.95), None);
        assert_eq!(e.samples(t0), 0);
        for ms_value in 1..=100u64 {
            e.observe(t0, ms(ms_value * 10));
        }
        assert_eq!(e.samples(t0), 100);
        let p50 = e.quantile(t0, 0.5).unwrap();
        let p95 = e.quantile(t0, 0.95).unwrap();
        let max = e.quantile(t0, 1.0).unwrap();
        assert!(p50 >= ms(500) && p50 <= ms(625), "{p50:?}");
        assert!(p95 >= ms(950) && p95 <= ms(1188), "{p95:?}");
        assert!(max >= ms(1000) && max <= ms(1250), "{max:?}");
        assert!(p50 <= p95 && p95 <= max);
        // Out-of-range and NaN quantiles are clamped, not a panic.
        assert_eq!(e.quantile(t0, -1.0), e.quantile(t0, 0.0));
        assert_eq!(e.quantile(t0, 7.0), Some(max));
        assert_eq!(e.quantile(t0, f64::NAN), Some(max));
    }

    #[test]
    fn one_sample_is_every_quantile() {
        let t0 = Instant::now();
        let e = filled(t0, ms(200), 1);
        let q = e.quantile(t0, 0.01).unwrap();
        assert_eq!(e.quantile(t0, 0.99), Some(q));
        assert!(q >= ms(200) && q <= ms(250));
    }

    #[test]
    fn samples_leave_the_window_slot_by_slot() {
        let t0 = Instant::now();
        let mut e = filled(t0, ms(100), 5);
        e.observe(t0 + SLOT, ms(4_000));
        let before = t0 + WINDOW - Duration::from_millis(1);
        assert_eq!(e.samples(before), 6);
        // The first slot expires when the head reaches slot SLOTS.
        assert_eq!(e.samples(t0 + WINDOW), 1, "read without a write");
        assert!(e.quantile(t0 + WINDOW, 0.0).unwrap() >= ms(4_000));
        e.observe(t0 + WINDOW, ms(100));
        assert_eq!(e.samples(t0 + WINDOW), 2, "and after one");
        // Far later, everything is gone (and the work stays bounded).
        let later = t0 + WINDOW * 100;
        assert_eq!(e.samples(later), 0);
        assert_eq!(e.quantile(later, 0.95), None);
        e.observe(later, ms(100));
        assert_eq!(e.samples(later), 1);
    }

    #[test]
    fn instants_before_the_head_land_in_the_newest_slot() {
        let t0 = Instant::now();
        let mut e = TtftEstimator::default();
        e.observe(t0 + SLOT * 2, ms(100));
        e.observe(t0, ms(100));
        assert_eq!(e.samples(t0 + SLOT * 2), 2);
    }

    #[test]
    fn auto_uses_the_floor_until_enough_samples() {
        let t0 = Instant::now();
        let slow = filled(t0, Duration::from_secs(30), AUTO_MIN_SAMPLES - 1);
        assert_eq!(slow.auto_limit(t0), AUTO_FLOOR, "too few samples to learn");
        assert_eq!(TtftEstimator::default().auto_limit(t0), AUTO_FLOOR);
    }

    #[test]
    fn auto_stays_at_the_floor_for_a_fast_target() {
        let t0 = Instant::now();
        let fast = filled(t0, ms(300), 500);
        assert_eq!(fast.auto_limit(t0), AUTO_FLOOR);
    }

    #[test]
    fn auto_learns_a_slow_target() {
        let t0 = Instant::now();
        // A reasoning model: p95 around 8 s, so the limit is about 32 s (never less).
        let mut e = filled(t0, Duration::from_secs(2), 80);
        for _ in 0..20 {
            e.observe(t0, Duration::from_secs(8));
        }
        let limit = e.auto_limit(t0);
        assert!(
            limit >= Duration::from_secs(32) && limit <= Duration::from_secs(40),
            "{limit:?}"
        );
        // Once the slow samples age out, it falls back to the floor.
        assert_eq!(e.auto_limit(t0 + WINDOW), AUTO_FLOOR);
    }
}
