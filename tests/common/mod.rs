//! Shared integration-test harness: mock providers and an in-process gateway on
//! 127.0.0.1, built from a YAML config string exactly as a user would write it.
#![allow(dead_code)]

/// A real redis-server for the cluster tests.
pub mod redis_server;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::{self, Fault, MockConfig, MockHandle};
use switchyard::config::{self, Config};
use switchyard::gateway::{Gateway, Overrides};

/// A mock provider named `name` on an ephemeral port.
pub fn mock(name: &str) -> MockHandle {
    mock_with(MockConfig {
        name: name.to_string(),
        ..MockConfig::default()
    })
}

pub fn mock_with(config: MockConfig) -> MockHandle {
    mock::start(config).expect("mock provider starts")
}

/// Parses `yaml` (with `${VAR}` taken from `env`), as `switchyard run` would.
pub fn config_with_env(yaml: &str, env: &[(&str, &str)]) -> Config {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    match config::load_str(yaml, "test.yaml", &lookup) {
        Ok(mut config) => {
            // Tests share no spend: without their own state_dir they keep it in
            // memory (a path that cannot be created), even when run as root.
            if !config.state.configured {
                config.state.dir = "/dev/null/switchyard-test-state".into();
            }
            config
        }
        Err(errors) => panic!("test config invalid:\n{errors}\n---\n{yaml}"),
    }
}

pub fn config(yaml: &str) -> Config {
    config_with_env(yaml, &[])
}

/// Starts a gateway on 127.0.0.1:0 from `yaml`.
pub fn gateway(yaml: &str) -> Gateway {
    start(config(yaml))
}

pub fn start(config: Config) -> Gateway {
    Gateway::start(config, None, &Overrides::default()).expect("gateway starts")
}

/// A provider entry pointing at `mock`.
pub fn provider(name: &str, mock: &MockHandle) -> String {
    format!(
        "  {name}: {{ kind: openai-compatible, base_url: \"{}\" }}\n",
        mock.base_url()
    )
}

/// A one-route config: `targets` are (provider name, mock) in priority order.
/// `route_extra` is spliced into the route (indented 4 spaces), `top_extra` at top level.
pub fn chain_yaml(targets: &[(&str, &MockHandle)], route_extra: &str, top_extra: &str) -> String {
    let urls: Vec<(&str, String)> = targets.iter().map(|(n, m)| (*n, m.base_url())).collect();
    chain_yaml_at(&urls, route_extra, top_extra)
}

/// [`chain_yaml`] over (provider name, base URL) pairs: for upstreams that are not
/// loadtest mocks.
pub fn chain_yaml_at(targets: &[(&str, String)], route_extra: &str, top_extra: &str) -> String {
    let mut yaml = String::from("listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n");
    for (name, url) in targets {
        yaml.push_str(&format!(
            "  {name}: {{ kind: openai-compatible, base_url: \"{url}\" }}\n"
        ));
    }
    yaml.push_str("routes:\n  - name: chat\n    match: { model: chat }\n    strategy: priority\n    targets:\n");
    for (i, (name, _)) in targets.iter().enumerate() {
        yaml.push_str(&format!(
            "      - {{ provider: {name}, model: {name}-model, priority: {i} }}\n"
        ));
    }
    for line in route_extra.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str("    ");
        yaml.push_str(line.trim_start());
        yaml.push('\n');
    }
    yaml.push_str(top_extra);
    yaml
}

pub fn client(gateway: &Gateway) -> Client {
    Client::connect(gateway.addr()).expect("connect to gateway")
}

/// One non-streaming chat completion for model `chat` on a fresh connection.
pub fn chat(addr: SocketAddr) -> HttpResponse {
    let mut client = Client::connect(addr).expect("connect");
    client
        .chat(&chat_body("chat", false), &[])
        .expect("response")
}

pub fn chat_stream(addr: SocketAddr) -> HttpResponse {
    let mut client = Client::connect(addr).expect("connect");
    client
        .chat(&chat_body("chat", true), &[])
        .expect("response")
}

/// Polls `condition` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

pub fn fault_status(status: u16) -> Fault {
    Fault::Status {
        status,
        rate: 1.0,
        retry_after: None,
        body: None,
        times: None,
    }
}

/// A one-route (`chat`) config for a translating kind: provider `name` with
/// `settings` (its flow mapping) runs `model` first and, when given, the plain
/// OpenAI-compatible `fallback` runs `fallback-model` second. `route_extra` is
/// spliced into the route (indented 4 spaces).
pub fn translated_route_yaml(
    name: &str,
    settings: &str,
    model: &str,
    fallback: Option<&MockHandle>,
    route_extra: &str,
) -> String {
    let mut yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n  {name}: {settings}\n"
    );
    if let Some(m) = fallback {
        yaml.push_str(&provider("fallback", m));
    }
    yaml.push_str("routes:\n  - name: chat\n    match: { model: chat }\n    strategy: priority\n    targets:\n");
    yaml.push_str(&format!(
        "      - {{ provider: {name}, model: \"{model}\", priority: 0 }}\n"
    ));
    if fallback.is_some() {
        yaml.push_str("      - { provider: fallback, model: fallback-model, priority: 1 }\n");
    }
    for line in route_extra.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str("    ");
        yaml.push_str(line.trim_start());
        yaml.push('\n');
    }
    yaml
}

