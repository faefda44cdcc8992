//! Per-target health: sliding windows, circuit breaking, latency estimates, retry
//! budgets and the summaries shards exchange. Pure data structures: no I/O, no
//! locks (the shared breaker is lock-free atomics), and time only moves by the
//! `now` the caller passes in.

pub mod breaker;
pub mod budget;
pub mod ewma;
pub mod prefill;
pub mod summary;
pub mod target;
pub mod ttft;
pub mod window;

pub use breaker::{Admission, BreakerState, SharedBreaker, StateKind, Transition, TripReason};
pub use budget::RetryBudget;
pub use ewma::PeakEwma;
pub use prefill::{PrefillKnown, PrefillMemory};
pub use summary::{TargetSummary, PEER_SUMMARY_TTL, SUMMARY_INTERVAL};
pub use target::TargetHealth;
pub use ttft::TtftEstimator;
pub use window::{Window, WindowTotals};
