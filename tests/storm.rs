//! A connection storm against one healthy upstream with a tiny accept backlog, with
//! 1 and 2 shards (issue: two of six storms took a healthy single-target route
//! offline). 256 clients each send one request at once. The upstream's accept queue
//! (backlog 2) is full and its accept loop stalled at first, so the kernel really
//! drops the gateway's SYNs and each connect waits for a SYN retransmit (about 1 s);
//! then the upstream recovers and accepts everything. The gateway must queue on its
//! pool (at most 16 connects in flight per provider per shard), outlast the
//! retransmit with its connect timeout (3 s by default) and serve every client
//! without a failed attempt or a breaker transition.
//!
//! Real sockets on 127.0.0.1, the gateway's default timeouts and health settings;
//! every loop bounded in time and count; counts asserted, never timings. Connects in
//! flight are counted on the upstream's side from the kernel's socket table:
//! `SYN_SENT` sockets whose peer is the upstream's port. Open connections are not
//! bounded by 16 (a connect that completes lets the next queued request start one,
//! up to `max_connections`), so the upstream's peak of connections serving at once
//! is reported, not asserted.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::*;
use loadtest::client::{chat_body, Client, HttpResponse};
use switchyard::gateway::Gateway;

/// Clients opened at once, one request each.
const CLIENTS: usize = 256;
/// New upstream connections one shard opens at once (`upstream::pool::MAX_CONNECTING`).
const CONNECTING_PER_SHARD: usize = 16;
/// The upstream's listen backlog: the kernel queues this many + 1 handshakes.
const BACKLOG: i32 = 2;
/// The backlog once the upstream accepts: room for every shard's connects at once.
/// (Kept at [`BACKLOG`], the handshakes completing together overflow the 3-slot
/// queue; with SYN cookies the gateway's side counts them connected, and their
/// requests wait on data retransmits with exponential backoff, some past the
/// 15 s first-byte timeout: a kernel limit, not the storm this test is about.)
const RECOVERED_BACKLOG: i32 = 256;
/// How long the upstream keeps not accepting once the storm's SYNs are being dropped.
/// Well under the 1 s SYN retransmit, so the retransmits find room.
const STALL_AFTER_DROPS: Duration = Duration::from_millis(300);
/// The most it stalls from the storm's start when no dropped SYN is ever seen.
const MAX_STALL: Duration = Duration::from_millis(800);
/// Longest any upstream thread lives.
const LIFETIME: Duration = Duration::from_secs(90);
const TARGET: &str = "storm/m";

#[derive(Default)]
struct Counts {
    /// Connections accepted.
    accepted: AtomicUsize,
    /// Connections that carried a request and are still open.
    serving: AtomicUsize,
    peak_serving: AtomicUsize,
    requests: AtomicUsize,
    /// Most `SYN_SENT` sockets towards the upstream seen at once.
    peak_syn_sent: AtomicUsize,
    /// Socket-table samples taken while the storm ran.
    samples: AtomicUsize,
}