/// Checks a translated non-streaming chat answer (200, a `chat.completion` that
/// stopped, with usage) and returns its text.
pub fn completion_text(response: &HttpResponse) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string();
    assert!(!text.is_empty());
    assert!(body["usage"]["prompt_tokens"].as_u64().is_some());
    text
}

/// Checks a translated stream: 200, server-sent events ending in `[DONE]`, and
/// the same `text` as the non-streaming answer.
pub fn assert_stream_text(stream: &HttpResponse, text: &str) {
    assert_eq!(stream.status, 200, "{}", stream.text());
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.sse_data().last().map(String::as_str), Some("[DONE]"));
    assert_eq!(stream.stream_text(), text);
}

/// Checks that a 200 `response` came from `fallback/fallback-model`.
pub fn assert_from_fallback(response: &HttpResponse) {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("x-switchyard-target"),
        Some("fallback/fallback-model")
    );
}

/// With `primary` (first target of `gw`'s `chat` route) answering `status`, a
/// chat falls back; with it sending an error event first, so does a stream.
pub fn assert_falls_back_on_status_and_stream_error(
    gw: &Gateway,
    primary: &MockHandle,
    status: u16,
) {
    primary.set_fault(fault_status(status));
    assert_from_fallback(&chat(gw.addr()));

    primary.set_fault(Fault::SseErrorEvent { after_chunks: 0 });
    let stream = chat_stream(gw.addr());
    assert_from_fallback(&stream);
    assert_eq!(stream.sse_data().last().map(String::as_str), Some("[DONE]"));
}

/// With `primary` answering 400 with the provider's `body`, the client gets an
/// OpenAI `context_length_exceeded` error that keeps the provider's `message`.
pub fn assert_context_length_error(gw: &Gateway, primary: &MockHandle, body: &str, message: &str) {
    primary.set_fault(Fault::Status {
        status: 400,
        rate: 1.0,
        retry_after: None,
        body: Some(body.into()),
        times: None,
    });
    let response = chat(gw.addr());
    assert_eq!(response.status, 400, "{}", response.text());
    let body = response.json();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_eq!(body["error"]["message"], message);
}

/// Mocks named `primary` and `fallback`.
pub fn primary_and_fallback() -> (MockHandle, MockHandle) {
    (mock("primary"), mock("fallback"))
}

/// A gateway over the two-target chain `primary` then `fallback` (see [`chain_yaml`]).
pub fn fallback_chain(
    primary: &MockHandle,
    fallback: &MockHandle,
    route_extra: &str,
    top_extra: &str,
) -> Gateway {
    gateway(&chain_yaml(
        &[("primary", primary), ("fallback", fallback)],
        route_extra,
        top_extra,
    ))
}

/// Checks that `response` is a 200 served by `target` (`provider/model`).
pub fn assert_served_by(response: &HttpResponse, target: &str) {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-switchyard-target"), Some(target));
}

/// Checks that `response` is a 200 from `fallback/fallback-model`, marked as a fallback.
pub fn assert_fell_back(response: &HttpResponse) {
    assert_served_by(response, "fallback/fallback-model");
    assert_eq!(response.header("x-switchyard-fallback"), Some("true"));
}

/// `primary` answering 503 ahead of `fallback` answering 500, one attempt per
/// target, each breaker opening after two failures (5 s cooldown).
pub fn failing_chain() -> (MockHandle, MockHandle, Gateway) {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(503));
    fallback.set_fault(fault_status(500));
    let gw = fallback_chain(
        &primary,
        &fallback,
        "retry: { attempts: 1 }",
        "health: { consecutive_failures: 2, min_requests: 1000, cooldown: 5s }\n",
    );
    (primary, fallback, gw)
}

/// `primary` answering 503 ahead of a healthy `fallback`, one attempt per target;
/// `top_extra` is appended at top level (see [`chain_yaml`]).
pub fn primary_down_chain(top_extra: &str) -> (MockHandle, MockHandle, Gateway) {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(503));
    let gw = fallback_chain(&primary, &fallback, "retry: { attempts: 1 }", top_extra);
    (primary, fallback, gw)
}

/// The shard that answered, from the request id the gateway generated.
pub fn shard_of(response: &HttpResponse) -> usize {
    let id = response.header("x-request-id").expect("x-request-id");
    usize::from_str_radix(&id[8..10], 16).expect("hex shard id")
}

/// One keep-alive connection on each of `shards` shards (learnt from the request id
/// of a 404 that touches no target), so a test can pick the shard it talks to.
pub fn connection_per_shard(addr: SocketAddr, shards: usize) -> Vec<Client> {
    let mut found: Vec<Option<Client>> = (0..shards).map(|_| None).collect();
    for _ in 0..256 {
        if found.iter().all(Option::is_some) {
            break;
        }
        let mut client = Client::connect(addr).expect("connect");
        let response = client
            .chat(&chat_body("no-such-model", false), &[])
            .expect("response");
        assert_eq!(response.status, 404);
        let shard = shard_of(&response);
        if found[shard].is_none() {
            found[shard] = Some(client);
        }
    }
    found
        .into_iter()
        .map(|c| c.expect("SO_REUSEPORT spread connections over every shard"))
        .collect()
}

/// (event name, data) of every event of an event stream, in order; data that is
/// not JSON (`[DONE]`) comes as a JSON string.
pub fn sse_events(response: &HttpResponse) -> Vec<(String, serde_json::Value)> {
    response
        .text()
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            let data = serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data));
            (name, data)
        })
        .collect()
}

/// The names of `events`, in order.
pub fn event_names(events: &[(String, serde_json::Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}
