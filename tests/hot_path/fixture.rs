//! The pass-through hot path as one fixture, shared by the allocation test
//! (tests/hot_path_allocations.rs) and the criterion bench (benches/hot_path.rs):
//! parse the client's request head (the OpenAI Python SDK's 13 headers), match
//! its route and order the targets, write the upstream request head.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::health::TargetHealth;
use switchyard::http::{parse_request_head, write_request_head, RequestHead};
use switchyard::outcome::Outcome;
use switchyard::route::select::{candidates, order, Balancer};
use switchyard::route::table::Table;

/// What the official OpenAI Python SDK sends (13 headers).
pub const OPENAI_SDK_HEAD: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\n\
host: gateway.internal:8080\r\n\
accept-encoding: gzip, deflate\r\n\
connection: keep-alive\r\n\
accept: application/json\r\n\
content-type: application/json\r\n\
user-agent: OpenAI/Python 1.54.3\r\n\
x-stainless-lang: python\r\n\
x-stainless-package-version: 1.54.3\r\n\
x-stainless-os: Linux\r\n\
x-stainless-arch: x64\r\n\
x-stainless-runtime: CPython\r\n\
authorization: Bearer sk-sy-0123456789abcdef0123456789abcdef\r\n\
content-length: 187\r\n\r\n";

const UPSTREAM_HEADERS: [(&str, &[u8]); 2] = [
    ("authorization", b"Bearer sk-provider"),
    ("content-type", b"application/json"),
];

/// A route of two priority targets, their health with some traffic, and the
/// reused upstream buffer.
pub struct HotPath {
    table: Table,
    health: Vec<RefCell<TargetHealth>>,
    balancer: Balancer,
    rng: fastrand::Rng,
    pub upstream: Vec<u8>,
}

impl HotPath {
    pub fn new() -> HotPath {
        let yaml = "listen: 127.0.0.1:0\nproviders:\n\
             \x20 a: { kind: openai-compatible, base_url: http://127.0.0.1:9001/v1 }\n\
             \x20 b: { kind: openai-compatible, base_url: http://127.0.0.1:9002/v1 }\nroutes:\n\
             \x20 - name: chat\n    match: { model: chat }\n    strategy: priority\n    targets:\n\
             \x20     - { provider: a, model: x, priority: 0 }\n\
             \x20     - { provider: b, model: y, priority: 1 }\n";
        let config = switchyard::config::load_str(yaml, "hot.yaml", &|_| None)
            .unwrap_or_else(|e| panic!("config invalid: {e}"));
        let local = |_: &str, port: u16| vec![SocketAddr::from(([127, 0, 0, 1], port))];
        let table = Table::build(Arc::new(config), 1, &local);
        let now = Instant::now();
        let health = (0..table.slots.len())
            .map(|i| {
                let mut h =
                    TargetHealth::new(&table.config.health, table.breakers[i].clone(), 1, 0);
                let ttfb = Some(Duration::from_micros(300));
                h.record(now, Outcome::Success, ttfb, 10, false);
                RefCell::new(h)
            })
            .collect();
        HotPath {
            table,
            health,
            balancer: Balancer::new(2),
            rng: fastrand::Rng::with_seed(7),
            upstream: Vec::with_capacity(4096),
        }
    }

    pub fn parse(&self, head: &[u8]) -> RequestHead {
        match parse_request_head(head, 16 * 1024) {
            Ok(Some(head)) => head,
            other => panic!("the fixture's head does not parse: {other:?}"),
        }
    }

    /// Matches the route and orders its targets, as the executor does.
    pub fn route(&mut self, model: &str) -> switchyard::route::select::Order {
        let route = self
            .table
            .match_route(model, None, |_| None)
            .expect("the fixture's route matches");
        let targets = &self.table.routes[route].targets;
        let health = targets.iter().map(|t| self.health[t.slot].borrow());
        let list = candidates(health, Instant::now());
        let policy = &self.table.config.routes[route];
        order(policy, &list, &mut self.balancer, &mut self.rng)
    }

    pub fn serialise(&mut self, content_length: usize) {
        self.upstream.clear();
        write_request_head(
            &mut self.upstream,
            "POST",
            "/v1/chat/completions",
            "127.0.0.1:9001",
            &UPSTREAM_HEADERS,
            content_length,
        );
    }

    /// All three steps for one request.
    pub fn pass(&mut self, head: &[u8]) -> usize {
        let parsed = self.parse(head);
        let order = self.route("chat");
        self.serialise(187);
        parsed.headers.len() + order.len()
    }
}
