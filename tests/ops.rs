//! Operations: the systemd unit and install script, the notify protocol of the real
//! binary, hot reload (good, bad and under traffic), the admin API and /metrics.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::MockHandle;

const BINARY: &str = env!("CARGO_BIN_EXE_switchyard");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------------------------
// Small helpers: temp dirs, free ports, admin requests, child processes.
// ---------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sy-ops-{tag}-{}-{}",
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

/// A port nobody listens on right now (the gateway binds it with SO_REUSEPORT).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("ephemeral port")
        .port()
}

fn admin_request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> HttpResponse {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    let mut client = Client::connect(addr).expect("connect to admin");
    client
        .request(method, path, &headers, b"")
        .expect("admin response")
}

fn admin_get(addr: SocketAddr, path: &str) -> HttpResponse {
    admin_request(addr, "GET", path, None)
}

/// Sends one chat request for `model` on a fresh connection.
fn chat_model(addr: SocketAddr, model: &str) -> HttpResponse {
    let mut client = Client::connect(addr).expect("connect to gateway");
    client
        .chat(&chat_body(model, false), &[])
        .expect("gateway response")
}

fn target_of(response: &HttpResponse) -> String {
    response
        .header("x-switchyard-target")
        .unwrap_or("-")
        .to_string()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({}, {sig})", child.id());
}

/// The real `switchyard run` binary with a notify socket and its stderr captured.
struct Running {
    child: Child,
    notify: UnixDatagram,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Running {
    /// Starts `switchyard run --config <config_path>` with `NOTIFY_SOCKET` set.
    fn start(config_path: &Path, dir: TempDir, extra_env: &[(&str, &str)]) -> Running {
        let socket_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&socket_path).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut command = Command::new(BINARY);
        command
            .arg("run")
            .arg("--config")
            .arg(config_path)
            .env("NOTIFY_SOCKET", &socket_path)
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn switchyard");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Running {
            child,
            notify,
            logs,
            _dir: dir,
        }
    }

    /// The next notify datagram within `limit`.
    fn next_message(&mut self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.notify.recv(&mut buf) {
                Ok(n) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("switchyard exited early ({status}):\n{}", self.log_text());
                    }
                }
                Err(e) => panic!("notify socket: {e}"),
            }
        }
        None
    }

    /// Reads notify datagrams until one has the line `line`; returns all seen.
    fn wait_for_state(&mut self, line: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(message) = self.next_message(left) else {
                break;
            };
            let found = message.lines().any(|l| l == line);
            seen.push(message);
            if found {
                return seen;
            }
        }
        panic!(
            "no `{line}` from switchyard within {limit:?}; got {seen:?}\n{}",
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits until a log line containing `needle` appears after the first `skip` lines.
    fn wait_for_log(&self, skip: usize, needle: &str, limit: Duration) -> String {
        let mut found = None;
        let ok = wait_until(limit, || {
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

    fn log_count(&self) -> usize {
        self.logs.lock().unwrap().len()
    }

    /// Waits up to `limit` for the process to exit.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "switchyard did not exit within {limit:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A config for the real binary: one route `chat` served by `target` (a provider
/// name among `mocks`), gateway on `port`, admin on `admin_port`.
fn binary_yaml(
    port: u16,
    admin_port: Option<u16>,
    mocks: &[(&str, &MockHandle)],
    target: &str,
) -> String {
    let mut yaml = format!("listen: 127.0.0.1:{port}\nshards: 2\nshutdown_grace: 2s\n");
    if let Some(admin) = admin_port {
        yaml.push_str(&format!("admin: {{ listen: 127.0.0.1:{admin} }}\n"));
    }
    yaml.push_str("providers:\n");
    for (name, mock) in mocks {
        yaml.push_str(&provider(name, mock));
    }
    yaml.push_str(&format!(
        "routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: {target}, model: {target}-model }}\n"
    ));
    yaml
}

// ---------------------------------------------------------------------------------
// The systemd unit.
// ---------------------------------------------------------------------------------

fn unit_text() -> String {
    std::fs::read_to_string(Path::new(REPO).join("systemd/switchyard.service"))
        .expect("systemd/switchyard.service")
}

/// Parses a unit file: (section, key) → every value, in order.
fn parse_unit(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut entries: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "line {}: continuation lines are not used",
            number + 1
        );
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {raw}", number + 1));
        assert!(
            !section.is_empty(),
            "line {}: key outside a section",
            number + 1
        );
        assert!(
            key.trim().chars().all(|c| c.is_ascii_alphanumeric()),
            "line {}: bad key {key:?}",
            number + 1
        );
        entries
            .entry((section.clone(), key.trim().to_string()))
            .or_default()
            .push(value.trim().to_string());
    }
    entries
}

fn seconds(value: &str) -> u64 {
    let duration = switchyard::config::parse_duration(value)
        .unwrap_or_else(|e| panic!("duration {value:?}: {e:?}"));
    duration.as_secs()
}

#[test]
fn unit_file_has_the_required_settings() {
    let unit = parse_unit(&unit_text());
    let get = |section: &str, key: &str| -> Vec<String> {
        unit.get(&(section.to_string(), key.to_string()))
            .cloned()
            .unwrap_or_default()
    };
    let one = |key: &str| -> String {
        let values = get("Service", key);
        assert_eq!(values.len(), 1, "[Service] {key} = {values:?}");
        values[0].clone()
    };
    assert_eq!(one("Type"), "notify");
    assert!(seconds(&one("WatchdogSec")) >= 2);
    assert_eq!(
        one("ExecStartPre"),
        "/usr/local/bin/switchyard check --config /etc/switchyard/switchyard.yaml"
    );
    assert_eq!(
        one("ExecStart"),
        "/usr/local/bin/switchyard run --config /etc/switchyard/switchyard.yaml"
    );
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("LimitNOFILE"), "1048576");
    assert_eq!(one("EnvironmentFile"), "-/etc/switchyard/switchyard.env");
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictRealtime", "yes"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallArchitectures", "native"),
        ("SystemCallErrorNumber", "EPERM"),
    ] {
        assert_eq!(one(key), value, "[Service] {key}");
    }
    let families = one("RestrictAddressFamilies");
    for family in ["AF_INET", "AF_INET6", "AF_UNIX"] {
        assert!(
            families.split_whitespace().any(|f| f == family),
            "RestrictAddressFamilies lacks {family}"
        );
    }
    let filter: Vec<String> = get("Service", "SystemCallFilter")
        .iter()
        .filter(|v| !v.starts_with('~'))
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for call in [
        "@system-service",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ] {
        assert!(
            filter.iter().any(|c| c == call),
            "SystemCallFilter lacks {call}"
        );
    }
    // The stop timeout must outlast the default drain (and the example's).
    let example =
        std::fs::read_to_string(Path::new(REPO).join("config/switchyard.example.yaml")).unwrap();
    let yaml: serde_yaml::Value = serde_yaml::from_str(&example).unwrap();
    let grace = yaml["shutdown_grace"].as_str().unwrap_or("30s");
    assert!(
        seconds(&one("TimeoutStopSec")) > seconds(grace).max(30),
        "TimeoutStopSec must exceed shutdown_grace ({grace})"
    );
    assert_eq!(get("Install", "WantedBy"), vec!["multi-user.target"]);
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!(
            "systemd-analyze not installed; unit_file_has_the_required_settings covers the keys"
        );
        return;
    }
    // verify insists the executables exist: point them at the binary under test.
    let dir = TempDir::new("unit");
    let unit = dir.path().join("switchyard.service");
    std::fs::write(
        &unit,
        unit_text().replace("/usr/local/bin/switchyard", BINARY),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // verify exits 0 on unknown keys and bad values but says so on stderr.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("switchyard.service"))
        .collect();
    assert!(
        output.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        output.status
    );
}

