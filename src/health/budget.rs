//! The retry budget: retries may only add a bounded fraction of load to a target.
//!
//! linkerd2's idea: every original request deposits, every retry withdraws, and a
//! retry is allowed while, counting it, the retries of the last 10 s stay within
//! `ratio × requests of the last 10 s + min_per_sec × 10`. The reserve keeps
//! low-traffic targets retryable; the ratio keeps a failing busy target from seeing
//! its load multiplied by retries. One-second slots, O(1) per call.

use std::time::Instant;

use super::window::{Bucket, Ring};

/// Length of the budget's memory, in seconds.
pub const BUDGET_WINDOW_SECS: u32 = 10;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    deposits: u32,
    withdrawals: u32,
}

impl Bucket for Slot {
    fn sub(&mut self, o: &Self) {
        self.deposits = self.deposits.wrapping_sub(o.deposits);
        self.withdrawals = self.withdrawals.wrapping_sub(o.withdrawals);
    }
}

/// One target's retry budget on one shard.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    ring: Ring<Slot>,
    ratio: f64,
    reserve: f64,
}

impl RetryBudget {
    /// `ratio`: retries allowed per original request (negative or NaN = 0);
    /// `min_per_sec`: retries always allowed per second.
    pub fn new(ratio: f64, min_per_sec: u32) -> Self {
        let mut budget = RetryBudget {
            ring: Ring::new(BUDGET_WINDOW_SECS as usize),
            ratio: 0.0,
            reserve: 0.0,
        };
        budget.set_limits(ratio, min_per_sec);
        budget
    }

    /// Change the limits (config reload), keeping what was counted.
    pub fn set_limits(&mut self, ratio: f64, min_per_sec: u32) {
        self.ratio = ratio.max(0.0);
        self.reserve = f64::from(min_per_sec) * f64::from(BUDGET_WINDOW_SECS);
    }

    /// An original (non-retry) request was sent.
    pub fn deposit(&mut self, now: Instant) {
        self.ring
            .update(now, |s| s.deposits = s.deposits.wrapping_add(1));
    }

    /// Take one retry from the budget if the formula allows it.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        self.ring.advance(now);
        if !self.allows(now) {
            return false;
        }
        self.ring
            .update(now, |s| s.withdrawals = s.withdrawals.wrapping_add(1));
        true
    }

    /// Whether a retry at `now` would be allowed. Pure.
    pub fn allows(&self, now: Instant) -> bool {
        let t = self.ring.totals(now);
        let limit = self.ratio * f64::from(t.deposits) + self.reserve;
        f64::from(t.withdrawals) + 1.0 <= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn drain(b: &mut RetryBudget, now: Instant) -> u32 {
        (0..10_000).take_while(|_| b.try_withdraw(now)).count() as u32
    }

    #[test]
    fn reserve_alone_allows_min_per_sec_times_ten() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(0.2, 1);
        assert_eq!(drain(&mut b, t0), 10);
        assert!(!b.allows(t0));
    }

    #[test]
    fn deposits_add_ratio_retries() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(0.2, 0);
        for _ in 0..100 {
            b.deposit(t0);
        }
        assert_eq!(drain(&mut b, t0), 20);
    }

    #[test]
    fn budget_refills_as_old_retries_leave_the_window() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(0.0, 1);
        assert_eq!(drain(&mut b, t0), 10);
        assert!(!b.try_withdraw(at(t0, 9_999)));
        assert_eq!(drain(&mut b, at(t0, 10_000)), 10);
    }

    #[test]
    fn zero_budget_allows_nothing() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(f64::NAN, 0);
        b.deposit(t0);
        assert!(!b.try_withdraw(t0));
    }

    proptest::proptest! {
        /// Against a plain log of events: a withdrawal succeeds exactly when, counting
        /// it, the retries of the last 10 one-second slots stay within the formula.
        #[test]
        fn never_allows_more_than_the_formula(
            steps in proptest::collection::vec((0u64..1_500, proptest::bool::ANY), 1..400),
            ratio in 0.0f64..1.0,
            min_per_sec in 0u32..3,
        ) {
            let t0 = Instant::now();
            let mut b = RetryBudget::new(ratio, min_per_sec);
            let mut deposits: Vec<u64> = Vec::new();
            let mut withdrawals: Vec<u64> = Vec::new();
            let mut now_ms = 0u64;
            for (i, (dt, is_deposit)) in steps.into_iter().enumerate() {
                now_ms += if i == 0 { 0 } else { dt };
                let sec = now_ms / 1_000;
                let live = |log: &[u64]| log.iter().filter(|s| **s + 10 > sec).count() as f64;
                if is_deposit {
                    b.deposit(at(t0, now_ms));
                    deposits.push(sec);
                    continue;
                }
                let limit = ratio * live(&deposits) + f64::from(min_per_sec) * 10.0;
                let expected = live(&withdrawals) + 1.0 <= limit;
                proptest::prop_assert_eq!(b.try_withdraw(at(t0, now_ms)), expected);
                if expected {
                    withdrawals.push(sec);
                    proptest::prop_assert!(live(&withdrawals) <= limit);
                }
            }
        }
    }
}
