//! Logs and metrics as an operator reads them: typed JSON lines from the real
//! binary (with `SWITCHYARD_LOG` overriding `log.level`), and the build, process
//! and first-use series of `/metrics`.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use loadtest::client::{chat_body, Client};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `switchyard run` child whose stderr goes to a file, stopped on drop.
struct Binary {
    child: Child,
    log: PathBuf,
    addr: SocketAddr,
}

impl Binary {
    fn start(tag: &str, yaml: &str, env: &[(&str, &str)]) -> Binary {
        let dir = std::env::temp_dir().join(format!("sy-obs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let config = dir.join("switchyard.yaml");
        let state = dir.join("state");
        let yaml = format!(
            "listen: 127.0.0.1:{port}\nshards: 1\nshutdown_grace: 1s\nstate_dir: {}\n{yaml}",
            state.display()
        );
        std::fs::write(&config, yaml).unwrap();
        let log = dir.join("stderr.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("SWITCHYARD_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = command.spawn().expect("switchyard starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let binary = Binary { child, log, addr };
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        assert!(up, "switchyard did not listen:\n{}", binary.log_text());
        binary
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the log once the process has exited (bounded).
    fn stop(mut self) -> String {
        // SAFETY: signals our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log_text()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn line<'a>(lines: &'a [serde_json::Value], msg: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["msg"] == msg)
        .unwrap_or_else(|| panic!("no `{msg}` line in {lines:#?}"))
}

#[test]
fn json_log_lines_are_typed_and_rejections_logged() {
    let primary = mock("primary");
    let yaml = format!(
        "log: {{ format: json, request_sample: 1 }}\nkeys:\n  - {{ name: app, key: sk-test-app }}\nproviders:\n{}routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [{{ provider: primary, model: primary-model }}]\n",
        provider("primary", &primary)
    );
    let gw = Binary::start("json", &yaml, &[]);
    let auth = [("authorization", "Bearer sk-test-app")];
    let mut client = Client::connect(gw.addr).unwrap();
    let ok = client.chat(&chat_body("chat", false), &auth).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let unknown = client.chat(&chat_body("no-such", false), &auth).unwrap();
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    let mut anonymous = Client::connect(gw.addr).unwrap();
    let refused = anonymous.chat(&chat_body("chat", false), &[]).unwrap();
    assert_eq!(refused.status, 401, "{}", refused.text());
    let log = gw.stop();
    println!("{log}");
    let lines = json_lines(&log);
    assert!(lines.iter().all(|l| l["level"].is_string()), "{log}");

    let request = line(&lines, "request");
    assert_eq!(request["status"].as_u64(), Some(200), "{request}");
    assert_eq!(request["attempts"].as_u64(), Some(1), "{request}");
    assert_eq!(request["key"], "app");
    assert_eq!(request["route"], "chat");
    assert_eq!(request["model"], "chat");
    assert_eq!(request["target"], "primary/primary-model");
    assert!(request["tokens_in"].is_u64(), "{request}");
    assert!(request["tokens_out"].is_u64(), "{request}");
    assert!(request["overhead_ms"].is_f64(), "{request}");
    assert!(request["latency_ms"].is_f64(), "{request}");
    assert!(request["ttft_ms"].is_null(), "not a stream: {request}");

    let rejected: Vec<u64> = lines
        .iter()
        .filter(|l| l["msg"] == "request rejected")
        .filter_map(|l| l["status"].as_u64())
        .collect();
    assert!(
        rejected.contains(&404) && rejected.contains(&401),
        "{rejected:?}"
    );

    let start = line(&lines, "switchyard listening");
    assert!(start["config"]
        .as_str()
        .unwrap()
        .ends_with("switchyard.yaml"));
    assert!(start["driver"].is_string(), "{start}");
    assert_eq!(start["shards"].as_u64(), Some(1));
}

#[test]
fn switchyard_log_overrides_the_configured_level() {
    let primary = mock("primary");
    let yaml = format!(
        "log: {{ format: json, level: error }}\nproviders:\n{}routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [{{ provider: primary, model: primary-model }}]\n",
        provider("primary", &primary)
    );
    let quiet = Binary::start("quiet", &yaml, &[]).stop();
    let quiet = json_lines(&quiet);
    assert!(
        quiet.iter().all(|l| l["level"] == "error"),
        "level: error writes only errors: {quiet:#?}"
    );
    let loud = Binary::start("loud", &yaml, &[("SWITCHYARD_LOG", "info")]).stop();
    let loud = json_lines(&loud);
    assert_eq!(line(&loud, "switchyard listening")["level"], "info");
}

#[test]
fn metrics_have_build_and_process_series_and_no_unused_classes() {
    let primary = mock("primary");
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nadmin: {{ listen: 127.0.0.1:0 }}\nproviders:\n{}routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [{{ provider: primary, model: primary-model }}]\n",
        provider("primary", &primary)
    );
    let gw = gateway(&yaml);
    assert_eq!(chat(gw.addr()).status, 200);
    let admin = gw.admin_addr().unwrap();
    let mut text = String::new();
    wait_until(Duration::from_secs(2), || {
        let mut client = Client::connect(admin).unwrap();
        text = client.request("GET", "/metrics", &[], b"").unwrap().text();
        text.contains("outcome=\"success\"} 1")
    });
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    };
    assert_eq!(
        value(&format!(
            "switchyard_build_info{{version=\"{}\",commit=",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert!(value("process_resident_memory_bytes ") > 0.0);
    assert!(value("process_open_fds ") > 0.0);
    assert!(value("process_cpu_seconds_total ") >= 0.0);
    assert!(value("process_start_time_seconds ") > 1.6e9);
    let success = "switchyard_attempts_total{target=\"primary/primary-model\",shard=\"0\",outcome=\"success\"}";
    assert_eq!(value(success), 1.0);
    // A class this target never had is not pre-created.
    assert!(
        !text.contains("outcome=\"server_error\""),
        "unused class exposed:\n{text}"
    );
    println!("/metrics lines: {}", text.lines().count());
    gw.shutdown();
}