// ---------------------------------------------------------------------------------
// install.sh
// ---------------------------------------------------------------------------------

fn install_script(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(Path::new(REPO).join("systemd/install.sh"))
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("run install.sh")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config that passes `check` only when the env file supplies OPENAI_API_KEY.
const INSTALL_CONFIG: &str = "listen: 127.0.0.1:18080\nproviders:\n  local: { kind: openai-compatible, base_url: http://127.0.0.1:9001/v1, api_key: \"${OPENAI_API_KEY}\" }\nroutes:\n  - name: chat\n    targets: [{ provider: local, model: m }]\n";

#[test]
fn install_script_dry_run_changes_nothing() {
    let dir = TempDir::new("dry");
    let root = dir.path().join("root");
    let out = install_script(&["--dry-run", "--prefix", root.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(!root.exists(), "--dry-run created {}", root.display());
    for dest in [
        "usr/local/bin/switchyard",
        "etc/switchyard/switchyard.yaml",
        "etc/switchyard/switchyard.env",
        "etc/systemd/system/switchyard.service",
    ] {
        let line = format!("{}", root.join(dest).display());
        assert!(
            stdout.contains(&line),
            "dry run does not mention {dest}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("would run: cargo build --release"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0600"),
        "env file mode not shown:\n{stdout}"
    );
    assert!(stdout.contains("check --config"), "{stdout}");
    assert!(stdout.contains("skip: systemctl"), "{stdout}");
}

#[test]
fn install_script_installs_with_modes_and_is_idempotent() {
    let dir = TempDir::new("install");
    let root = dir.path().join("root");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, INSTALL_CONFIG).unwrap();
    let args = [
        "--prefix",
        root.to_str().unwrap(),
        "--binary",
        BINARY,
        "--config",
        config.to_str().unwrap(),
    ];
    let first = install_script(&args);
    let stdout = text(&first.stdout);
    assert!(first.status.success(), "{stdout}\n{}", text(&first.stderr));
    assert!(
        stdout.contains("OK (1 providers, 1 routes)"),
        "check did not run:\n{stdout}"
    );
    assert!(stdout.contains("skip: systemctl"), "{stdout}");

    let bin = root.join("usr/local/bin/switchyard");
    let yaml = root.join("etc/switchyard/switchyard.yaml");
    let env = root.join("etc/switchyard/switchyard.env");
    let unit = root.join("etc/systemd/system/switchyard.service");
    let files = [(&bin, 0o755), (&yaml, 0o644), (&env, 0o600), (&unit, 0o644)];
    for (path, expected) in files {
        assert_eq!(mode(path), expected, "mode of {}", path.display());
    }
    assert_eq!(mode(&root.join("etc/switchyard")), 0o755);
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), unit_text());
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), INSTALL_CONFIG);
    assert_eq!(
        std::fs::read(&env).unwrap(),
        std::fs::read(Path::new(REPO).join("systemd/switchyard.env.example")).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&bin).unwrap().len(),
        std::fs::metadata(BINARY).unwrap().len()
    );
    let installed = Command::new(&bin).arg("--version").output().unwrap();
    assert!(installed.status.success(), "installed binary does not run");

    // Second run: nothing changes.
    let before: Vec<SystemTime> = files.iter().map(|(p, _)| modified(p)).collect();
    std::thread::sleep(Duration::from_millis(20));
    let second = install_script(&args);
    let stdout = text(&second.stdout);
    assert!(
        second.status.success(),
        "{stdout}\n{}",
        text(&second.stderr)
    );
    assert!(
        !stdout.contains("install ("),
        "second run installed again:\n{stdout}"
    );
    assert_eq!(stdout.matches("unchanged:").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("kept:").count(), 2, "{stdout}");
    let after: Vec<SystemTime> = files.iter().map(|(p, _)| modified(p)).collect();
    assert_eq!(before, after, "second run touched files");

    // The operator's edits survive; a loosened env file is tightened again.
    let edited = format!("{INSTALL_CONFIG}# edited by the operator\n");
    std::fs::write(&yaml, &edited).unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    let third = install_script(&args);
    assert!(third.status.success(), "{}", text(&third.stderr));
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), edited);
    assert_eq!(mode(&env), 0o600);
}

