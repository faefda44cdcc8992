//! Cluster mode v1 (fleet-wide provider health) end to end: two in-process
//! gateways share a real redis-server and one primary mock. A trip on node A
//! sidelines the primary on node B (which then sends it nothing); A's probe
//! closing it lifts B's sideline; Redis killed or hung (SIGSTOP) leaves both
//! nodes serving on node-local health, and a restarted Redis carries trips
//! again. Every wait is bounded in time and count; timings are printed (the
//! propagation delay), never asserted.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;
use loadtest::client::{Client, HttpResponse};
use loadtest::mock::{Fault, MockHandle};
use switchyard::cluster::link::{LinkConfig, RedisLink};
use switchyard::gateway::Gateway;

const PRIMARY: &str = "primary/primary-model";
const FALLBACK: &str = "fallback/fallback-model";
/// Far above every deadline in play (link 250 ms, ticks 20 ms), far below a hang.
const BOUND: Duration = Duration::from_secs(10);

/// A node named `name` of the fleet on `redis`: primary then fallback, the
/// primary tripping after 2 consecutive failures for `cooldown`.
fn node(
    name: &str,
    redis: &str,
    primary: &MockHandle,
    fallback: &MockHandle,
    cooldown: &str,
) -> Gateway {
    node_every(name, redis, primary, fallback, cooldown, "20ms")
}

/// [`node`] reading the fleet's keys every `sync_interval`.
fn node_every(
    name: &str,
    redis: &str,
    primary: &MockHandle,
    fallback: &MockHandle,
    cooldown: &str,
    sync_interval: &str,
) -> Gateway {
    let yaml = chain_yaml(
        &[("primary", primary), ("fallback", fallback)],
        "retry: { attempts: 3, backoff: 1ms, max_backoff: 2ms }",
        &format!(
            "health: {{ consecutive_failures: 2, min_requests: 100000, cooldown: {cooldown}, max_cooldown: {cooldown} }}\n\
             admin: {{ listen: 127.0.0.1:0 }}\n\
             cluster: {{ redis: \"{redis}\", node_id: {name}, sync_interval: {sync_interval} }}\n"
        ),
    );
    gateway(&yaml)
}

fn admin_get(gw: &Gateway, path: &str) -> HttpResponse {
    let addr = gw.admin_addr().expect("admin listener configured");
    let mut client = Client::connect(addr).expect("connect to admin");
    client.request("GET", path, &[], b"").expect("admin answer")
}

