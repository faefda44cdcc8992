//! `timeouts.first_token` end to end over real sockets: a stream whose first
//! content comes too late (its head and role-only chunk come at once) falls over
//! to the next target, while the last target that could take the request is never
//! cut. Nothing here asserts a timing: only who served, how many attempts, what
//! each provider saw and what the health and `/admin/targets` record.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::MockHandle;
use switchyard::gateway::Gateway;

const SLOW: &str = "slow/slow-model";
const FALLBACK: &str = "fallback/fallback-model";
const SLOW_TEXT: &str = "slow hello";

/// A provider whose streams send the response head and a role-only chunk at once,
/// then their first content only after `delay`: slow to first token, not silent.
struct SlowFirstToken {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl SlowFirstToken {
    fn start(delay: Duration) -> SlowFirstToken {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || serve(conn, delay, &counter));
            }
        });
        SlowFirstToken { addr, requests }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request (head and `content-length` body), then streams.
fn serve(mut conn: TcpStream, delay: Duration, requests: &AtomicUsize) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let chunk_of = |data: &str| {
        let event = format!("data: {data}\n\n");
        format!("{:x}\r\n{event}\r\n", event.len())
    };
    let delta = |delta: &str, finish: &str| {
        format!(
            r#"{{"id":"chatcmpl-slow","object":"chat.completion.chunk","created":1,"model":"slow-model","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
        )
    };
    let mut opening = String::from("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    opening.push_str(&chunk_of(&delta(
        r#"{"role":"assistant","content":""}"#,
        "null",
    )));
    if conn.write_all(opening.as_bytes()).is_err() {
        return;
    }
    std::thread::sleep(delay);
    let mut rest = chunk_of(&delta(&format!(r#"{{"content":"{SLOW_TEXT}"}}"#), "null"));
    rest.push_str(&chunk_of(&delta("{}", r#""stop""#)));
    rest.push_str(&chunk_of("[DONE]"));
    rest.push_str("0\r\n\r\n");
    // The gateway may have hung up (the attempt was cut): nothing to do then.
    let _ = conn.write_all(rest.as_bytes());
}

/// One route `chat` over `targets` (name, base URL) in priority order, one shard,
/// the admin API on.
fn yaml(targets: &[(&str, String)], route_extra: &str, top_extra: &str) -> String {
    // After `top_extra`, which may go on with more routes.
    let top = format!("{top_extra}\nadmin: {{ listen: 127.0.0.1:0 }}\n");
    chain_yaml_at(targets, route_extra, &top)
}

const FIRST_TOKEN_300MS: &str =
    "retry: { attempts: 1 }\ntimeouts: { first_byte: 8s, first_token: 300ms, total: 20s }";

fn stream(gw: &Gateway) -> HttpResponse {
    let mut client = client(gw);
    client.set_read_timeout(Duration::from_secs(15)).unwrap();
    client
        .chat(&chat_body("chat", true), &[])
        .expect("a complete response")
}

/// The full answer text of `mock`, asked directly.
fn full_text(mock: &MockHandle) -> String {
    let mut client = Client::connect(mock.addr()).expect("connect to mock");
    let response = client
        .chat(&chat_body("direct", false), &[])
        .expect("mock answers");
    response.json()["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

/// `target`'s view on the gateway's only shard in /admin/targets.
fn admin_view(gw: &Gateway, target: &str) -> serde_json::Value {
    let addr = gw.admin_addr().expect("admin listener configured");
    let mut client = Client::connect(addr).expect("connect to admin");
    let targets = client
        .request("GET", "/admin/targets", &[], b"")
        .expect("admin answer")
        .json();
    targets["targets"]
        .as_array()
        .and_then(|list| list.iter().find(|t| t["target"] == target))
        .map(|t| t["shards"][0].clone())
        .unwrap_or_else(|| panic!("{target} in /admin/targets: {targets}"))
}

#[test]
fn a_stream_slow_to_its_first_token_falls_over_to_the_fallback() {
    let slow = SlowFirstToken::start(Duration::from_millis(2500));
    let fallback = mock("fallback");
    let expected = full_text(&fallback);
    let asked_directly = fallback.stats().requests;
    let gw = gateway(&yaml(
        &[("slow", slow.base_url()), ("fallback", fallback.base_url())],
        FIRST_TOKEN_300MS,
        "",
    ));
    let response = stream(&gw);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-switchyard-target"), Some(FALLBACK));
    assert_eq!(response.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(response.header("x-switchyard-fallback"), Some("true"));
    assert_eq!(response.stream_text(), expected);
    assert!(
        !response.text().contains(SLOW_TEXT),
        "nothing of the slow target reached the client"
    );
    assert_eq!(
        slow.requests(),
        1,
        "a timeout never retries the same target"
    );
    assert_eq!(fallback.stats().requests, asked_directly + 1);
    // The cut counts against the slow target's health, like any timeout, and
    // teaches its time to first token nothing (it never came).
    let view = admin_view(&gw, SLOW);
    assert_eq!(view["window_failures"], 1, "{view}");
    assert_eq!(view["ttft_p95_ms"], serde_json::Value::Null, "{view}");
    let served = admin_view(&gw, FALLBACK);
    assert_eq!(served["window_failures"], 0, "{served}");
    assert!(served["ttft_p95_ms"].is_u64(), "{served}");
    gw.shutdown();
    fallback.shutdown();
}

#[test]
fn the_last_target_is_never_cut_by_first_token() {
    let slow = SlowFirstToken::start(Duration::from_millis(800));
    let gw = gateway(&yaml(&[("slow", slow.base_url())], FIRST_TOKEN_300MS, ""));
    let response = stream(&gw);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-switchyard-target"), Some(SLOW));
    assert_eq!(response.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(response.stream_text(), SLOW_TEXT);
    assert_eq!(slow.requests(), 1);
    // Its committed stream is a time-to-first-token sample; one sample is far
    // from the 20 `auto` needs, so `auto` would still be its 10 s floor.
    let view = admin_view(&gw, SLOW);
    assert_eq!(view["window_failures"], 0, "{view}");
    assert!(view["ttft_p95_ms"].is_u64(), "{view}");
    assert_eq!(view["first_token_auto_ms"], 10_000, "{view}");
    gw.shutdown();
}

/// The first target is the last one *remaining* when every target after it has
/// an open breaker: cutting it would leave the request nowhere to go.
#[test]
fn a_target_whose_fallbacks_are_all_open_is_not_cut() {
    let slow = SlowFirstToken::start(Duration::from_millis(800));
    let down = mock("fallback");
    down.set_fault(loadtest::mock::Fault::Refuse);
    // A second route uses the same fallback target alone: one refused request there
    // opens its breaker (one breaker per target, shared by routes).
    let top = "  - name: down\n    match: { model: down }\n    targets: [{ provider: fallback, model: fallback-model }]\n    retry: { attempts: 1 }\nhealth: { consecutive_failures: 1, cooldown: 60s, max_cooldown: 60s }\n";
    let gw = gateway(&yaml(
        &[("slow", slow.base_url()), ("fallback", down.base_url())],
        FIRST_TOKEN_300MS,
        top,
    ));
    let mut client = client(&gw);
    let refused = client
        .chat(&chat_body("down", false), &[])
        .expect("an answer");
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert_eq!(admin_view(&gw, FALLBACK)["breaker"], "open");
    let response = stream(&gw);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-switchyard-target"), Some(SLOW));
    assert_eq!(response.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(response.stream_text(), SLOW_TEXT);
    assert_eq!(slow.requests(), 1);
    gw.shutdown();
    down.shutdown();
}
