//! Shared integration-test harness: mock providers and an in-process gateway on
//! 127.0.0.1, built from a YAML config string exactly as a user would write it.
#![allow(dead_code)]

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
        Ok(config) => config,
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
    let mut yaml = String::from("listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n");
    for (name, m) in targets {
        yaml.push_str(&provider(name, m));
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
