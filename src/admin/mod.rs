//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/admin/targets`,
//! `/admin/keys`, `/admin/config`, `/admin/cluster` and `POST /admin/reload`, on its own address
//! and threads.
//!
//! It never touches shard state: every answer is built from snapshots the shards
//! send back over their inboxes, so the request path stays lock-free.
//!
//! One accept thread hands each connection to a thread of its own, at most
//! [`MAX_CONNECTIONS`] at once (beyond that a connection gets 503 and is closed
//! at once), and every connection lives under the deadlines of [`conn`], so a
//! slow or silent peer costs one slot for a few seconds and never the listener.

mod conn;
mod keys;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use crate::config::AdminConfig;
use crate::control::Control;
use crate::health::BreakerState;
use crate::http::request::Method;
use crate::http::response::{write_response_head, BodyLen};
use crate::log::Level;
use crate::metrics::{render_prometheus, ShardSnapshot};

pub use conn::{REQUEST_DEADLINE, WRITE_DEADLINE};

/// Admin connections served at once. Operators and scrapers need a handful;
/// the cap bounds the threads and sockets a flood of connections can hold.
pub const MAX_CONNECTIONS: usize = 16;

pub struct AdminServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// The listening socket (a second handle), shut down to end a blocked accept.
    listener: TcpListener,
    thread: JoinHandle<()>,
}

/// What every connection thread shares.
struct Shared {
    control: Arc<Control>,
    /// Connections being served now (see [`Slot`]).
    active: AtomicUsize,
    /// Admin reloads run one at a time, so two concurrent `POST /admin/reload`
    /// cannot publish their tables out of generation order.
    reloads: Mutex<()>,
}

impl AdminServer {
    pub fn start(config: &AdminConfig, control: Arc<Control>) -> std::io::Result<AdminServer> {
        let listener = TcpListener::bind(config.listen)?;
        let addr = listener.local_addr()?;
        let handle = listener.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let shared = Arc::new(Shared {
            control,
            active: AtomicUsize::new(0),
            reloads: Mutex::new(()),
        });
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || serve(listener, shared, flag))?;
        crate::event!(Level::Info, "admin listening", addr = addr);
        if !addr.ip().is_loopback() && config.token.is_none() {
            // Config validation only lets this through with an explicit opt-in.
            crate::event!(
                Level::Warn,
                "admin listener is not on loopback and has no token: anyone who can reach it can reload the config",
                addr = addr
            );
        }
        Ok(AdminServer {
            addr,
            stop,
            listener: handle,
            thread,
        })
    }

    /// Stops accepting. Connections still being served end within their deadlines.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        // Linux ends an accept blocked on a listening socket that is shut down
        // (EINVAL); the loop then sees `stop`.
        let _ = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Both);
        let _ = self.thread.join();
    }
}

