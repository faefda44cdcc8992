//! Hedged requests end to end over real sockets: a first attempt slow to its first
//! token races a hedge on the next target, and the first to commit is served.
//! Nothing here asserts a timing: only who served, how many attempts the client
//! was told of, what each provider saw and what /metrics counted.

mod common;

use std::time::Duration;

use common::*;
use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::{Fault, MockConfig, MockHandle};
use switchyard::gateway::Gateway;

const PRIMARY: &str = "primary/primary-model";
const FALLBACK: &str = "fallback/fallback-model";

/// A mock whose streams send their first content only after `ms`.
fn slow_stream(name: &str, ms: u64) -> MockHandle {
    mock_with(MockConfig {
        name: name.to_string(),
        fault: Fault::SlowFirstToken { ms },
        ..MockConfig::default()
    })
}

/// A mock whose every answer (its response head) comes only after `ms`.
fn slow_answer(name: &str, ms: u64) -> MockHandle {
    mock_with(MockConfig {
        name: name.to_string(),
        latency: Duration::from_millis(ms),
        ..MockConfig::default()
    })
}

/// `primary` then `fallback` with `hedge` on the route, the admin API on, and
/// `top` spliced in at the top level.
fn hedged(primary: &MockHandle, fallback: &MockHandle, hedge: &str, top: &str) -> Gateway {
    let route = format!("retry: {{ attempts: 1 }}\nhedge: {hedge}");
    let top = format!("{top}admin: {{ listen: 127.0.0.1:0 }}\n");
    gateway(&chain_yaml(
        &[("primary", primary), ("fallback", fallback)],
        &route,
        &top,
    ))
}

fn ask(gw: &Gateway, model: &str, stream: bool) -> HttpResponse {
    let mut client = client(gw);
    client.set_read_timeout(Duration::from_secs(15)).unwrap();
    client
        .chat(&chat_body(model, stream), &[])
        .expect("a complete response")
}

fn requests(mock: &MockHandle) -> u64 {
    mock.stats().requests
}

/// The route `chat`'s value of the counter `name` in /metrics.
fn route_metric(gw: &Gateway, name: &str) -> u64 {
    let addr = gw.admin_addr().expect("admin listener configured");
    let mut client = Client::connect(addr).expect("connect to admin");
    let text = client
        .request("GET", "/metrics", &[], b"")
        .expect("metrics")
        .text();
    let prefix = format!("{name}{{route=\"chat\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{prefix} in /metrics:\n{text}"))
}

fn assert_served(response: &HttpResponse, target: &str, attempts: &str) {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-switchyard-target"), Some(target));
    assert_eq!(response.header("x-switchyard-attempts"), Some(attempts));
}

#[test]
fn a_stream_slow_to_its_first_token_is_won_by_the_hedge() {
    let primary = slow_stream("primary", 1500);
    let fallback = mock("fallback");
    let gw = hedged(&primary, &fallback, "{ after: 100ms }", "");
    let response = ask(&gw, "chat", true);
    assert_served(&response, FALLBACK, "2");
    assert!(!response.stream_text().is_empty());
    assert_eq!(requests(&primary), 1, "the primary is sent once");
    assert_eq!(requests(&fallback), 1, "the hedge is sent once");
    assert_eq!(route_metric(&gw, "switchyard_hedges_total"), 1);
    assert_eq!(route_metric(&gw, "switchyard_hedge_wins_total"), 1);
    // The gateway serves the next request, the loser's connection discarded.
    let again = ask(&gw, "chat", true);
    assert_served(&again, FALLBACK, "2");
    assert_eq!(requests(&primary), 2);
    assert_eq!(
        primary.stats().connections,
        2,
        "the losing attempt's socket was closed, never pooled"
    );
    gw.shutdown();
    primary.shutdown();
    fallback.shutdown();
}

#[test]
fn a_slow_whole_answer_is_won_by_the_hedge() {
    let primary = slow_answer("primary", 1500);
    let fallback = mock("fallback");
    let gw = hedged(&primary, &fallback, "{ after: 100ms }", "");
    let response = ask(&gw, "chat", false);
    assert_served(&response, FALLBACK, "2");
    assert_eq!(requests(&fallback), 1);
    assert_eq!(route_metric(&gw, "switchyard_hedges_total"), 1);
    assert_eq!(route_metric(&gw, "switchyard_hedge_wins_total"), 1);
    gw.shutdown();
    primary.shutdown();
    fallback.shutdown();
}

#[test]
fn no_hedge_is_sent_to_an_open_target() {
    let primary = slow_stream("primary", 800);
    let fallback = mock("fallback");
    fallback.set_fault(fault_status(503));
    // A second route on the fallback alone: one failure there opens its breaker
    // (one breaker per target, shared by routes).
    let top = "  - name: down\n    match: { model: down }\n    targets: [{ provider: fallback, model: fallback-model }]\n    retry: { attempts: 1 }\nhealth: { consecutive_failures: 1, cooldown: 60s, max_cooldown: 60s }\n";
    let gw = hedged(&primary, &fallback, "{ after: 100ms }", top);
    let refused = ask(&gw, "down", false);
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert_eq!(requests(&fallback), 1);
    let response = ask(&gw, "chat", true);
    assert_served(&response, PRIMARY, "1");
    assert_eq!(requests(&primary), 1);
    assert_eq!(requests(&fallback), 1, "no hedge went to the open target");
    assert_eq!(route_metric(&gw, "switchyard_hedges_total"), 0);
    gw.shutdown();
    primary.shutdown();
    fallback.shutdown();
}

