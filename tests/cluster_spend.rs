//! Fleet-wide spend end to end: two in-process gateways share a real
//! redis-server (started without persistence). Spend charged on one node is
//! seen by the other and counts against the key's budget there; a Redis
//! restarted empty is reseeded from the nodes' totals, not reset; spend made
//! while Redis is down reaches it when it is back. Waits are bounded.

mod common;

use std::time::{Duration, SystemTime};

use common::redis_server::RedisServer;
use common::*;
use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::MockHandle;
use switchyard::cluster::link::{LinkConfig, RedisLink};
use switchyard::gateway::Gateway;

const BOUND: Duration = Duration::from_secs(10);
/// The key's budget: $1.
const BUDGET: u64 = 1_000_000;

fn node(name: &str, redis: &str, upstream: &MockHandle) -> Gateway {
    let yaml = chain_yaml(
        &[("primary", upstream)],
        "",
        &format!(
            "admin: {{ listen: 127.0.0.1:0 }}\n\
             cluster: {{ redis: \"{redis}\", node_id: {name}, sync_interval: 20ms }}\n\
             keys:\n  - {{ name: team, key: sk-team, budget: {{ usd: 1, period: 30d }} }}\n"
        ),
    );
    gateway(&yaml)
}

/// Nodes `a` and `b` on `redis`, both in front of one mock (returned to keep it up).
fn pair(redis: &RedisServer) -> (MockHandle, Gateway, Gateway) {
    let upstream = mock("primary");
    let a = node("a", &redis.url(), &upstream);
    let b = node("b", &redis.url(), &upstream);
    (upstream, a, b)
}

fn spent(gw: &Gateway) -> u64 {
    let book = gw.spend();
    let key = book.index_of("team").expect("key team");
    book.status(key, SystemTime::now())
        .map_or(0, |s| s.spent_micros)
}

fn charge(gw: &Gateway, micros: u64) {
    let book = gw.spend();
    let key = book.index_of("team").expect("key team");
    book.charge(key, micros, SystemTime::now());
}

fn chat_as_team(gw: &Gateway) -> HttpResponse {
    let mut client = Client::connect(gw.addr()).expect("connect");
    client.set_read_timeout(Duration::from_secs(10)).unwrap();
    client
        .chat(
            &chat_body("chat", false),
            &[("authorization", "Bearer sk-team")],
        )
        .expect("response")
}

/// The fleet's total for the key in Redis (the one period key there is).
fn redis_total(url: &str) -> Option<u64> {
    let mut link = RedisLink::new(url, LinkConfig::default()).ok()?;
    let keys = link
        .call(redis::cmd("KEYS").arg("switchyard:0:spend:team:*"))
        .ok()?;
    let keys: Vec<String> = redis::from_redis_value(&keys).ok()?;
    link.get_u64(keys.first()?).ok()?
}

#[test]
fn spend_on_one_node_counts_against_the_budget_on_every_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (_upstream, a, b) = pair(&redis);
    charge(&a, 600_000);
    assert!(
        wait_until(BOUND, || spent(&b) == 600_000),
        "b sees {}",
        spent(&b)
    );
    assert_eq!(chat_as_team(&b).status, 200, "under budget");
    charge(&b, 500_000);
    assert!(
        wait_until(BOUND, || spent(&a) >= BUDGET && spent(&b) >= BUDGET),
        "a {} b {}",
        spent(&a),
        spent(&b)
    );
    // Node a spent 0.6 of the budget itself, yet the fleet spent 1.1.
    let refused = chat_as_team(&a);
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "insufficient_quota");
    assert_eq!(redis_total(&redis.url()), Some(1_100_000));
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_redis_restarted_empty_is_reseeded_not_reset() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (_upstream, a, b) = pair(&redis);
    charge(&a, 300_000);
    assert!(wait_until(BOUND, || spent(&b) == 300_000));
    redis.restart();
    assert_eq!(
        redis_total(&redis.url()),
        None,
        "restarted without persistence"
    );
    charge(&a, 100_000);
    assert!(
        wait_until(BOUND, || redis_total(&redis.url()) == Some(400_000)),
        "redis holds {:?}",
        redis_total(&redis.url())
    );
    assert!(
        wait_until(BOUND, || spent(&b) == 400_000),
        "b {}",
        spent(&b)
    );
    a.shutdown();
    b.shutdown();
}

#[test]
fn spend_while_redis_is_down_reaches_it_when_it_is_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (_upstream, a, b) = pair(&redis);
    charge(&a, 100_000);
    assert!(wait_until(BOUND, || spent(&b) == 100_000));
    redis.kill();
    charge(&a, 250_000);
    for gw in [&a, &b] {
        assert_eq!(chat_as_team(gw).status, 200, "served while redis is down");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(spent(&b), 100_000, "nothing reaches b without redis");
    redis.restart();
    assert!(
        wait_until(BOUND, || spent(&b) == 350_000),
        "b {} (redis {:?})",
        spent(&b),
        redis_total(&redis.url())
    );
    a.shutdown();
    b.shutdown();
}
