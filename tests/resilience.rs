//! Resilience end to end: retries, Retry-After, the retry budget, fallback on every
//! failure class, client errors that must not fall back, deadlines, the selection
//! strategies, the circuit breaker (one per target, shared by the shards) and accounting.
//! Every test drives real sockets on 127.0.0.1 and asserts both what the client saw
//! and what each mock provider saw.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::{Fault, MockConfig, MockHandle};
use switchyard::gateway::Gateway;
use switchyard::health::BreakerState;

const CONTEXT_LENGTH_BODY: &str = r#"{"error":{"message":"maximum context length exceeded","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
const CONTENT_POLICY_BODY: &str = r#"{"error":{"message":"Your request was rejected by our content policy.","type":"invalid_request_error","code":"content_policy_violation"}}"#;
const BAD_REQUEST_BODY: &str = r#"{"error":{"message":"messages[0].role is not one of the allowed values","type":"invalid_request_error","code":"invalid_value"}}"#;

fn requests(mock: &MockHandle) -> u64 {
    mock.stats().requests
}

/// `status` for the first `times` requests (or forever), with an optional body and
/// `retry-after`.
fn status_fault(
    status: u16,
    retry_after: Option<u64>,
    body: Option<&str>,
    times: Option<u64>,
) -> Fault {
    Fault::Status {
        status,
        rate: 1.0,
        retry_after,
        body: body.map(str::to_string),
        times,
    }
}

fn chat_with(addr: SocketAddr, headers: &[(&str, &str)]) -> HttpResponse {
    let mut client = Client::connect(addr).expect("connect");
    client
        .chat(&chat_body("chat", false), headers)
        .expect("response")
}

fn timed_chat(addr: SocketAddr, headers: &[(&str, &str)]) -> (HttpResponse, Duration) {
    let started = Instant::now();
    let response = chat_with(addr, headers);
    (response, started.elapsed())
}

fn chat_on(client: &mut Client) -> HttpResponse {
    client
        .chat(&chat_body("chat", false), &[])
        .expect("response")
}

fn target_of(response: &HttpResponse) -> &str {
    response.header("x-switchyard-target").unwrap_or("-")
}

fn admin_get(gw: &Gateway, path: &str) -> HttpResponse {
    let addr = gw.admin_addr().expect("admin listener configured");
    let mut client = Client::connect(addr).expect("connect to admin");
    client.request("GET", path, &[], b"").expect("admin answer")
}

/// The value of the Prometheus series written exactly as `series`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A route `chat` over `targets` = (provider name, mock, priority, weight).
fn route_yaml(strategy: &str, targets: &[(&str, &MockHandle, u32, u32)], extra: &str) -> String {
    let mut yaml = String::from("listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n");
    for (name, mock, _, _) in targets {
        yaml.push_str(&provider(name, mock));
    }
    yaml.push_str(&format!(
        "routes:\n  - name: chat\n    match: {{ model: chat }}\n    strategy: {strategy}\n    targets:\n"
    ));
    for (name, _, priority, weight) in targets {
        yaml.push_str(&format!(
            "      - {{ provider: {name}, model: {name}-model, priority: {priority}, weight: {weight} }}\n"
        ));
    }
    yaml.push_str(extra);
    yaml
}

/// Counts which target served each of `n` sequential requests on one connection.
fn serve_counts(gw: &Gateway, n: usize) -> Vec<String> {
    let mut client = client(gw);
    (0..n)
        .map(|_| {
            let response = chat_on(&mut client);
            assert_eq!(response.status, 200, "{}", response.text());
            target_of(&response).to_string()
        })
        .collect()
}

/// `primary` failing with `fault` ahead of a healthy `fallback`, two attempts per
/// target; returns the mocks, the gateway and the answer to one chat.
fn chat_with_failing_primary(fault: Fault) -> (MockHandle, MockHandle, Gateway, HttpResponse) {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault);
    let gw = fallback_chain(
        &primary,
        &fallback,
        "retry: { attempts: 2, backoff: 10ms }",
        "",
    );
    let response = chat(gw.addr());
    (primary, fallback, gw, response)
}

/// [`chat_with_failing_primary`], whose chat must fall back.
fn fall_back_from(fault: Fault) -> (MockHandle, MockHandle, Gateway, HttpResponse) {
    let outcome = chat_with_failing_primary(fault);
    assert_fell_back(&outcome.3);
    outcome
}

