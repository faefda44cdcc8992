//! Keys and spend through the real `switchyard run` process: spend kept across a
//! SIGTERM and across a kill -9 (up to the last `state_flush`), a spent budget
//! still spent after a restart, a corrupt spend file moved aside at start, and
//! key rotation by `keys_file` reloads (SIGHUP and `POST /admin/reload`) that
//! drops no request of a kept key and refuses a revoked one at once.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{mock, provider, wait_until};
use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::MockHandle;

const BINARY: &str = env!("CARGO_BIN_EXE_switchyard");

/// Every price is 1000 USD per million tokens: one token costs 1000 micro-dollars,
/// so a request's cost is exactly its reported tokens × 1000.
const MICROS_PER_TOKEN: u64 = 1000;

// ---------------------------------------------------------------------------------
// Harness: a temp dir that outlives the processes, the process itself, requests.
// ---------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sy-keys-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("ephemeral port")
        .port()
}

/// One `switchyard run` process on its own ports, its stderr captured.
struct Process {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Process {
    /// Writes `config(port, admin_port)` to `dir/switchyard.yaml`, starts the
    /// binary on it and waits (bounded) for its READY=1.
    fn start(dir: &Path, config: impl Fn(u16, u16) -> String) -> Process {
        let (port, admin_port) = (free_port(), free_port());
        let config_path = dir.join("switchyard.yaml");
        std::fs::write(&config_path, config(port, admin_port)).unwrap();
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let socket_path = dir.join(format!(
            "notify-{}.sock",
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let notify = UnixDatagram::bind(&socket_path).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut child = Command::new(BINARY)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env("NOTIFY_SOCKET", &socket_path)
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchyard");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut process = Process {
            child,
            logs,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
        };
        process.wait_ready(&notify);
        let _ = std::fs::remove_file(&socket_path);
        process
    }

    fn wait_ready(&mut self, notify: &UnixDatagram) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = notify.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
                {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "switchyard exited at start ({status}):\n{}",
                    self.log_text()
                );
            }
        }
        panic!("no READY=1 within 15 s:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    fn log_count(&self) -> usize {
        self.logs.lock().unwrap().len()
    }

