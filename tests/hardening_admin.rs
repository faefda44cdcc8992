//! Hardening of the admin listener and of config errors (issue 11, items 6, 12
//! and 17): a slow or silent admin client never blocks the others and the
//! connection count is capped; a misused `${VAR}` is named, never shown, by
//! `check`, `POST /admin/reload` and the reload log; a public admin listener
//! without a token is refused unless explicitly allowed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use loadtest::client::{Client, HttpResponse};
use loadtest::mock::MockHandle;
use switchyard::admin::{MAX_CONNECTIONS, REQUEST_DEADLINE};

const BINARY: &str = env!("CARGO_BIN_EXE_switchyard");

/// A secret-looking value that must never appear in any output.
const SECRET_VALUE: &str = "sk-live-7c1e55d0a9b34f26";

fn admin_yaml(primary: &MockHandle) -> String {
    format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 1s\nadmin: {{ listen: 127.0.0.1:0 }}\nproviders:\n{}\
         routes:\n  - name: chat\n    targets: [{{ provider: primary, model: m }}]\n",
        provider("primary", primary)
    )
}

/// One admin request on a fresh connection that must be answered within `limit`.
fn admin_call(admin: SocketAddr, method: &str, path: &str, limit: Duration) -> HttpResponse {
    let mut client = Client::connect(admin).expect("connect to admin");
    client.set_read_timeout(limit).expect("read timeout");
    client
        .request(method, path, &[], b"")
        .unwrap_or_else(|e| panic!("{method} {path} not answered within {limit:?}: {e}"))
}

/// Everything the peer sends until it closes, or until `limit` passes.
fn read_until_close(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut chunk = [0u8; 1024];
    // Bounded by the deadline: each read waits at most what is left of it.
    while let Some(left) =
        Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
    {
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A reset is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
    (out, false)
}

// ---------------------------------------------------------------------------------
// Item 6: concurrency, deadlines and the connection cap.
// ---------------------------------------------------------------------------------

#[test]
fn a_slowloris_admin_client_neither_blocks_others_nor_outlives_the_deadline() {
    let primary = mock("primary");
    let gw = gateway(&admin_yaml(&primary));
    let admin = gw.admin_addr().expect("admin listener");

    // An unfinished head, then one byte a second from a helper thread.
    let mut slow = TcpStream::connect(admin).expect("connect");
    let opened = Instant::now();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .expect("write");
    let mut dribble = slow.try_clone().expect("clone");
    let dribbler = std::thread::spawn(move || {
        for _ in 0..12 {
            std::thread::sleep(Duration::from_secs(1));
            if dribble.write_all(b"a").is_err() {
                break;
            }
        }
    });

    // While the slow one is mid-head, other admin requests are answered.
    std::thread::sleep(Duration::from_secs(2));
    for path in ["/admin/targets", "/metrics", "/healthz"] {
        let reply = admin_call(admin, "GET", path, Duration::from_secs(3));
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }

    // The slow one gets 408 and a close once the whole-request deadline passes,
    // although it never went 5 s without sending a byte.
    let (bytes, closed) = read_until_close(&mut slow, REQUEST_DEADLINE + Duration::from_secs(5));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        closed && text.starts_with("HTTP/1.1 408"),
        "after {:?}: closed={closed} {text:?}",
        opened.elapsed()
    );
    let _ = dribbler.join();
    gw.shutdown();
}

#[test]
fn admin_connections_beyond_the_cap_are_refused_at_once_and_slots_come_back() {
    let primary = mock("primary");
    let gw = gateway(&admin_yaml(&primary));
    let admin = gw.admin_addr().expect("admin listener");

    // Silent connections holding every slot (each until its deadline).
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(admin).expect("connect"))
        .collect();
    // One more: refused with 503 at once, not queued behind the silent ones. It
    // sends nothing, so the server's close is a clean FIN the 503 survives.
    let mut extra = TcpStream::connect(admin).expect("connect");
    let started = Instant::now();
    let (bytes, closed) = read_until_close(&mut extra, Duration::from_secs(3));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        closed && text.starts_with("HTTP/1.1 503"),
        "connection {} after {:?}: closed={closed} {text:?}",
        MAX_CONNECTIONS + 1,
        started.elapsed()
    );

    // Closing the silent ones gives their slots back.
    drop(idle);
    let mut last = 0;
    let served = wait_until(Duration::from_secs(3), || {
        last = admin_call(admin, "GET", "/healthz", Duration::from_secs(3)).status;
        last == 200
    });
    assert!(
        served,
        "admin still refusing after the idle ones closed: {last}"
    );
    gw.shutdown();
}

// ---------------------------------------------------------------------------------
// Item 12 and 17 through the real binary.
// ---------------------------------------------------------------------------------

