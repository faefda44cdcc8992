//! Regression tests for the hardening defects (issue 11): a hostile or careless
//! upstream, a client that never reads, anonymous uploads. Each upstream here is a
//! scripted raw socket server on 127.0.0.1 so the test controls every byte.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use loadtest::client::{chat_body, Client};

/// Longest any scripted upstream thread lives.
const SERVER_LIFETIME: Duration = Duration::from_secs(60);

/// A raw upstream: every accepted connection is handed to `script` with its
/// index (0, 1, ...) on its own thread.
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl RawUpstream {
    fn start(script: impl Fn(usize, &mut TcpStream) + Send + Sync + 'static) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let (count, done) = (accepted.clone(), closed.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + SERVER_LIFETIME;
            listener.set_nonblocking(true).expect("nonblocking");
            while Instant::now() < until {
                let Ok((mut tcp, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let index = count.fetch_add(1, Ordering::SeqCst);
                let (script, done) = (script.clone(), done.clone());
                std::thread::spawn(move || {
                    let _ = tcp.set_nonblocking(false);
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(20)));
                    let _ = tcp.set_write_timeout(Some(Duration::from_secs(20)));
                    script(index, &mut tcp);
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        RawUpstream {
            addr,
            accepted,
            closed,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Reads one request head and its content-length body; `None` at EOF or error.
fn read_request(tcp: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tcp.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = tcp.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + length].to_vec())
}

fn completion(text: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "id": "chatcmpl-raw", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
    .to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn sse_head() -> &'static [u8] {
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
}

fn sse_chunk(data: &str) -> Vec<u8> {
    let event = format!("data: {data}\n\n");
    format!("{:x}\r\n{event}\r\n", event.len()).into_bytes()
}

fn content_event(text: &str) -> String {
    serde_json::json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}}]})
    .to_string()
}

