//! HAProxy as the reference L7 proxy of the efficiency scenario: a child process
//! in front of the same mock as the gateway's pass-through route, one thread
//! (`nbthread 1`) on the gateway's core, server-side keep-alive reused
//! (`http-reuse always`), no logging — so its task clock per request is the
//! figure DESIGN.md's CPU budget compares the gateway with.
//!
//! HAProxy is optional: without the binary (Debian package `haproxy`) the
//! reference row says NOT MEASURED and nothing fails.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::gateway::{free_port, spawn_pinned};
use crate::client::{chat_body, Client};

/// How long HAProxy may take to proxy its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The `haproxy` binary: the first on `PATH`, else Debian's `/usr/sbin/haproxy`
/// (sbin is not on every user's `PATH`).
pub fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("haproxy"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let fixed = PathBuf::from("/usr/sbin/haproxy");
        fixed.is_file().then_some(fixed)
    })
}

/// The config: HTTP mode, one thread, keep-alive on both sides with server
/// connections shared between clients, no log lines, one server.
pub fn config(listen: SocketAddr, server: SocketAddr) -> String {
    format!(
        "# Written by the switchyard loadtest suite (efficiency scenario).\n\
         global\n    nbthread 1\n    maxconn 4096\n\n\
         defaults\n    mode http\n    option http-keep-alive\n    http-reuse always\n    \
         timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n    \
         timeout http-keep-alive 30s\n\n\
         frontend efficiency\n    bind {listen}\n    default_backend mock\n\n\
         backend mock\n    server mock {server}\n"
    )
}

/// A running HAProxy; dropping it kills the process.
pub struct HaproxyProcess {
    child: Child,
    pub addr: SocketAddr,
    /// Where its config was written.
    pub config_path: PathBuf,
    log: PathBuf,
}

impl HaproxyProcess {
    /// Writes the config to `dir/NAME.haproxy.cfg`, starts `binary -f CFG -db`
    /// (foreground) pinned to `core`, and waits until it proxies a chat request
    /// to `server` with a 200. `Err` says why it could not (a reference row
    /// that is not measured, never a failure of the suite).
    pub fn start(
        binary: &Path,
        server: SocketAddr,
        dir: &Path,
        name: &str,
        core: Option<usize>,
    ) -> Result<HaproxyProcess, String> {
        let addr = free_port().map_err(|e| e.to_string())?;
        let config_path = dir.join(format!("{name}.haproxy.cfg"));
        let log = dir.join(format!("{name}.haproxy.log"));
        let at = |what: &str, path: &Path, e: std::io::Error| {
            format!("cannot {what} {}: {e}", path.display())
        };
        std::fs::write(&config_path, config(addr, server))
            .map_err(|e| at("write", &config_path, e))?;
        let out = File::create(&log).map_err(|e| at("create", &log, e))?;
        let err = out.try_clone().map_err(|e| at("open", &log, e))?;
        let mut cmd = Command::new(binary);
        cmd.arg("-f")
            .arg(&config_path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = spawn_pinned(cmd, core)
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut proxy = HaproxyProcess {
            child,
            addr,
            config_path,
            log,
        };
        proxy.wait_ready()?;
        Ok(proxy)
    }

    /// The process id (its task clocks are under `/proc/<pid>/task`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let body = chat_body("passthrough", false);
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "haproxy exited with {status} before it was ready: {}",
                    self.log_tail()
                ));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                let answer = Client::connect(self.addr).and_then(|mut c| {
                    c.set_read_timeout(Duration::from_secs(2))?;
                    c.chat(&body, &[])
                });
                match answer {
                    Ok(r) if r.status == 200 => return Ok(()),
                    Ok(r) => last = format!("status {}", r.status),
                    Err(e) => last = e.to_string(),
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "haproxy at {} not ready within {READY_TIMEOUT:?} ({last}): {}",
            self.addr,
            self.log_tail()
        ))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" / ")
    }
}

impl Drop for HaproxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_one_thread_keep_alive_reuse_and_no_log() {
        let text = config(
            "127.0.0.1:7000".parse().unwrap(),
            "127.0.0.1:9000".parse().unwrap(),
        );
        for line in [
            "nbthread 1",
            "option http-keep-alive",
            "http-reuse always",
            "bind 127.0.0.1:7000",
            "server mock 127.0.0.1:9000",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        let logs = |l: &str| l.trim_start().starts_with("log");
        assert!(!text.lines().any(logs), "{text}");
    }
}