// 1. A retryable failure is retried on the same target, which then answers.
#[test]
fn retries_the_same_target_then_succeeds() {
    let (primary, fallback, gw, response) =
        chat_with_failing_primary(status_fault(503, None, None, Some(1)));
    assert_served_by(&response, "primary/primary-model");
    assert_eq!(response.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(response.header("x-switchyard-fallback"), None);
    assert_eq!(response.json()["model"], "primary-model");
    assert_eq!(requests(&primary), 2);
    assert_eq!(requests(&fallback), 0);
    gw.shutdown();
}

// 2. A 429 with Retry-After on the only target: the retry waits for it.
#[test]
fn honours_retry_after_on_a_single_target() {
    let only = mock("only");
    only.set_fault(status_fault(429, Some(1), None, Some(1)));
    let gw = gateway(&chain_yaml(
        &[("only", &only)],
        "retry: { attempts: 2, backoff: 10ms }\ntimeouts: { first_byte: 3s, total: 5s }",
        "",
    ));
    let (response, elapsed) = timed_chat(gw.addr(), &[]);
    assert_served_by(&response, "only/only-model");
    assert_eq!(response.header("x-switchyard-attempts"), Some("2"));
    assert!(
        elapsed >= Duration::from_millis(900),
        "retried after {elapsed:?}, before the 1 s Retry-After"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "took {elapsed:?}, past the route's total"
    );
    assert_eq!(requests(&only), 2);
    gw.shutdown();
}

// 3. The retry budget caps retries on a permanently failing target.
#[test]
fn retry_budget_caps_retries() {
    let only = mock("only");
    only.set_fault(fault_status(503));
    // budget: retries in the last 10 s <= 0.0 × requests + 1/s × 10 s = 10.
    let gw = gateway(&chain_yaml(
        &[("only", &only)],
        "retry: { attempts: 5, backoff: 1ms, max_backoff: 2ms, budget_ratio: 0.0, budget_min_per_sec: 1 }",
        "health: { consecutive_failures: 100000, min_requests: 100000 }\n",
    ));
    const N: u64 = 20;
    let mut client = client(&gw);
    let mut last = None;
    for _ in 0..N {
        let response = chat_on(&mut client);
        assert_eq!(response.status, 502, "{}", response.text());
        last = Some(response);
    }
    let budget = (0.0 * N as f64 + 1.0 * 10.0) as u64;
    let seen = requests(&only);
    assert!(
        seen <= N + budget,
        "mock saw {seen} requests; the budget allows {N} + {budget}"
    );
    assert!(
        seen < 5 * N / 2,
        "mock saw {seen}, unbudgeted would be {}",
        5 * N
    );
    // The reserve is spent well within its 10 s window, so every budgeted retry ran.
    assert_eq!(seen, N + budget);
    let last = last.unwrap();
    assert_eq!(
        last.header("x-switchyard-attempts"),
        Some("1"),
        "no retry once the budget is spent"
    );
    gw.shutdown();
}

// 4a. 503 (after the configured retries): the next target answers.
#[test]
fn falls_back_on_503_after_retries() {
    let (primary, fallback, gw, response) = fall_back_from(fault_status(503));
    assert_eq!(response.header("x-switchyard-attempts"), Some("3"));
    assert_eq!(response.json()["model"], "fallback-model");
    assert_eq!((requests(&primary), requests(&fallback)), (2, 1));
    gw.shutdown();
}

// 4b. Connection refused: the next target answers; the refusing one saw nothing.
#[test]
fn falls_back_on_connection_refused() {
    let (primary, fallback, gw, response) = fall_back_from(Fault::Refuse);
    // Connect failures are retried after backoff, then the chain moves on.
    assert_eq!(response.header("x-switchyard-attempts"), Some("3"));
    assert_eq!((requests(&primary), requests(&fallback)), (0, 1));
    gw.shutdown();
}

// 4b'. A port nothing listens on behaves the same.
#[test]
fn falls_back_when_nothing_listens() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let fallback = mock("fallback");
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n  \
         dead: {{ kind: openai-compatible, base_url: \"http://127.0.0.1:{port}/v1\" }}\n{}\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      \
         - {{ provider: dead, model: dead-model, priority: 0 }}\n      \
         - {{ provider: fallback, model: fallback-model, priority: 1 }}\n    \
         retry: {{ attempts: 1 }}\n",
        provider("fallback", &fallback)
    );
    let gw = gateway(&yaml);
    let response = chat(gw.addr());
    assert_served_by(&response, "fallback/fallback-model");
    assert_eq!(response.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(requests(&fallback), 1);
    gw.shutdown();
}

// 4c. No first byte in time: the slow target is tried once, never waited for.
#[test]
fn falls_back_on_first_byte_timeout_without_waiting_for_the_slow_target() {
    let slow = mock("slow");
    let fallback = mock("fallback");
    slow.set_fault(Fault::Latency {
        base: Duration::from_secs(3),
        jitter: Duration::ZERO,
    });
    let gw = gateway(&chain_yaml(
        &[("slow", &slow), ("fallback", &fallback)],
        "retry: { attempts: 3, backoff: 10ms }\ntimeouts: { first_byte: 300ms, total: 10s }",
        "",
    ));
    let (response, elapsed) = timed_chat(gw.addr(), &[]);
    assert_fell_back(&response);
    assert_eq!(response.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(requests(&slow), 1, "a silent target is not retried");
    assert_eq!(requests(&fallback), 1);
    assert!(
        elapsed >= Duration::from_millis(280),
        "answered after {elapsed:?}, before the first-byte timeout"
    );
    assert!(
        elapsed < Duration::from_millis(300 + 1200),
        "answered after {elapsed:?}: waited for the slow target?"
    );
    gw.shutdown();
}

// 4d. The provider resets the connection instead of answering.
#[test]
fn falls_back_on_reset() {
    let (primary, fallback, gw, _response) = fall_back_from(Fault::ResetOnRequest);
    assert!(requests(&primary) >= 1);
    assert_eq!(requests(&fallback), 1);
    gw.shutdown();
}

// 5a. A client error is the client's answer: no retry, no fallback.
#[test]
fn returns_client_errors_without_fallback() {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(status_fault(400, None, Some(BAD_REQUEST_BODY), None));
    let gw = fallback_chain(&primary, &fallback, "", "");
    let response = chat(gw.addr());
    assert_eq!(response.status, 400);
    assert_eq!(response.text(), BAD_REQUEST_BODY);
    assert_eq!(target_of(&response), "primary/primary-model");
    assert_eq!(response.header("x-switchyard-attempts"), Some("1"));
    assert_eq!((requests(&primary), requests(&fallback)), (1, 0));
    gw.shutdown();
}

fn context_length_yaml(primary: &MockHandle, long: &MockHandle, reroute: bool) -> String {
    let fallback = if reroute {
        "    fallback: { on_context_length: long }\n"
    } else {
        ""
    };
    format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n{}{}\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      \
         - {{ provider: primary, model: primary-model }}\n{fallback}  \
         - name: long\n    match: {{ model: nobody-sends-this }}\n    targets:\n      \
         - {{ provider: long, model: long-model }}\n",
        provider("primary", primary),
        provider("long", long),
    )
}

// 5b. Context length exceeded goes to the overflow route only when configured.
#[test]
fn context_length_reroutes_only_when_configured() {
    let primary = mock("primary");
    let long = mock("long");
    primary.set_fault(status_fault(400, None, Some(CONTEXT_LENGTH_BODY), None));

    let gw = gateway(&context_length_yaml(&primary, &long, true));
    let response = chat(gw.addr());
    assert_served_by(&response, "long/long-model");
    assert_eq!(response.header("x-switchyard-fallback"), Some("true"));
    assert_eq!(response.json()["model"], "long-model");
    assert_eq!((requests(&primary), requests(&long)), (1, 1));
    gw.shutdown();

    let gw = gateway(&context_length_yaml(&primary, &long, false));
    let response = chat(gw.addr());
    assert_eq!(response.status, 400);
    assert_eq!(response.text(), CONTEXT_LENGTH_BODY);
    assert_eq!(target_of(&response), "primary/primary-model");
    assert_eq!((requests(&primary), requests(&long)), (2, 1));
    gw.shutdown();
}

// 5c. A content-policy refusal is returned intact, never retried or moved on.
#[test]
fn returns_content_policy_refusals_intact() {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(status_fault(400, None, Some(CONTENT_POLICY_BODY), None));
    let gw = fallback_chain(
        &primary,
        &fallback,
        "retry: { attempts: 3, backoff: 10ms, on_status: [400, 429, 500, 502, 503, 504] }",
        "",
    );
    let response = chat(gw.addr());
    assert_eq!(response.status, 400);
    assert_eq!(response.text(), CONTENT_POLICY_BODY);
    assert_eq!(response.json()["error"]["code"], "content_policy_violation");
    assert_eq!((requests(&primary), requests(&fallback)), (1, 0));
    gw.shutdown();
}

// 6. The request deadline ends the chain, and a client may shorten it.
#[test]
fn deadline_stops_the_chain() {
    let slow: Vec<MockHandle> = ["a", "b", "c"].into_iter().map(mock).collect();
    for m in &slow {
        m.set_fault(Fault::Latency {
            base: Duration::from_secs(2),
            jitter: Duration::ZERO,
        });
    }
    let gw = gateway(&chain_yaml(
        &[("a", &slow[0]), ("b", &slow[1]), ("c", &slow[2])],
        "timeouts: { first_byte: 1s, total: 1500ms }",
        "",
    ));
    let seen = || slow.iter().map(requests).collect::<Vec<_>>();

    let (response, elapsed) = timed_chat(gw.addr(), &[]);
    assert_eq!(response.status, 504, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "upstream_timeout");
    assert!(
        elapsed >= Duration::from_millis(1400),
        "gave up after {elapsed:?}, before the 1.5 s deadline"
    );
    assert!(
        elapsed < Duration::from_millis(1500 + 800),
        "took {elapsed:?}, well past the 1.5 s deadline"
    );
    assert_eq!(seen(), [1, 1, 0], "the third target is never tried");

    let (response, elapsed) = timed_chat(gw.addr(), &[("x-switchyard-timeout-ms", "300")]);
    assert_eq!(response.status, 504, "{}", response.text());
    assert!(
        elapsed >= Duration::from_millis(280),
        "gave up after {elapsed:?}, before the client's 300 ms"
    );
    assert!(
        elapsed < Duration::from_millis(950),
        "took {elapsed:?}: the client's 300 ms limit was ignored"
    );
    assert_eq!(seen(), [2, 1, 0]);
    gw.shutdown();
}

/// Targets `a` (weight 3) and `b` (weight 1) in one tier of a `strategy` route;
/// returns them, the gateway and who served each of `n` sequential requests.
fn split_3_to_1(strategy: &str, n: usize) -> (MockHandle, MockHandle, Gateway, Vec<String>) {
    let a = mock("a");
    let b = mock("b");
    let gw = gateway(&route_yaml(
        strategy,
        &[("a", &a, 0, 3), ("b", &b, 0, 1)],
        "",
    ));
    let served = serve_counts(&gw, n);
    (a, b, gw, served)
}

/// Equal-weight targets `fast` and `slow` (answering after `latency`) in one tier
/// of a `strategy` route, and the gateway.
fn fast_and_slow(strategy: &str, latency: Duration) -> (MockHandle, MockHandle, Gateway) {
    let fast = mock("fast");
    let slow = mock_with(MockConfig {
        name: "slow".into(),
        latency,
        ..MockConfig::default()
    });
    let gw = gateway(&route_yaml(
        strategy,
        &[("fast", &fast, 0, 1), ("slow", &slow, 0, 1)],
        "",
    ));
    (fast, slow, gw)
}

// 7a. priority: weights split traffic within a tier.
#[test]
fn priority_splits_a_tier_by_weight() {
    const N: usize = 300;
    let (a, b, gw, served) = split_3_to_1("priority", N);
    let to_a = served.iter().filter(|t| *t == "a/a-model").count();
    let to_b = served.iter().filter(|t| *t == "b/b-model").count();
    assert_eq!(to_a + to_b, N);
    let share = to_a as f64 / N as f64;
    assert!((0.65..=0.85).contains(&share), "weight 3 of 4 got {share}");
    assert_eq!((requests(&a), requests(&b)), (to_a as u64, to_b as u64));
    gw.shutdown();
}

// 7b. weighted: smooth weighted round robin, exact proportions, interleaved.
#[test]
fn weighted_is_exact_and_smooth() {
    const N: usize = 300;
    let (a, b, gw, served) = split_3_to_1("weighted", N);
    assert_eq!((requests(&a), requests(&b)), (225, 75));
    for (i, window) in served.chunks(4).enumerate() {
        let to_a = window.iter().filter(|t| *t == "a/a-model").count();
        assert_eq!(to_a, 3, "round {i} was {window:?}: not smooth");
    }
    gw.shutdown();
}

// 7c. latency: the fast target takes most traffic; the slow one is still explored.
#[test]
fn latency_prefers_the_fast_target_and_explores() {
    let (_fast, slow, gw) = fast_and_slow("latency", Duration::from_millis(30));
    const N: usize = 300;
    let served = serve_counts(&gw, N);
    let to_fast = served.iter().filter(|t| *t == "fast/fast-model").count();
    let to_slow = N - to_fast;
    assert!(
        to_fast as f64 >= 0.8 * N as f64,
        "fast target served only {to_fast} of {N}"
    );
    assert!(
        to_slow >= 3,
        "slow target served {to_slow}: no exploration?"
    );
    assert_eq!(requests(&slow), to_slow as u64);
    gw.shutdown();
}

// 7d. least-busy: under concurrent load the fast target (fewer in flight) serves more.
#[test]
fn least_busy_favours_the_target_with_fewer_in_flight() {
    let (fast, slow, gw) = fast_and_slow("least-busy", Duration::from_millis(100));
    let addr = gw.addr();
    const THREADS: usize = 8;
    const EACH: usize = 15;
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr).expect("connect");
                (0..EACH)
                    .map(|_| {
                        let response = chat_on(&mut client);
                        assert_eq!(response.status, 200, "{}", response.text());
                        target_of(&response) == "fast/fast-model"
                    })
                    .filter(|fast| *fast)
                    .count()
            })
        })
        .collect();
    let to_fast: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let to_slow = THREADS * EACH - to_fast;
    assert!(
        to_fast > 2 * to_slow,
        "fast served {to_fast}, slow {to_slow}"
    );
    assert_eq!(
        (requests(&fast), requests(&slow)),
        (to_fast as u64, to_slow as u64)
    );
    gw.shutdown();
}