fn answer_of(response: &loadtest::client::HttpResponse) -> String {
    response.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn one_target_yaml(base_url: &str, route_extra: &str, top_extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 1s\nproviders:\n  raw: {{ kind: openai-compatible, base_url: \"{base_url}\" }}\n\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: raw, model: m }}\n{route_extra}{top_extra}"
    )
}

/// An upstream that answers the first request on each connection with `head` and
/// then up to `pieces` copies of `piece`, `pause` apart, for at most 30 s or until
/// the gateway stops taking them.
fn streaming_upstream(
    head: &'static [u8],
    piece: Vec<u8>,
    pieces: usize,
    pause: Duration,
) -> RawUpstream {
    RawUpstream::start(move |_, tcp| {
        if read_request(tcp).is_none() || tcp.write_all(head).is_err() {
            return;
        }
        let until = Instant::now() + Duration::from_secs(30);
        for _ in 0..pieces {
            if Instant::now() >= until || tcp.write_all(&piece).is_err() {
                return;
            }
            std::thread::sleep(pause);
        }
    })
}

/// A `chat` route over `first` (priority 0) and the mock `good` (priority 1).
fn two_target_yaml(
    first: &str,
    good: &loadtest::mock::MockHandle,
    top_extra: &str,
    route_extra: &str,
) -> String {
    format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 1s\n{top_extra}providers:\n  first: {{ kind: openai-compatible, base_url: \"{first}\" }}\n{}\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: first, model: m, priority: 0 }}\n      - {{ provider: good, model: g, priority: 1 }}\n{route_extra}",
        provider("good", good)
    )
}

/// A client that waits up to 20 s for its answer, and how long it took.
fn timed_chat(addr: SocketAddr, stream: bool) -> (loadtest::client::HttpResponse, Duration) {
    let mut client = Client::connect(addr).expect("connect");
    client
        .set_read_timeout(Duration::from_secs(20))
        .expect("timeout");
    let started = Instant::now();
    let response = client
        .chat(&chat_body("chat", stream), &[])
        .expect("an answer");
    (response, started.elapsed())
}

/// Bytes an upstream writes after a complete answer on a keep-alive socket are
/// never read as the next request's answer: the socket is closed, the next request
/// goes out on a fresh one.
#[test]
fn surplus_bytes_after_an_answer_never_reach_the_next_client() {
    let upstream = RawUpstream::start(|index, tcp| {
        if index == 0 {
            if read_request(tcp).is_none() {
                return;
            }
            let _ = tcp.write_all(&completion("first"));
            std::thread::sleep(Duration::from_millis(100));
            // Another tenant's answer, unasked for.
            let _ = tcp.write_all(&completion("LEAKED"));
            std::thread::sleep(Duration::from_secs(3));
            return;
        }
        while read_request(tcp).is_some() {
            let _ = tcp.write_all(&completion("fresh"));
        }
    });
    let gateway = gateway(&one_target_yaml(&upstream.base_url(), "", ""));
    assert_eq!(answer_of(&chat(gateway.addr())), "first");
    std::thread::sleep(Duration::from_millis(400));
    for _ in 0..3 {
        let response = chat(gateway.addr());
        assert_eq!(response.status, 200);
        assert_eq!(answer_of(&response), "fresh", "{}", response.text());
    }
    assert_eq!(
        upstream.accepted(),
        2,
        "the poisoned socket was replaced once"
    );
}

/// An idle upstream that says `408` and closes (a benign keep-alive timeout) is not
/// an answer to the next request.
#[test]
fn an_idle_408_and_close_is_not_the_next_answer() {
    let upstream = RawUpstream::start(|index, tcp| {
        if read_request(tcp).is_none() {
            return;
        }
        let _ = tcp.write_all(&completion(&format!("answer {index}")));
        if index == 0 {
            std::thread::sleep(Duration::from_millis(100));
            let _ = tcp.write_all(
                b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            );
            return;
        }
        while read_request(tcp).is_some() {
            let _ = tcp.write_all(&completion("more"));
        }
    });
    let gateway = gateway(&one_target_yaml(&upstream.base_url(), "", ""));
    assert_eq!(answer_of(&chat(gateway.addr())), "answer 0");
    std::thread::sleep(Duration::from_millis(400));
    let second = chat(gateway.addr());
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(answer_of(&second), "answer 1");
}

/// A provider that stops reading an 8 MB upload: the upload is bounded by the
/// route's total deadline, and the request falls back instead of hanging.
#[test]
fn an_upstream_that_never_reads_the_body_times_out_and_falls_back() {
    let stuck = RawUpstream::start(|_, _tcp| {
        std::thread::sleep(Duration::from_secs(30));
    });
    let good = mock("good");
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 1s\nlimits: {{ max_body_bytes: 16777216 }}\nproviders:\n  stuck: {{ kind: openai-compatible, base_url: \"{}\" }}\n{}\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: stuck, model: m, priority: 0 }}\n      - {{ provider: good, model: g, priority: 1 }}\n    timeouts: {{ total: 5s, first_byte: 2s }}\n",
        stuck.base_url(),
        provider("good", &good)
    );
    let gateway = gateway(&yaml);
    let padding = "x".repeat(8 * 1024 * 1024);
    let body =
        serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": padding}]})
            .to_string();
    let mut client = Client::connect(gateway.addr()).expect("connect");
    client
        .set_read_timeout(Duration::from_secs(25))
        .expect("timeout");
    let writer = {
        let mut raw = client.try_clone_stream();
        std::thread::spawn(move || {
            let request = loadtest::client::encode_request(
                "POST",
                "/v1/chat/completions",
                &[("content-type", "application/json")],
                body.as_bytes(),
            );
            let _ = raw.write_all(&request);
        })
    };
    let started = Instant::now();
    let response = client.read_response(|_| {}).expect("an answer, not a hang");
    let _ = writer.join();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-switchyard-target"), Some("good/g"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered after {:?}",
        started.elapsed()
    );
}

/// An endless stream of events before any content (empty role deltas) is capped:
/// the attempt fails over before the client sees a byte, and a counter says why.
#[test]
fn a_flood_of_empty_events_before_content_is_capped() {
    let empty = sse_chunk(r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant"}}]}"#);
    let burst: Vec<u8> = empty
        .iter()
        .copied()
        .cycle()
        .take(empty.len() * 512)
        .collect();
    let flood = streaming_upstream(sse_head(), burst, 2_000, Duration::ZERO);
    let good = mock("good");
    let top = "limits: { max_stream_buffer_bytes: 262144 }
admin: { listen: 127.0.0.1:0 }
";
    let yaml = two_target_yaml(&flood.base_url(), &good, top, "");
    let gateway = gateway(&yaml);
    let response = chat_stream(gateway.addr());
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-switchyard-target"), Some("good/g"));
    let metrics = admin_get(&gateway, "/metrics");
    let overflows = metric(
        &metrics,
        "switchyard_stream_buffer_overflows_total{target=\"first/m\"",
    );
    assert!(overflows >= 1.0, "{metrics}");
}

/// With continuation on, the text kept for it stops at the cap: the stream is
/// relayed in full, and when it then breaks it ends with an error instead of a
/// continuation built from a partial copy.
#[test]
fn continuation_text_past_the_cap_is_dropped_not_kept() {
    // 200 content events, then cut mid-answer: no finish, no [DONE].
    let piece = sse_chunk(&content_event(&"word ".repeat(200)));
    let big = streaming_upstream(sse_head(), piece, 200, Duration::ZERO);
    let good = mock("good");
    let top = "limits: { max_stream_buffer_bytes: 65536 }
admin: { listen: 127.0.0.1:0 }
";
    let route = "    stream: { continue_after_commit: true }
";
    let yaml = two_target_yaml(&big.base_url(), &good, top, route);
    let gateway = gateway(&yaml);
    let response = chat_stream(gateway.addr());
    assert_eq!(response.status, 200);
    let events = response.sse_data();
    assert!(events.len() >= 200, "every content event was relayed");
    assert!(
        events
            .iter()
            .any(|e| e.contains("upstream_stream_interrupted")),
        "the cut stream ends with an error event"
    );
    assert_eq!(
        good.stats().requests,
        0,
        "no continuation from a dropped copy"
    );
    let metrics = admin_get(&gateway, "/metrics");
    let overflows = metric(
        &metrics,
        "switchyard_stream_buffer_overflows_total{target=\"first/m\"",
    );
    assert_eq!(overflows, 1.0, "{metrics}");
}

/// Clients that stop reading an endless stream do not pin the provider's
/// connections past their write deadline, and nothing counts against the provider.
#[test]
fn clients_that_stop_reading_release_their_upstream() {
    let piece = sse_chunk(&content_event(&"z".repeat(16 * 1024)));
    let endless = streaming_upstream(sse_head(), piece, usize::MAX, Duration::ZERO);
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 1s\nlimits: {{ client_write_timeout: 1s }}\nadmin: {{ listen: 127.0.0.1:0 }}\nproviders:\n  endless: {{ kind: openai-compatible, base_url: \"{}\", max_connections: 2 }}\n\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: endless, model: m }}\n    timeouts: {{ total: 30s }}\n",
        endless.base_url()
    );
    let gateway = gateway(&yaml);
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut client = Client::connect(gateway.addr()).expect("connect");
        let request = loadtest::client::encode_request(
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            chat_body("chat", true).as_bytes(),
        );
        client.send_raw(&request).expect("send");
        stalled.push(client); // never read
    }
    assert!(
        wait_until(Duration::from_secs(15), || endless.closed() >= 2),
        "both upstream connections were released ({} closed)",
        endless.closed()
    );
    let targets = admin_get(&gateway, "/admin/targets");
    assert!(
        targets.contains("\"closed\""),
        "breaker stays closed: {targets}"
    );
    drop(stalled);
}

/// On the legacy driver, a provider that always has data ready still cannot run a
/// stream past the route's total deadline.
#[test]
fn legacy_driver_keeps_the_total_deadline_on_an_endless_stream() {
    let piece = sse_chunk(&content_event("tick "));
    let endless = streaming_upstream(sse_head(), piece, usize::MAX, Duration::ZERO);
    let yaml = one_target_yaml(
        &endless.base_url(),
        "    timeouts: { first_byte: 1s, total: 2s }\n",
        "driver: legacy\n",
    );
    let gateway = gateway(&yaml);
    let (response, took) = timed_chat(gateway.addr(), true);
    assert!(took < Duration::from_secs(15), "ended after {took:?}");
    let events = response.sse_data();
    assert!(events.last().is_some_and(|e| e == "[DONE]"), "ends cleanly");
}

/// On the legacy driver an endless run of `100 Continue` heads cannot outlast the
/// first-byte deadline.
#[test]
fn legacy_driver_keeps_the_first_byte_deadline_on_endless_1xx() {
    let interim = b"HTTP/1.1 100 Continue

"
    .to_vec();
    let chatty = streaming_upstream(b"", interim, usize::MAX, Duration::ZERO);
    let yaml = one_target_yaml(
        &chatty.base_url(),
        "    timeouts: { first_byte: 1s, total: 10s }\n",
        "driver: legacy\n",
    );
    let gateway = gateway(&yaml);
    let (response, took) = timed_chat(gateway.addr(), false);
    assert!(response.status >= 500, "{}", response.text());
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
}

/// Bodies are read only after the key checks out: an anonymous upload is answered
/// 401 on its head, and no `100 Continue` invites it.
#[test]
fn anonymous_uploads_are_refused_before_their_body() {
    let good = mock("good");
    let yaml = format!(
        "{}keys:\n  - {{ name: team, key: sk-team }}\n",
        chain_yaml(&[("good", &good)], "", "")
    );
    let gateway = gateway(&yaml);
    let mut client = Client::connect(gateway.addr()).expect("connect");
    client
        .set_read_timeout(Duration::from_secs(5))
        .expect("timeout");
    client
        .send_raw(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: 10485760\r\n\r\n",
        )
        .expect("head");
    let response = client.read_response(|_| {}).expect("401 on the head");
    assert_eq!(response.status, 401, "{}", response.text());
    assert_eq!(response.header("connection"), Some("close"));
    // A small body with a wrong key is skipped and the connection lives on.
    let mut client = Client::connect(gateway.addr()).expect("connect");
    let body = chat_body("chat", false);
    let refused = client
        .chat(&body, &[("authorization", "Bearer sk-wrong")])
        .expect("401");
    assert_eq!(refused.status, 401);
    let served = client
        .chat(&body, &[("authorization", "Bearer sk-team")])
        .expect("same connection");
    assert_eq!(served.status, 200);
    // An authenticated one with a body still works, 100-continue included.
    let mut client = Client::connect(gateway.addr()).expect("connect");
    let body = chat_body("chat", false);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-team\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    client.send_raw(head.as_bytes()).expect("head");
    let mut interim = [0u8; 25];
    client.read_exact_raw(&mut interim).expect("100 continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.send_raw(body.as_bytes()).expect("body");
    assert_eq!(client.read_response(|_| {}).expect("answer").status, 200);
}

/// A full connection cap is the gateway's limit: it never opens the breaker of a
/// healthy provider.
#[test]
fn pool_exhaustion_does_not_count_against_the_provider() {
    let slow = RawUpstream::start(|_, tcp| {
        while read_request(tcp).is_some() {
            std::thread::sleep(Duration::from_millis(1500));
            let _ = tcp.write_all(&completion("slow"));
        }
    });
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 1s\nadmin: {{ listen: 127.0.0.1:0 }}\nhealth: {{ consecutive_failures: 2, min_requests: 2 }}\nproviders:\n  slow: {{ kind: openai-compatible, base_url: \"{}\", max_connections: 1 }}\n\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: slow, model: m }}\n    timeouts: {{ connect: 200ms }}\n",
        slow.base_url()
    );
    let gateway = gateway(&yaml);
    let addr = gateway.addr();
    let handles: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || chat(addr).status))
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap_or(0)).collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().any(|s| *s != 200),
        "some hit the cap: {statuses:?}"
    );
    let targets = admin_get(&gateway, "/admin/targets");
    assert!(
        targets.contains("\"closed\""),
        "breaker stays closed: {targets}"
    );
    let metrics = admin_get(&gateway, "/metrics");
    let local = metric(
        &metrics,
        "switchyard_attempts_total{target=\"slow/m\",shard=\"0\",outcome=\"local_limit\"",
    );
    assert!(local >= 1.0, "{metrics}");
    let connect = metric(
        &metrics,
        "switchyard_attempts_total{target=\"slow/m\",shard=\"0\",outcome=\"connect\"",
    );
    assert_eq!(connect, 0.0, "{metrics}");
}

/// A waiter for a full pool proceeds when a connection frees, even after other
/// waiters ahead of it gave up.
#[test]
fn a_waiter_is_woken_when_a_connection_frees_after_others_gave_up() {
    let slow = RawUpstream::start(|_, tcp| {
        while read_request(tcp).is_some() {
            std::thread::sleep(Duration::from_millis(1000));
            let _ = tcp.write_all(&completion("done"));
        }
    });
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 1s\nproviders:\n  slow: {{ kind: openai-compatible, base_url: \"{}\", max_connections: 1 }}\n\
         routes:\n  - name: impatient\n    match: {{ model: impatient }}\n    targets:\n      - {{ provider: slow, model: m }}\n    timeouts: {{ connect: 100ms }}\n    retry: {{ attempts: 1 }}\n\
         \x20 - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: slow, model: m }}\n    timeouts: {{ connect: 30s, total: 60s }}\n",
        slow.base_url()
    );
    let gateway = gateway(&yaml);
    let addr = gateway.addr();
    let holder = std::thread::spawn(move || chat(addr).status);
    std::thread::sleep(Duration::from_millis(200));
    let impatient: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr).expect("connect");
                client
                    .chat(&chat_body("impatient", false), &[])
                    .map(|r| r.status)
                    .unwrap_or(0)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let patient = std::thread::spawn(move || chat(addr).status);
    for h in impatient {
        let _ = h.join();
    }
    assert_eq!(holder.join().unwrap_or(0), 200);
    assert_eq!(patient.join().unwrap_or(0), 200);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the patient waiter ran at its own connect deadline: {:?}",
        started.elapsed()
    );
}

/// `/v1/models` and the 404 list only the models the caller's key may use.
#[test]
fn model_lists_show_only_what_the_key_may_use() {
    let good = mock("good");
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 1s\nkeys:\n  - {{ name: a, key: sk-a }}\n  - {{ name: b, key: sk-b }}\nproviders:\n{}\
         routes:\n  - name: shared\n    match: {{ model: shared }}\n    targets:\n      - {{ provider: good, model: g }}\n\
         \x20 - name: secret\n    match: {{ model: secret-b, keys: [b] }}\n    targets:\n      - {{ provider: good, model: g }}\n",
        provider("good", &good)
    );
    let gateway = gateway(&yaml);
    let mut client = Client::connect(gateway.addr()).expect("connect");
    let models = client
        .request(
            "GET",
            "/v1/models",
            &[("authorization", "Bearer sk-a")],
            b"",
        )
        .expect("models");
    assert!(models.text().contains("shared"));
    assert!(!models.text().contains("secret-b"), "{}", models.text());
    let missing = client
        .chat(
            &chat_body("nope", false),
            &[("authorization", "Bearer sk-a")],
        )
        .expect("404");
    assert_eq!(missing.status, 404);
    assert!(!missing.text().contains("secret-b"), "{}", missing.text());
    let models_b = client
        .request(
            "GET",
            "/v1/models",
            &[("authorization", "Bearer sk-b")],
            b"",
        )
        .expect("models");
    assert!(models_b.text().contains("secret-b"));
}