/// A temp directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("sy-hardening-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `switchyard run` with `SECRET` set and its stderr collected; killed on drop.
struct Running {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(config: &Path) -> Running {
        let mut child = Command::new(BINARY)
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("SECRET", SECRET_VALUE)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchyard");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        Running { child, logs }
    }

    fn log_text(&self) -> String {
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// The first log line containing `needle` within `limit`.
    fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let mut found = None;
        let ok = wait_until(limit, || {
            found = self
                .logs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            found.is_some()
        });
        assert!(ok, "no log line with `{needle}`:\n{}", self.log_text());
        found.unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.child.id());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `addr=` of the "admin listening" log line.
fn admin_addr_of(line: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("addr="))
        .and_then(|addr| addr.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no admin address in {line:?}"))
}

/// `switchyard check` on `config` with `SECRET` set: (success, stdout + stderr).
fn check(config: &Path) -> (bool, String) {
    let output = Command::new(BINARY)
        .arg("check")
        .arg("--config")
        .arg(config)
        .env("SECRET", SECRET_VALUE)
        .output()
        .expect("run switchyard check");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn a_misused_variable_is_named_never_shown_by_check_reload_and_the_log() {
    let primary = mock("primary");
    let dir = TempDir::new("secret");
    let config = dir.file("switchyard.yaml");
    // Used rightly (as an api key) the secret is fine.
    let good = admin_yaml(&primary).replace("base_url:", "api_key: \"${SECRET}\", base_url:");
    assert_ne!(good, admin_yaml(&primary));
    std::fs::write(&config, &good).expect("write config");
    let gw = Running::start(&config);
    let admin = admin_addr_of(&gw.wait_for_log("admin listening", Duration::from_secs(10)));
    assert_eq!(
        admin_call(admin, "GET", "/healthz", Duration::from_secs(5)).status,
        200
    );

    // Used where a plain value belongs, every check that rejects it names it.
    let bad = good
        .replace("shards: 1\n", "shards: 1\ndriver: \"${SECRET}\"\n")
        .replace("provider: primary,", "provider: \"${SECRET}\",")
        .replace("shutdown_grace: 1s", "shutdown_grace: \"${SECRET}\"");
    assert_eq!(bad.matches("${SECRET}").count(), 4, "{bad}");
    std::fs::write(&config, &bad).expect("write config");

    let reply = admin_call(admin, "POST", "/admin/reload", Duration::from_secs(5));
    assert_eq!(reply.status, 400, "{}", reply.text());
    let error = reply.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !reply.text().contains(SECRET_VALUE),
        "reload reply leaks: {}",
        reply.text()
    );
    for expected in [
        "driver: unknown value `${SECRET}`",
        "unknown provider `${SECRET}`",
        "shutdown_grace: `${SECRET}`",
    ] {
        assert!(error.contains(expected), "no `{expected}` in {error}");
    }

    gw.signal(libc::SIGHUP);
    let line = gw.wait_for_log("reload rejected", Duration::from_secs(5));
    assert!(line.contains("unknown provider `${SECRET}`"), "{line}");

    let (ok, text) = check(&config);
    assert!(!ok, "check accepted the file:\n{text}");
    assert!(text.contains("unknown provider `${SECRET}`"), "{text}");
    assert!(!text.contains(SECRET_VALUE), "check leaks:\n{text}");

    let log = gw.log_text();
    assert!(!log.contains(SECRET_VALUE), "the log leaks:\n{log}");
}

#[test]
fn check_refuses_a_public_admin_listener_without_a_token() {
    let primary = mock("primary");
    let dir = TempDir::new("public");
    let config = dir.file("public.yaml");
    let public = admin_yaml(&primary).replace(
        "admin: { listen: 127.0.0.1:0 }",
        "admin: { listen: 0.0.0.0:0 }",
    );
    std::fs::write(&config, &public).expect("write config");
    let (ok, text) = check(&config);
    assert!(
        !ok,
        "check accepted a public tokenless admin listener:\n{text}"
    );
    let line = 1 + public
        .lines()
        .position(|l| l.starts_with("admin:"))
        .unwrap_or_default();
    let expected = format!(
        "{}:{line}: admin.listen: is not a loopback address and `admin.token` is not set",
        config.display()
    );
    assert!(text.contains(&expected), "no `{expected}` in:\n{text}");

    // The explicit opt-in (or a token) makes it valid again.
    for admin in [
        "admin: { listen: 0.0.0.0:0, allow_public_without_token: true }",
        "admin: { listen: 0.0.0.0:0, token: \"${SECRET}\" }",
    ] {
        let fixed = public.replace("admin: { listen: 0.0.0.0:0 }", admin);
        std::fs::write(&config, &fixed).expect("write config");
        let (ok, text) = check(&config);
        assert!(ok, "{admin}: {text}");
    }
}