fn cluster(gw: &Gateway) -> serde_json::Value {
    let reply = admin_get(gw, "/admin/cluster");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// Whether `gw` holds the primary sidelined by the fleet.
fn fleet_sidelined(gw: &Gateway) -> bool {
    cluster(gw)["sidelined"]
        .as_array()
        .is_some_and(|list| list.iter().any(|s| s["target"] == PRIMARY))
}

fn redis_up(gw: &Gateway) -> bool {
    cluster(gw)["redis"]["up"] == true
}

fn target_of(response: &HttpResponse) -> String {
    response
        .header("x-switchyard-target")
        .unwrap_or("-")
        .to_string()
}

/// One request through `gw`, which must succeed; returns who served it.
fn served(gw: &Gateway) -> String {
    let response = chat(gw.addr());
    assert_eq!(response.status, 200, "{}", response.text());
    target_of(&response)
}

/// Trips the primary on `a` (failing 503): requests through `a` until its
/// breaker is open (bounded); every one is still served (by the fallback).
/// Returns when the trip was first seen on A's admin listener.
fn trip_on(a: &Gateway, primary: &MockHandle) -> Instant {
    primary.set_fault(fault_status(503));
    for _ in 0..20 {
        served(a);
        if a_tripped(a) {
            return Instant::now();
        }
    }
    panic!("the primary never tripped on node A");
}

fn a_tripped(a: &Gateway) -> bool {
    let targets = admin_get(a, "/admin/targets").json();
    targets["targets"]
        .as_array()
        .and_then(|list| list.iter().find(|t| t["target"] == PRIMARY))
        .and_then(|t| t["shards"][0]["breaker"].as_str().map(|s| s == "open"))
        .unwrap_or(false)
}

/// Waits (bounded) until `b` sidelines the primary; returns how long it took.
fn await_sideline(b: &Gateway, since: Instant) -> Duration {
    assert!(
        wait_until(BOUND, || fleet_sidelined(b)),
        "node B never sidelined the primary: {}",
        cluster(b)
    );
    since.elapsed()
}

#[test]
fn a_trip_on_one_node_is_avoided_by_the_other_and_its_close_lifts_it() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (primary, fallback) = (mock("primary"), mock("fallback"));
    let a = node("a", &redis.url(), &primary, &fallback, "3s");
    let b = node("b", &redis.url(), &primary, &fallback, "3s");
    assert_eq!(served(&b), PRIMARY, "healthy: B uses the primary");

    let tripped = trip_on(&a, &primary);
    let delay = await_sideline(&b, tripped);
    eprintln!("propagation: A's trip seen as B's sideline after {delay:?} (sync_interval 20ms)");
    let status = cluster(&b);
    assert_eq!(status["sidelined"][0]["by"], "a", "{status}");
    assert!(
        status["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|n| n["node"] == "a")),
        "{status}"
    );

    let before = primary.stats().requests;
    for _ in 0..10 {
        assert_eq!(served(&b), FALLBACK);
    }
    let sent = primary.stats().requests - before;
    assert_eq!(sent, 0, "B sent {sent} requests to the primary A tripped");
    assert!(
        cluster(&a)["sidelined"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "A does not sideline its own trip"
    );

    // Healed: A's probe (after its cooldown) closes it; B lifts its sideline.
    primary.set_fault(Fault::None);
    assert!(
        wait_until(BOUND, || served(&a) == PRIMARY),
        "A's probe never closed the breaker"
    );
    assert!(
        wait_until(BOUND, || !fleet_sidelined(&b)),
        "B kept the sideline after A closed: {}",
        cluster(&b)
    );
    assert_eq!(served(&b), PRIMARY, "B serves from the primary again");
    let applied = cluster(&b)["messages_applied"].as_u64().unwrap_or(0);
    assert!(applied >= 2, "a trip and a close applied on B: {applied}");
    let metrics = admin_get(&b, "/metrics").text();
    assert!(
        metrics.contains("switchyard_cluster_redis_up 1"),
        "{metrics}"
    );
    a.shutdown();
    b.shutdown();
}

/// Subscribers on the health channel of db 0, as Redis counts them.
fn subscribers(redis: &RedisServer) -> i64 {
    let mut link = RedisLink::new(&redis.url(), LinkConfig::default()).expect("url");
    let reply = link.call(
        redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("switchyard:0:health"),
    );
    let pair: Vec<redis::Value> = reply
        .ok()
        .and_then(|v| redis::from_redis_value(&v).ok())
        .unwrap_or_default();
    pair.get(1)
        .and_then(|n| redis::from_redis_value(n).ok())
        .unwrap_or(0)
}

#[test]
fn published_trips_and_closes_apply_before_the_next_poll() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (primary, fallback) = (mock("primary"), mock("fallback"));
    let a = node("a", &redis.url(), &primary, &fallback, "1s");
    // B reads the keys every 30 s: within this test only its subscriber acts.
    let b = node_every("b", &redis.url(), &primary, &fallback, "1s", "30s");
    assert!(
        wait_until(BOUND, || subscribers(&redis) >= 2),
        "both nodes subscribe"
    );
    let tripped = trip_on(&a, &primary);
    let delay = await_sideline(&b, tripped);
    eprintln!("propagation by pub/sub: {delay:?}");
    let before = primary.stats().requests;
    for _ in 0..5 {
        assert_eq!(served(&b), FALLBACK);
    }
    assert_eq!(primary.stats().requests, before, "B avoided the primary");
    primary.set_fault(Fault::None);
    assert!(wait_until(BOUND, || served(&a) == PRIMARY), "A closed it");
    assert!(
        wait_until(BOUND, || !fleet_sidelined(&b)),
        "the published close lifted B's sideline: {}",
        cluster(&b)
    );
    let status = cluster(&b);
    assert!(
        status["last_sync_unix_ms"].is_null() && status["last_message_unix_ms"].is_u64(),
        "B's poll has not run yet, so the subscriber did it: {status}"
    );
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_node_that_starts_later_learns_current_trips_even_after_a_redis_restart() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (primary, fallback) = (mock("primary"), mock("fallback"));
    // Open far longer than the test: only A's rewrite can tell the late node.
    let a = node("a", &redis.url(), &primary, &fallback, "60s");
    trip_on(&a, &primary);
    assert!(wait_until(BOUND, || cluster(&a)["in_sync"] == true));
    // The restarted Redis has no keys: A writes its open trip again.
    redis.restart();
    let late = node("late", &redis.url(), &primary, &fallback, "60s");
    assert!(
        wait_until(BOUND, || fleet_sidelined(&late)),
        "a node started after the trip (and after a Redis restart) never learnt it: A {} / late {}",
        cluster(&a),
        cluster(&late)
    );
    let before = primary.stats().requests;
    for _ in 0..5 {
        assert_eq!(served(&late), FALLBACK);
    }
    assert_eq!(
        primary.stats().requests,
        before,
        "the late node avoided the primary"
    );
    a.shutdown();
    late.shutdown();
}

/// Requests through both nodes while `during` lasts; all must succeed.
fn serve_both(a: &Gateway, b: &Gateway, count: usize) -> usize {
    let mut ok = 0;
    for i in 0..count {
        let gw = if i % 2 == 0 { a } else { b };
        let response = chat(gw.addr());
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
        ok += 1;
    }
    ok
}

#[test]
fn redis_killed_leaves_nodes_serving_and_a_restart_resyncs() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (primary, fallback) = (mock("primary"), mock("fallback"));
    let a = node("a", &redis.url(), &primary, &fallback, "1s");
    let b = node("b", &redis.url(), &primary, &fallback, "1s");
    assert!(wait_until(BOUND, || redis_up(&a)
        && cluster(&a)["last_sync_unix_ms"].is_u64()));

    redis.kill();
    assert_eq!(serve_both(&a, &b, 20), 20);
    assert!(
        wait_until(BOUND, || !redis_up(&a) && !redis_up(&b)),
        "down not reported: {}",
        cluster(&a)
    );
    assert_eq!(cluster(&a)["health"], "node_local");
    assert!(admin_get(&a, "/metrics")
        .text()
        .contains("switchyard_cluster_redis_up 0"));
    assert_eq!(serve_both(&a, &b, 20), 20, "still serving with Redis down");

    redis.restart();
    assert!(
        wait_until(BOUND, || redis_up(&a) && redis_up(&b)),
        "not back up: {}",
        cluster(&a)
    );
    let tripped = trip_on(&a, &primary);
    let delay = await_sideline(&b, tripped);
    eprintln!("propagation after a Redis restart: {delay:?}");
    a.shutdown();
    b.shutdown();
}