/// Accepts until stopped, blocked in accept between connections (a polled
/// accept woke the thread 50 times a second on an idle gateway).
fn serve(listener: TcpListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => dispatch(stream, &shared),
            // Out of descriptors and the like: a nap instead of a spin.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A taken connection slot; dropping it (even by unwinding) gives it back.
struct Slot(Arc<Shared>);

impl Slot {
    fn take(shared: &Arc<Shared>) -> Option<Slot> {
        shared
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONNECTIONS).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(shared.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

fn dispatch(stream: TcpStream, shared: &Arc<Shared>) {
    let accepted = Instant::now();
    let Some(slot) = Slot::take(shared) else {
        return refuse(stream);
    };
    let spawned = std::thread::Builder::new()
        .name("admin-conn".into())
        .spawn(move || handle(stream, &slot.0, accepted));
    // On failure the closure is dropped: its slot is given back, its socket closed.
    if let Err(error) = spawned {
        crate::event!(
            Level::Warn,
            "admin connection dropped: no thread",
            error = error
        );
    }
}

/// Over the cap: a 503 written without waiting (the socket's send buffer is
/// empty, so it fits), then close. The accept thread never blocks on a peer.
fn refuse(mut stream: TcpStream) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let reply = json(
        503,
        serde_json::json!({"error": "too many admin connections; retry shortly"}),
    );
    let _ = stream.write(&encode(reply));
    // What the peer already sent is read (not waited for), so the close is
    // less likely to be a reset that destroys the 503 unread.
    let _ = stream.read(&mut [0u8; 4096]);
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

fn handle(mut stream: TcpStream, shared: &Shared, accepted: Instant) {
    // The listener is non-blocking; make sure the accepted socket is not, so the
    // per-call timeouts in `conn` apply.
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let head = match conn::read_request(&mut stream, accepted + REQUEST_DEADLINE) {
        Ok(head) => head,
        Err(conn::ReadError::Closed | conn::ReadError::Io(_)) => return,
        Err(conn::ReadError::Deadline(_)) => {
            let reply = json(408, serde_json::json!({"error": "request timed out"}));
            return respond(&mut stream, reply);
        }
        Err(conn::ReadError::Malformed(_)) => {
            let reply = json(400, serde_json::json!({"error": "malformed request"}));
            return respond(&mut stream, reply);
        }
        Err(conn::ReadError::Chunked | conn::ReadError::TooLarge(_)) => {
            let reply = json(
                400,
                serde_json::json!({"error": "admin requests take no body"}),
            );
            return respond(&mut stream, reply);
        }
    };
    // The running config's token, so a reload rotates it.
    let table = shared.control.current();
    let token = table.config.admin.as_ref().and_then(|a| a.token.as_deref());
    if !authorized(head.header("authorization"), token) {
        return respond(
            &mut stream,
            json(401, serde_json::json!({"error": "admin token required"})),
        );
    }
    drop(table);
    let reply = route(head.method, head.path(), shared);
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

fn route(method: Method, path: &str, shared: &Shared) -> Reply {
    let control = &*shared.control;
    match (method, path) {
        (Method::Get, "/healthz") => json(200, serde_json::json!({"status": "ok"})),
        (Method::Get, "/readyz") => readyz(control),
        (Method::Get, "/metrics") => {
            let mut text = render_prometheus(&control.snapshots());
            keys::keys_prometheus(&control.current(), &mut text);
            if let Some(fleet) = &control.cluster {
                fleet.prometheus(&mut text);
            }
            if let Some(limits) = &control.fleet_limits {
                limits.prometheus(&mut text);
            }
            if let Some(spend) = &control.fleet_spend {
                spend.prometheus(&mut text);
            }
            Reply {
                status: 200,
                content_type: b"text/plain; version=0.0.4; charset=utf-8",
                body: text.into_bytes(),
            }
        }
        (Method::Get, "/admin/targets") => json(200, targets_json(&control.snapshots())),
        (Method::Get, "/admin/cluster") => match &control.cluster {
            Some(fleet) => {
                let mut body = fleet.json();
                if let Some(limits) = &control.fleet_limits {
                    body["limits"] = limits.json();
                }
                if let Some(spend) = &control.fleet_spend {
                    body["spend"] = spend.json();
                }
                json(200, body)
            }
            None => json(
                404,
                serde_json::json!({"error": "cluster mode is off (no `cluster:` in the config)"}),
            ),
        },
        (Method::Get, "/admin/keys") => json(200, keys::keys_json(&control.current())),
        (Method::Get, "/admin/config") => {
            json(200, crate::config::redacted_json(&control.current().config))
        }
        (Method::Post, "/admin/reload") => match reload(shared) {
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
            "/healthz" | "/readyz" | "/metrics" | "/admin/targets" | "/admin/keys"
            | "/admin/config" | "/admin/reload" | "/admin/cluster",
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
                // The breaker is one per target per gateway: every shard reports the
                // same state; sidelined (asked to pause) is distinct from open.
                "breaker": breaker_name(t.breaker),
                "breaker_reason": t.breaker.reason().map(|r| r.as_str()),
                "available": t.retry_in.is_none(),
                "retry_in_ms": t.retry_in.map(|d| d.as_millis() as u64),
                "window_requests": t.window_requests,
                "window_failures": t.window_failures,
                "ttfb_ewma_ms": (t.ewma_ttfb_us / 100.0).round() / 10.0,
                "ttft_p95_ms": t.ttft_p95.map(|d| d.as_millis() as u64),
                "first_token_auto_ms": t.first_token_auto.as_millis() as u64,
                "in_flight": t.in_flight,
                "upstream_connections": t.pool_open,
                "idle_connections": t.pool_idle,
                "successes": t.counters.successes,
                // Skipped at its rpm/tpm quota: distinct from the breaker, never a failure.
                "at_quota": t.at_quota,
                "skipped_at_quota": t.counters.at_quota,
                // Learned gateway-wide (one shared cell): the same on every shard.
                "prefill": t.prefill.as_str(),
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
            let first = shards.first();
            let breaker = first.map_or(serde_json::Value::Null, |s| s["breaker"].clone());
            let reason = first.map_or(serde_json::Value::Null, |s| s["breaker_reason"].clone());
            let prefill = first.map_or(serde_json::Value::Null, |s| s["prefill"].clone());
            let at_quota = shards.iter().any(|s| s["at_quota"] == true);
            serde_json::json!({"target": label, "available": !open && !at_quota, "breaker": breaker, "breaker_reason": reason, "at_quota": at_quota, "prefill": prefill, "shards": shards})
        })
        .collect();
    serde_json::json!({ "targets": list })
}

fn breaker_name(state: BreakerState) -> &'static str {
    state.kind().as_str()
}

/// One admin reload at a time (a poisoned lock only means an earlier reload
/// panicked; the next one may still run).
fn reload(shared: &Shared) -> Result<u64, crate::control::GatewayError> {
    let _one = shared
        .reloads
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    shared.control.reload_file()
}

fn encode(reply: Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(reply.body.len() + 256);
    write_response_head(
        &mut out,
        reply.status,
        &[("content-type", reply.content_type)],
        BodyLen::Fixed(reply.body.len()),
        false,
    );
    out.extend_from_slice(&reply.body);
    out
}

/// Writes the reply within [`WRITE_DEADLINE`] and closes; a peer that does not
/// take it is simply dropped (there is no one left to tell).
fn respond(stream: &mut TcpStream, reply: Reply) {
    if conn::write_by(stream, &encode(reply), Instant::now() + WRITE_DEADLINE).is_ok() {
        conn::close_gracefully(stream);
    }
}