#[test]
fn install_script_refuses_a_config_that_fails_check() {
    let dir = TempDir::new("badinstall");
    let root = dir.path().join("root");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        INSTALL_CONFIG.replace("provider: local", "provider: nowhere"),
    )
    .unwrap();
    let out = install_script(&[
        "--prefix",
        root.to_str().unwrap(),
        "--binary",
        BINARY,
        "--config",
        config.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a broken config was accepted");
    assert!(
        stderr.contains("nowhere"),
        "check's reason not shown:\n{stderr}"
    );
    assert!(stderr.contains("not starting"), "{stderr}");
    assert!(!text(&out.stdout).contains("systemctl"));
}

// ---------------------------------------------------------------------------------
// The notify protocol of the real binary.
// ---------------------------------------------------------------------------------

#[test]
fn notify_ready_after_listening_watchdog_and_stopping_on_sigterm() {
    let primary = mock("primary");
    let dir = TempDir::new("notify");
    let port = free_port();
    let config = dir.path().join("switchyard.yaml");
    std::fs::write(
        &config,
        binary_yaml(port, None, &[("primary", &primary)], "primary"),
    )
    .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut gw = Running::start(&config, dir, &[("WATCHDOG_USEC", "300000")]);

    let first = gw
        .next_message(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no notify message:\n{}", gw.log_text()));
    assert!(
        first.lines().any(|l| l == "READY=1"),
        "first message: {first:?}"
    );
    // READY=1 comes only once the port accepts: connect right away, no retry.
    let connected = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    assert!(
        connected.is_ok(),
        "READY=1 before the port accepts: {connected:?}"
    );
    let pid_line = format!("MAINPID={}", gw.child.id());
    assert!(first.lines().any(|l| l == pid_line), "{first:?}");
    let response = chat_model(addr, "chat");
    assert_eq!(response.status, 200, "{}", response.text());

    // WATCHDOG_USEC=300ms: pings arrive at about half that.
    gw.wait_for_state("WATCHDOG=1", Duration::from_secs(3));

    signal(&gw.child, libc::SIGTERM);
    gw.wait_for_state("STOPPING=1", Duration::from_secs(5));
    let status = gw.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}\n{}", gw.log_text());
    let log = gw.log_text();
    assert!(
        log.contains("msg=stopped"),
        "no clean stop in the log:\n{log}"
    );
}

// ---------------------------------------------------------------------------------
// Reloads.
// ---------------------------------------------------------------------------------

#[test]
fn invalid_reload_keeps_the_old_config_and_a_fixed_file_goes_live() {
    let one = mock("one");
    let two = mock("two");
    let dir = TempDir::new("reload");
    let port = free_port();
    let admin_port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let mocks = [("one", &one), ("two", &two)];
    let config = dir.path().join("switchyard.yaml");
    let good = binary_yaml(port, Some(admin_port), &mocks, "one");
    std::fs::write(&config, &good).unwrap();
    let mut gw = Running::start(&config, dir, &[]);
    gw.wait_for_state("READY=1", Duration::from_secs(10));
    assert_eq!(target_of(&chat_model(addr, "chat")), "one/one-model");

    // A broken file: SIGHUP is rejected and logged; the old routing stays.
    let broken = good.replace("provider: one,", "provider: nowhere,");
    assert_ne!(broken, good);
    std::fs::write(&config, &broken).unwrap();
    let mark = gw.log_count();
    signal(&gw.child, libc::SIGHUP);
    let line = gw.wait_for_log(mark, "reload rejected", Duration::from_secs(5));
    assert!(line.contains("nowhere"), "the log does not say why: {line}");
    for _ in 0..3 {
        let response = chat_model(addr, "chat");
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(target_of(&response), "one/one-model");
    }
    // The same through the admin API: 400 with the reason and its line.
    let reply = admin_request(admin, "POST", "/admin/reload", None);
    assert_eq!(reply.status, 400, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["reloaded"], false);
    let error = body["error"].as_str().unwrap_or_default();
    let line = 1 + broken.lines().position(|l| l.contains("nowhere")).unwrap();
    assert!(
        error.contains("unknown provider `nowhere`") && error.contains(&format!(":{line}:")),
        "{error}"
    );
    assert_eq!(target_of(&chat_model(addr, "chat")), "one/one-model");

    // `listen` cannot change on reload.
    let moved = good.replace(&format!(":{port}\n"), &format!(":{}\n", free_port()));
    std::fs::write(&config, &moved).unwrap();
    let reply = admin_request(admin, "POST", "/admin/reload", None);
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("listen"), "{}", reply.text());

    // Fixed (and pointing at `two`): SIGHUP makes it live.
    std::fs::write(&config, binary_yaml(port, Some(admin_port), &mocks, "two")).unwrap();
    let mark = gw.log_count();
    signal(&gw.child, libc::SIGHUP);
    gw.wait_for_log(mark, "config reloaded", Duration::from_secs(5));
    // Each shard takes the new table when its inbox wakes it: wait until a run of requests
    // (spread over both shards) all see it.
    let mut last = String::new();
    let mut all_switched = || {
        (0..6).all(|_| {
            last = target_of(&chat_model(addr, "chat"));
            last == "two/two-model"
        })
    };
    let switched = wait_until(Duration::from_secs(5), &mut all_switched);
    assert!(switched, "still served by {last} after the reload");
    let reply = admin_request(admin, "POST", "/admin/reload", None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["reloaded"], true);
    assert!(reply.json()["generation"].as_u64().unwrap_or(0) >= 3);
    assert!(
        wait_until(Duration::from_secs(5), &mut all_switched),
        "served by {last}"
    );
}