#[test]
fn redis_hung_never_hangs_a_request_or_the_shutdown() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (primary, fallback) = (mock("primary"), mock("fallback"));
    let a = node("a", &redis.url(), &primary, &fallback, "1s");
    let b = node("b", &redis.url(), &primary, &fallback, "1s");
    assert!(wait_until(BOUND, || redis_up(&a) && redis_up(&b)));

    redis.pause();
    let started = Instant::now();
    assert_eq!(serve_both(&a, &b, 40), 40);
    eprintln!("40 requests with Redis hung: {:?}", started.elapsed());
    assert!(
        started.elapsed() < BOUND * 3,
        "requests waited on a hung Redis"
    );
    assert!(
        wait_until(BOUND, || !redis_up(&a)),
        "a hung Redis not reported down: {}",
        cluster(&a)
    );
    // A trip while Redis hangs stays node-local, and serving goes on.
    trip_on(&a, &primary);
    assert!(!fleet_sidelined(&b));
    assert_eq!(serve_both(&a, &b, 10), 10);

    // Shutdown with Redis still hung ends (the link's deadlines bound it).
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        a.shutdown();
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(BOUND * 3).is_ok(),
        "shutdown hung on a hung Redis"
    );
    redis.resume();
    assert!(
        wait_until(BOUND, || redis_up(&b)),
        "B not back: {}",
        cluster(&b)
    );
    b.shutdown();
}

