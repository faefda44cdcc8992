//! Cluster mode: several gateway nodes sharing one view of provider health and
//! one count of every limit through Redis (or Valkey).
//!
//! Not available yet: nothing here is wired into the gateway and there is no
//! `cluster:` config key. What lives here is the foundation the fleet features
//! are built on: [`link`], a blocking Redis client for the control-plane thread,
//! with a deadline on every call, reconnects with backoff and a breaker on Redis
//! itself, so that Redis slow or gone costs the control thread a bounded wait and
//! never reaches a shard's request path. Fleet health (breaker transitions
//! published, one half-open probe per target per fleet) and fleet limits
//! (`limits::lease` ledgers backed by [`link::RedisLink::eval_lease`]) come next;
//! docs/cluster.md has the plan.

pub mod link;
