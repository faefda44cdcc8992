//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/admin/targets`,
//! `/admin/config` and `POST /admin/reload`, on its own address and thread.
//!
//! It never touches shard state: every answer is built from snapshots the shards
//! send back over their inboxes, so the request path stays lock-free.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::config::AdminConfig;
use crate::gateway::Control;
use crate::health::BreakerState;
use crate::http::request::{parse_request_head, Method, RequestBody};
use crate::http::response::{write_response_head, BodyLen};
use crate::metrics::{render_prometheus, ShardSnapshot};

const MAX_ADMIN_REQUEST: usize = 64 * 1024;

pub struct AdminServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl AdminServer {
    pub fn start(config: &AdminConfig, control: Arc<Control>) -> std::io::Result<AdminServer> {
        let listener = TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || serve(listener, control, flag))?;
        crate::event!(crate::log::Level::Info, "admin listening", addr = addr);
        Ok(AdminServer { addr, stop, thread })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

fn serve(listener: TcpListener, control: Arc<Control>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => handle(stream, &control),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

struct Reply {
    status: u16,
    content_type: &'static [u8],
    body: Vec<u8>,
}

fn json(status: u16, value: serde_json::Value) -> Reply {
    Reply {
        status,
        content_type: b"application/json",
        body: value.to_string().into_bytes(),
    }
}

fn handle(mut stream: TcpStream, control: &Control) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head = loop {
        match parse_request_head(&buf, MAX_ADMIN_REQUEST) {
            Ok(Some(head)) => break head,
            Ok(None) => {}
            Err(_) => {
                return respond(
                    &mut stream,
                    json(400, serde_json::json!({"error": "malformed request"})),
                )
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    if matches!(head.body, RequestBody::Chunked)
        || matches!(head.body, RequestBody::ContentLength(n) if n > MAX_ADMIN_REQUEST as u64)
    {
        return respond(
            &mut stream,
            json(
                400,
                serde_json::json!({"error": "admin requests take no body"}),
            ),
        );
    }
    // The running config's token, so a reload rotates it.
    let table = control.current();
    let token = table.config.admin.as_ref().and_then(|a| a.token.as_deref());
    if !authorized(head.header("authorization"), token) {
        return respond(
            &mut stream,
            json(401, serde_json::json!({"error": "admin token required"})),
        );
    }
    let reply = route(head.method, head.path(), control);
    respond(&mut stream, reply);
}

fn authorized(header: Option<&[u8]>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let presented = header
        .and_then(|h| h.strip_prefix(b"Bearer "))
        .unwrap_or(b"");
    bool::from(token.as_bytes().ct_eq(presented))
}

fn route(method: Method, path: &str, control: &Control) -> Reply {
    match (method, path) {
        (Method::Get, "/healthz") => json(200, serde_json::json!({"status": "ok"})),
        (Method::Get, "/readyz") => readyz(control),
        (Method::Get, "/metrics") => Reply {
            status: 200,
            content_type: b"text/plain; version=0.0.4; charset=utf-8",
            body: render_prometheus(&control.snapshots()).into_bytes(),
        },
        (Method::Get, "/admin/targets") => json(200, targets_json(&control.snapshots())),
        (Method::Get, "/admin/config") => {
            json(200, crate::config::redacted_json(&control.current().config))
        }
        (Method::Post, "/admin/reload") => match control.reload_file() {
            Ok(generation) => json(
                200,
                serde_json::json!({"reloaded": true, "generation": generation}),
            ),
            Err(e) => json(
                400,
                serde_json::json!({"reloaded": false, "error": e.to_string()}),
            ),
        },
        (
            _,
            "/healthz" | "/readyz" | "/metrics" | "/admin/targets" | "/admin/config"
            | "/admin/reload",
        ) => json(405, serde_json::json!({"error": "method not allowed"})),
        _ => json(404, serde_json::json!({"error": "unknown admin path"})),
    }
}

fn readyz(control: &Control) -> Reply {
    let serving = control.shards_serving();
    let total = control.shard_count();
    let status = if serving == total { 200 } else { 503 };
    json(
        status,
        serde_json::json!({"ready": serving == total, "shards_serving": serving, "shards": total, "drivers": control.drivers}),
    )
}

/// Per target: the breaker and window of every shard, side by side.
pub fn targets_json(snapshots: &[ShardSnapshot]) -> serde_json::Value {
    let mut targets: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for snap in snapshots {
        for t in &snap.targets {
            let view = serde_json::json!({
                "shard": snap.shard,
                "breaker": breaker_name(t.breaker),
                // Whether this shard sends it traffic now: its own breaker and the
                // open breakers its peers reported (which `breaker` does not show).
                "available": t.retry_in.is_none(),
                "retry_in_ms": t.retry_in.map(|d| d.as_millis() as u64),
                "window_requests": t.window_requests,
                "window_failures": t.window_failures,
                "ttfb_ewma_ms": (t.ewma_ttfb_us / 100.0).round() / 10.0,
                "in_flight": t.in_flight,
                "upstream_connections": t.pool_open,
                "idle_connections": t.pool_idle,
                "successes": t.counters.successes,
            });
            match targets.iter_mut().find(|(label, _)| *label == t.label) {
                Some((_, shards)) => shards.push(view),
                None => targets.push((t.label.clone(), vec![view])),
            }
        }
    }
    let list: Vec<serde_json::Value> = targets
        .into_iter()
        .map(|(label, shards)| {
            let open = shards.iter().any(|s| s["breaker"] != "closed");
            serde_json::json!({"target": label, "available": !open, "shards": shards})
        })
        .collect();
    serde_json::json!({ "targets": list })
}

fn breaker_name(state: BreakerState) -> &'static str {
    state.kind().as_str()
}

fn respond(stream: &mut TcpStream, reply: Reply) {
    let mut out = Vec::with_capacity(reply.body.len() + 256);
    write_response_head(
        &mut out,
        reply.status,
        &[("content-type", reply.content_type)],
        BodyLen::Fixed(reply.body.len()),
        false,
    );
    out.extend_from_slice(&reply.body);
    let _ = stream.write_all(&out);
}
