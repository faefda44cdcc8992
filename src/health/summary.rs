//! What one shard tells the others about a target: a small `Copy` summary of its
//! window volume and latency (the breaker itself is shared, not summarised).
//!
//! Each shard sends its own view (never one merged with peers', so nothing is
//! counted twice) every [`SUMMARY_INTERVAL`] over a lock-free queue. Receivers trust
//! a summary for [`PEER_SUMMARY_TTL`] after it arrived: long enough to survive a few
//! late timer ticks, short enough that a stalled shard cannot block a target for long.
//! `Instant`s are comparable across threads of one process, so they travel as is.

use std::time::Duration;

/// How often a shard should send its summaries (upper bound).
pub const SUMMARY_INTERVAL: Duration = Duration::from_millis(50);
/// How long a received summary counts.
pub const PEER_SUMMARY_TTL: Duration = Duration::from_millis(500);

/// One shard's view of one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetSummary {
    /// Requests in the sender's health window.
    pub requests: u32,
    /// Health-counting failures in the sender's window.
    pub failures: u32,
    /// The sender's peak-EWMA of time-to-first-byte, µs.
    pub ewma_us: f64,
}

impl TargetSummary {
    /// A summary that says "nothing known, nothing wrong".
    pub const QUIET: TargetSummary = TargetSummary {
        requests: 0,
        failures: 0,
        ewma_us: 0.0,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_in_a_cache_line() {
        assert!(std::mem::size_of::<TargetSummary>() <= 64);
    }

    #[test]
    fn is_copy_and_send() {
        fn check<T: Copy + Send + 'static>() {}
        check::<TargetSummary>();
    }
}