/// A healthy OpenAI-compatible upstream behind a listener with backlog [`BACKLOG`]
/// whose accept loop does not run until [`StormUpstream::storm_begins`] and then
/// stalls until dropped SYNs were seen (plus [`STALL_AFTER_DROPS`]); from then on it
/// accepts everything, with backlog [`RECOVERED_BACKLOG`].
struct StormUpstream {
    addr: SocketAddr,
    counts: Arc<Counts>,
    /// Set by the storm's start; the accept loop and the sampler run from then.
    storm_start: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl StormUpstream {
    fn start() -> StormUpstream {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        socket.bind(&addr.into()).expect("bind upstream");
        socket.listen(BACKLOG).expect("listen");
        let listener: TcpListener = socket.into();
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let counts = Arc::new(Counts::default());
        let storm_start = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let first_drop = Arc::new(Mutex::new(None::<Instant>));
        {
            let (counts, storm_start, stop, first_drop) = (
                counts.clone(),
                storm_start.clone(),
                stop.clone(),
                first_drop.clone(),
            );
            std::thread::spawn(move || {
                sample_syn_sent(addr.port(), &counts, &storm_start, &stop, &first_drop)
            });
        }
        {
            let (counts, storm_start, stop) = (counts.clone(), storm_start.clone(), stop.clone());
            std::thread::spawn(move || {
                accept_loop(listener, &counts, &storm_start, &stop, &first_drop)
            });
        }
        StormUpstream {
            addr,
            counts,
            storm_start,
            stop,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn storm_begins(&self) {
        *self.storm_start.lock().unwrap() = Some(Instant::now());
    }
}

impl Drop for StormUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn storm_start_of(storm_start: &Mutex<Option<Instant>>) -> Option<Instant> {
    *storm_start.lock().unwrap()
}

/// Counts the kernel's `SYN_SENT` sockets towards `port` (connects waiting for a
/// SYN-ACK) from the storm's start until `stop`, as often as it can: a read of the
/// table takes milliseconds under the storm, a dropped SYN waits about a second.
fn sample_syn_sent(
    port: u16,
    counts: &Counts,
    storm_start: &Mutex<Option<Instant>>,
    stop: &AtomicBool,
    first_drop: &Mutex<Option<Instant>>,
) {
    let until = Instant::now() + LIFETIME;
    let mut rounds = 0usize;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until && rounds < 1_000_000 {
        rounds += 1;
        if storm_start_of(storm_start).is_none() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let syn_sent = syn_sent_towards(port);
        counts.samples.fetch_add(1, Ordering::SeqCst);
        counts.peak_syn_sent.fetch_max(syn_sent, Ordering::SeqCst);
        if syn_sent > 0 {
            first_drop.lock().unwrap().get_or_insert_with(Instant::now);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `SYN_SENT` (state 02) entries of /proc/net/tcp whose remote port is `port`.
fn syn_sent_towards(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|remote| remote.split_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            fields.get(3) == Some(&"02") && remote_port == Some(port)
        })
        .count()
}

/// Accepts nothing until the storm began and its SYNs were dropped for a while,
/// then every connection, each served on its own thread.
fn accept_loop(
    listener: TcpListener,
    counts: &Arc<Counts>,
    storm_start: &Mutex<Option<Instant>>,
    stop: &AtomicBool,
    first_drop: &Mutex<Option<Instant>>,
) {
    let until = Instant::now() + LIFETIME;
    let mut stalled = true;
    let mut rounds = 0usize;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until && rounds < 1_000_000 {
        rounds += 1;
        if stalled {
            let dropped_long_enough =
                (*first_drop.lock().unwrap()).is_some_and(|t| t.elapsed() >= STALL_AFTER_DROPS);
            let stalled_too_long =
                storm_start_of(storm_start).is_some_and(|t| t.elapsed() >= MAX_STALL);
            stalled = !(dropped_long_enough || stalled_too_long);
            if stalled {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            // Recovered: a backlog that takes the retransmitted SYNs at once.
            socket2::SockRef::from(&listener)
                .listen(RECOVERED_BACKLOG)
                .expect("widen the backlog");
        }
        let Ok((tcp, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        counts.accepted.fetch_add(1, Ordering::SeqCst);
        let counts = counts.clone();
        std::thread::spawn(move || serve(tcp, &counts));
    }
}

/// Answers every request on `tcp` with a chat completion until the peer closes.
fn serve(mut tcp: TcpStream, counts: &Counts) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(30)));
    let mut serving = false;
    for _ in 0..10_000 {
        if !read_request(&mut tcp) {
            break;
        }
        if !serving {
            serving = true;
            let now = counts.serving.fetch_add(1, Ordering::SeqCst) + 1;
            counts.peak_serving.fetch_max(now, Ordering::SeqCst);
        }
        counts.requests.fetch_add(1, Ordering::SeqCst);
        if tcp.write_all(&completion()).is_err() {
            break;
        }
    }
    if serving {
        counts.serving.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads one request head and its content-length body; false at EOF or error.
fn read_request(tcp: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match tcp.read(&mut chunk) {
            Ok(n) if n > 0 && buf.len() < 1 << 20 => buf.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match tcp.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
    true
}

fn completion() -> Vec<u8> {
    let body = serde_json::json!({
        "id": "chatcmpl-storm", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
    .to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The kernel's TcpExt `ListenOverflows` + `ListenDrops` (this network namespace).
fn listen_drops() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let [names, values] = lines[..] else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(name, _)| matches!(*name, "ListenOverflows" | "ListenDrops"))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

fn admin_get(gw: &Gateway, path: &str) -> HttpResponse {
    let addr = gw.admin_addr().expect("admin listener configured");
    let mut client = Client::connect(addr).expect("connect to admin");
    client.request("GET", path, &[], b"").expect("admin answer")
}

/// The target's breaker state on every shard, from /admin/targets.
fn breaker_views(gw: &Gateway) -> Vec<String> {
    let targets = admin_get(gw, "/admin/targets").json();
    let entry = targets["targets"]
        .as_array()
        .and_then(|list| list.iter().find(|t| t["target"] == TARGET))
        .cloned()
        .expect("target in /admin/targets");
    entry["shards"]
        .as_array()
        .expect("per-shard views")
        .iter()
        .map(|v| v["breaker"].as_str().unwrap_or("-").to_string())
        .collect()
}

/// Sum over shards of the `metric{target="storm/m",…}` lines whose labels pass `keep`.
fn metric_sum(metrics: &str, metric: &str, keep: impl Fn(&str) -> bool) -> u64 {
    let prefix = format!("{metric}{{target=\"{TARGET}\",");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(labels, _)| keep(labels))
        .filter_map(|(_, n)| n.trim().parse::<u64>().ok())
        .sum()
}

/// `switchyard_attempts_total` of the target summed over shards, by outcome.
fn attempt_outcomes(metrics: &str) -> BTreeMap<String, u64> {
    let mut outcomes = BTreeMap::new();
    for outcome in metrics.lines().filter_map(|l| {
        l.strip_prefix(&format!("switchyard_attempts_total{{target=\"{TARGET}\","))
            .and_then(|rest| rest.split_once("outcome=\""))
            .and_then(|(_, rest)| rest.split_once("\"} "))
    }) {
        let n: u64 = outcome.1.trim().parse().unwrap_or(0);
        if n > 0 {
            *outcomes.entry(outcome.0.to_string()).or_insert(0) += n;
        }
    }
    outcomes
}

/// Opens [`CLIENTS`] connections to the gateway, then sends one chat request on
/// each at once; returns every client's status (0: no answer).
fn storm(addr: SocketAddr, upstream: &StormUpstream) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let client = Client::connect(addr);
                if let Ok(client) = &client {
                    let _ = client.set_read_timeout(Duration::from_secs(30));
                }
                barrier.wait();
                let Ok(mut client) = client else {
                    return 0;
                };
                client
                    .chat(&chat_body("chat", false), &[])
                    .map_or(0, |r| r.status)
            })
        })
        .collect();
    upstream.storm_begins();
    barrier.wait();
    clients.into_iter().map(|c| c.join().unwrap_or(0)).collect()
}

/// One storm at a time: the two tests would otherwise share the CPUs and the
/// kernel's drop counters.
static ONE_STORM: Mutex<()> = Mutex::new(());

fn storm_against_a_tiny_backlog(shards: usize) {
    let _one = ONE_STORM.lock().unwrap_or_else(|e| e.into_inner());
    let upstream = StormUpstream::start();
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: {shards}\nshutdown_grace: 1s\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         providers:\n  storm: {{ kind: openai-compatible, base_url: \"{}\" }}\n\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: storm, model: m }}\n",
        upstream.base_url()
    );
    let gw = gateway(&yaml);
    let drops_before = listen_drops();

    let statuses = storm(gw.addr(), &upstream);
    let drops = listen_drops().saturating_sub(drops_before);

    let counts = &upstream.counts;
    let served = counts.requests.load(Ordering::SeqCst);
    let mut by_status = BTreeMap::new();
    for status in &statuses {
        *by_status.entry(*status).or_insert(0usize) += 1;
    }
    let ok = by_status.get(&200).copied().unwrap_or(0);
    // After the storm every shard still serves the route (an open breaker: 503).
    let after: Vec<u16> = connection_per_shard(gw.addr(), shards)
        .iter_mut()
        .map(|c| {
            c.chat(&chat_body("chat", false), &[])
                .map_or(0, |r| r.status)
        })
        .collect();
    let metrics = admin_get(&gw, "/metrics").text();
    let attempts = attempt_outcomes(&metrics);
    let failures: u64 = attempts
        .iter()
        .filter(|(outcome, _)| *outcome != "success")
        .map(|(_, n)| n)
        .sum();
    let transitions = metric_sum(&metrics, "switchyard_breaker_transitions_total", |_| true);
    let breakers = breaker_views(&gw);
    let peak_syn_sent = counts.peak_syn_sent.load(Ordering::SeqCst);
    let summary = format!(
        "shards {shards}: client answers {by_status:?}, then {after:?}; attempts {attempts:?}, \
         {transitions} breaker transitions, breakers {breakers:?}; upstream: {} requests, \
         {} connections accepted, at most {} serving at once, at most \
         {peak_syn_sent} connects waiting on a SYN-ACK at once ({} samples); \
         ListenOverflows+ListenDrops +{drops}",
        served,
        counts.accepted.load(Ordering::SeqCst),
        counts.peak_serving.load(Ordering::SeqCst),
        counts.samples.load(Ordering::SeqCst),
    );
    eprintln!("{summary}");

    // The storm was real: the kernel dropped the gateway's SYNs.
    assert!(
        peak_syn_sent >= 1,
        "no connect ever waited on a dropped SYN: {summary}"
    );
    assert!(drops >= 1, "the kernel counted no dropped SYN: {summary}");
    // Served: every client got its answer, each from one upstream request.
    assert_eq!(ok, CLIENTS, "{summary}");
    assert_eq!(served, CLIENTS, "{summary}");
    // Healthy: no failed attempt, the breaker never left closed on any shard, and
    // the route still answers afterwards.
    assert_eq!(failures, 0, "{summary}");
    assert_eq!(transitions, 0, "{summary}");
    assert_eq!(breakers, vec!["closed".to_string(); shards], "{summary}");
    assert_eq!(after, vec![200; shards], "{summary}");
    // Bounded: at most 16 connects in flight per shard.
    assert!(
        peak_syn_sent <= CONNECTING_PER_SHARD * shards,
        "more connects in flight than 16 per shard: {summary}"
    );
    gw.shutdown();
}

#[test]
fn a_connection_storm_on_a_tiny_backlog_is_served_one_shard() {
    storm_against_a_tiny_backlog(1);
}

#[test]
fn a_connection_storm_on_a_tiny_backlog_is_served_two_shards() {
    storm_against_a_tiny_backlog(2);
}
