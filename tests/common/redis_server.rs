//! A real `redis-server` for tests: started on a free 127.0.0.1 port with no
//! persistence, and killed, paused (SIGSTOP), resumed or restarted on the same
//! port on demand; dropped, it is killed.
//!
//! Without the binary a test is skipped with a message, unless
//! `SWITCHYARD_REQUIRE_REDIS` is set (as `.ci/run` does): then it fails, so CI
//! never passes by skipping.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    port: u16,
    /// Serves TLS only (on `port`): readiness is then a TCP connect.
    tls: bool,
    args: Vec<String>,
    child: Option<Child>,
}

/// How long a started server has to answer PING.
const READY_WITHIN: Duration = Duration::from_secs(10);

impl RedisServer {
    /// A server with no extra arguments, or `None` (skip) without the binary.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(&[])
    }

    /// A server started with `args` added (e.g. `--requirepass x`).
    pub fn start_with(args: &[&str]) -> Option<RedisServer> {
        RedisServer::launch(args, false)
    }

    /// A server that speaks TLS only, with this certificate and key (PEM files);
    /// clients are not asked for certificates.
    pub fn start_tls(cert: &Path, key: &Path) -> Option<RedisServer> {
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        let args = [
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-auth-clients",
            "no",
        ];
        RedisServer::launch(&args, true)
    }

    fn launch(args: &[&str], tls: bool) -> Option<RedisServer> {
        if !binary_present() {
            let msg = "redis-server is not installed (apt-get install redis-server)";
            if std::env::var_os("SWITCHYARD_REQUIRE_REDIS").is_some() {
                panic!("{msg}, and SWITCHYARD_REQUIRE_REDIS is set");
            }
            // Straight to stderr, past the test harness's capture, so a skip
            // shows in the log even when the test passes.
            let line = format!("SKIPPED: {msg}; set SWITCHYARD_REQUIRE_REDIS=1 to fail instead\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            return None;
        }
        let mut server = RedisServer {
            port: free_port(),
            tls,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        server.spawn();
        Some(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Continues a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills and starts the server again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("the server runs").id();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(rc, 0, "signal {signal} to redis-server {pid}");
    }

    fn spawn(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        let port = self.port.to_string();
        let ports = match self.tls {
            true => ["--port", "0", "--tls-port", &port],
            false => ["--port", &port, "--tls-port", "0"],
        };
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        while Instant::now() < deadline {
            if self.ready() {
                return;
            }
            let exited = self.child.as_mut().map(|c| c.try_wait());
            if let Some(Ok(Some(status))) = exited {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer PING within {READY_WITHIN:?}",
            self.port
        );
    }
}

impl RedisServer {
    fn ready(&self) -> bool {
        match self.tls {
            true => TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok(),
            false => answers_ping(self.addr()),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused process is killed too: SIGKILL needs no SIGCONT.
        self.kill();
    }
}

fn binary_present() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// Any reply to PING (`+PONG`, or `-NOAUTH` from a server with a password)
/// means the server is up.
fn answers_ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    matches!(stream.read(&mut reply), Ok(n) if n > 0 && (reply[0] == b'+' || reply[0] == b'-'))
}
