//! The gateway under test as a child process: finding (or building) the
//! `switchyard` binary, rendering its config, starting it pinned to one core,
//! waiting until it answers, and killing it when the guard drops.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::SuiteError;
use crate::client::{chat_body, Client};

/// How long the gateway may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The `switchyard` binary to run: `explicit`, else the one next to this
/// executable's profile directory (`target/release` or `target/debug`), built with
/// cargo when missing.
pub fn resolve_binary(explicit: Option<&Path>) -> Result<PathBuf, SuiteError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(SuiteError::Gateway(format!(
                "--gateway-bin {} does not exist",
                path.display()
            )))
        };
    }
    let profile_dir = profile_dir();
    let binary = profile_dir.join("switchyard");
    if binary.is_file() {
        return Ok(binary);
    }
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let target_dir = profile_dir
        .parent()
        .map_or_else(|| workspace_root().join("target"), Path::to_path_buf);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args([
            "build",
            "-p",
            "switchyard",
            "--bin",
            "switchyard",
            "--target-dir",
        ])
        .arg(&target_dir);
    if release {
        cmd.arg("--release");
    }
    eprintln!("suite: building {} ...", binary.display());
    let status = cmd
        .status()
        .map_err(|e| SuiteError::Gateway(format!("cannot run cargo build: {e}")))?;
    if !status.success() || !binary.is_file() {
        return Err(SuiteError::Gateway(format!(
            "cargo build of switchyard failed ({status}); pass --gateway-bin"
        )));
    }
    Ok(binary)
}

/// The workspace root (the parent of the loadtest crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `target/<profile>` of the running executable (tests run from `deps/` below it).
fn profile_dir() -> PathBuf {
    let fallback = workspace_root().join("target").join("release");
    let Ok(exe) = std::env::current_exe() else {
        return fallback;
    };
    exe.ancestors()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n == "release" || n == "debug")
        })
        .map_or(fallback, Path::to_path_buf)
}

/// Fills the template: `{{mock.NAME}}` → base URL; then sets `listen` and
/// `shards: 1` at the top level (replacing any the template has).
pub fn render_config(
    template: &str,
    urls: &[(String, String)],
    listen: SocketAddr,
) -> Result<String, String> {
    let mut text = template.to_string();
    for (name, url) in urls {
        text = text.replace(&format!("{{{{mock.{name}}}}}"), url);
    }
    if let Some(at) = text.find("{{") {
        let rest: String = text[at..].chars().take(40).collect();
        return Err(format!(
            "gateway template: unknown placeholder near `{rest}` (use {{{{mock.NAME}}}} with a declared mock)"
        ));
    }
    let mut doc: serde_yaml::Mapping = serde_yaml::from_str(&text)
        .map_err(|e| format!("gateway template is not a YAML mapping: {e}"))?;
    doc.insert("listen".into(), listen.to_string().into());
    doc.insert("shards".into(), 1.into());
    serde_yaml::to_string(&doc).map_err(|e| format!("cannot encode gateway config: {e}"))
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<SocketAddr, SuiteError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| SuiteError::Io {
        what: "cannot find a free port".into(),
        source: e,
    })?;
    listener.local_addr().map_err(|e| SuiteError::Io {
        what: "cannot find a free port".into(),
        source: e,
    })
}

/// A running gateway; dropping it kills the process.
pub struct GatewayProcess {
    child: Child,
    pub addr: SocketAddr,
    /// `Cpus_allowed_list` of the child, as the kernel reports it.
    pub cpus: String,
    log: PathBuf,
}

impl GatewayProcess {
    /// Writes `config` to `dir/NAME.gateway.yaml`, starts `binary run` with it
    /// (pinned to `core` when given; the gateway's shards inherit the mask), and
    /// waits until a chat request for `model` gets any HTTP answer.
    pub fn start(
        binary: &Path,
        config: &str,
        addr: SocketAddr,
        dir: &Path,
        name: &str,
        core: Option<usize>,
        model: &str,
    ) -> Result<GatewayProcess, SuiteError> {
        let config_path = dir.join(format!("{name}.gateway.yaml"));
        let log = dir.join(format!("{name}.gateway.log"));
        std::fs::write(&config_path, config).map_err(|e| SuiteError::Io {
            what: format!("cannot write {}", config_path.display()),
            source: e,
        })?;
        let log_file = File::create(&log).map_err(|e| SuiteError::Io {
            what: format!("cannot create {}", log.display()),
            source: e,
        })?;
        let err_file = log_file.try_clone().map_err(|e| SuiteError::Io {
            what: format!("cannot open {}", log.display()),
            source: e,
        })?;
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .args(["--shards", "1"])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file);
        let child = spawn_pinned(cmd, core)
            .map_err(|e| SuiteError::Gateway(format!("cannot start {}: {e}", binary.display())))?;
        let cpus = cpus_allowed(child.id());
        let mut gateway = GatewayProcess {
            child,
            addr,
            cpus,
            log,
        };
        gateway.wait_ready(model)?;
        Ok(gateway)
    }

    /// The process id (its task clocks are under `/proc/<pid>/task`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self, model: &str) -> Result<(), SuiteError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let body = chat_body(model, false);
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(SuiteError::Gateway(format!(
                    "gateway exited with {status} before it was ready; log tail:\n{}",
                    self.log_tail()
                )));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                let answer = Client::connect(self.addr).and_then(|mut c| {
                    c.set_read_timeout(Duration::from_secs(5))?;
                    c.chat(&body, &[])
                });
                match answer {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(SuiteError::Gateway(format!(
            "gateway at {} not ready within {:?} ({last}); log tail:\n{}",
            self.addr,
            READY_TIMEOUT,
            self.log_tail()
        )))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` from a short-lived thread pinned to `core`: the child inherits
/// that thread's affinity mask, so the gateway's `shards: auto`/pinning sees one core.
pub(crate) fn spawn_pinned(mut cmd: Command, core: Option<usize>) -> std::io::Result<Child> {
    let Some(core) = core else {
        return cmd.spawn();
    };
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    return Err(std::io::Error::other(format!("cannot pin to core {core}")));
                }
                cmd.spawn()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("spawn thread panicked")))
    })
}

fn cpus_allowed(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders_and_sets_listen() {
        let urls = vec![("primary".to_string(), "http://127.0.0.1:9/v1".to_string())];
        let listen: SocketAddr = "127.0.0.1:7".parse().unwrap();
        let out = render_config(
            "listen: 0.0.0.0:1\nproviders:\n  p: { base_url: \"{{mock.primary}}\" }\n",
            &urls,
            listen,
        )
        .unwrap();
        assert!(out.contains("http://127.0.0.1:9/v1"), "{out}");
        assert!(
            out.contains("listen: 127.0.0.1:7") && out.contains("shards: 1"),
            "{out}"
        );
        let e = render_config("a: \"{{mock.nope}}\"", &urls, listen).unwrap_err();
        assert!(e.contains("unknown placeholder"), "{e}");
        assert!(render_config("- a list", &urls, listen).is_err());
    }
}