fn breaker_of(gw: &Gateway, label: &str) -> Vec<BreakerState> {
    gw.control
        .snapshots()
        .iter()
        .flat_map(|s| s.targets.iter().filter(|t| t.label == label))
        .map(|t| t.breaker)
        .collect()
}

/// Sends requests on `client` (20 ms apart) until `mock` sees one; returns the
/// last response. Bounded by `limit`.
fn until_mock_is_reached(
    client: &mut Client,
    mock: &MockHandle,
    limit: Duration,
) -> Option<HttpResponse> {
    let before = requests(mock);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let response = chat_on(client);
        if requests(mock) > before {
            return Some(response);
        }
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(
            target_of(&response),
            "fallback/fallback-model",
            "served while the primary's breaker is open"
        );
        assert_eq!(response.header("x-switchyard-attempts"), Some("1"));
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

// 8. The breaker opens, sheds the primary, probes after the cooldown, and closes.
#[test]
fn breaker_opens_probes_and_closes() {
    let (primary, fallback, gw) = primary_down_chain(
        "health: { consecutive_failures: 3, min_requests: 1000, cooldown: 400ms, max_cooldown: 2s }\n",
    );
    let mut client = client(&gw);
    for _ in 0..3 {
        let response = chat_on(&mut client);
        assert_eq!(target_of(&response), "fallback/fallback-model");
        assert_eq!(response.header("x-switchyard-attempts"), Some("2"));
    }
    let tripped = Instant::now();
    assert_eq!(requests(&primary), 3);
    assert!(matches!(
        breaker_of(&gw, "primary/primary-model")[..],
        [BreakerState::Open { .. }]
    ));

    // Open: traffic goes straight to the fallback until the cooldown has passed;
    // then one probe reaches the (still failing) primary.
    until_mock_is_reached(&mut client, &primary, Duration::from_secs(3))
        .expect("a half-open probe reaches the primary");
    let probe_after = tripped.elapsed();
    assert!(
        probe_after >= Duration::from_millis(380),
        "probe after {probe_after:?}, inside the 400 ms cooldown"
    );
    assert_eq!(requests(&primary), 4, "exactly one probe");

    // The failed probe re-opens it with a doubled cooldown. Heal the primary: the
    // next probe succeeds and closes the breaker.
    let reopened = Instant::now();
    primary.set_fault(Fault::None);
    let response = until_mock_is_reached(&mut client, &primary, Duration::from_secs(3))
        .expect("a second probe reaches the primary");
    let probe_after = reopened.elapsed();
    assert!(
        probe_after >= Duration::from_millis(700),
        "second probe after {probe_after:?}, inside the doubled 800 ms cooldown"
    );
    assert_served_by(&response, "primary/primary-model");
    assert_eq!(
        breaker_of(&gw, "primary/primary-model"),
        [BreakerState::Closed]
    );
    let fallback_before = requests(&fallback);
    for _ in 0..5 {
        let response = chat_on(&mut client);
        assert_eq!(target_of(&response), "primary/primary-model");
    }
    assert_eq!(requests(&primary), 5 + 5);
    assert_eq!(requests(&fallback), fallback_before);
    gw.shutdown();
}

// 9. Every target open: 503 + Retry-After at once, no provider touched.
#[test]
fn all_targets_open_fails_fast() {
    let (primary, fallback, gw) = failing_chain();
    let mut client = client(&gw);
    for _ in 0..2 {
        let response = chat_on(&mut client);
        assert_eq!(response.status, 502, "{}", response.text());
    }
    assert_eq!((requests(&primary), requests(&fallback)), (2, 2));

    let started = Instant::now();
    let response = chat_on(&mut client);
    let elapsed = started.elapsed();
    assert_eq!(response.status, 503, "{}", response.text());
    let retry_after: u64 = response
        .header("retry-after")
        .expect("retry-after header")
        .parse()
        .expect("retry-after in seconds");
    assert!((1..=5).contains(&retry_after), "retry-after {retry_after}");
    let body = response.json();
    assert_eq!(body["error"]["code"], "all_targets_unavailable");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("unavailable"), "{message}");
    assert_eq!(response.header("x-switchyard-attempts"), None);
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
    assert_eq!((requests(&primary), requests(&fallback)), (2, 2));
    let fail_fast: u64 = gw
        .control
        .snapshots()
        .iter()
        .flat_map(|s| &s.routes)
        .map(|(_, c)| c.fail_fast)
        .sum();
    assert_eq!(fail_fast, 1);
    gw.shutdown();
}

