//! The gateway-wide circuit breaker end to end, with 1 and 2 shards: trips counted
//! over all shards, single-attempt probes, bounded recovery after a flapping
//! primary, overloaded targets that move on at once, and what /admin/targets says.
//! Real sockets on 127.0.0.1; scaled down by configuration (cooldowns of hundreds of
//! ms, outages of about a second) and asserting counts, never timings.

mod common;

use std::time::{Duration, Instant};

use common::*;
use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::{Fault, MockHandle};
use switchyard::gateway::Gateway;

const PRIMARY: &str = "primary/primary-model";
const FALLBACK: &str = "fallback/fallback-model";

fn requests(mock: &MockHandle) -> u64 {
    mock.stats().requests
}

fn target_of(response: &HttpResponse) -> &str {
    response.header("x-switchyard-target").unwrap_or("-")
}

fn attempts_of(response: &HttpResponse) -> u64 {
    response
        .header("x-switchyard-attempts")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// `primary` then `fallback` on `shards` shards, with the admin API.
fn chain(
    shards: usize,
    primary: &MockHandle,
    fallback: &MockHandle,
    route: &str,
    health: &str,
) -> Gateway {
    let yaml = chain_yaml(
        &[("primary", primary), ("fallback", fallback)],
        route,
        &format!("health: {health}\nadmin: {{ listen: 127.0.0.1:0 }}\n"),
    )
    .replace("shards: 1\n", &format!("shards: {shards}\n"));
    gateway(&yaml)
}

/// Request `n` (from 0) goes to shard `n % shards`.
fn send(clients: &mut [Client], n: usize, stream: bool) -> HttpResponse {
    let shards = clients.len();
    clients[n % shards]
        .chat(&chat_body("chat", stream), &[])
        .expect("response")
}

fn admin_get(gw: &Gateway, path: &str) -> HttpResponse {
    let addr = gw.admin_addr().expect("admin listener configured");
    let mut client = Client::connect(addr).expect("connect to admin");
    client.request("GET", path, &[], b"").expect("admin answer")
}

/// The primary's breaker transitions in /metrics over all shards: one
/// `from="…",to="…",reason="…"` entry per transition counted.
fn primary_transitions(gw: &Gateway) -> Vec<String> {
    let text = admin_get(gw, "/metrics").text();
    let prefix = format!("switchyard_breaker_transitions_total{{target=\"{PRIMARY}\",shard=");
    let mut seen = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some((labels, n)) = line.split_once("} ") else {
            continue;
        };
        // Past `…shard="N",`: the change itself.
        let change = labels
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once(','))
            .map_or("", |(_, change)| change);
        let n: usize = n.trim().parse().unwrap_or(0);
        seen.extend(std::iter::repeat_n(change.to_string(), n));
    }
    seen
}

/// The primary's entry in /admin/targets.
fn admin_primary(gw: &Gateway) -> serde_json::Value {
    let targets = admin_get(gw, "/admin/targets").json();
    targets["targets"]
        .as_array()
        .and_then(|list| list.iter().find(|t| t["target"] == PRIMARY))
        .cloned()
        .expect("primary in /admin/targets")
}

