//! Keys' limits and targets' quotas, end to end over real sockets with two
//! shards: a key's rpm and tpm admit what they allow and refuse the rest with
//! OpenAI's (or Anthropic's) 429 and headers, a key's concurrency cap is exact,
//! a target at its quota is skipped for the next one (never a failure, never a
//! provider 429), and a key's access (models, routes, expiry, hashed secret).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::{MockConfig, MockHandle};
use serde_json::json;
use switchyard::gateway::Gateway;

/// A two-shard gateway whose route `chat` runs `primary` (then `fallback` when
/// given), with `keys` (YAML list items) and `target_extra` on the primary target.
fn limited_gateway(
    keys: &str,
    primary: &MockHandle,
    fallback: Option<&MockHandle>,
    target_extra: &str,
) -> Gateway {
    let mut yaml = format!(
        "listen: 127.0.0.1:0\nshards: 2\nshutdown_grace: 2s\nrate_window: 60s\nadmin: {{ listen: 127.0.0.1:0 }}\nkeys:\n{keys}providers:\n"
    );
    yaml.push_str(&provider("primary", primary));
    if let Some(fallback) = fallback {
        yaml.push_str(&provider("fallback", fallback));
    }
    yaml.push_str("routes:\n  - name: chat\n    match: { model: chat }\n    strategy: priority\n    targets:\n");
    yaml.push_str(&format!(
        "      - {{ provider: primary, model: primary-model, priority: 0{target_extra} }}\n"
    ));
    if fallback.is_some() {
        yaml.push_str("      - { provider: fallback, model: fallback-model, priority: 1 }\n");
    }
    gateway(&yaml)
}

fn chat_as(gw: &Gateway, key: &str) -> HttpResponse {
    let mut client = client(gw);
    client.set_read_timeout(Duration::from_secs(10)).unwrap();
    let auth = format!("Bearer {key}");
    client
        .chat(&chat_body("chat", false), &[("authorization", &auth)])
        .expect("response")
}

/// Sends `n` requests as `key` from `threads` connections at once; returns the
/// statuses.
fn flood(gw: &Gateway, key: &str, threads: usize, n: usize) -> Vec<u16> {
    let sent = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (addr, key, sent) = (gw.addr(), key.to_string(), sent.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect(addr).expect("connect");
                client.set_read_timeout(Duration::from_secs(10)).unwrap();
                let auth = format!("Bearer {key}");
                let mut statuses = Vec::new();
                while sent.fetch_add(1, Ordering::AcqRel) < n {
                    let response = client
                        .chat(&chat_body("chat", false), &[("authorization", &auth)])
                        .expect("response");
                    statuses.push(response.status);
                }
                statuses
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("client thread"))
        .collect()
}

#[test]
fn a_keys_rpm_admits_its_limit_under_64_connections_and_refuses_the_rest() {
    let primary = mock("primary");
    let gw = limited_gateway(
        "  - { name: team, key: sk-team, rpm: 40 }\n  - { name: other, key: sk-other }\n",
        &primary,
        None,
        "",
    );
    let statuses = flood(&gw, "sk-team", 64, 200);
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + limited, 200, "{statuses:?}");
    // Leases never admit past the limit; at most one unit per shard (the batch
    // for 40 over 2 shards) may stay unused in a lease.
    assert!((38..=40).contains(&ok), "admitted {ok}");
    assert_eq!(primary.stats().requests as usize, ok);

    let refused = chat_as(&gw, "sk-team");
    assert_eq!(refused.status, 429);
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(error["type"], "requests");
    assert!(
        error["message"].as_str().unwrap().contains("`team`"),
        "{error}"
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert!(refused.header("retry-after-ms").is_some());
    assert_eq!(refused.header("x-ratelimit-limit-requests"), Some("40"));
    assert_eq!(refused.header("x-ratelimit-remaining-requests"), Some("0"));
    assert!(refused.header("x-ratelimit-reset-requests").is_some());

    // Another key is not touched by it, and carries no limit headers.
    let other = chat_as(&gw, "sk-other");
    assert_eq!(other.status, 200);
    assert!(other.header("x-ratelimit-limit-requests").is_none());

    // What the operator sees: usage and refusals per key, never a secret.
    let keys = admin(&gw, "/admin/keys");
    assert!(!keys.text().contains("sk-team"), "{}", keys.text());
    let team = keys.json()["keys"][0].clone();
    assert_eq!(team["name"], "team");
    assert_eq!(team["rpm"]["limit"], 40);
    assert_eq!(team["rpm"]["used"], 40, "{team}");
    assert_eq!(team["totals"]["requests"], 201);
    assert_eq!(
        team["totals"]["limited"].as_u64().unwrap() as usize,
        limited + 1
    );
    let metrics = admin(&gw, "/metrics").text();
    assert!(
        metrics.contains(&format!(
            "switchyard_key_limited_total{{key=\"team\"}} {}",
            limited + 1
        )),
        "{metrics}"
    );
}

