//! One fallback chain across four provider kinds: OpenAI → Anthropic → Gemini →
//! Bedrock, the first three failing in different ways. The client only ever sees
//! OpenAI's format.

mod common;

use common::*;
use loadtest::client::{chat_body, Client};
use loadtest::mock::{Fault, MockHandle};

fn addr_of(m: &MockHandle) -> String {
    m.addr().to_string()
}

fn chain(
    openai: &MockHandle,
    anthropic: &MockHandle,
    gemini: &MockHandle,
    bedrock: &MockHandle,
) -> String {
    format!(
        r#"listen: 127.0.0.1:0
shards: 1
providers:
  openai: {{ kind: openai, base_url: "http://{}/v1", api_key: "${{OPENAI_KEY}}" }}
  anthropic: {{ kind: anthropic, base_url: "http://{}", api_key: "${{ANTHROPIC_KEY}}" }}
  gemini: {{ kind: gemini, base_url: "http://{}/v1beta", api_key: "${{GEMINI_KEY}}" }}
  bedrock:
    kind: bedrock
    base_url: "http://{}"
    region: us-east-1
    aws_access_key_id: AKIDEXAMPLE
    aws_secret_access_key: "${{AWS_SECRET}}"
routes:
  - name: chat
    match: {{ model: chat }}
    targets:
      - {{ provider: openai, model: gpt-4o, priority: 0 }}
      - {{ provider: anthropic, model: claude-sonnet-4-5, priority: 1 }}
      - {{ provider: gemini, model: gemini-2.5-flash, priority: 2 }}
      - {{ provider: bedrock, model: "anthropic.claude-3-5-haiku-20241022-v1:0", priority: 3 }}
    retry: {{ attempts: 1 }}
    timeouts: {{ connect: 500ms, first_byte: 2s, total: 10s }}
"#,
        addr_of(openai),
        addr_of(anthropic),
        addr_of(gemini),
        addr_of(bedrock)
    )
}

const ENV: [(&str, &str); 4] = [
    ("OPENAI_KEY", "sk-openai-secret"),
    ("ANTHROPIC_KEY", "sk-ant-secret"),
    ("GEMINI_KEY", "gemini-secret"),
    ("AWS_SECRET", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
];

struct Chain {
    openai: MockHandle,
    anthropic: MockHandle,
    gemini: MockHandle,
    bedrock: MockHandle,
}

fn failing_chain() -> Chain {
    let chain = Chain {
        openai: mock("openai"),
        anthropic: mock("anthropic"),
        gemini: mock("gemini"),
        bedrock: mock("bedrock"),
    };
    chain.openai.set_fault(fault_status(503));
    chain.anthropic.set_fault(fault_status(529));
    chain.gemini.set_fault(Fault::Status {
        status: 429,
        rate: 1.0,
        retry_after: None,
        body: None,
        times: None,
    });
    chain
}

#[test]
fn openai_anthropic_gemini_fail_bedrock_answers_in_openai_format() {
    let c = failing_chain();
    let gw = start(config_with_env(
        &chain(&c.openai, &c.anthropic, &c.gemini, &c.bedrock),
        &ENV,
    ));
    let mut client = Client::connect(gw.addr()).unwrap();
    let response = client.chat(&chat_body("chat", false), &[]).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("x-switchyard-target"),
        Some("bedrock/anthropic.claude-3-5-haiku-20241022-v1:0")
    );
    assert_eq!(response.header("x-switchyard-attempts"), Some("4"));
    assert_eq!(response.header("x-switchyard-fallback"), Some("true"));
    let body = response.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("Hello from bedrock: w0"),
        "{body}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    // Each provider got its own dialect and auth.
    let anthropic = c.anthropic.last_request().unwrap();
    assert!(
        anthropic.path.ends_with("/v1/messages"),
        "{}",
        anthropic.path
    );
    assert_eq!(anthropic.header("x-api-key"), Some("sk-ant-secret"));
    let gemini = c.gemini.last_request().unwrap();
    assert!(
        gemini
            .path
            .contains("/v1beta/models/gemini-2.5-flash:generateContent"),
        "{}",
        gemini.path
    );
    assert_eq!(gemini.header("x-goog-api-key"), Some("gemini-secret"));
    let bedrock = c.bedrock.last_request().unwrap();
    assert!(bedrock.path.ends_with("/converse"), "{}", bedrock.path);
    assert!(bedrock
        .header("authorization")
        .unwrap()
        .starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
    gw.shutdown();
}

#[test]
fn the_same_chain_streams_from_bedrock_invisibly() {
    let c = failing_chain();
    let gw = start(config_with_env(
        &chain(&c.openai, &c.anthropic, &c.gemini, &c.bedrock),
        &ENV,
    ));
    let mut client = Client::connect(gw.addr()).unwrap();
    let response = client.chat(&chat_body("chat", true), &[]).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let data = response.sse_data();
    assert_eq!(data.iter().filter(|d| d.as_str() == "[DONE]").count(), 1);
    assert!(
        !response.text().contains("\"error\""),
        "{}",
        response.text()
    );
    assert!(
        response.stream_text().starts_with("Hello from bedrock: w0"),
        "{}",
        response.stream_text()
    );
    for chunk in data.iter().filter(|d| d.as_str() != "[DONE]") {
        let v: serde_json::Value = serde_json::from_str(chunk).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk", "{chunk}");
    }
    gw.shutdown();
}

#[test]
fn when_every_kind_fails_the_client_gets_every_attempt_and_no_secret() {
    let c = failing_chain();
    c.bedrock.set_fault(fault_status(503));
    let gw = start(config_with_env(
        &chain(&c.openai, &c.anthropic, &c.gemini, &c.bedrock),
        &ENV,
    ));
    let mut client = Client::connect(gw.addr()).unwrap();
    let response = client.chat(&chat_body("chat", false), &[]).unwrap();
    assert_eq!(response.status, 502, "{}", response.text());
    let attempts = response.json()["error"]["attempts"]
        .as_array()
        .unwrap()
        .clone();
    let statuses: Vec<u64> = attempts
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 529, 429, 503]);
    let text = response.text();
    for (_, secret) in ENV {
        assert!(!text.contains(secret), "secret leaked: {text}");
    }
    gw.shutdown();
}