fn reload_yaml(alpha: &MockHandle, beta: &MockHandle, gamma: &MockHandle, chat: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nshards: 2\nshutdown_grace: 2s\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         health: {{ consecutive_failures: 2, min_requests: 1000, cooldown: 60s, max_cooldown: 60s }}\n\
         providers:\n{}{}{}\
         routes:\n\
         \x20 - name: chat\n    match: {{ model: chat }}\n    targets: [{{ provider: {chat}, model: {chat}-model }}]\n\
         \x20 - name: side\n    match: {{ model: side }}\n    retry: {{ attempts: 1 }}\n    targets: [{{ provider: gamma, model: gamma-model }}]\n",
        provider("alpha", alpha),
        provider("beta", beta),
        provider("gamma", gamma),
    )
}

/// gamma/gamma-model as /admin/targets shows it: (any shard open, window failures).
fn gamma_health(admin: SocketAddr) -> (bool, u64) {
    let targets = admin_get(admin, "/admin/targets").json();
    let list = targets["targets"].as_array().cloned().unwrap_or_default();
    let Some(gamma) = list.iter().find(|t| t["target"] == "gamma/gamma-model") else {
        return (false, 0);
    };
    let shards = gamma["shards"].as_array().cloned().unwrap_or_default();
    let open = shards.iter().any(|s| s["breaker"] == "open");
    let failures = shards
        .iter()
        .map(|s| s["window_failures"].as_u64().unwrap_or(0))
        .sum();
    (open, failures)
}