fn admin(gw: &Gateway, path: &str) -> HttpResponse {
    let mut client = Client::connect(gw.admin_addr().unwrap()).unwrap();
    client.request("GET", path, &[], b"").unwrap()
}

#[test]
fn a_keys_tpm_counts_real_usage_and_refuses_past_it() {
    let primary = mock("primary");
    let gw = limited_gateway(
        "  - { name: team, key: sk-team, tpm: 400 }\n",
        &primary,
        None,
        "",
    );
    let first = chat_as(&gw, "sk-team");
    assert_eq!(first.status, 200);
    let usage = &first.json()["usage"];
    let per_request =
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    assert!(per_request > 0);
    assert_eq!(first.header("x-ratelimit-limit-tokens"), Some("400"));
    let statuses = flood(&gw, "sk-team", 8, 100);
    let ok = 1 + statuses.iter().filter(|s| **s == 200).count() as u64;
    // Every admitted request's real usage was counted: the window holds at most
    // the limit plus what the last admitted requests used past their estimates.
    assert!(
        ok * per_request <= 400 + 16 * per_request,
        "{ok} × {per_request}"
    );
    assert!(ok * per_request >= 400 / 2, "{ok} × {per_request}");
    let refused = chat_as(&gw, "sk-team");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["error"]["type"], "tokens");
    assert_eq!(refused.header("x-ratelimit-remaining-tokens"), Some("0"));
}

#[test]
fn a_keys_concurrency_cap_is_exact() {
    let slow = mock_with(MockConfig {
        name: "slow".into(),
        latency: Duration::from_millis(1500),
        ..MockConfig::default()
    });
    let gw = limited_gateway(
        "  - { name: team, key: sk-team, max_concurrency: 2 }\n",
        &slow,
        None,
        "",
    );
    let addr = gw.addr();
    let in_flight: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr).expect("connect");
                client.set_read_timeout(Duration::from_secs(10)).unwrap();
                client
                    .chat(
                        &chat_body("chat", false),
                        &[("authorization", "Bearer sk-team")],
                    )
                    .expect("response")
                    .status
            })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(5), || slow.stats().requests == 2));
    let third = chat_as(&gw, "sk-team");
    assert_eq!(third.status, 429, "{}", third.text());
    assert!(third.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_concurrency"));
    for handle in in_flight {
        assert_eq!(handle.join().unwrap(), 200);
    }
    assert_eq!(chat_as(&gw, "sk-team").status, 200, "a slot is free again");
}

