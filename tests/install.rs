//! The operator's first hour, as a fresh clone sees it: the env example covers
//! every shipped config, install.sh works with it, `check` shows every mistake
//! in one pass and warns about placeholders, and a second gateway on the same
//! port is refused unless `--takeover` asks for it.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_switchyard");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sy-install-{tag}-{}-{}",
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every `${NAME}` outside comment lines.
fn references(yaml: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in yaml.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some((_, after)) = rest.split_once("${") {
            let Some((name, tail)) = after.split_once('}') else {
                break;
            };
            names.insert(name.to_string());
            rest = tail;
        }
    }
    names
}

/// The `NAME` of every `NAME=value` line.
fn env_names(env: &str) -> BTreeSet<String> {
    env.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim().to_string()))
        .collect()
}

fn env_example() -> String {
    std::fs::read_to_string(Path::new(REPO).join("systemd/switchyard.env.example")).unwrap()
}

#[test]
fn env_example_sets_every_variable_of_every_shipped_config() {
    let defined = env_names(&env_example());
    let mut checked = 0;
    for entry in std::fs::read_dir(Path::new(REPO).join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        checked += 1;
        let used = references(&std::fs::read_to_string(&path).unwrap());
        let missing: Vec<&String> = used.difference(&defined).collect();
        assert!(
            missing.is_empty(),
            "{} uses {missing:?}, which systemd/switchyard.env.example does not set",
            path.display()
        );
    }
    assert!(checked >= 2, "no configs found under config/");
}

/// The env example's values, as install.sh and systemd hand them over.
fn example_env() -> Vec<(String, String)> {
    env_example()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn check(args: &[&str], env: &[(String, String)]) -> Output {
    let mut command = Command::new(BINARY);
    command
        .arg("check")
        .args(args)
        .env_remove("SWITCHYARD_CONFIG")
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run switchyard check")
}

#[test]
fn shipped_configs_pass_check_with_the_example_env_and_warn_about_placeholders() {
    let env = example_env();
    for name in ["switchyard.example.yaml", "cross-provider.yaml"] {
        let path = Path::new(REPO).join("config").join(name);
        let out = check(&[path.to_str().unwrap()], &env);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{name}:\n{stderr}");
        let warnings: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("warning: "))
            .collect();
        assert!(
            warnings.iter().any(|w| w.contains("`OPENAI_API_KEY`")),
            "{name}: no placeholder warning:\n{stderr}"
        );
        let at_line = format!("{}:", path.display());
        for warning in &warnings {
            assert!(warning.contains(&at_line), "no file:line: {warning}");
            assert!(!warning.contains("replace-me"), "value echoed: {warning}");
        }
        println!("{name}: {} placeholder warnings", warnings.len());
    }
}