#[test]
fn hot_reload_under_traffic_loses_no_request() {
    let alpha = mock("alpha");
    let beta = mock("beta");
    let gamma = mock("gamma");
    gamma.set_fault(fault_status(503));
    let with_alpha = reload_yaml(&alpha, &beta, &gamma, "alpha");
    let with_beta = reload_yaml(&alpha, &beta, &gamma, "beta");
    let gw = gateway(&with_alpha);
    let addr = gw.addr();
    let admin = gw.admin_addr().expect("admin listener");

    // Trip gamma's breaker: health that must survive every reload below.
    let mut client = Client::connect(addr).unwrap();
    for _ in 0..3 {
        let response = client.chat(&chat_body("side", false), &[]).unwrap();
        assert!(matches!(response.status, 502 | 503), "{}", response.text());
    }
    let mut health = (false, 0);
    assert!(
        wait_until(Duration::from_secs(2), || {
            health = gamma_health(admin);
            health.0
        }),
        "gamma's breaker did not open: {health:?}"
    );
    let failures_before = health.1;
    assert!(failures_before >= 2, "{health:?}");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    type Seen = Vec<(Instant, u16, String)>;
    let threads: Vec<std::thread::JoinHandle<(Seen, Vec<String>)>> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut errors = Vec::new();
                let mut client = Client::connect(addr).expect("connect");
                let body = chat_body("chat", false);
                let deadline = Instant::now() + Duration::from_secs(5);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let started = Instant::now();
                    match client.chat(&body, &[]) {
                        Ok(r) => seen.push((started, r.status, target_of(&r))),
                        Err(e) => {
                            errors.push(e.to_string());
                            client = Client::connect(addr).expect("reconnect");
                        }
                    }
                }
                (seen, errors)
            })
        })
        .collect();

    let mut generations = Vec::new();
    for i in 0..8 {
        std::thread::sleep(Duration::from_millis(150));
        let yaml = if i % 2 == 0 { &with_beta } else { &with_alpha };
        generations.push(gw.control.install(config(yaml)).expect("install"));
    }
    std::thread::sleep(Duration::from_millis(150));
    let switched_at = Instant::now();
    let generation = gw
        .control
        .install(config(&with_beta))
        .expect("final install");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);

    let mut all: Seen = Vec::new();
    for thread in threads {
        let (seen, errors) = thread.join().expect("client thread");
        assert!(
            errors.is_empty(),
            "client errors during reloads: {errors:?}"
        );
        all.extend(seen);
    }
    assert!(
        generations.windows(2).all(|w| w[0] < w[1]) && generation > generations[7],
        "{generations:?} {generation}"
    );
    assert!(
        all.len() >= 40,
        "too little traffic to prove anything: {}",
        all.len()
    );
    let failed: Vec<_> = all.iter().filter(|(_, status, _)| *status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        all.len(),
        &failed[..failed.len().min(5)]
    );
    let served_by = |label: &str| all.iter().filter(|(_, _, t)| t == label).count();
    assert!(served_by("alpha/alpha-model") > 0 && served_by("beta/beta-model") > 0);
    // Requests started well after the last switch all reach the new target.
    let late: Vec<_> = all
        .iter()
        .filter(|(started, _, _)| *started > switched_at + Duration::from_millis(150))
        .collect();
    assert!(!late.is_empty(), "no traffic after the last switch");
    assert!(
        late.iter().all(|(_, _, t)| t == "beta/beta-model"),
        "old target served after the switch: {:?}",
        late.iter().find(|(_, _, t)| t != "beta/beta-model")
    );
    assert!(beta.stats().requests > 0);

    // gamma is in every config: its breaker and window carried over.
    let (open, failures) = gamma_health(admin);
    assert!(open, "gamma's open breaker was reset by a reload");
    assert!(
        failures >= failures_before,
        "window reset: {failures} < {failures_before}"
    );
    let gamma_seen = gamma.stats().requests;
    let side = chat_model(addr, "side");
    assert_eq!(side.status, 503, "{}", side.text());
    assert!(
        side.header("retry-after").is_some(),
        "not a fail-fast answer"
    );
    assert_eq!(
        gamma.stats().requests,
        gamma_seen,
        "gamma got traffic with its breaker open"
    );
    gw.shutdown();
}