    /// Waits (bounded) for a log line with `needle` after the first `skip` lines.
    fn wait_for_log(&self, skip: usize, needle: &str) -> String {
        let mut found = None;
        let ok = wait_until(Duration::from_secs(10), || {
            found = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .skip(skip)
                .find(|l| l.contains(needle))
                .cloned();
            found.is_some()
        });
        assert!(ok, "no log line with `{needle}`:\n{}", self.log_text());
        found.unwrap()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.child.id());
    }

    /// Sends `sig` and waits (bounded) for the process to exit.
    fn stop_with(mut self, sig: i32) -> ExitStatus {
        self.signal(sig);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "switchyard did not exit within 15 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM: a clean stop, exit code 0.
    fn terminate(self) {
        let logs = self.logs.clone();
        let status = self.stop_with(libc::SIGTERM);
        let text = logs.lock().unwrap().join("\n");
        assert_eq!(status.code(), Some(0), "{status}\n{text}");
    }

    /// One chat request with `key` on a fresh connection.
    fn chat_as(&self, key: &str) -> HttpResponse {
        chat_on(&mut Client::connect(self.addr).expect("connect"), key)
    }

    /// `GET /admin/keys`.
    fn keys(&self) -> serde_json::Value {
        let mut client = Client::connect(self.admin).expect("connect to admin");
        let response = client.request("GET", "/admin/keys", &[], b"").unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    }

    /// Spend of key `name` in micro-dollars, as `/admin/keys` shows it.
    fn spent(&self, name: &str) -> u64 {
        let keys = self.keys();
        let key = keys["keys"]
            .as_array()
            .and_then(|all| all.iter().find(|k| k["name"] == name))
            .unwrap_or_else(|| panic!("no key {name} in {keys}"))
            .clone();
        let usd = key["budget"]["spent_usd"]
            .as_f64()
            .unwrap_or_else(|| panic!("no spent_usd: {key}"));
        (usd * 1e6).round() as u64
    }

    /// Waits (bounded) until `/admin/keys` shows `want` micro-dollars for `name`.
    fn wait_spent(&self, name: &str, want: u64) {
        let mut seen = 0;
        let ok = wait_until(Duration::from_secs(5), || {
            seen = self.spent(name);
            seen == want
        });
        assert!(ok, "{name} spent {seen} µ$, want {want} µ$");
    }

    fn reload_via_admin(&self) {
        let mut client = Client::connect(self.admin).expect("connect to admin");
        let reply = client.request("POST", "/admin/reload", &[], b"").unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["reloaded"], true, "{}", reply.text());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn chat_on(client: &mut Client, key: &str) -> HttpResponse {
    let bearer = format!("Bearer {key}");
    client
        .chat(&chat_body("chat", false), &[("authorization", &bearer)])
        .expect("gateway response")
}

/// What a 200 answer costs at [`MICROS_PER_TOKEN`]: its reported usage × price.
fn cost(response: &HttpResponse) -> u64 {
    assert_eq!(response.status, 200, "{}", response.text());
    let usage = &response.json()["usage"];
    let tokens = usage["prompt_tokens"].as_u64().expect("prompt_tokens")
        + usage["completion_tokens"]
            .as_u64()
            .expect("completion_tokens");
    assert!(tokens > 0, "no usage reported: {usage}");
    tokens * MICROS_PER_TOKEN
}

/// A 2-shard config served by provider `a` (the mock), priced, with an admin
/// listener; `keys` is the YAML from `keys:` or `keys_file:` on, `state` the
/// state_dir/state_flush lines.
fn config(port: u16, admin: u16, mock: &MockHandle, keys: &str, state: &str) -> String {
    format!(
        "listen: 127.0.0.1:{port}\nshards: 2\nshutdown_grace: 2s\nadmin: {{ listen: 127.0.0.1:{admin} }}\n\
         providers:\n{}\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [{{ provider: a, model: a-model }}]\n\
         prices:\n  a/*: {{ input: 1000, output: 1000 }}\n{keys}{state}",
        provider("a", mock)
    )
}

fn state_lines(dir: &Path, flush: &str) -> String {
    format!(
        "state_dir: {}\nstate_flush: {flush}\n",
        dir.join("state").display()
    )
}

const TEAM: &str = "keys:\n  - { name: team, key: sk-team, budget: { usd: 100, period: total } }\n";

/// `spent_micros` of `name` in the spend file, if the file is there and whole.
fn file_spent(dir: &Path, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("state").join("spend.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["keys"]
        .as_array()?
        .iter()
        .find(|k| k["key"] == name)?["spent_micros"]
        .as_u64()
}

// ---------------------------------------------------------------------------------
// Spend across restarts.
// ---------------------------------------------------------------------------------

#[test]
fn spend_survives_sigterm() {
    let dir = TempDir::new("sigterm");
    let a = mock("a");
    // A flush interval far longer than the test: only the shutdown writes.
    let state = state_lines(dir.path(), "1h");
    let make = |port, admin| config(port, admin, &a, TEAM, &state);
    let first = Process::start(dir.path(), make);
    let charged: u64 = (0..3).map(|_| cost(&first.chat_as("sk-team"))).sum();
    assert!(charged > 0);
    first.wait_spent("team", charged);
    first.terminate();
    assert_eq!(
        file_spent(dir.path(), "team"),
        Some(charged),
        "the shutdown wrote the spend"
    );

    let second = Process::start(dir.path(), make);
    assert_eq!(second.spent("team"), charged, "spend lost by a restart");
    let more = cost(&second.chat_as("sk-team"));
    second.wait_spent("team", charged + more);
    second.terminate();
}

#[test]
fn spend_survives_kill_9_within_state_flush() {
    let dir = TempDir::new("kill9");
    let a = mock("a");
    let state = state_lines(dir.path(), "200ms");
    let make = |port, admin| config(port, admin, &a, TEAM, &state);
    let first = Process::start(dir.path(), make);
    let charged: u64 = (0..3).map(|_| cost(&first.chat_as("sk-team"))).sum();
    first.wait_spent("team", charged);
    // What a kill -9 leaves is the last flush: wait until it holds all of it.
    let mut on_disk = None;
    let flushed = wait_until(Duration::from_secs(10), || {
        on_disk = file_spent(dir.path(), "team");
        on_disk == Some(charged)
    });
    assert!(flushed, "spend file shows {on_disk:?}, charged {charged}");
    let status = first.stop_with(libc::SIGKILL);
    assert_eq!(status.code(), None, "killed by a signal: {status}");

    let second = Process::start(dir.path(), make);
    assert_eq!(
        second.spent("team"),
        charged,
        "no request came after the last flush: nothing may be lost"
    );
    // A request charged after the last flush, then kill -9 at once: the next
    // start has at least what was flushed, and at most everything charged.
    let more = cost(&second.chat_as("sk-team"));
    second.wait_spent("team", charged + more);
    second.stop_with(libc::SIGKILL);
    let third = Process::start(dir.path(), make);
    let found = third.spent("team");
    assert!(
        found == charged || found == charged + more,
        "after kill -9: {found} µ$, flushed {charged} µ$, charged {} µ$",
        charged + more
    );
    third.terminate();
}

#[test]
fn a_spent_budget_stays_spent_across_a_restart() {
    let dir = TempDir::new("spent");
    let a = mock("a");
    // One answer (tens of tokens at 1000 µ$ each) spends more than a cent.
    let keys = "keys:\n  - { name: tight, key: sk-tight, budget: { usd: 0.01, period: total } }\n  - { name: other, key: sk-other }\n";
    let state = state_lines(dir.path(), "1h");
    let make = |port, admin| config(port, admin, &a, keys, &state);
    let first = Process::start(dir.path(), make);
    let charged = cost(&first.chat_as("sk-tight"));
    assert!(
        charged >= 10_000,
        "one answer must spend the budget: {charged}"
    );
    first.wait_spent("tight", charged);
    assert_insufficient_quota(&first.chat_as("sk-tight"));
    first.terminate();

    let sent = a.stats().requests;
    let second = Process::start(dir.path(), make);
    assert_insufficient_quota(&second.chat_as("sk-tight"));
    assert_eq!(a.stats().requests, sent, "a spent budget sends nothing");
    let keys = second.keys();
    let tight = keys["keys"]
        .as_array()
        .and_then(|all| all.iter().find(|k| k["name"] == "tight"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(tight["budget"]["exhausted"], true, "{tight}");
    // Another key is not held by it.
    assert_eq!(second.chat_as("sk-other").status, 200);
    second.terminate();
}

fn assert_insufficient_quota(response: &HttpResponse) {
    assert_eq!(response.status, 429, "{}", response.text());
    let error = &response.json()["error"];
    assert_eq!(error["code"], "insufficient_quota", "{error}");
    assert_eq!(response.header("x-should-retry"), Some("false"));
}

#[test]
fn a_corrupt_state_file_is_moved_aside_at_start() {
    let dir = TempDir::new("corrupt");
    let a = mock("a");
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let garbage = b"{\"version\": 1, \"keys\": [{\"key\": \"team\"";
    std::fs::write(state_dir.join("spend.json"), garbage).unwrap();
    let state = state_lines(dir.path(), "1h");
    let first = Process::start(dir.path(), |port, admin| {
        config(port, admin, &a, TEAM, &state)
    });
    let aside: Vec<PathBuf> = std::fs::read_dir(&state_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("spend.json.corrupt-"))
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage, "kept as it was");
    let log = first.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("level=error") && l.contains("spend.json")),
        "the corrupt file is reported as an error with its path:\n{log}"
    );
    assert_eq!(first.spent("team"), 0);
    let charged = cost(&first.chat_as("sk-team"));
    first.wait_spent("team", charged);
    first.terminate();
    assert_eq!(file_spent(dir.path(), "team"), Some(charged));
}

// ---------------------------------------------------------------------------------
// Key rotation through keys_file.
// ---------------------------------------------------------------------------------

fn key_line(name: &str) -> String {
    format!("- {{ name: {name}, key: sk-{name} }}\n")
}

/// What the client thread saw: every status with key A, and transport errors.
struct Traffic {
    statuses: Vec<u16>,
    errors: Vec<String>,
}

/// Sends requests with `sk-alpha` on a keep-alive connection until `stop` (or 20 s,
/// or 5000 requests).
fn alpha_traffic(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Traffic> {
    std::thread::spawn(move || {
        let mut traffic = Traffic {
            statuses: Vec::new(),
            errors: Vec::new(),
        };
        let mut client = Client::connect(addr).expect("connect");
        let body = chat_body("chat", false);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stop.load(Ordering::SeqCst)
            && Instant::now() < deadline
            && traffic.statuses.len() < 5000
        {
            match client.chat(&body, &[("authorization", "Bearer sk-alpha")]) {
                Ok(response) => traffic.statuses.push(response.status),
                Err(e) => {
                    traffic.errors.push(e.to_string());
                    client = Client::connect(addr).expect("reconnect");
                }
            }
        }
        traffic
    })
}

/// Waits (bounded) until the client thread has made `at_least` more requests.
fn wait_requests(served: &MockHandle, at_least: u64) {
    let start = served.stats().requests;
    let ok = wait_until(Duration::from_secs(10), || {
        served.stats().requests >= start + at_least
    });
    assert!(ok, "the client thread made no progress");
}

#[test]
fn keys_file_rotation_drops_no_request() {
    let dir = TempDir::new("rotate");
    let a = mock("a");
    let keys_file = dir.path().join("keys.yaml");
    std::fs::write(&keys_file, key_line("alpha")).unwrap();
    let keys = format!("keys_file: {}\n", keys_file.display());
    let state = state_lines(dir.path(), "1h");
    let gw = Process::start(dir.path(), |port, admin| {
        config(port, admin, &a, &keys, &state)
    });
    assert_eq!(gw.chat_as("sk-beta").status, 401, "beta is not a key yet");

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = alpha_traffic(gw.addr, stop.clone());
    wait_requests(&a, 5);

    // Add beta, reload by SIGHUP: beta works as soon as the reload is logged.
    std::fs::write(&keys_file, key_line("alpha") + &key_line("beta")).unwrap();
    let mark = gw.log_count();
    gw.signal(libc::SIGHUP);
    gw.wait_for_log(mark, "config reloaded");
    for _ in 0..4 {
        let beta = gw.chat_as("sk-beta");
        assert_eq!(beta.status, 200, "beta after the SIGHUP: {}", beta.text());
    }
    wait_requests(&a, 5);

    // Add gamma, reload by the admin API: gamma works once it answers.
    std::fs::write(
        &keys_file,
        key_line("alpha") + &key_line("beta") + &key_line("gamma"),
    )
    .unwrap();
    gw.reload_via_admin();
    for _ in 0..4 {
        let gamma = gw.chat_as("sk-gamma");
        assert_eq!(
            gamma.status,
            200,
            "gamma after the reload: {}",
            gamma.text()
        );
    }
    wait_requests(&a, 5);
    stop.store(true, Ordering::SeqCst);
    let traffic = traffic.join().expect("client thread");
    assert!(
        traffic.errors.is_empty(),
        "connection errors during reloads: {:?}",
        traffic.errors
    );
    let failed: Vec<&u16> = traffic.statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        traffic.statuses.len() >= 15 && failed.is_empty(),
        "{} of {} alpha requests failed: {failed:?}",
        failed.len(),
        traffic.statuses.len()
    );

    // Revoke alpha: its very next request is refused, on a connection opened
    // before the reload as on fresh ones (one or more per shard), with no grace.
    let mut kept_alive: Vec<Client> = (0..4)
        .map(|_| Client::connect(gw.addr).expect("connect"))
        .collect();
    for client in &mut kept_alive {
        assert_eq!(chat_on(client, "sk-alpha").status, 200);
    }
    std::fs::write(&keys_file, key_line("beta") + &key_line("gamma")).unwrap();
    gw.reload_via_admin();
    for client in &mut kept_alive {
        let refused = chat_on(client, "sk-alpha");
        assert_eq!(refused.status, 401, "revoked alpha: {}", refused.text());
        assert_eq!(refused.json()["error"]["code"], "invalid_api_key");
    }
    for _ in 0..4 {
        assert_eq!(gw.chat_as("sk-alpha").status, 401);
    }
    assert_eq!(gw.chat_as("sk-beta").status, 200);
    assert_eq!(gw.chat_as("sk-gamma").status, 200);
    let names: Vec<String> = gw.keys()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap_or("-").to_string())
        .collect();
    assert_eq!(names, ["beta", "gamma"]);
    gw.terminate();
}