/// The primary's breaker on `gw`'s first shard, as `/admin/targets` shows it.
fn breaker_of(gw: &Gateway) -> String {
    let targets = admin_get(gw, "/admin/targets").json();
    targets["targets"]
        .as_array()
        .and_then(|list| list.iter().find(|t| t["target"] == PRIMARY))
        .and_then(|t| t["shards"][0]["breaker"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The probes of the primary that ended on `gw` in `to` (`open`: failed,
/// `closed`: succeeded), summed over shards from `/metrics`: that node probed.
fn probes_ended(gw: &Gateway, to: &str) -> u64 {
    let target = format!("target=\"{PRIMARY}\"");
    let change = format!("from=\"half_open\",to=\"{to}\"");
    admin_get(gw, "/metrics")
        .text()
        .lines()
        .filter(|l| l.starts_with("switchyard_breaker_transitions_total{"))
        .filter(|l| l.contains(&target) && l.contains(&change))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Whether `gw`'s `/admin/cluster` list `field` names the primary.
fn lists_primary(gw: &Gateway, field: &str) -> bool {
    let status = cluster(gw);
    status[field]
        .as_array()
        .is_some_and(|list| list.iter().any(|t| t == PRIMARY || t["target"] == PRIMARY))
}

#[test]
fn a_target_both_nodes_tripped_is_probed_by_one_and_its_close_closes_both() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (primary, fallback) = (mock("primary"), mock("fallback"));
    let a = node("a", &redis.url(), &primary, &fallback, "300ms");
    let b = node("b", &redis.url(), &primary, &fallback, "300ms");
    assert!(wait_until(BOUND, || redis_up(&a) && redis_up(&b)));
    // Redis hung while both trip: neither learns the other's trip first, so
    // both hold a trip of their own when it is back.
    redis.pause();
    trip_on(&a, &primary);
    trip_on(&b, &primary);
    redis.resume();
    assert!(
        wait_until(BOUND, || lists_primary(&a, "probing")
            || lists_primary(&b, "probing")),
        "nobody took the probe lease: A {} / B {}",
        cluster(&a),
        cluster(&b)
    );
    assert!(breaker_of(&a) != "closed" && breaker_of(&b) != "closed");

    // Traffic through both for a while: the lease's holder probes each round.
    let cooldown = Duration::from_millis(300);
    let period = Duration::from_secs(3);
    let before = primary.stats().requests;
    let probed_before = (probes_ended(&a, "open"), probes_ended(&b, "open"));
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < period && sent < 3_000 {
        serve_both(&a, &b, 2);
        sent += 2;
    }
    let probes = primary.stats().requests - before;
    let by_a = probes_ended(&a, "open") - probed_before.0;
    let by_b = probes_ended(&b, "open") - probed_before.1;
    let rounds = (period.as_millis() / cooldown.as_millis()) as u64;
    eprintln!(
        "both tripped: {probes} probes in {period:?} ({rounds} rounds of {cooldown:?}, \
         {sent} requests); failed probes by A {by_a}, by B {by_b}"
    );
    assert!(
        probes <= rounds + 1,
        "{probes} probes in {rounds} rounds: more than one node probes"
    );
    // One prober: the node that defers never probes (one round of slack
    // for a lease taken while a probe of its own was already in flight).
    assert!(by_a.min(by_b) <= 1, "both nodes probed: A {by_a}, B {by_b}");

    // Healed: the holder's probe closes it; the other node closes without a
    // probe of its own (no traffic reaches it meanwhile).
    let (holder, other) = if lists_primary(&a, "probing") {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert!(lists_primary(other, "deferred"), "{}", cluster(other));
    primary.set_fault(Fault::None);
    let before = primary.stats().requests;
    let other_before = (probes_ended(other, "open"), probes_ended(other, "closed"));
    assert!(
        wait_until(BOUND, || served(holder) == PRIMARY),
        "the holder's probe never closed the breaker"
    );
    let closed_at = Instant::now();
    assert!(
        wait_until(BOUND, || breaker_of(other) == "closed"),
        "the deferring node kept its trip after the fleet's probe closed it: {} / {}",
        breaker_of(other),
        cluster(other)
    );
    eprintln!(
        "fleet close: the deferring node closed {:?} after the holder",
        closed_at.elapsed()
    );
    assert_eq!(
        served(other),
        PRIMARY,
        "the other node sends to the primary again"
    );
    let calls = primary.stats().requests - before;
    assert!(calls <= 40, "{calls} primary calls to close both");
    let other_probes = (
        probes_ended(other, "open") - other_before.0,
        probes_ended(other, "closed") - other_before.1,
    );
    eprintln!(
        "the deferring node's own probes while healing (failed, succeeded): {other_probes:?}"
    );
    assert_eq!(
        other_probes,
        (0, 0),
        "the deferring node probed instead of taking the fleet's close"
    );
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_retry_after_seen_by_one_node_pauses_the_other_until_its_end() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (primary, fallback) = (mock("primary"), mock("fallback"));
    let a = node("a", &redis.url(), &primary, &fallback, "1s");
    let b = node("b", &redis.url(), &primary, &fallback, "1s");
    assert!(wait_until(BOUND, || redis_up(&a) && redis_up(&b)));
    primary.set_fault(Fault::Status {
        status: 429,
        rate: 1.0,
        retry_after: Some(2),
        body: None,
        times: Some(1),
    });
    let seen = Instant::now();
    assert_eq!(served(&a), FALLBACK, "A is asked to pause and falls back");
    assert!(
        wait_until(BOUND, || lists_primary(&b, "shared_sidelines")),
        "B never applied A's Retry-After: {}",
        cluster(&b)
    );
    eprintln!(
        "Retry-After seen on A applied on B after {:?}",
        seen.elapsed()
    );
    let before = primary.stats().requests;
    let mut during = 0;
    while breaker_of(&b) == "sidelined" && during < 50 {
        assert_eq!(served(&b), FALLBACK);
        during += 1;
    }
    assert_eq!(
        primary.stats().requests,
        before,
        "B sent the primary requests during the pause"
    );
    assert!(during > 0, "B was never seen sidelined");
    assert!(
        wait_until(BOUND, || served(&b) == PRIMARY),
        "B never resumed sending to the primary"
    );
    eprintln!(
        "B resumed {:?} after the Retry-After of 2 s",
        seen.elapsed()
    );
    assert_eq!(
        cluster(&b)["messages_published"],
        0,
        "B published back what it applied (an echo)"
    );
    a.shutdown();
    b.shutdown();
}

#[test]
fn each_node_lists_the_fleet_and_counts_it() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (primary, fallback) = (mock("primary"), mock("fallback"));
    let a = node("a", &redis.url(), &primary, &fallback, "1s");
    let b = node("b", &redis.url(), &primary, &fallback, "1s");
    let two = |gw: &Gateway| {
        cluster(gw)["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 2)
    };
    assert!(
        wait_until(BOUND, || two(&a) && two(&b)),
        "A {} / B {}",
        cluster(&a),
        cluster(&b)
    );
    for (gw, me) in [(&a, "a"), (&b, "b")] {
        let status = cluster(gw);
        let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
        let mine: Vec<_> = nodes.iter().filter(|n| n["self"] == true).collect();
        assert_eq!(mine.len(), 1, "{status}");
        assert_eq!(mine[0]["node"], me, "{status}");
        assert!(
            nodes.iter().all(|n| n["last_seen_unix_ms"].is_u64()),
            "{status}"
        );
        let metrics = admin_get(gw, "/metrics").text();
        assert!(
            metrics.contains("switchyard_cluster_nodes 2\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("switchyard_cluster_sync_lag_seconds "),
            "{metrics}"
        );
    }
    a.shutdown();
    b.shutdown();
}

#[test]
fn without_cluster_the_admin_route_says_so() {
    let (primary, fallback) = (mock("primary"), mock("fallback"));
    let yaml = chain_yaml(
        &[("primary", &primary), ("fallback", &fallback)],
        "",
        "admin: { listen: 127.0.0.1:0 }\n",
    );
    let gw = gateway(&yaml);
    let reply = admin_get(&gw, "/admin/cluster");
    assert_eq!(reply.status, 404);
    assert!(reply.text().contains("cluster mode is off"));
    gw.shutdown();
}