#[test]
fn an_empty_hedge_budget_sends_no_hedge() {
    let primary = slow_stream("primary", 800);
    let fallback = mock("fallback");
    let hedge = "{ after: 100ms, budget_ratio: 0, budget_min_per_sec: 0 }";
    let gw = hedged(&primary, &fallback, hedge, "");
    let response = ask(&gw, "chat", true);
    assert_served(&response, PRIMARY, "1");
    assert_eq!(requests(&fallback), 0);
    assert_eq!(route_metric(&gw, "switchyard_hedges_total"), 0);
    gw.shutdown();
    primary.shutdown();
    fallback.shutdown();
}

#[test]
fn a_fast_primary_never_hedges() {
    let primary = mock("primary");
    let fallback = mock("fallback");
    let gw = hedged(&primary, &fallback, "{ after: 500ms }", "");
    for stream in [true, false] {
        let response = ask(&gw, "chat", stream);
        assert_served(&response, PRIMARY, "1");
    }
    assert_eq!(requests(&primary), 2);
    assert_eq!(requests(&fallback), 0);
    assert_eq!(route_metric(&gw, "switchyard_hedges_total"), 0);
    gw.shutdown();
    primary.shutdown();
    fallback.shutdown();
}

#[test]
fn p95_without_enough_samples_sends_no_hedge() {
    let primary = slow_stream("primary", 800);
    let fallback = mock("fallback");
    let gw = hedged(&primary, &fallback, "{ after: p95 }", "");
    let response = ask(&gw, "chat", true);
    assert_served(&response, PRIMARY, "1");
    assert_eq!(requests(&fallback), 0);
    assert_eq!(route_metric(&gw, "switchyard_hedges_total"), 0);
    gw.shutdown();
    primary.shutdown();
    fallback.shutdown();
}

#[test]
fn when_both_fail_the_plan_goes_on_and_the_hedge_target_is_not_tried_again() {
    let primary = slow_answer("primary", 600);
    primary.set_fault(fault_status(500));
    let fallback = mock("fallback");
    fallback.set_fault(fault_status(500));
    let gw = hedged(&primary, &fallback, "{ after: 100ms }", "");
    let response = ask(&gw, "chat", false);
    assert!(response.status >= 500, "{}", response.text());
    assert_eq!(response.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(requests(&primary), 1);
    assert_eq!(
        requests(&fallback),
        1,
        "the failed hedge's target is not retried"
    );
    assert_eq!(route_metric(&gw, "switchyard_hedges_total"), 1);
    assert_eq!(route_metric(&gw, "switchyard_hedge_wins_total"), 0);
    gw.shutdown();
    primary.shutdown();
    fallback.shutdown();
}

#[test]
fn p95_hedges_once_the_primary_has_enough_samples() {
    let primary = mock("primary");
    let fallback = mock("fallback");
    let gw = hedged(&primary, &fallback, "{ after: p95 }", "");
    // 20 fast streams teach the primary's time to first token (no hedge meanwhile).
    for _ in 0..20 {
        assert_served(&ask(&gw, "chat", true), PRIMARY, "1");
    }
    assert_eq!(requests(&fallback), 0);
    primary.set_fault(Fault::SlowFirstToken { ms: 3000 });
    let response = ask(&gw, "chat", true);
    assert_served(&response, FALLBACK, "2");
    assert_eq!(requests(&fallback), 1);
    assert_eq!(route_metric(&gw, "switchyard_hedges_total"), 1);
    assert_eq!(route_metric(&gw, "switchyard_hedge_wins_total"), 1);
    gw.shutdown();
    primary.shutdown();
    fallback.shutdown();
}

/// A stream the hedge won that breaks later is continued on the route's other
/// targets, never on the hedge's own (the one that broke).
#[test]
fn a_hedged_stream_that_breaks_continues_elsewhere() {
    let primary = slow_stream("primary", 3000);
    let fallback = mock("fallback");
    // The hedge's whole answer, asked directly: what the continued stream must say.
    let mut direct = Client::connect(fallback.addr()).expect("connect to mock");
    let full = completion_text(&direct.chat(&chat_body("direct", false), &[]).unwrap());
    let asked_directly = requests(&fallback);
    fallback.set_fault(Fault::ResetMidStream { after_chunks: 3 });
    let third = mock("third");
    let yaml = chain_yaml(
        &[
            ("primary", &primary),
            ("fallback", &fallback),
            ("third", &third),
        ],
        "retry: { attempts: 1 }\nhedge: { after: 100ms }",
        "admin: { listen: 127.0.0.1:0 }\n",
    );
    let gw = gateway(&yaml);
    let response = ask(&gw, "chat", true);
    assert_served(&response, FALLBACK, "2");
    assert_eq!(response.stream_text(), full);
    assert_eq!(
        requests(&fallback),
        asked_directly + 1,
        "the broken hedge is not asked again"
    );
    assert_eq!(requests(&third), 1, "the third continues");
    assert_eq!(route_metric(&gw, "switchyard_hedge_wins_total"), 1);
    gw.shutdown();
    for mock in [primary, fallback, third] {
        mock.shutdown();
    }
}