/// A client that hangs up while its request waits on the provider cancels the
/// upstream exchange at once: the provider sees its connection close.
#[test]
fn a_client_hanging_up_cancels_the_upstream_request() {
    let seen = Arc::new(Mutex::new(None::<Instant>));
    let record = seen.clone();
    let silent = RawUpstream::start(move |_, tcp| {
        if read_request(tcp).is_none() {
            return;
        }
        let mut byte = [0u8; 1];
        // Blocks until the gateway closes its side (or the read timeout).
        let _ = tcp.read(&mut byte);
        if let Ok(mut at) = record.lock() {
            *at = Some(Instant::now());
        }
    });
    let yaml = one_target_yaml(
        &silent.base_url(),
        "    timeouts: { first_byte: 20s, total: 30s }\n",
        "",
    );
    let gateway = gateway(&yaml);
    let mut client = Client::connect(gateway.addr()).expect("connect");
    let request = loadtest::client::encode_request(
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        chat_body("chat", false).as_bytes(),
    );
    client.send_raw(&request).expect("send");
    assert!(wait_until(Duration::from_secs(5), || silent.accepted() == 1));
    std::thread::sleep(Duration::from_millis(200));
    let hung_up = Instant::now();
    drop(client);
    assert!(
        wait_until(Duration::from_secs(10), || seen
            .lock()
            .is_ok_and(|s| s.is_some())),
        "the provider's connection was closed"
    );
    let closed_at = seen.lock().ok().and_then(|s| *s).expect("recorded");
    assert!(closed_at.duration_since(hung_up) < Duration::from_secs(8));
}

