//! Which nodes the fleet has: every node's control-plane threads touch its
//! member of one sorted set (score: the last touch, unix ms), and a node is
//! live while its last touch is recent. Nodes are counted, not trusted: the
//! count sizes node-local shares of a limit when Redis is gone, and
//! `/admin/cluster` lists them.

use std::time::{Duration, SystemTime};

use super::link::{LinkError, RedisLink};
use super::unix_ms;

/// The sorted set of nodes for the fleet on database `db`.
pub fn key(db: i64) -> String {
    format!("switchyard:{db}:nodes")
}

/// How long a node counts as live after its last touch, for a fleet syncing
/// every `sync_interval`: several missed ticks, never under 3 s.
pub fn live_for(sync_interval: Duration) -> Duration {
    (sync_interval * 10).max(Duration::from_secs(3))
}

/// Marks `node` live now, and drops members silent for over a day (a node
/// that went away without a word) so the set stays small.
pub fn touch(
    link: &mut RedisLink,
    key: &str,
    node: &str,
    now: SystemTime,
) -> Result<(), LinkError> {
    let now = unix_ms(now);
    link.call(redis::cmd("ZADD").arg(key).arg(now).arg(node))?;
    let stale = now.saturating_sub(86_400_000);
    link.call(
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(key)
            .arg("-inf")
            .arg(stale),
    )?;
    Ok(())
}

/// The nodes touched within `within` of `now`, with their last touch (unix ms).
pub fn live(
    link: &mut RedisLink,
    key: &str,
    within: Duration,
    now: SystemTime,
) -> Result<Vec<(String, u64)>, LinkError> {
    let since = unix_ms(now).saturating_sub(within.as_millis() as u64);
    let value = link.call(
        redis::cmd("ZRANGEBYSCORE")
            .arg(key)
            .arg(since)
            .arg("+inf")
            .arg("WITHSCORES"),
    )?;
    let pairs: Vec<(String, f64)> =
        redis::from_redis_value(&value).map_err(|e| LinkError::Protocol(e.to_string()))?;
    Ok(pairs
        .into_iter()
        .map(|(node, score)| (node, score as u64))
        .collect())
}