/// A half-open probe that could not be sent (the request cannot be expressed for
/// that kind) gives its slot back: the next request probes and closes the breaker.
#[test]
fn an_untranslatable_probe_does_not_wedge_the_breaker() {
    let anthropic = mock("anthropic");
    let fallback = mock("fallback");
    anthropic.set_fault(fault_status(529));
    let yaml = format!(
        r#"listen: 127.0.0.1:0
shards: 1
providers:
  anthropic: {{ kind: anthropic, base_url: "http://{}", api_key: k }}
  fallback: {{ kind: openai-compatible, base_url: "http://{}/v1" }}
routes:
  - name: chat
    match: {{ model: chat }}
    targets:
      - {{ provider: anthropic, model: claude, priority: 0 }}
      - {{ provider: fallback, model: f, priority: 1 }}
    retry: {{ attempts: 1 }}
health: {{ window: 10s, min_requests: 100, consecutive_failures: 2, cooldown: 200ms, max_cooldown: 1s }}
"#,
        anthropic.addr(),
        fallback.addr()
    );
    let gw = gateway(&yaml);
    for _ in 0..2 {
        assert_eq!(
            chat(gw.addr()).header("x-switchyard-target"),
            Some("fallback/f")
        );
    }
    anthropic.set_fault(Fault::None);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Half-open now. Anthropic cannot express n = 2, so this probe is never sent.
    let mut client = Client::connect(gw.addr()).unwrap();
    let two = r#"{"model":"chat","n":2,"messages":[{"role":"user","content":"hi"}]}"#;
    let response = client.chat(two, &[]).unwrap();
    assert_eq!(
        response.header("x-switchyard-target"),
        Some("fallback/f"),
        "{}",
        response.text()
    );
    let seen = anthropic.stats().requests;
    // The next request is the probe: it reaches the healed target and closes the breaker.
    let next = chat(gw.addr());
    assert_eq!(
        next.header("x-switchyard-target"),
        Some("anthropic/claude"),
        "{}",
        next.text()
    );
    assert_eq!(anthropic.stats().requests, seen + 1);
    gw.shutdown();
}