/// At the end of `shutdown_grace` a stream still open ends with the error event
/// and `[DONE]`, not a cut mid-body.
#[test]
fn streams_open_at_the_end_of_the_grace_end_cleanly() {
    let piece = sse_chunk(&content_event("slow "));
    let slow = streaming_upstream(sse_head(), piece, 100, Duration::from_millis(100));
    let gateway = gateway(&one_target_yaml(&slow.base_url(), "", ""));
    let addr = gateway.addr();
    let reader = std::thread::spawn(move || timed_chat(addr, true).0);
    std::thread::sleep(Duration::from_millis(500));
    gateway.shutdown();
    let response = reader.join().expect("a complete response");
    let events = response.sse_data();
    assert!(
        events
            .iter()
            .any(|e| e.contains("upstream_stream_interrupted")),
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

/// The sum of every sample whose line starts with `prefix`.
fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn admin_get(gateway: &switchyard::gateway::Gateway, path: &str) -> String {
    let addr = gateway.admin_addr().expect("admin listener");
    let mut client = Client::connect(addr).expect("connect admin");
    client
        .request("GET", path, &[], b"")
        .map(|r| r.text())
        .unwrap_or_default()
}

/// A throwaway CA (PEM written to `dir/ca.pem`) and a server config for `localhost`.
fn tls_server(dir: &std::path::Path) -> Arc<rustls::ServerConfig> {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    std::fs::create_dir_all(dir).expect("temp dir");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .expect("server config");
    Arc::new(config)
}

/// What a TLS upstream does on its first connection after the first answer.
#[derive(Clone, Copy)]
enum IdleTls {
    /// Sends a KeyUpdate: a protocol record, not data.
    KeyUpdate,
    /// Sends application data nobody asked for.
    StrayAnswer,
}

fn tls_upstream_yaml(idle: IdleTls) -> (RawUpstream, String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-hardening-tls-{}-{}",
        std::process::id(),
        idle as u8
    ));
    let config = tls_server(&dir);
    let upstream = RawUpstream::start(move |index, tcp| {
        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
            return;
        };
        let Ok(raw) = tcp.try_clone() else { return };
        let mut tls = rustls::StreamOwned::new(conn, raw);
        let mut served = 0;
        while read_request_tls(&mut tls).is_some() {
            served += 1;
            let _ = tls.write_all(&completion(&format!("conn {index} answer {served}")));
            let _ = tls.flush();
            if index == 0 && served == 1 {
                std::thread::sleep(Duration::from_millis(100));
                match idle {
                    IdleTls::KeyUpdate => {
                        let _ = tls.conn.refresh_traffic_keys();
                        let _ = tls.flush();
                    }
                    IdleTls::StrayAnswer => {
                        let _ = tls.write_all(&completion("LEAKED"));
                        let _ = tls.flush();
                    }
                }
            }
        }
    });
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 1s\nproviders:\n  raw: {{ kind: openai-compatible, base_url: \"https://localhost:{}/v1\", ca_file: \"{}\" }}\n\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: raw, model: m }}\n",
        upstream.addr.port(),
        dir.join("ca.pem").display()
    );
    (upstream, yaml, dir)
}