// ---------------------------------------------------------------------------------
// /metrics, admin token, readiness.
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict parser for the Prometheus text exposition format (0.0.4): every sample
/// belongs to a family declared by `# TYPE` before it, a family's lines are contiguous,
/// label values use only the `\\`, `\"` and `\n` escapes, series are unique, and
/// histograms are cumulative with `+Inf` equal to `_count`.
fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped: Vec<String> = Vec::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    let mut series = std::collections::BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            let name = parts.next().unwrap_or("");
            let tail = parts.next().unwrap_or("");
            match keyword {
                "HELP" | "TYPE" => {
                    if !valid_metric_name(name) {
                        return Err(format!("line {n}: bad metric name {name:?}"));
                    }
                    if current.as_deref() != Some(name) {
                        if let Some(done) = current.take() {
                            finished.push(done);
                        }
                        if finished.iter().any(|f| f == name) {
                            return Err(format!("line {n}: family {name} split in two"));
                        }
                        current = Some(name.to_string());
                    }
                }
                _ => continue,
            }
            if keyword == "HELP" {
                if helped.iter().any(|h| h == name) {
                    return Err(format!("line {n}: second HELP for {name}"));
                }
                helped.push(name.to_string());
            } else {
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail) {
                    return Err(format!("line {n}: bad type {tail:?}"));
                }
                if types.insert(name.to_string(), tail.to_string()).is_some() {
                    return Err(format!("line {n}: second TYPE for {name}"));
                }
                if samples
                    .iter()
                    .any(|s: &Sample| family_of(&s.name, &types) == name)
                {
                    return Err(format!("line {n}: TYPE after samples of {name}"));
                }
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = parse_sample(line).map_err(|e| format!("line {n}: {e}: {line}"))?;
        let family = family_of(&sample.name, &types);
        let Some(kind) = types.get(&family) else {
            return Err(format!("line {n}: sample without TYPE: {line}"));
        };
        if current.as_deref() != Some(family.as_str()) {
            return Err(format!("line {n}: sample outside its family block: {line}"));
        }
        if kind == "counter" && (sample.value.is_nan() || sample.value < 0.0) {
            return Err(format!("line {n}: negative counter"));
        }
        if kind == "histogram" && sample.name == family {
            return Err(format!("line {n}: bare sample in a histogram family"));
        }
        if !series.insert((sample.name.clone(), sample.labels.clone())) {
            return Err(format!("line {n}: duplicate series {line}"));
        }
        samples.push(sample);
    }
    check_histograms(&samples, &types)?;
    Ok(samples)
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|t| t == "histogram") {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            match chars.peek() {
                Some((_, '}')) => {
                    let (i, _) = chars.next().unwrap();
                    rest = &body[i + 1..];
                    break;
                }
                None => return Err("unterminated label set".into()),
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            let valid_key = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_key {
                return Err(format!("bad label name {key:?}"));
            }
            if !matches!(chars.next(), Some((_, '"'))) {
                return Err(format!("label {key}: value not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("label {key}: bad escape {other:?}")),
                    },
                    Some((_, '\n')) | None => {
                        return Err(format!("label {key}: unterminated value"))
                    }
                    Some((_, c)) => value.push(c),
                }
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            match chars.peek() {
                Some((_, ',')) => {
                    chars.next();
                }
                Some((_, '}')) => {}
                other => return Err(format!("expected , or }} after a label, got {other:?}")),
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut fields = rest.split(' ');
    let raw = fields.next().unwrap_or("");
    let value = match raw {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => raw
            .parse::<f64>()
            .ok()
            .filter(|_| !raw.is_empty() && !raw.starts_with('+') && !raw.contains("inf"))
            .ok_or_else(|| format!("bad value {raw:?}"))?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// A series' labels other than `le`, in order.
type LabelSet = Vec<(String, String)>;

fn check_histograms(samples: &[Sample], types: &BTreeMap<String, String>) -> Result<(), String> {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let mut groups: BTreeMap<LabelSet, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let le = s
                .labels
                .get("le")
                .ok_or(format!("{family}_bucket without le"))?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse::<f64>().map_err(|_| format!("bad le {le:?}"))?
            };
            let key: LabelSet = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            groups.entry(key).or_default().push((bound, s.value));
        }
        for (key, buckets) in groups {
            if !buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            {
                return Err(format!(
                    "{family}{key:?}: buckets not cumulative: {buckets:?}"
                ));
            }
            let inf = buckets.last().filter(|b| b.0.is_infinite()).map(|b| b.1);
            let labels: BTreeMap<String, String> = key.into_iter().collect();
            let count = samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && s.labels == labels)
                .map(|s| s.value);
            let has_sum = samples
                .iter()
                .any(|s| s.name == format!("{family}_sum") && s.labels == labels);
            if inf.is_none() || inf != count || !has_sum {
                return Err(format!(
                    "{family}{labels:?}: +Inf {inf:?}, count {count:?}, sum present {has_sum}"
                ));
            }
        }
    }
    Ok(())
}

/// Sum of every sample named `name` whose labels include all of `want`.
fn total(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

fn scrape(admin: SocketAddr) -> Vec<Sample> {
    let reply = admin_get(admin, "/metrics");
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let text = reply.text();
    parse_prometheus(&text).unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"))
}

#[test]
fn prometheus_parser_rejects_what_it_should() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{r=\"q\\\"\\\\\"} 1\n";
    assert_eq!(parse_prometheus(good).unwrap()[0].labels["r"], "q\"\\");
    for bad in [
        "a_total 1\n",
        "# TYPE a_total counter\na_total{r=\"x\"y\"} 1\n",
        "# TYPE a_total counter\na_total{r=\"\\q\"} 1\n",
        "# TYPE a_total counter\na_total{r=\"x\"} 1\na_total{r=\"x\"} 2\n",
        "# TYPE a_total counter\na_total -1\n",
        "# TYPE a_total counter\na_total one\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
        "# TYPE a gauge\n# TYPE b gauge\na 1\n",
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted: {bad}");
    }
}

#[test]
fn metrics_parse_and_count_requests() {
    let primary = mock("primary");
    let gw = gateway(&chain_yaml(
        &[("primary", &primary)],
        "",
        "admin: { listen: 127.0.0.1:0 }\n",
    ));
    let admin = gw.admin_addr().expect("admin listener");
    let before = scrape(admin);
    let responses = |s: &[Sample]| {
        total(
            s,
            "switchyard_responses_total",
            &[("route", "chat"), ("status", "200")],
        )
    };
    let successes = |s: &[Sample]| {
        total(
            s,
            "switchyard_attempts_total",
            &[("target", "primary/primary-model"), ("outcome", "success")],
        )
    };
    let durations = |s: &[Sample]| {
        total(
            s,
            "switchyard_request_duration_seconds_count",
            &[("route", "chat")],
        )
    };
    let rejected = |s: &[Sample]| {
        total(
            s,
            "switchyard_rejected_requests_total",
            &[("status", "404")],
        )
    };

    let mut client = Client::connect(gw.addr()).unwrap();
    for _ in 0..5 {
        let r = client.chat(&chat_body("chat", false), &[]).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = client
        .chat(&chat_body("no-such-model", false), &[])
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());

    // Shards answer snapshots when the request wakes them: poll until the counts settle.
    let mut after = Vec::new();
    wait_until(Duration::from_secs(2), || {
        after = scrape(admin);
        responses(&after) - responses(&before) >= 5.0 && rejected(&after) >= 1.0
    });
    assert_eq!(responses(&after) - responses(&before), 5.0);
    assert_eq!(successes(&after) - successes(&before), 5.0);
    assert_eq!(durations(&after) - durations(&before), 5.0);
    assert_eq!(rejected(&after) - rejected(&before), 1.0);
    let failures = after
        .iter()
        .filter(|s| s.name == "switchyard_attempts_total" && s.labels["outcome"] != "success")
        .map(|s| s.value)
        .sum::<f64>();
    assert_eq!(failures, 0.0);
    let sum = total(
        &after,
        "switchyard_request_duration_seconds_sum",
        &[("route", "chat")],
    );
    assert!(sum > 0.0 && sum < 60.0, "duration sum {sum}");
    assert_eq!(
        total(
            &after,
            "switchyard_breaker_state",
            &[("target", "primary/primary-model")]
        ),
        0.0
    );
    // Every family in the reference (docs/operations.md) is exposed.
    for name in [
        "switchyard_responses_total",
        "switchyard_retries_total",
        "switchyard_fallbacks_total",
        "switchyard_fail_fast_total",
        "switchyard_request_duration_seconds_bucket",
        "switchyard_time_to_first_token_seconds_count",
        "switchyard_attempts_total",
        "switchyard_breaker_state",
        "switchyard_target_in_flight",
        "switchyard_target_ttfb_ewma_seconds",
        "switchyard_upstream_connections_open",
        "switchyard_tokens_in_total",
        "switchyard_tokens_out_total",
        "switchyard_stream_events_dropped_total",
        "switchyard_requests_in_flight",
        "switchyard_client_connections",
        "switchyard_rejected_requests_total",
    ] {
        assert!(after.iter().any(|s| s.name == name), "{name} missing");
    }
    gw.shutdown();
}

#[test]
fn metric_label_values_are_escaped() {
    let primary = mock("primary");
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nadmin: {{ listen: 127.0.0.1:0 }}\nproviders:\n{}routes:\n  - name: 'chat \"quoted\" \\ route'\n    match: {{ model: chat }}\n    targets: [{{ provider: primary, model: 'm\\x\"y' }}]\n",
        provider("primary", &primary)
    );
    let gw = gateway(&yaml);
    let response = chat_model(gw.addr(), "chat");
    assert_eq!(response.status, 200, "{}", response.text());
    let admin = gw.admin_addr().unwrap();
    let route = "chat \"quoted\" \\ route";
    let mut samples = Vec::new();
    wait_until(Duration::from_secs(2), || {
        samples = scrape(admin);
        total(&samples, "switchyard_responses_total", &[("route", route)]) >= 1.0
    });
    assert_eq!(
        total(
            &samples,
            "switchyard_responses_total",
            &[("route", route), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &samples,
            "switchyard_attempts_total",
            &[("target", "primary/m\\x\"y"), ("outcome", "success")]
        ),
        1.0
    );
    gw.shutdown();
}

#[test]
fn admin_token_is_required_and_config_hides_secrets() {
    let primary = mock("primary");
    let secrets = [
        ("ADMIN_TOKEN", "admin-token-7f3a9c"),
        ("PROVIDER_KEY", "sk-provider-secret-4b2e"),
        ("CLIENT_KEY", "client-secret-91d0"),
        ("ORG_HEADER", "org-header-secret-55aa"),
    ];
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nadmin: {{ listen: 127.0.0.1:0, token: \"${{ADMIN_TOKEN}}\" }}\n\
         keys:\n  - {{ name: app, key: \"${{CLIENT_KEY}}\" }}\n\
         providers:\n  primary: {{ kind: openai-compatible, base_url: \"{}\", api_key: \"${{PROVIDER_KEY}}\", headers: {{ x-org: \"${{ORG_HEADER}}\" }} }}\n\
         routes:\n  - name: chat\n    targets: [{{ provider: primary, model: m }}]\n",
        primary.base_url()
    );
    let gw = start(config_with_env(&yaml, &secrets));
    let admin = gw.admin_addr().unwrap();
    let token = secrets[0].1;
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/admin/targets"),
        ("GET", "/admin/config"),
        ("POST", "/admin/reload"),
    ] {
        for wrong in [
            None,
            Some("wrong-token"),
            Some(""),
            Some("admin-token-7f3a9"),
        ] {
            let reply = admin_request(admin, method, path, wrong);
            assert_eq!(reply.status, 401, "{method} {path} with {wrong:?}");
            assert!(!reply.text().contains(token));
        }
    }
    let reply = admin_request(admin, "GET", "/metrics", Some(token));
    assert_eq!(reply.status, 200);
    let reply = admin_request(admin, "GET", "/admin/config", Some(token));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    for (name, secret) in secrets {
        assert!(!text.contains(secret), "/admin/config leaks {name}: {text}");
    }
    let config = reply.json();
    assert_eq!(config["providers"]["primary"]["api_key"], "<redacted>");
    assert_eq!(config["keys"][0]["name"], "app");
    assert_eq!(config["keys"][0]["key"], "<redacted>");
    assert_eq!(config["routes"][0]["name"], "chat");
    gw.shutdown();
}

#[test]
fn readyz_and_healthz_answer_when_every_shard_serves() {
    let primary = mock("primary");
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 2\nadmin: {{ listen: 127.0.0.1:0 }}\nproviders:\n{}routes:\n  - name: chat\n    targets: [{{ provider: primary, model: m }}]\n",
        provider("primary", &primary)
    );
    let gw = gateway(&yaml);
    let admin = gw.admin_addr().unwrap();
    let health = admin_get(admin, "/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let ready = admin_get(admin, "/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    let body = ready.json();
    assert_eq!(body["ready"], true);
    assert_eq!(body["shards"], 2);
    assert_eq!(body["shards_serving"], 2);
    let drivers = body["drivers"].as_array().unwrap();
    assert_eq!(drivers.len(), 2);
    assert!(
        drivers.iter().all(|d| d == "io_uring" || d == "legacy"),
        "{drivers:?}"
    );
    assert_eq!(admin_get(admin, "/nope").status, 404);
    assert_eq!(admin_request(admin, "POST", "/metrics", None).status, 405);
    gw.shutdown();
}

#[test]
fn admin_token_rotates_on_reload_and_the_admin_listener_needs_a_restart() {
    let primary = mock("primary");
    let yaml = |admin: &str| {
        format!(
            "listen: 127.0.0.1:0\nshards: 1\nadmin: {admin}\nproviders:\n{}routes:\n  - name: chat\n    targets: [{{ provider: primary, model: m }}]\n",
            provider("primary", &primary)
        )
    };
    let gw = gateway(&yaml("{ listen: 127.0.0.1:0, token: old-token }"));
    let admin = gw.admin_addr().unwrap();
    assert_eq!(
        admin_request(admin, "GET", "/metrics", Some("old-token")).status,
        200
    );

    // A leaked token is revoked by a reload, not only by a restart.
    gw.control
        .install(config(&yaml("{ listen: 127.0.0.1:0, token: new-token }")))
        .expect("install a rotated token");
    assert_eq!(
        admin_request(admin, "GET", "/metrics", Some("old-token")).status,
        401
    );
    assert_eq!(
        admin_request(admin, "GET", "/metrics", Some("new-token")).status,
        200
    );

    // Removing or moving the admin listener is refused: it is bound once.
    for changed in [
        yaml("null").replace("admin: null\n", ""),
        yaml(&format!(
            "{{ listen: 127.0.0.1:{}, token: new-token }}",
            free_port()
        )),
    ] {
        let error = gw
            .control
            .install(config(&changed))
            .expect_err("admin listener change accepted");
        assert!(error.to_string().contains("admin.listen"), "{error}");
    }
    assert_eq!(admin_request(admin, "GET", "/metrics", None).status, 401);
    assert_eq!(
        admin_request(admin, "GET", "/metrics", Some("new-token")).status,
        200
    );
    gw.shutdown();
}