// 10. Everything failed: 502 listing each attempt, and no secret in sight.
#[test]
fn exhausted_chain_lists_attempts_without_secrets() {
    const SECRET: &str = "sk-test-SECRET-4f1c2b9e";
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(503));
    fallback.set_fault(fault_status(500));
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n  \
         primary: {{ kind: openai-compatible, base_url: \"{}\", api_key: \"${{PROVIDER_KEY}}\" }}\n  \
         fallback: {{ kind: openai-compatible, base_url: \"{}\", api_key: \"${{PROVIDER_KEY}}\" }}\n\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      \
         - {{ provider: primary, model: primary-model, priority: 0 }}\n      \
         - {{ provider: fallback, model: fallback-model, priority: 1 }}\n    \
         retry: {{ attempts: 1 }}\n",
        primary.base_url(),
        fallback.base_url()
    );
    let gw = start(config_with_env(&yaml, &[("PROVIDER_KEY", SECRET)]));
    let response = chat(gw.addr());
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(response.header("x-switchyard-attempts"), Some("2"));
    let body = response.json();
    assert_eq!(body["error"]["code"], "upstream_failed");
    let attempts = body["error"]["attempts"].as_array().expect("attempt list");
    let summary: Vec<(&str, &str, u64)> = attempts
        .iter()
        .map(|a| {
            (
                a["target"].as_str().unwrap_or(""),
                a["class"].as_str().unwrap_or(""),
                a["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("primary/primary-model", "server_error", 503),
            ("fallback/fallback-model", "server_error", 500)
        ]
    );
    // The key was really configured (the provider got it), yet the client never sees it.
    let auth = fallback
        .last_request()
        .unwrap()
        .header("authorization")
        .map(str::to_string);
    assert_eq!(auth.as_deref(), Some(format!("Bearer {SECRET}").as_str()));
    let text = response.text();
    assert!(!text.contains(SECRET), "secret leaked: {text}");
    assert!(!text.contains("sk-test"), "secret leaked: {text}");
    assert!(!response.headers.iter().any(|(_, v)| v.contains(SECRET)));
    gw.shutdown();
}

// 11. A breaker tripped on one shard keeps the other shard off the target too (it is
//     the same breaker: shard 1 sees it at its next look, the wait below is slack).
#[test]
fn an_open_breaker_propagates_to_the_other_shard() {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(503));
    let mut yaml = chain_yaml(
        &[("primary", &primary), ("fallback", &fallback)],
        "retry: { attempts: 1 }",
        "health: { consecutive_failures: 3, min_requests: 1000, cooldown: 10s }\n\
         admin: { listen: 127.0.0.1:0 }\n",
    );
    yaml = yaml.replace("shards: 1\n", "shards: 2\n");
    let gw = gateway(&yaml);
    let mut clients = connection_per_shard(gw.addr(), 2);
    let label = "primary/primary-model";

    for _ in 0..3 {
        let response = chat_on(&mut clients[0]);
        assert_eq!(shard_of(&response), 0);
        assert_eq!(target_of(&response), "fallback/fallback-model");
    }
    let tripped = Instant::now();
    assert_eq!(requests(&primary), 3);

    // Shard 1 never saw a failure, yet it avoids the target.
    let mut views = Vec::new();
    let propagated = wait_until(Duration::from_millis(300), || {
        views = gw.control.snapshots();
        views.len() == 2
            && views.iter().all(|s| {
                s.targets
                    .iter()
                    .any(|t| t.label == label && t.retry_in.is_some())
            })
    });
    let after = tripped.elapsed();
    assert!(propagated, "after {after:?} the shards see: {views:#?}");
    let peer = views[1].targets.iter().find(|t| t.label == label).unwrap();
    assert_eq!(peer.window_failures, 0, "shard 1 saw no failure itself");
    assert!(matches!(
        views[0]
            .targets
            .iter()
            .find(|t| t.label == label)
            .unwrap()
            .breaker,
        BreakerState::Open { .. }
    ));

    // The admin view says the same for each shard.
    let targets = admin_get(&gw, "/admin/targets").json();
    let entry = targets["targets"]
        .as_array()
        .and_then(|list| list.iter().find(|t| t["target"] == label))
        .cloned()
        .expect("primary in /admin/targets");
    assert_eq!(entry["available"], false, "{entry}");
    let shards = entry["shards"].as_array().expect("per-shard views");
    assert_eq!(shards.len(), 2, "{entry}");
    for view in shards {
        assert!(view["retry_in_ms"].as_u64().is_some(), "{entry}");
        assert_eq!(view["available"], false, "{entry}");
    }

    // A request on shard 1 goes straight to the fallback.
    let response = chat_on(&mut clients[1]);
    assert_eq!(shard_of(&response), 1);
    assert_served_by(&response, "fallback/fallback-model");
    assert_eq!(response.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(requests(&primary), 3, "shard 1 avoided the target");
    gw.shutdown();
}

// 12. A fallback's answer is accounted to the fallback; failures show in /metrics.
#[test]
fn fallback_answers_and_metrics_are_accounted() {
    let (_primary, fallback, gw) = primary_down_chain("admin: { listen: 127.0.0.1:0 }\n");
    let response = chat(gw.addr());
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-switchyard-fallback"), Some("true"));
    let body = response.json();
    assert_eq!(body["model"], "fallback-model");
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("");
    assert!(content.starts_with("Hello from fallback:"), "{content}");
    // The mock's usage: prompt = ceil(request bytes / 4), completion = one per word.
    let sent = fallback.last_request().unwrap().body.len() as u64;
    let prompt = sent.div_ceil(4);
    assert_eq!(body["usage"]["prompt_tokens"], prompt);
    assert_eq!(body["usage"]["completion_tokens"], 8);

    let metrics = admin_get(&gw, "/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    let series = |s: &str| metric(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert!(
        series(
            r#"switchyard_attempts_total{target="primary/primary-model",shard="0",outcome="server_error"}"#
        ) > 0.0
    );
    assert_eq!(
        series(
            r#"switchyard_attempts_total{target="fallback/fallback-model",shard="0",outcome="success"}"#
        ),
        1.0
    );
    assert!(series(r#"switchyard_fallbacks_total{route="chat"}"#) > 0.0);
    assert_eq!(
        series(r#"switchyard_tokens_in_total{target="fallback/fallback-model",shard="0"}"#),
        prompt as f64
    );
    assert_eq!(
        series(r#"switchyard_tokens_in_total{target="primary/primary-model",shard="0"}"#),
        0.0
    );
    gw.shutdown();
}