fn read_request_tls(tls: &mut impl Read) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some(buf[end + 4..end + 4 + length].to_vec());
            }
        }
        let n = tls.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A KeyUpdate that arrives while a TLS socket sits idle is handed to rustls and
/// does not cost the socket: the next request reuses it.
#[test]
fn an_idle_tls_key_update_keeps_the_socket() {
    let (upstream, yaml, dir) = tls_upstream_yaml(IdleTls::KeyUpdate);
    let gateway = gateway(&yaml);
    assert_eq!(answer_of(&chat(gateway.addr())), "conn 0 answer 1");
    std::thread::sleep(Duration::from_millis(400));
    let second = chat(gateway.addr());
    assert_eq!(answer_of(&second), "conn 0 answer 2", "{}", second.text());
    assert_eq!(upstream.accepted(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// Application data that arrives on an idle TLS socket poisons it: the next
/// request goes out on a new connection and never sees those bytes.
#[test]
fn idle_tls_application_data_poisons_the_socket() {
    let (upstream, yaml, dir) = tls_upstream_yaml(IdleTls::StrayAnswer);
    let gateway = gateway(&yaml);
    assert_eq!(answer_of(&chat(gateway.addr())), "conn 0 answer 1");
    std::thread::sleep(Duration::from_millis(400));
    let second = chat(gateway.addr());
    assert_eq!(answer_of(&second), "conn 1 answer 1", "{}", second.text());
    assert_eq!(upstream.accepted(), 2);
    let _ = std::fs::remove_dir_all(dir);
}
