//! The shipped Grafana dashboard (`docs/grafana/switchyard.json`) against the
//! gateway's real `/metrics`: every `switchyard_*` name a panel queries must be
//! in a live scrape, so renaming a metric without the dashboard fails here. The
//! gateway runs with a key and a cluster section on a real redis-server, so the
//! per-key and cluster series exist; one request first creates the per-target
//! series.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::*;
use loadtest::client::{chat_body, Client};
use serde_json::Value;

const DASHBOARD: &str = include_str!("../docs/grafana/switchyard.json");

/// Every `switchyard_*` metric name in `text` (names end at any character that
/// cannot be part of one).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("switchyard_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// The strings under every `expr` (panel queries) and templating `query` key.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                match (k.as_str(), child) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => queries(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| queries(i, out)),
        _ => {}
    }
}

/// The metric names of a Prometheus text scrape: every sample's, and every
/// family a `# TYPE` line declares (a counter with no series yet, such as
/// breaker transitions before the first trip, is declared but has no sample),
/// with a histogram's `_bucket`, `_sum` and `_count`.
fn scraped_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let mut words = decl.split(' ');
            let (Some(name), kind) = (words.next(), words.next()) else {
                continue;
            };
            if kind == Some("histogram") {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{suffix}"));
                }
            }
            out.insert(name.to_string());
        } else if !line.starts_with('#') {
            if let Some(name) = line.split(['{', ' ']).next() {
                out.insert(name.to_string());
            }
        }
    }
    out
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("docs/grafana/switchyard.json is JSON")
}

#[test]
fn metric_names_finds_each_name_once() {
    let names = metric_names(
        "histogram_quantile(0.5, sum by (le) (rate(switchyard_a_bucket{x=\"switchyard_b\"}[5m]))) / switchyard_c",
    );
    let want: BTreeSet<String> = ["switchyard_a_bucket", "switchyard_b", "switchyard_c"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, want);
    assert_eq!(
        scraped_names("# TYPE a counter\na{x=\"1\"} 2\nb 3\n# TYPE h histogram\n"),
        ["a", "b", "h", "h_bucket", "h_count", "h_sum"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

#[test]
fn dashboard_is_importable_and_uses_the_datasource_input() {
    let d = dashboard();
    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(inputs
        .iter()
        .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"));
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "{p}");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", p["title"]);
    }
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Attempts per target",
        "Errors seen by clients",
        "Failures absorbed by failover",
        "Breaker state per target",
        "Time to first token (streams)",
        "Redis up",
        "Requests per key",
        "Limited per key",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(want)),
            "no panel {want}: {titles:?}"
        );
    }
}

#[test]
fn every_dashboard_metric_is_in_a_live_scrape() {
    let redis = RedisServer::start().expect("redis-server (/usr/bin/redis-server) is installed");
    let primary = mock("primary");
    let yaml = chain_yaml(
        &[("primary", &primary)],
        "",
        &format!(
            "admin: {{ listen: 127.0.0.1:0 }}\n\
             keys:\n  - {{ name: team, key: sk-team, rpm: 1000 }}\n\
             cluster: {{ redis: \"{}\", node_id: grafana, sync_interval: 20ms }}\n",
            redis.url()
        ),
    );
    let gw = gateway(&yaml);
    // Fleet limits refuse until the node's first lease arrives; a refusal
    // still counts for the key, and one served request creates the
    // per-target series.
    let mut statuses = Vec::new();
    let served = wait_until(Duration::from_secs(10), || {
        let mut client = client(&gw);
        client.set_read_timeout(Duration::from_secs(10)).unwrap();
        let reply = client
            .chat(
                &chat_body("chat", false),
                &[("authorization", "Bearer sk-team")],
            )
            .expect("response");
        statuses.push(reply.status);
        reply.status == 200 || statuses.len() >= 200
    });
    assert!(served && statuses.last() == Some(&200), "{statuses:?}");
    println!("statuses before one was served: {statuses:?}");

    let admin = gw.admin_addr().expect("admin listener");
    let mut admin = Client::connect(admin).expect("connect to admin");
    let scrape = admin.request("GET", "/metrics", &[], b"").expect("scrape");
    assert_eq!(scrape.status, 200);
    let live = scraped_names(&scrape.text());

    let mut all = Vec::new();
    queries(&dashboard(), &mut all);
    let used: BTreeSet<String> = all.iter().flat_map(|q| metric_names(q)).collect();
    println!("dashboard queries {} switchyard metrics", used.len());
    assert!(used.len() >= 20, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|n| !live.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "dashboard metrics not in /metrics: {missing:?}\nscrape has: {live:?}"
    );
}