/// Every shard's view of the primary's breaker: (state, reason).
fn breaker_views(gw: &Gateway) -> Vec<(String, String)> {
    let entry = admin_primary(gw);
    entry["shards"]
        .as_array()
        .expect("per-shard views")
        .iter()
        .map(|v| {
            (
                v["breaker"].as_str().unwrap_or("-").to_string(),
                v["breaker_reason"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

// 1. consecutive_failures: 5 with requests alternating between shards: the 5th
//    failure overall trips (3 on one shard, 2 on the other with 2 shards), and then
//    neither shard sends the primary anything until the (long) cooldown ends.
fn trips_after_exactly_n_failures_gateway_wide(shards: usize) {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(503));
    let gw = chain(
        shards,
        &primary,
        &fallback,
        "retry: { attempts: 1 }",
        "{ consecutive_failures: 5, min_requests: 100000, cooldown: 1m }",
    );
    let mut clients = connection_per_shard(gw.addr(), shards);
    for n in 0..5 {
        let response = send(&mut clients, n, false);
        assert_fell_back(&response);
        assert_eq!(attempts_of(&response), 2, "request {n}");
        assert_eq!(requests(&primary), n as u64 + 1);
    }
    assert_eq!(
        breaker_views(&gw),
        vec![("open".to_string(), "consecutive_failures".to_string()); shards],
        "every shard sees the one breaker"
    );
    for n in 5..45 {
        let response = send(&mut clients, n, false);
        assert_fell_back(&response);
        assert_eq!(
            attempts_of(&response),
            1,
            "request {n} skipped the open primary"
        );
    }
    assert_eq!(requests(&primary), 5, "no 6th send from any shard");
    assert_eq!(requests(&fallback), 45);
    assert_eq!(
        primary_transitions(&gw),
        [r#"from="closed",to="open",reason="consecutive_failures""#],
        "one transition, counted once by the shard that made it"
    );
    gw.shutdown();
}

#[test]
fn trips_after_exactly_n_failures_one_shard() {
    trips_after_exactly_n_failures_gateway_wide(1);
}

#[test]
fn trips_after_exactly_n_failures_two_shards() {
    trips_after_exactly_n_failures_gateway_wide(2);
}

// 2. Retries stop at the trip: attempts: 3, consecutive_failures: 5 → 3 calls for
//    the first request, 2 for the second (the 5th failure trips; no 3rd try).
fn retries_stop_when_the_breaker_opens(shards: usize) {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(503));
    let gw = chain(
        shards,
        &primary,
        &fallback,
        "retry: { attempts: 3, backoff: 1ms, max_backoff: 2ms }",
        "{ consecutive_failures: 5, min_requests: 100000, cooldown: 1m }",
    );
    let mut clients = connection_per_shard(gw.addr(), shards);
    let first = send(&mut clients, 0, false);
    assert_fell_back(&first);
    assert_eq!((attempts_of(&first), requests(&primary)), (4, 3));
    let second = send(&mut clients, 1, false);
    assert_fell_back(&second);
    assert_eq!((attempts_of(&second), requests(&primary)), (3, 5));
    for n in 2..12 {
        assert_eq!(attempts_of(&send(&mut clients, n, false)), 1);
    }
    assert_eq!(requests(&primary), 5);
    gw.shutdown();
}

#[test]
fn retries_stop_when_the_breaker_opens_one_shard() {
    retries_stop_when_the_breaker_opens(1);
}

#[test]
fn retries_stop_when_the_breaker_opens_two_shards() {
    retries_stop_when_the_breaker_opens(2);
}

/// What one phase of the flapping run saw.
#[derive(Default)]
struct Phase {
    /// (target, attempts) per response, in order.
    served: Vec<(String, u64)>,
    elapsed: Duration,
}

/// Streams one request every `interval` for `length`, alternating shards from `n0`;
/// every one must be served.
fn run_phase(clients: &mut [Client], n0: usize, length: Duration, interval: Duration) -> Phase {
    let started = Instant::now();
    let mut phase = Phase::default();
    let mut n = n0;
    while started.elapsed() < length {
        let response = send(clients, n, true);
        assert_eq!(response.status, 200, "request {n}: {}", response.text());
        assert_eq!(
            response.sse_data().last().map(String::as_str),
            Some("[DONE]")
        );
        phase
            .served
            .push((target_of(&response).to_string(), attempts_of(&response)));
        n += 1;
        std::thread::sleep(interval);
    }
    phase.elapsed = started.elapsed();
    phase
}

// 3. A flapping primary: 503 for about a second, then healthy. Every request is
//    served; the trip costs `attempts` calls, every later primary call during the
//    outage is a single-attempt probe, and probes never outnumber the schedule; after
//    healing at most ⌈max_cooldown / interval⌉ + 1 requests still go to the fallback,
//    and from the first one the primary serves, it serves them all.
fn flapping_primary_recovers_within_the_bound(shards: usize) {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(503));
    let cooldown = Duration::from_millis(200);
    let max_cooldown = Duration::from_millis(400);
    let interval = Duration::from_millis(40);
    let gw = chain(
        shards,
        &primary,
        &fallback,
        "retry: { attempts: 3, backoff: 1ms, max_backoff: 2ms }",
        "{ consecutive_failures: 3, min_requests: 100000, cooldown: 200ms, max_cooldown: 400ms }",
    );
    let mut clients = connection_per_shard(gw.addr(), shards);

    let outage = run_phase(&mut clients, 0, Duration::from_millis(1_200), interval);
    let during = requests(&primary);
    assert!(
        outage.served.iter().all(|(t, _)| t == FALLBACK),
        "all fell back"
    );
    assert_eq!(
        outage.served[0].1, 4,
        "the trip: 3 tries on the primary, then the fallback"
    );
    let probes: Vec<u64> = outage.served[1..]
        .iter()
        .map(|(_, attempts)| attempts - 1)
        .collect();
    assert!(
        probes.iter().all(|p| *p <= 1),
        "a failed probe is a single attempt: {probes:?}"
    );
    let probe_count: u64 = probes.iter().sum();
    assert_eq!(during, 3 + probe_count, "primary calls = trip + probes");
    // The schedule's count for this long an outage, with the shortest cooldown.
    let schedule = (outage.elapsed.as_millis() / cooldown.as_millis()) as u64 + 1;
    assert!(
        (1..=schedule).contains(&probe_count),
        "{probe_count} probes in {:?} (schedule allows {schedule})",
        outage.elapsed
    );

    primary.set_fault(Fault::None);
    let healed = run_phase(
        &mut clients,
        outage.served.len(),
        Duration::from_millis(1_200),
        interval,
    );
    let still_fallback = healed
        .served
        .iter()
        .take_while(|(t, _)| t == FALLBACK)
        .count();
    let bound = max_cooldown.as_millis().div_ceil(interval.as_millis()) as usize + 1;
    assert!(
        still_fallback <= bound,
        "{still_fallback} requests went to the fallback after healing (bound {bound})"
    );
    assert!(
        healed.served[still_fallback..]
            .iter()
            .all(|(t, a)| t == PRIMARY && *a == 1),
        "once back, the primary serves every request at the first attempt: {:?}",
        healed.served
    );
    assert!(
        still_fallback < healed.served.len(),
        "the primary came back"
    );
    // Each probe went out in a half-open period that began when the cooldown ran
    // out; the shard that sent the probe logged that transition, once.
    let transitions = primary_transitions(&gw);
    let entered = transitions
        .iter()
        .filter(|t| t.starts_with(r#"from="open",to="half_open""#))
        .count() as u64;
    assert_eq!(
        entered,
        probe_count + 1,
        "failed probes + the one that closed it: {transitions:?}"
    );
    gw.shutdown();
}

#[test]
fn flapping_primary_recovers_within_the_bound_one_shard() {
    flapping_primary_recovers_within_the_bound(1);
}

#[test]
fn flapping_primary_recovers_within_the_bound_two_shards() {
    flapping_primary_recovers_within_the_bound(2);
}

// 4. 429 or 529 without Retry-After, with a fallback: exactly one primary call,
//    however many retries the route allows.
fn overloaded_moves_on_at_once(shards: usize) {
    for status in [429, 529] {
        let (primary, fallback) = primary_and_fallback();
        primary.set_fault(fault_status(status));
        let gw = chain(
            shards,
            &primary,
            &fallback,
            "retry: { attempts: 3, backoff: 10ms }",
            "{ consecutive_failures: 100, min_requests: 100000 }",
        );
        let mut clients = connection_per_shard(gw.addr(), shards);
        let response = send(&mut clients, 0, false);
        assert_fell_back(&response);
        assert_eq!(requests(&primary), 1, "status {status}");
        assert_eq!(attempts_of(&response), 2);
        gw.shutdown();
    }
}

#[test]
fn overloaded_moves_on_at_once_one_shard() {
    overloaded_moves_on_at_once(1);
}

#[test]
fn overloaded_moves_on_at_once_two_shards() {
    overloaded_moves_on_at_once(2);
}

// 5. A Retry-After sidelines the target on every shard (a state of its own, not
//    open), without tripping the breaker; within `wait_retry_after_up_to` the
//    same target is waited for instead.
fn retry_after_sidelines_or_is_waited_for(shards: usize) {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(Fault::Status {
        status: 429,
        rate: 1.0,
        retry_after: Some(30),
        body: None,
        times: None,
    });
    let gw = chain(
        shards,
        &primary,
        &fallback,
        "retry: { attempts: 3, backoff: 10ms, max_retry_after: 30s, wait_retry_after_up_to: 1s }",
        "{ consecutive_failures: 100, min_requests: 100000 }",
    );
    let mut clients = connection_per_shard(gw.addr(), shards);
    assert_fell_back(&send(&mut clients, 0, false));
    assert_eq!(requests(&primary), 1, "a 30 s pause is not waited for");
    assert_eq!(
        breaker_views(&gw),
        vec![("sidelined".to_string(), "retry_after".to_string()); shards]
    );
    for n in 1..5 {
        let response = send(&mut clients, n, false);
        assert_fell_back(&response);
        assert_eq!(attempts_of(&response), 1);
    }
    assert_eq!(requests(&primary), 1, "sidelined on every shard");
    gw.shutdown();

    // A 1 s pause, once, is waited for on the preferred target.
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(Fault::Status {
        status: 429,
        rate: 1.0,
        retry_after: Some(1),
        body: None,
        times: Some(1),
    });
    let gw = chain(
        shards,
        &primary,
        &fallback,
        "retry: { attempts: 3, backoff: 10ms, wait_retry_after_up_to: 1s }",
        "{ consecutive_failures: 100, min_requests: 100000 }",
    );
    let mut clients = connection_per_shard(gw.addr(), shards);
    let response = send(&mut clients, 0, false);
    assert_served_by(&response, PRIMARY);
    assert_eq!((requests(&primary), requests(&fallback)), (2, 0));
    gw.shutdown();
}

#[test]
fn retry_after_sidelines_or_is_waited_for_one_shard() {
    retry_after_sidelines_or_is_waited_for(1);
}

#[test]
fn retry_after_sidelines_or_is_waited_for_two_shards() {
    retry_after_sidelines_or_is_waited_for(2);
}

// 6. Every target of the route open: the client gets a fast 503 until the
//    cooldown allows a probe, and then the very next request probes (and, the
//    target healed, is served by it).
fn all_open_probes_as_soon_as_the_cooldown_allows(shards: usize) {
    let only = mock("only");
    only.set_fault(fault_status(503));
    let yaml = chain_yaml(
        &[("only", &only)],
        "retry: { attempts: 1 }",
        "health: { consecutive_failures: 2, min_requests: 100000, cooldown: 300ms, max_cooldown: 300ms }\n",
    )
    .replace("shards: 1\n", &format!("shards: {shards}\n"));
    let gw = gateway(&yaml);
    let mut clients = connection_per_shard(gw.addr(), shards);
    for n in 0..2 {
        assert_eq!(send(&mut clients, n, false).status, 502);
    }
    let refused = send(&mut clients, 2, false);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.header("retry-after").is_some());
    assert_eq!(requests(&only), 2);
    only.set_fault(Fault::None);
    let mut n = 3;
    let served = wait_until(Duration::from_secs(3), || {
        n += 1;
        send(&mut clients, n, false).status == 200
    });
    assert!(served, "the healed target got its probe");
    assert_eq!(requests(&only), 3, "exactly one probe, and it was served");
    gw.shutdown();
}

#[test]
fn all_open_probes_as_soon_as_the_cooldown_allows_one_shard() {
    all_open_probes_as_soon_as_the_cooldown_allows(1);
}

#[test]
fn all_open_probes_as_soon_as_the_cooldown_allows_two_shards() {
    all_open_probes_as_soon_as_the_cooldown_allows(2);
}

// 7. A probe whose stream commits closes the breaker at commit, not when the
//    (possibly long) stream ends: here the probe's stream then stalls for seconds,
//    yet the breaker is closed while it is still open.
fn a_committed_stream_probe_closes_at_once(shards: usize) {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(503));
    let gw = chain(
        shards,
        &primary,
        &fallback,
        "retry: { attempts: 1 }\ntimeouts: { first_byte: 2s, between_chunks: 3s, total: 10s }",
        "{ consecutive_failures: 2, min_requests: 100000, cooldown: 200ms, max_cooldown: 200ms }",
    );
    let mut clients = connection_per_shard(gw.addr(), shards);
    for n in 0..2 {
        assert_fell_back(&send(&mut clients, n, false));
    }
    assert_eq!(breaker_views(&gw)[0].0, "open");
    primary.set_fault(Fault::Stall { after_chunks: 3 });
    let addr = gw.addr();
    let probe = wait_until(Duration::from_secs(3), || {
        breaker_views(&gw)[0].0 == "half_open"
    });
    assert!(probe, "the cooldown ends");
    let stream = std::thread::spawn(move || chat_stream(addr));
    let closed = wait_until(Duration::from_secs(2), || {
        breaker_views(&gw) == vec![("closed".to_string(), "-".to_string()); shards]
    });
    assert!(closed, "closed while the probe's stream is still open");
    assert_eq!(primary.stats().streams, 1);
    let response = stream.join().expect("stream thread");
    assert_eq!(target_of(&response), PRIMARY);
    gw.shutdown();
}

#[test]
fn a_committed_stream_probe_closes_at_once_one_shard() {
    a_committed_stream_probe_closes_at_once(1);
}

#[test]
fn a_committed_stream_probe_closes_at_once_two_shards() {
    a_committed_stream_probe_closes_at_once(2);
}

// 8. A retry budget belongs to its (route, target), not to the target: two routes
//    share the primary, the first listed allows no retries at all, the second the
//    defaults. A request on the second is retried on the primary; one on the first
//    is not. (Before budgets were resolved per (route, target), the shared slot
//    took the first route's budget, so neither was retried.)
fn retry_budgets_are_per_route_and_target(shards: usize) {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(503));
    let targets = "    targets:\n      - { provider: primary, model: primary-model, priority: 0 }\n      - { provider: fallback, model: fallback-model, priority: 1 }\n";
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: {shards}\nshutdown_grace: 2s\nproviders:\n{}{}routes:\n\
         \x20 - name: strict\n    match: {{ model: strict }}\n    strategy: priority\n{targets}\
         \x20   retry: {{ attempts: 2, backoff: 1ms, budget_ratio: 0, budget_min_per_sec: 0 }}\n\
         \x20 - name: chat\n    match: {{ model: chat }}\n    strategy: priority\n{targets}\
         \x20   retry: {{ attempts: 2, backoff: 1ms }}\n\
         health: {{ consecutive_failures: 1000, min_requests: 100000 }}\n",
        provider("primary", &primary),
        provider("fallback", &fallback),
    );
    let gw = gateway(&yaml);
    let mut clients = connection_per_shard(gw.addr(), shards);
    for client in &mut clients {
        let strict = client
            .chat(&chat_body("strict", false), &[])
            .expect("response");
        assert_fell_back(&strict);
        assert_eq!(
            attempts_of(&strict),
            2,
            "strict: one primary try, then fallback"
        );
        let chat = client
            .chat(&chat_body("chat", false), &[])
            .expect("response");
        assert_fell_back(&chat);
        assert_eq!(
            attempts_of(&chat),
            3,
            "chat: primary retried once, then fallback"
        );
    }
    assert_eq!(requests(&primary), 3 * shards as u64);
    gw.shutdown();
}

#[test]
fn retry_budgets_are_per_route_and_target_one_shard() {
    retry_budgets_are_per_route_and_target(1);
}

#[test]
fn retry_budgets_are_per_route_and_target_two_shards() {
    retry_budgets_are_per_route_and_target(2);
}
