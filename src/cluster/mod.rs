//! Cluster mode: several gateway nodes sharing one view of provider health and
//! one count of every limit through Redis (or Valkey).
//!
//! Version 1 (`cluster:` in the config) shares provider health: [`health`]
//! publishes this node's breaker trips and sidelines the targets other nodes
//! tripped. Key limits, quotas and spend are still per node; fleet limits
//! (`limits::lease` ledgers backed by [`link::RedisLink::eval_lease`]) come
//! next. [`link`] is the blocking Redis client both use on control-plane
//! threads, with a deadline on every call, reconnects with backoff and a
//! breaker on Redis itself, so that Redis slow or gone costs the control
//! thread a bounded wait and never reaches a shard's request path.
//! docs/cluster.md has the details.

pub mod health;
pub mod limits;
pub mod link;
pub mod presence;
pub mod spend;
pub mod subscriber;

/// Wall-clock time as the fleet exchanges it: unix milliseconds (0 before
/// 1970, a clock no node should have).
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