#[test]
fn install_into_a_prefix_with_the_example_env_succeeds_and_says_what_next() {
    let dir = TempDir::new("prefix");
    let root = dir.path().join("x");
    let out = Command::new("bash")
        .arg(Path::new(REPO).join("systemd/install.sh"))
        .args(["--prefix", root.to_str().unwrap(), "--no-start"])
        .args(["--binary", BINARY])
        .env_remove("OPENAI_API_KEY")
        .env_remove("GROQ_API_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("run install.sh");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("OK ("), "check did not pass:\n{stdout}");
    assert!(stdout.contains("Next:"), "no next steps:\n{stdout}");
    assert!(
        stderr.contains("warning:") && stderr.contains("placeholder"),
        "placeholders not flagged:\n{stderr}"
    );
    assert!(root.join("etc/switchyard/switchyard.env").exists());
}

/// Five mistakes, one of them a type error that serde stops at.
const FIVE_MISTAKES: &str = "listen: 127.0.0.1:18081
driver: turbo
shutdown_grace: 30 parsecs
providers:
  a: { kind: openai-compatible, base_url: http://127.0.0.1:1/v1, max_connections: lots }
  b: { kind: opnai, base_url: http://127.0.0.1:1/v1 }
routes:
  - name: chat
    targets: [{ provider: nope, model: m }]
";

#[test]
fn check_reports_every_mistake_in_one_pass_even_after_a_type_error() {
    let dir = TempDir::new("five");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, FIVE_MISTAKES).unwrap();
    let out = check(&[path.to_str().unwrap()], &[]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let prefix = format!("{}:", path.display());
    let lines: Vec<usize> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_once(':')?.0.parse().ok())
        .collect();
    assert_eq!(lines, vec![2, 3, 5, 6, 9], "{stderr}");
    assert!(stderr.contains("5 mistake(s)"), "{stderr}");
}

#[test]
fn check_takes_the_file_positionally_by_flag_or_from_switchyard_config() {
    let dir = TempDir::new("cli");
    let path = dir.path().join("ok.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:18082\nproviders:\n  p: { kind: openai-compatible, base_url: http://127.0.0.1:1/v1 }\nroutes:\n  - name: chat\n    targets: [{ provider: p, model: m }]\nkeys:\n  - { name: a, key: \"$APP_KEY\" }\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let by_env = [("SWITCHYARD_CONFIG".to_string(), file.to_string())];
    for out in [
        check(&[file], &[]),
        check(&["--config", file], &[]),
        check(&[], &by_env),
    ] {
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(text(&out.stdout).contains("OK (1 providers, 1 routes)"));
        assert!(
            stderr.contains(&format!("warning: {file}:8: keys[0].key:"))
                && stderr.contains("did you mean ${APP_KEY}?"),
            "{stderr}"
        );
    }
    let none = check(&[], &[]);
    assert!(!none.status.success());
    assert!(text(&none.stderr).contains("SWITCHYARD_CONFIG"));
}

#[test]
fn version_names_the_commit_and_completions_and_man_render() {
    let version = Command::new(BINARY).arg("--version").output().unwrap();
    let version = text(&version.stdout);
    println!("{version}");
    assert!(
        version.starts_with("switchyard 0.") && version.contains(" (") && version.contains(')'),
        "{version}"
    );
    let bash = Command::new(BINARY)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(bash.status.success());
    assert!(text(&bash.stdout).contains("_switchyard"));
    let man = Command::new(BINARY).arg("man").output().unwrap();
    assert!(man.status.success());
    assert!(text(&man.stdout).contains(".TH switchyard"));
}

// ---------------------------------------------------------------------------------
// Double start.
// ---------------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("ephemeral port")
        .port()
}

/// `switchyard run` with the lock directory at `lock_dir`; stderr collected.
struct Gateway {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Gateway {
    fn start(config: &Path, lock_dir: &Path, extra: &[&str]) -> Gateway {
        let mut child = Command::new(BINARY)
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(extra)
            .env("XDG_RUNTIME_DIR", lock_dir)
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchyard");
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Gateway { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The exit status within `limit`, or `None` if it is still running.
    fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_second_instance_on_the_same_port_is_refused_unless_it_takes_over() {
    let dir = TempDir::new("double");
    let port = free_port();
    let config = dir.path().join("switchyard.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nshards: 1\nshutdown_grace: 1s\nproviders:\n  p: {{ kind: openai-compatible, base_url: http://127.0.0.1:1/v1 }}\nroutes:\n  - name: chat\n    targets: [{{ provider: p, model: m }}]\n"
        ),
    )
    .unwrap();
    let mut first = Gateway::start(&config, dir.path(), &[]);
    assert!(
        wait_for_port(port, Duration::from_secs(15)),
        "first instance never listened:\n{}",
        first.log()
    );
    assert!(first.exit_within(Duration::ZERO).is_none());

    let mut second = Gateway::start(&config, dir.path(), &[]);
    let status = second.exit_within(Duration::from_secs(15));
    let log = second.log();
    assert!(
        status.is_some_and(|s| !s.success()),
        "second instance: {status:?}\n{log}"
    );
    assert!(
        log.contains("already serving") && log.contains(&format!("pid {}", first.child.id())),
        "{log}"
    );
    println!("refused: {log}");

    let mut third = Gateway::start(&config, dir.path(), &["--takeover"]);
    let start = Instant::now();
    while !third.log().contains("--takeover") && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        third.exit_within(Duration::from_millis(500)).is_none(),
        "--takeover did not start:\n{}",
        third.log()
    );
    assert!(third.log().contains("--takeover"), "{}", third.log());
}