#[test]
fn a_target_at_its_quota_is_skipped_for_the_next_with_no_provider_429() {
    let (primary, fallback) = primary_and_fallback();
    let gw = limited_gateway(
        "  - { name: team, key: sk-team }\n",
        &primary,
        Some(&fallback),
        ", rpm: 6",
    );
    let statuses = flood(&gw, "sk-team", 4, 20);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let served_by_primary = primary.stats().requests;
    assert!((5..=6).contains(&served_by_primary), "{served_by_primary}");
    assert_eq!(fallback.stats().requests + served_by_primary, 20);
    let response = chat_as(&gw, "sk-team");
    assert_fell_back(&response);
    assert_eq!(response.header("x-switchyard-attempts"), Some("1"));

    let targets = admin(&gw, "/admin/targets").json();
    let entry = targets["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "primary/primary-model")
        .cloned()
        .unwrap();
    assert_eq!(entry["at_quota"], true, "{entry}");
    assert_eq!(
        entry["breaker"], "closed",
        "a quota is not a failure: {entry}"
    );
    let metrics = admin(&gw, "/metrics").text();
    let skipped: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("switchyard_target_at_quota_total{target=\"primary/primary-model\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(skipped >= 14.0, "{skipped}");
}

#[test]
fn a_route_whose_targets_are_all_at_quota_answers_503_with_the_wait() {
    let primary = mock("primary");
    let gw = limited_gateway(
        "  - { name: team, key: sk-team }\n",
        &primary,
        None,
        ", rpm: 2",
    );
    let statuses = flood(&gw, "sk-team", 1, 4);
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    let response = chat_as(&gw, "sk-team");
    assert_eq!(response.status, 503, "{}", response.text());
    let retry: u64 = response.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(primary.stats().requests, 2);
}

#[test]
fn anthropic_clients_get_anthropic_shaped_limits() {
    let primary = mock("primary");
    let gw = limited_gateway(
        "  - { name: team, key: sk-team, rpm: 1 }\n",
        &primary,
        None,
        "",
    );
    let body =
        json!({"model": "chat", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let post = || {
        let mut client = client(&gw);
        client
            .request(
                "POST",
                "/v1/messages",
                &[
                    ("x-api-key", "sk-team"),
                    ("anthropic-version", "2023-06-01"),
                ],
                body.to_string().as_bytes(),
            )
            .unwrap()
    };
    let first = post();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        first.header("anthropic-ratelimit-requests-limit"),
        Some("1")
    );
    assert!(first.header("x-ratelimit-limit-requests").is_none());
    let refused = post();
    assert_eq!(refused.status, 429);
    let error = refused.json();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert_eq!(
        refused.header("anthropic-ratelimit-requests-remaining"),
        Some("0")
    );
    assert!(refused.header("retry-after").is_some());
}

#[test]
fn a_keys_access_models_routes_expiry_and_hashed_secret() {
    let primary = mock("primary");
    let hashed = "6f1e19c2f43e2d4a4e3e4c1c7d3c0f2b8e9a1c5a0a0a9f3f0c9e6e1a2b3c4d5e";
    let keys = format!(
        "  - {{ name: narrow, key: sk-narrow, models: [other-*] }}\n  - {{ name: old, key: sk-old, expires: \"2020-01-01T00:00:00Z\" }}\n  - {{ name: hashed, key_sha256: {} }}\n  - {{ name: unused, key_sha256: {hashed} }}\n",
        sha256_hex("sk-hashed")
    );
    let gw = limited_gateway(&keys, &primary, None, "");
    let narrow = chat_as(&gw, "sk-narrow");
    assert_eq!(narrow.status, 404, "{}", narrow.text());
    let old = chat_as(&gw, "sk-old");
    assert_eq!(old.status, 401);
    assert!(old.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    assert_eq!(chat_as(&gw, "sk-hashed").status, 200);
    assert_eq!(
        chat_as(&gw, hashed).status,
        401,
        "the digest is not the key"
    );
    let mut client = client(&gw);
    let models = client
        .request(
            "GET",
            "/v1/models",
            &[("authorization", "Bearer sk-narrow")],
            b"",
        )
        .unwrap()
        .json();
    assert_eq!(models["data"].as_array().unwrap().len(), 0, "{models}");
}

fn sha256_hex(secret: &str) -> String {
    switchyard::config::keys::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn spend_is_what_providers_billed_and_a_spent_budget_refuses_without_retry() {
    let (primary, fallback) = primary_and_fallback();
    let keys = "  - { name: team, key: sk-team, budget: { usd: 0.001, period: 1d } }\n";
    let prices = "prices:\n  primary/*: { input: 1000, output: 1000 }\n  fallback/fallback-model: { input: 2, output: 8 }\n";
    let mut yaml = format!(
        "listen: 127.0.0.1:0\nshards: 2\nshutdown_grace: 2s\nkeys:\n{keys}providers:\n{}{}{prices}",
        provider("primary", &primary),
        provider("fallback", &fallback)
    );
    yaml.push_str("routes:\n  - name: chat\n    match: { model: chat }\n    strategy: priority\n    targets:\n      - { provider: primary, model: primary-model, priority: 0 }\n      - { provider: fallback, model: fallback-model, priority: 1 }\n");
    let gw = gateway(&yaml);
    // The primary fails without usage: only the fallback's answer is billed.
    primary.set_fault(fault_status(503));
    let served = chat_as(&gw, "sk-team");
    assert_fell_back(&served);
    let usage = &served.json()["usage"];
    let (input, output) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    // $2 and $8 per million tokens, rounded up to the micro-dollar.
    let expected = input * 2 + output * 8;
    let status = gw.spend().status(0, std::time::SystemTime::now()).unwrap();
    assert_eq!(status.spent_micros, expected, "{input} in, {output} out");
    assert!(!status.exhausted);

    // A priced primary that answers spends the rest of the budget at once.
    primary.set_fault(loadtest::mock::Fault::None);
    assert_served_by(&chat_as(&gw, "sk-team"), "primary/primary-model");
    let sent = primary.stats().requests;
    let refused = chat_as(&gw, "sk-team");
    assert_eq!(refused.status, 429, "{}", refused.text());
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "insufficient_quota");
    assert_eq!(error["type"], "insufficient_quota");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("`team`") && message.contains("resets at"),
        "{message}"
    );
    assert_eq!(refused.header("x-should-retry"), Some("false"));
    assert!(refused.header("retry-after").is_none());
    assert_eq!(
        primary.stats().requests,
        sent,
        "a spent budget sends nothing"
    );
}

#[test]
fn a_hedge_that_lost_is_charged_its_prompt() {
    let slow = mock_with(MockConfig {
        name: "primary".into(),
        latency: Duration::from_millis(800),
        ..MockConfig::default()
    });
    let fallback = mock("fallback");
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nkeys:\n  - {{ name: team, key: sk-team }}\nproviders:\n{}{}prices:\n  primary/*: {{ input: 1000000, output: 0 }}\n  fallback/*: {{ input: 0, output: 0 }}\nroutes:\n  - name: chat\n    match: {{ model: chat }}\n    strategy: priority\n    targets:\n      - {{ provider: primary, model: primary-model, priority: 0 }}\n      - {{ provider: fallback, model: fallback-model, priority: 1 }}\n    retry: {{ attempts: 1 }}\n    hedge: {{ after: 50ms }}\n",
        provider("primary", &slow),
        provider("fallback", &fallback)
    );
    let gw = gateway(&yaml);
    let served = chat_as(&gw, "sk-team");
    assert_fell_back(&served);
    assert_eq!(served.header("x-switchyard-attempts"), Some("2"));
    // The primary was sent the request and dropped: $1 per prompt token it was
    // estimated at (a token per 4 bytes of the body); the free fallback adds 0.
    let body_tokens = (chat_body("chat", false).len() as u64).div_ceil(4);
    let spent = gw
        .spend()
        .status(0, std::time::SystemTime::now())
        .unwrap()
        .spent_micros;
    assert_eq!(spent, body_tokens * 1_000_000);
}
