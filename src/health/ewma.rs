//! Peak-EWMA of time-to-first-byte: how fast a target answers, biased towards its
//! worst recent behaviour (Finagle / linkerd style).
//!
//! A sample above the current value is taken at once (the peak); a lower one decays
//! in with weight `exp(-elapsed/tau)` on the old value, so a target that turned slow
//! is avoided immediately and forgiven gradually. Between samples the estimate drifts
//! back towards the default with the same time constant: a target nobody has tried
//! for a while (a new one, or one that was too slow to pick) looks "unknown" again
//! and gets tried, instead of being judged forever by one old peak.

use std::time::{Duration, Instant};

/// Time constant of the decay.
pub const DEFAULT_TAU: Duration = Duration::from_secs(10);
/// Estimate of a target with no samples (µs): below typical LLM first-byte times so
/// new targets get tried, but not zero so in-flight weighting still spreads load.
pub const DEFAULT_ESTIMATE_US: f64 = 100_000.0;

/// Peak-EWMA of one target's time-to-first-byte, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct PeakEwma {
    value_us: f64,
    updated: Option<Instant>,
    tau_us: f64,
    default_us: f64,
}

impl Default for PeakEwma {
    fn default() -> Self {
        PeakEwma::new(DEFAULT_TAU, DEFAULT_ESTIMATE_US)
    }
}

impl PeakEwma {
    /// `tau` is the decay time constant (zero is treated as 1 µs); `default_us` the
    /// estimate of an unobserved target.
    pub fn new(tau: Duration, default_us: f64) -> Self {
        PeakEwma {
            value_us: default_us,
            updated: None,
            tau_us: micros(tau).max(1.0),
            default_us,
        }
    }

    /// Take one time-to-first-byte sample observed at `now`.
    pub fn observe(&mut self, now: Instant, rtt: Duration) {
        let sample = micros(rtt);
        let current = self.value_at(now);
        self.value_us = if !self.observed() || sample >= current {
            sample
        } else {
            let keep = self.decay(now);
            current * keep + sample * (1.0 - keep)
        };
        self.updated = Some(now);
    }

    /// The estimate at `now` in microseconds. Pure.
    pub fn estimate(&self, now: Instant) -> f64 {
        self.value_at(now)
    }

    /// Whether any sample has been taken.
    pub fn observed(&self) -> bool {
        self.updated.is_some()
    }

    /// The stored value drifted towards the default for the time since the last sample.
    fn value_at(&self, now: Instant) -> f64 {
        if self.updated.is_none() {
            return self.default_us;
        }
        let keep = self.decay(now);
        self.value_us * keep + self.default_us * (1.0 - keep)
    }

    /// `exp(-elapsed/tau)` since the last sample (1 when there was none).
    fn decay(&self, now: Instant) -> f64 {
        let Some(updated) = self.updated else {
            return 1.0;
        };
        let elapsed = micros(now.saturating_duration_since(updated));
        (-elapsed / self.tau_us).exp()
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn unobserved_target_reports_the_default() {
        let e = PeakEwma::new(DEFAULT_TAU, 42.0);
        assert_eq!(e.estimate(Instant::now()), 42.0);
        assert!(!e.observed());
    }

    #[test]
    fn first_sample_is_taken_as_is() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(DEFAULT_TAU, 1_000_000.0);
        e.observe(t0, ms(20));
        assert!(close(e.estimate(t0), 20_000.0));
    }

    #[test]
    fn a_peak_is_taken_at_once() {
        let t0 = Instant::now();
        let mut e = PeakEwma::default();
        e.observe(t0, ms(100));
        e.observe(t0 + ms(1), ms(900));
        assert!(close(e.estimate(t0 + ms(1)), 900_000.0));
    }

    #[test]
    fn lower_samples_decay_in_with_elapsed_time() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(Duration::from_secs(10), 500_000.0);
        e.observe(t0, ms(500));
        let t1 = t0 + Duration::from_secs(10);
        e.observe(t1, ms(100));
        // Exactly one tau later: keep e^-1 of the old value (which is the default).
        let keep = (-1.0f64).exp();
        assert!(close(
            e.estimate(t1),
            500_000.0 * keep + 100_000.0 * (1.0 - keep)
        ));
    }

    #[test]
    fn a_low_sample_right_after_a_peak_barely_moves_it() {
        let t0 = Instant::now();
        let mut e = PeakEwma::default();
        e.observe(t0, ms(1_000));
        e.observe(t0, ms(10));
        assert!(close(e.estimate(t0), 1_000_000.0));
    }

    #[test]
    fn idle_estimate_drifts_back_to_the_default() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(Duration::from_secs(10), 100_000.0);
        e.observe(t0, ms(5_000));
        let later = e.estimate(t0 + Duration::from_secs(30));
        assert!(later < 5_000_000.0 && later > 100_000.0);
        let much_later = e.estimate(t0 + Duration::from_secs(600));
        assert!(close(much_later, 100_000.0));
    }
}
