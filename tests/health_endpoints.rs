//! `/healthz` and `/readyz` on the data port: unauthenticated (load balancers
//! probe without a key), GET only, and off with `health_endpoints: false`; the
//! API itself stays behind its keys. Real sockets on 127.0.0.1.

mod common;

use common::*;
use loadtest::client::Client;

/// A gateway with a client key, over one mock these endpoints never reach.
fn gateway_with(extra: &str) -> (loadtest::mock::MockHandle, switchyard::gateway::Gateway) {
    let upstream = mock("primary");
    let keys = format!("keys:\n  - {{ name: app, key: sk-test-key }}\n{extra}");
    let gw = gateway(&chain_yaml(&[("primary", &upstream)], "", &keys));
    (upstream, gw)
}

#[test]
fn health_endpoints_answer_without_a_key() {
    let (upstream, gw) = gateway_with("");
    let mut client = Client::connect(gw.addr()).expect("connect");
    let health = client.request("GET", "/healthz", &[], b"").expect("answer");
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["status"], "ok");
    let ready = client.request("GET", "/readyz", &[], b"").expect("answer");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");
    let post = client
        .request("POST", "/healthz", &[], b"")
        .expect("answer");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET"));
    let models = client
        .request("GET", "/v1/models", &[], b"")
        .expect("answer");
    assert_eq!(models.status, 401, "the API still needs a key");
    gw.shutdown();
    upstream.shutdown();
}

#[test]
fn health_endpoints_can_be_turned_off() {
    let (upstream, gw) = gateway_with("health_endpoints: false\n");
    let mut client = Client::connect(gw.addr()).expect("connect");
    for path in ["/healthz", "/readyz"] {
        let answer = client.request("GET", path, &[], b"").expect("answer");
        assert_eq!(answer.status, 404, "{path}: {}", answer.text());
    }
    gw.shutdown();
    upstream.shutdown();
}

#[test]
fn readyz_says_draining_once_shutdown_begins() {
    let (upstream, gw) = gateway_with("");
    // A stream held open keeps the gateway draining for its grace period.
    upstream.set_fault(loadtest::mock::Fault::Stall { after_chunks: 3 });
    let addr = gw.addr();
    let held = std::thread::spawn(move || {
        let mut client = Client::connect(addr).expect("connect");
        // Bounded: whatever the stream's end, the thread finishes.
        client
            .set_read_timeout(std::time::Duration::from_secs(4))
            .expect("timeout");
        let body = loadtest::client::chat_body("chat", true);
        let auth = [("authorization", "Bearer sk-test-key")];
        let _ = client.request("POST", "/v1/chat/completions", &auth, body.as_bytes());
    });
    let mut probe = Client::connect(addr).expect("connect");
    let before = probe.request("GET", "/readyz", &[], b"").expect("answer");
    assert_eq!(before.status, 200);
    assert!(wait_until(std::time::Duration::from_secs(3), || upstream
        .stats()
        .streams
        >= 1));
    let stopping = std::thread::spawn(move || gw.shutdown());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let during = probe
        .request("GET", "/readyz", &[], b"")
        .expect("answer while draining");
    assert_eq!(during.status, 503, "{}", during.text());
    assert_eq!(during.json()["status"], "draining");
    stopping.join().expect("shutdown");
    held.join().expect("held stream");
    upstream.shutdown();
}
