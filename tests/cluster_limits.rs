//! Fleet-wide limits end to end: three in-process gateways share a real
//! redis-server, and a key's rpm, its max_concurrency and a target's quota hold
//! for the fleet, not per node. Redis killed: with `on_redis_down: local` the
//! nodes keep serving on their shares (0 failed requests) and count again in
//! Redis when it is back; with `closed` limited keys get a 503 and other keys
//! are served. Every wait is bounded; the admitted counts are printed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::redis_server::RedisServer;
use common::*;
use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::{MockConfig, MockHandle};
use switchyard::gateway::Gateway;

const BOUND: Duration = Duration::from_secs(10);
const WINDOW_MS: u64 = 3000;

/// A node of the fleet on `redis` serving route `chat` from `upstream`, with
/// two keys: `limited` (`key_limits`) and `open` (no limit).
fn node(name: &str, redis: &str, upstream: &MockHandle, key_limits: &str, extra: &str) -> Gateway {
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 2\nshutdown_grace: 2s\nrate_window: {WINDOW_MS}ms\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         cluster: {{ redis: \"{redis}\", node_id: {name}, sync_interval: 20ms{extra} }}\n\
         keys:\n  - {{ name: limited, key: sk-limited{key_limits} }}\n  - {{ name: open, key: sk-open }}\n\
         providers:\n{}\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: primary, model: primary-model }}\n",
        provider("primary", upstream)
    );
    gateway(&yaml)
}

fn fleet(redis: &str, upstream: &MockHandle, key_limits: &str, extra: &str) -> Vec<Gateway> {
    ["n1", "n2", "n3"]
        .iter()
        .map(|name| node(name, redis, upstream, key_limits, extra))
        .collect()
}

fn chat_as(gw: &Gateway, key: &str) -> HttpResponse {
    let mut client = Client::connect(gw.addr()).expect("connect");
    client.set_read_timeout(Duration::from_secs(10)).unwrap();
    let auth = format!("Bearer {key}");
    client
        .chat(&chat_body("chat", false), &[("authorization", &auth)])
        .expect("response")
}

fn cluster(gw: &Gateway) -> serde_json::Value {
    let addr = gw.admin_addr().expect("admin listener");
    let mut client = Client::connect(addr).expect("connect to admin");
    let reply = client
        .request("GET", "/admin/cluster", &[], b"")
        .expect("admin answer");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

fn limits_mode(gw: &Gateway) -> String {
    cluster(gw)["limits"]["mode"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Waits until every node has leased once and sees the whole fleet, so the
/// first window measured is not the start-up's.
fn wait_leasing(nodes: &[Gateway]) {
    for gw in nodes {
        assert!(
            wait_until(BOUND, || {
                let limits = &cluster(gw)["limits"];
                limits["lease_calls"].as_u64() > Some(0) && limits["nodes"] == 3
            }),
            "a node never leased: {}",
            cluster(gw)
        );
    }
}

/// rpm 60 per window across 3 nodes, sent round-robin well above the limit
/// for several windows: every full window admits the limit to within the
/// leases left unused at its end, never more than the limit plus requests
/// straddling a boundary. Three independent nodes would admit 180.
#[test]
fn a_key_rpm_holds_for_the_whole_fleet() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = mock("primary");
    let nodes = fleet(&redis.url(), &upstream, ", rpm: 60", "");
    wait_leasing(&nodes);
    // Start at a window boundary, then 3 full windows at ~100 req/s.
    let start = (unix_ms() / WINDOW_MS + 1) * WINDOW_MS;
    std::thread::sleep(Duration::from_millis(start.saturating_sub(unix_ms())));
    let end = start + 3 * WINDOW_MS;
    let mut admitted: BTreeMap<u64, u32> = BTreeMap::new();
    let mut refused = 0u32;
    let mut i = 0usize;
    while unix_ms() < end && i < 2000 {
        let sent = unix_ms();
        let reply = chat_as(&nodes[i % 3], "sk-limited");
        match reply.status {
            200 => *admitted.entry(sent / WINDOW_MS).or_default() += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}: {}", reply.text()),
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("admitted per {WINDOW_MS} ms window (limit 60, 3 nodes): {admitted:?}; refused {refused}; sent {i}");
    assert!(admitted.len() >= 3, "{admitted:?}");
    for (window, count) in &admitted {
        // Sent just before a boundary, admitted just after: a few move over.
        assert!(*count <= 64, "window {window}: {count} admitted, limit 60");
        assert!(
            *count >= 40,
            "window {window}: only {count} admitted, limit 60"
        );
    }
    assert!(refused > 0, "the load was above the limit");
    for gw in nodes {
        gw.shutdown();
    }
}

/// max_concurrency 2 across 3 nodes: of 6 slow requests at once, 2 to each
/// node, at most 2 are admitted together (each node alone would admit 2).
#[test]
fn a_key_concurrency_cap_holds_for_the_whole_fleet() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = mock_with(MockConfig {
        name: "primary".into(),
        latency: Duration::from_millis(1500),
        ..MockConfig::default()
    });
    let nodes = fleet(&redis.url(), &upstream, ", max_concurrency: 2", "");
    wait_leasing_slots(&nodes);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let gw = &nodes[i % 3];
                scope.spawn(move || chat_as(gw, "sk-limited").status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!("6 concurrent requests, cap 2 fleet-wide: {statuses:?}");
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((1..=2).contains(&ok), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    for gw in nodes {
        gw.shutdown();
    }
}

/// Waits until the nodes hold their concurrency slots (each at least asked).
fn wait_leasing_slots(nodes: &[Gateway]) {
    for gw in nodes {
        assert!(
            wait_until(BOUND, || cluster(gw)["limits"]["concurrency_held"]
                .get("limited")
                .is_some()),
            "{}",
            cluster(gw)
        );
    }
}

/// Redis killed mid-run with `on_redis_down: local`: every request is still
/// served, the nodes say their limits are node-local, and once Redis is back
/// they lease from it again.
#[test]
fn redis_down_keeps_serving_on_node_shares() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let upstream = mock("primary");
    let nodes = fleet(&redis.url(), &upstream, ", rpm: 600", "");
    wait_leasing(&nodes);
    let run = |nodes: &[Gateway], n: usize| {
        (0..n)
            .map(|i| chat_as(&nodes[i % 3], "sk-limited"))
            .filter(|reply| reply.status != 200)
            .inspect(|reply| eprintln!("failed: {} {}", reply.status, reply.text()))
            .count()
    };
    assert_eq!(run(&nodes, 30), 0);
    redis.kill();
    let t0 = Instant::now();
    let mut failed = 0;
    // Long enough that a window starts after the kill by more than the lead
    // its first batch is leased with (1 s): that window runs on shares alone.
    while Instant::now() - t0 < Duration::from_millis(WINDOW_MS + 2000) {
        failed += run(&nodes, 3);
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(failed, 0, "requests failed while redis was down");
    assert!(
        wait_until(BOUND, || limits_mode(&nodes[0]) == "node_local"),
        "{}",
        cluster(&nodes[0])
    );
    redis.restart();
    assert!(
        wait_until(BOUND, || limits_mode(&nodes[0]) == "fleet"),
        "{}",
        cluster(&nodes[0])
    );
    let before = cluster(&nodes[0])["limits"]["lease_calls"].as_u64();
    assert_eq!(run(&nodes, 30), 0);
    // What was admitted on the shares is counted in Redis once it is back.
    let counted = |nodes: &[Gateway]| -> u64 {
        nodes
            .iter()
            .filter_map(|gw| cluster(gw)["limits"]["units_counted_after_use"].as_u64())
            .sum()
    };
    assert!(
        wait_until(BOUND, || counted(&nodes) > 0),
        "{:?}",
        nodes
            .iter()
            .map(|gw| cluster(gw)["limits"].clone())
            .collect::<Vec<_>>()
    );
    println!("lease calls before the last run: {before:?}");
    for gw in nodes {
        gw.shutdown();
    }
}

/// Redis hung (SIGSTOP) mid-run: requests of a limited key keep being served
/// (the limits thread's calls time out, its link's breaker opens, the nodes
/// run on their shares) and nothing hangs; resumed, the fleet leases again.
#[test]
fn redis_hung_keeps_serving() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = mock("primary");
    let nodes = fleet(&redis.url(), &upstream, ", rpm: 600", "");
    wait_leasing(&nodes);
    redis.pause();
    let t0 = Instant::now();
    let (mut sent, mut failed) = (0, 0);
    while Instant::now() - t0 < Duration::from_millis(1500) && sent < 1000 {
        let reply = chat_as(&nodes[sent % 3], "sk-limited");
        if reply.status != 200 {
            eprintln!("failed: {} {}", reply.status, reply.text());
            failed += 1;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let degraded = wait_until(BOUND, || limits_mode(&nodes[0]) == "node_local");
    redis.resume();
    println!("redis hung: {sent} requests, {failed} failed");
    assert_eq!(failed, 0);
    assert!(degraded, "{}", cluster(&nodes[0]));
    assert!(
        wait_until(BOUND, || limits_mode(&nodes[0]) == "fleet"),
        "{}",
        cluster(&nodes[0])
    );
    for gw in nodes {
        gw.shutdown();
    }
}

/// With `on_redis_down: closed`, a key with a limit is refused with a 503
/// while Redis is unreachable; a key without one is served throughout.
#[test]
fn redis_down_closed_refuses_limited_keys_only() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let upstream = mock("primary");
    let nodes = fleet(
        &redis.url(),
        &upstream,
        ", rpm: 6000",
        ", on_redis_down: closed",
    );
    wait_leasing(&nodes);
    assert_eq!(chat_as(&nodes[0], "sk-limited").status, 200);
    redis.kill();
    assert!(
        wait_until(BOUND, || limits_mode(&nodes[1]) == "closed"),
        "{}",
        cluster(&nodes[1])
    );
    let refused = chat_as(&nodes[1], "sk-limited");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(
        refused.json()["error"]["code"],
        "fleet_limits_unavailable",
        "{}",
        refused.text()
    );
    assert!(refused.header("retry-after").is_some());
    assert_eq!(chat_as(&nodes[1], "sk-open").status, 200);
    redis.restart();
    assert!(
        wait_until(BOUND, || chat_as(&nodes[1], "sk-limited").status == 200),
        "{}",
        cluster(&nodes[1])
    );
    for gw in nodes {
        gw.shutdown();
    }
}

/// A target's quota (an Azure deployment's TPM, say) is shared by every node:
/// requests sent through 3 nodes within one window reach the primary at most
/// its quota; the rest are served by the fallback, none refused.
#[test]
fn a_target_quota_holds_for_the_whole_fleet() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (primary, fallback) = primary_and_fallback();
    let nodes: Vec<Gateway> = ["n1", "n2", "n3"]
        .iter()
        .map(|name| {
            let yaml = format!(
                "listen: 127.0.0.1:0\nshards: 2\nshutdown_grace: 2s\nrate_window: 1m\n\
                 admin: {{ listen: 127.0.0.1:0 }}\n\
                 cluster: {{ redis: \"{}\", node_id: {name}, sync_interval: 20ms }}\n\
                 providers:\n{}{}\
                 routes:\n  - name: chat\n    match: {{ model: chat }}\n    strategy: priority\n    targets:\n\
                 \x20     - {{ provider: primary, model: primary-model, priority: 0, rpm: 12 }}\n\
                 \x20     - {{ provider: fallback, model: fallback-model, priority: 1 }}\n",
                redis.url(),
                provider("primary", &primary),
                provider("fallback", &fallback),
            );
            gateway(&yaml)
        })
        .collect();
    wait_leasing(&nodes);
    let statuses: Vec<u16> = (0..45).map(|i| chat(nodes[i % 3].addr()).status).collect();
    let to_primary = primary.stats().requests;
    println!("45 requests through 3 nodes, primary quota 12/min: primary served {to_primary}");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!((6..=12).contains(&to_primary), "{to_primary}");
    assert_eq!(fallback.stats().requests + to_primary, 45);
    for gw in nodes {
        gw.shutdown();
    }
}

/// A node's very first request of a limited key is admitted: the first
/// lease is made before the shards serve (a helper saw a 429 here when the
/// limits thread's first tick came after the first request).
#[test]
fn a_fresh_node_admits_its_first_limited_request() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = mock("primary");
    for name in ["fresh1", "fresh2", "fresh3"] {
        let gw = node(name, &redis.url(), &upstream, ", rpm: 600", "");
        let reply = chat_as(&gw, "sk-limited");
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        gw.shutdown();
    }
}

/// A window that does not divide an hour cannot line up across nodes: a
/// config error naming the line.
#[test]
fn a_fleet_window_must_divide_an_hour() {
    let yaml = "listen: 127.0.0.1:0\nrate_window: 7s\ncluster: { redis: \"redis://127.0.0.1:1/0\" }\nproviders:\n  p: { kind: openai, base_url: \"http://127.0.0.1:1\", api_key: x }\nroutes:\n  - name: r\n    match: { model: m }\n    targets: [ { provider: p, model: m } ]\n";
    let err = switchyard::config::load_str(yaml, "fleet.yaml", &|_| None)
        .expect_err("7s does not divide an hour");
    let text = err.to_string();
    assert!(text.contains("fleet.yaml:2"), "{text}");
    assert!(text.contains("divide an hour"), "{text}");
}
