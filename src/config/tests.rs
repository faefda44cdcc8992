//! Loader tests: the example files, defaults, every validation error with its
//! line, secrets, and a never-panics property.

use std::time::Duration;

use proptest::prelude::{proptest, ProptestConfig};

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_str(text, "t.yaml", &no_env)
}

/// The error lines for `text`, which must fail.
fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn assert_errors(text: &str, expected: &[&str]) {
    assert_eq!(errors(text), expected, "for:\n{text}");
}

const PROVIDERS: &str = "\
providers:
  openai: { kind: openai, base_url: https://api.openai.com/v1 }
  anthropic: { kind: openai-compatible, base_url: https://api.anthropic.com }
";

fn with_routes(routes: &str) -> String {
    format!("{PROVIDERS}routes:\n{routes}")
}

const ONE_ROUTE: &str = "  - name: chat\n    targets: [{ provider: openai, model: gpt-4o }]\n";

fn example_env(name: &str) -> Option<String> {
    match name {
        "ADMIN_TOKEN" | "SUPPORT_AGENT_KEY" | "BATCH_JOBS_KEY" | "OPENAI_API_KEY"
        | "OPENAI_ORG" | "GROQ_API_KEY" | "ANTHROPIC_API_KEY" => {
            Some(format!("secret-{}", name.to_lowercase()))
        }
        _ => None,
    }
}

fn repo_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

#[test]
fn example_config_validates() {
    let text = std::fs::read_to_string(repo_file("config/switchyard.example.yaml")).unwrap();
    let config = load_str(&text, "config/switchyard.example.yaml", &example_env)
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["openai", "groq", "local", "anthropic"]);
    assert_eq!(config.keys.len(), 2);
    assert_eq!(
        config.keys[0].digest,
        crate::config::keys::digest(b"secret-support_agent_key")
    );
    assert_eq!(
        config.providers[0].api_key.as_deref(),
        Some("secret-openai_api_key")
    );
    assert_eq!(config.providers[2].base_url.port, 9001);
    let chat = &config.routes[0];
    assert_eq!(chat.name, "chat");
    assert_eq!(
        chat.fallback.on_context_length.as_deref(),
        Some("chat-long")
    );
    assert_eq!(chat.targets[1].provider, 3);
    assert_eq!(chat.targets[1].prefill, Prefill::Auto);
    assert_eq!(chat.targets[2].provider, 1);
    assert_eq!(
        chat.targets[3]
            .retry
            .as_ref()
            .map(|r| (r.attempts, r.backoff)),
        Some((1, Duration::from_millis(100)))
    );
    assert_eq!(chat.timeouts.first_token, FirstToken::Auto);
    assert_eq!(
        config.routes[1].timeouts.first_token,
        FirstToken::Fixed(Duration::from_secs(20))
    );
    assert_eq!(config.routes[2].strategy, Strategy::Weighted);
    assert_eq!(config.health.max_cooldown, Duration::from_secs(10));
    assert_eq!(
        config.admin.as_ref().and_then(|a| a.token.as_deref()),
        Some("secret-admin_token")
    );
}

#[test]
fn example_config_names_every_missing_variable() {
    let text = std::fs::read_to_string(repo_file("config/switchyard.example.yaml")).unwrap();
    let errors = load_str(&text, "x.yaml", &no_env).unwrap_err();
    assert_eq!(errors.0.len(), 7, "{errors}");
    assert!(errors
        .to_string()
        .contains("providers.openai.api_key: environment variable `OPENAI_API_KEY` is not set"));
}

#[test]
fn demo_config_validates() {
    let config = load_file(&repo_file("config/demo.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.shards, ShardCount::Fixed(1));
    assert!(config.keys.is_empty());
    let names: Vec<_> = config
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.base_url.port))
        .collect();
    assert_eq!(names, [("primary", 9101), ("fallback", 9102)]);
    let route = &config.routes[0];
    assert_eq!(route.matcher.models, ["demo", "*"]);
    assert_eq!(
        route.targets.iter().map(|t| t.priority).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(route.timeouts.first_byte, Duration::from_secs(2));
    assert_eq!(config.health.window, Duration::from_secs(10));
    assert_eq!(config.health.cooldown, Duration::from_secs(2));
    assert_eq!(
        config.admin.map(|a| a.listen.to_string()).as_deref(),
        Some("127.0.0.1:9190")
    );
}

#[test]
fn missing_file_is_one_error() {
    let errors = load_file(std::path::Path::new("/nonexistent/switchyard.yaml")).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert!(
        errors
            .to_string()
            .starts_with("/nonexistent/switchyard.yaml: cannot read"),
        "{errors}"
    );
}

#[test]
fn defaults_are_applied() {
    let config = load(&with_routes(ONE_ROUTE)).unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(
        (config.shards, config.driver),
        (ShardCount::Auto, DriverChoice::Auto)
    );
    assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    assert!(config.admin.is_none() && config.keys.is_empty());
    let openai = &config.providers[0];
    assert_eq!(
        (openai.max_connections, openai.pool_idle_timeout),
        (1024, Duration::from_secs(90))
    );
    assert_eq!(openai.base_url.path, "/v1");
    let route = &config.routes[0];
    assert_eq!(route.strategy, Strategy::Priority);
    assert!(route.matcher.models.is_empty());
    assert_eq!(route.retry, default_retry());
    assert_eq!(
        (
            route.targets[0].priority,
            route.targets[0].weight,
            route.targets[0].prefill
        ),
        (0, 1, Prefill::Auto)
    );
    assert_eq!(route.fallback.on_status, [429, 500, 502, 503, 504, 529]);
    assert!(
        route.fallback.on_timeout
            && route.fallback.on_connect_error
            && !route.fallback.on_content_policy
    );
    assert_eq!(route.fallback.on_context_length, None);
    let t = route.timeouts;
    assert_eq!(
        [t.connect, t.first_byte, t.between_chunks, t.total].map(|d| d.as_secs()),
        [3, 15, 20, 120]
    );
    assert_eq!(t.first_token, FirstToken::Auto);
    assert_eq!(route.targets[0].timeouts.first_token, FirstToken::Auto);
    assert!(route.stream.continue_after_commit && route.stream.hold_until_content);
    let h = config.health;
    assert_eq!(
        (
            h.window,
            h.min_requests,
            h.failure_rate,
            h.consecutive_failures
        ),
        (Duration::from_secs(60), 20, 0.5, 5)
    );
    assert_eq!(
        (h.cooldown, h.max_cooldown, h.half_open_probes),
        (Duration::from_secs(5), Duration::from_secs(10), 1)
    );
    let l = config.limits;
    assert_eq!(
        (l.max_header_bytes, l.max_body_bytes, l.max_connections),
        (32768, 10485760, 10000)
    );
    assert_eq!(
        (l.idle_timeout, l.request_timeout),
        (Duration::from_secs(60), Duration::from_secs(30))
    );
    assert_eq!(l.max_response_bytes, 32 * 1024 * 1024);
    assert_eq!(
        (config.log.format, config.log.request_sample),
        (LogFormat::Logfmt, 0.0)
    );
}

#[test]
fn provider_order_is_file_order() {
    let text = "providers:\n  z: { kind: openai, base_url: http://z }\n  a: { kind: openai-compatible, base_url: http://a }\n  m: { kind: openai, base_url: http://m }\nroutes:\n  - name: r\n    targets: [{ provider: m, model: x }, { provider: z, model: y }]\n";
    let config = load(text).unwrap();
    let names: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["z", "a", "m"]);
    assert_eq!(
        config.routes[0]
            .targets
            .iter()
            .map(|t| t.provider)
            .collect::<Vec<_>>(),
        [2, 0]
    );
}

#[test]
fn unknown_provider_in_target() {
    let text = with_routes("  - name: chat\n    targets:\n      - { provider: openai, model: a }\n      - { provider: opnai, model: b }\n");
    assert_errors(
        &text,
        &["t.yaml:8: routes[0].targets[1].provider: unknown provider `opnai`; expected one of: openai, anthropic"],
    );
}

#[test]
fn unknown_key_name_in_match() {
    let text = format!("keys:\n  - {{ name: a, key: k1 }}\n{}", with_routes("  - name: chat\n    match: { keys: [a, b] }\n    targets: [{ provider: openai, model: x }]\n"));
    assert_errors(
        &text,
        &["t.yaml:8: routes[0].match.keys[1]: unknown client key `b`; expected one of: a"],
    );
}

#[test]
fn context_length_route_must_exist_and_not_be_itself() {
    let text = with_routes(
        "  - name: chat\n    targets: [{ provider: openai, model: x }]\n    fallback: { on_context_length: chat-lng }\n  - name: long\n    targets: [{ provider: openai, model: y }]\n    fallback: { on_context_length: long }\n",
    );
    assert_errors(
        &text,
        &[
            "t.yaml:7: routes[0].fallback.on_context_length: unknown route `chat-lng`; expected one of: long",
            "t.yaml:10: routes[1].fallback.on_context_length: route `long` cannot fall back to itself",
        ],
    );
}

#[test]
fn context_length_with_a_single_route() {
    let text = with_routes(&format!(
        "{ONE_ROUTE}    fallback: {{ on_context_length: big }}\n"
    ));
    assert_errors(
        &text,
        &["t.yaml:7: routes[0].fallback.on_context_length: unknown route `big`; there are no other routes"],
    );
}

#[test]
fn duplicate_route_names() {
    let text = with_routes(&format!("{ONE_ROUTE}{ONE_ROUTE}"));
    assert_errors(&text, &["t.yaml:7: routes[1].name: duplicate route name `chat`; already used by routes[0] (line 5)"]);
}

#[test]
fn empty_targets_and_no_routes() {
    assert_errors(
        &with_routes("  - name: chat\n    targets: []\n"),
        &["t.yaml:6: routes[0].targets: at least one target is required"],
    );
    assert_errors(
        &format!("{PROVIDERS}routes: []\n"),
        &["t.yaml:4: routes: at least one route is required"],
    );
    assert_errors(
        "routes: []\n",
        &[
            "t.yaml:1: providers: at least one provider is required",
            "t.yaml:1: routes: at least one route is required",
        ],
    );
}

#[test]
fn weight_and_attempts_must_be_positive() {
    let text = with_routes("  - name: chat\n    targets:\n      - { provider: openai, model: a, weight: 0 }\n    retry:\n      attempts: 0\n");
    assert_errors(
        &text,
        &[
            "t.yaml:7: routes[0].targets[0].weight: must be at least 1, got 0",
            "t.yaml:9: routes[0].retry.attempts: must be at least 1, got 0",
        ],
    );
}

#[test]
fn fractions_are_range_checked() {
    let text = format!(
        "{}health:\n  failure_rate: 0\nlog: {{ request_sample: 1.5 }}\n",
        with_routes("  - name: chat\n    targets: [{ provider: openai, model: a }]\n    retry: { budget_ratio: -0.1 }\n")
    );
    assert_errors(
        &text,
        &[
            "t.yaml:7: routes[0].retry.budget_ratio: must be a number from 0 to 1, got -0.1",
            "t.yaml:9: health.failure_rate: must be a number greater than 0 and at most 1, got 0",
            "t.yaml:10: log.request_sample: must be a number from 0 to 1, got 1.5",
        ],
    );
    let over = format!(
        "{}health: {{ failure_rate: 1.01 }}\n",
        with_routes(ONE_ROUTE)
    );
    assert_eq!(errors(&over).len(), 1);
}

#[test]
fn zero_and_inconsistent_durations() {
    let text = format!(
        "{}health: {{ window: 0s, cooldown: 0s }}\n",
        with_routes("  - name: chat\n    targets: [{ provider: openai, model: a }]\n    timeouts:\n      connect: 0s\n      first_byte: 3m\n      total: 1m\n    retry: { backoff: 5s, max_backoff: 1s }\n")
    );
    assert_errors(
        &text,
        &[
            "t.yaml:8: routes[0].timeouts.connect: must be greater than zero",
            "t.yaml:9: routes[0].timeouts.first_byte: first_byte (3m) must not be longer than total (1m)",
            "t.yaml:11: routes[0].retry.backoff: backoff (5s) must not be longer than max_backoff (1s)",
            "t.yaml:12: health.window: must be greater than zero",
            "t.yaml:12: health.cooldown: must be greater than zero",
        ],
    );
    let connect = with_routes("  - name: chat\n    targets: [{ provider: openai, model: a }]\n    timeouts: { connect: 5s, first_byte: 1s, total: 2s }\n");
    assert_errors(
        &connect,
        &["t.yaml:7: routes[0].timeouts.connect: connect (5s) must not be longer than total (2s)"],
    );
    let cooldown = format!(
        "{}health:\n  cooldown: 1m\n  max_cooldown: 30s\n",
        with_routes(ONE_ROUTE)
    );
    assert_errors(&cooldown, &["t.yaml:9: health.max_cooldown: cooldown (1m) must not be longer than max_cooldown (30s)"]);
    let wait = with_routes("  - name: chat\n    targets: [{ provider: openai, model: a }]\n    retry: { max_retry_after: 2s, wait_retry_after_up_to: 3s }\n");
    assert_errors(
        &wait,
        &["t.yaml:7: routes[0].retry.wait_retry_after_up_to: wait_retry_after_up_to (3s) must not be longer than max_retry_after (2s)"],
    );
}

#[test]
fn bad_duration_text() {
    let text = format!("shutdown_grace: 30 seconds\n{}", with_routes(ONE_ROUTE));
    let lines = errors(&text);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0]
            .starts_with("t.yaml:1: shutdown_grace: `30 seconds` has an unknown unit `seconds`"),
        "{lines:?}"
    );
    let number = format!("shutdown_grace: 30\n{}", with_routes(ONE_ROUTE));
    assert_errors(&number, &["t.yaml:1: shutdown_grace: invalid type: integer `30`, expected a duration with a unit, like `250ms`, `1.5s`, `2m` or `1h`"]);
}

#[test]
fn status_codes_are_range_checked() {
    let text = with_routes("  - name: chat\n    targets: [{ provider: openai, model: a }]\n    retry: { on_status: [429, 99] }\n    fallback:\n      on_status:\n        - 500\n        - 600\n");
    assert_errors(
        &text,
        &[
            "t.yaml:7: routes[0].retry.on_status[1]: status code 99 is outside 100..=599",
            "t.yaml:11: routes[0].fallback.on_status[1]: status code 600 is outside 100..=599",
        ],
    );
}

#[test]
fn bad_listen_addresses() {
    let text = format!(
        "listen: localhost:80\nadmin: {{ listen: 0.0.0.0 }}\n{}",
        with_routes(ONE_ROUTE)
    );
    assert_errors(
        &text,
        &[
            "t.yaml:1: listen: `localhost:80` is not a listen address; expected ip:port, like 0.0.0.0:8080 or [::1]:8080",
            "t.yaml:2: admin.listen: `0.0.0.0` is not a listen address; expected ip:port, like 0.0.0.0:8080 or [::1]:8080",
        ],
    );
    let same = format!(
        "listen: 127.0.0.1:9090\nadmin: {{}}\n{}",
        with_routes(ONE_ROUTE)
    );
    assert_errors(
        &same,
        &["t.yaml:2: admin.listen: must differ from the top-level `listen`"],
    );
}

#[test]
fn unknown_enum_values_list_valid_ones() {
    let text = format!(
        "driver: epoll\nlog: {{ format: text }}\n{}",
        with_routes(
            "  - name: chat\n    strategy: random\n    targets: [{ provider: openai, model: a }]\n"
        )
    )
    .replace(
        "kind: openai-compatible, base_url: https://api.anthropic.com",
        "kind: claude, base_url: https://api.anthropic.com",
    );
    assert_errors(
        &text,
        &[
            "t.yaml:1: driver: unknown value `epoll`; expected one of: auto, io_uring, legacy",
            "t.yaml:2: log.format: unknown value `text`; expected one of: logfmt, json",
            "t.yaml:5: providers.anthropic.kind: unknown value `claude`; expected one of: openai, openai-compatible, azure, anthropic, gemini, bedrock",
            "t.yaml:8: routes[0].strategy: unknown value `random`; expected one of: priority, weighted, latency, least-busy",
        ],
    );
}

#[test]
fn bad_base_urls() {
    let text = "providers:\n  a: { kind: openai, base_url: ftp://x }\n  b:\n    kind: openai\n    base_url: https:///v1\n  c: { kind: openai }\nroutes:\n  - name: r\n    targets: [{ provider: a, model: m }]\n";
    assert_errors(
        text,
        &[
            "t.yaml:2: providers.a.base_url: expected a URL starting with http:// or https://",
            "t.yaml:5: providers.b.base_url: base_url has no valid host",
            "t.yaml:6: providers.c.base_url: is required but missing",
        ],
    );
}

#[test]
fn shards_must_be_auto_or_positive() {
    assert_errors(
        &format!("shards: 0\n{}", with_routes(ONE_ROUTE)),
        &["t.yaml:1: shards: must not be 0; expected `auto` or a positive integer"],
    );
    assert_errors(
        &format!("shards: many\n{}", with_routes(ONE_ROUTE)),
        &["t.yaml:1: shards: expected `auto` or a positive integer"],
    );
    let config = load(&format!("shards: 4\n{}", with_routes(ONE_ROUTE))).unwrap();
    assert_eq!(config.shards, ShardCount::Fixed(4));
}

#[test]
fn max_response_bytes_is_read_and_checked() {
    let config = load(&format!(
        "limits: {{ max_response_bytes: 1048576 }}\n{}",
        with_routes(ONE_ROUTE)
    ))
    .unwrap();
    assert_eq!(config.limits.max_response_bytes, 1048576);
    assert_errors(
        &format!(
            "limits:\n  max_response_bytes: 0\n{}",
            with_routes(ONE_ROUTE)
        ),
        &["t.yaml:2: limits.max_response_bytes: must be at least 1, got 0"],
    );
}

#[test]
fn duplicate_client_keys_are_errors_without_values() {
    let env = |name: &str| (name == "K").then(|| "sk-live-shared".to_string());
    let text = format!("keys:\n  - {{ name: a, key: \"${{K}}\" }}\n  - {{ name: b, key: \"${{K}}\" }}\n  - {{ name: a, key: other }}\n{}", with_routes(ONE_ROUTE));
    let errors = load_str(&text, "t.yaml", &env).unwrap_err().to_string();
    assert_eq!(
        errors,
        "t.yaml:3: keys[1].key: uses the same key value as client key `a`; each client needs its own key\n\
         t.yaml:4: keys[3].name: duplicate client key name `a`"
            .replace("keys[3]", "keys[2]")
    );
    assert!(!errors.contains("sk-live"));
}

#[test]
fn missing_env_var_names_variable_and_line() {
    let text = format!(
        "admin:\n  token: \"${{ADMIN_TOKEN}}\"\n{}",
        with_routes(ONE_ROUTE)
    )
    .replace(
        "base_url: https://api.openai.com/v1 }",
        "base_url: https://api.openai.com/v1, api_key: \"${OPENAI_API_KEY}\" }",
    );
    assert_errors(
        &text,
        &[
            "t.yaml:2: admin.token: environment variable `ADMIN_TOKEN` is not set",
            "t.yaml:4: providers.openai.api_key: environment variable `OPENAI_API_KEY` is not set",
        ],
    );
    let unterminated = format!("admin: {{ token: \"${{X\" }}\n{}", with_routes(ONE_ROUTE));
    assert_errors(
        &unterminated,
        &["t.yaml:1: admin.token: unterminated `${` (write `$${` for a literal `${`)"],
    );
}

#[test]
fn validation_goes_on_past_missing_variables() {
    let text = format!(
        "listen: \"${{LISTEN}}\"\nkeys:\n  - {{ name: a, key: \"${{K}}\" }}\n  - {{ name: b, key: \"${{K}}\" }}\n{}",
        with_routes(ONE_ROUTE).replace("model: gpt-4o", "model: gpt-4o, weight: 0")
    );
    assert_errors(
        &text,
        &[
            "t.yaml:1: listen: environment variable `LISTEN` is not set",
            "t.yaml:3: keys[0].key: environment variable `K` is not set",
            "t.yaml:4: keys[1].key: environment variable `K` is not set",
            "t.yaml:10: routes[0].targets[0].weight: must be at least 1, got 0",
        ],
    );
}

#[test]
fn literal_dollar_brace_survives() {
    let text = with_routes(ONE_ROUTE).replace("model: gpt-4o", "model: \"$${NOT_A_VAR}\"");
    let config = load(&text).unwrap();
    assert_eq!(config.routes[0].targets[0].model, "${NOT_A_VAR}");
}

#[test]
fn shape_and_syntax_errors_have_lines() {
    let text = with_routes("  - name: chat\n    targets:\n      - { provider: openai, model: a, wieght: 2 }\n    retries: 3\n");
    assert_errors(
        &text,
        &[
            "t.yaml:7: routes[0].targets[0].wieght: unknown key `wieght`; expected one of: provider, model, priority, weight, prefill, retry, headers, query, timeouts, rpm, tpm",
            "t.yaml:8: routes[0].retries: unknown key `retries`; expected one of: name, match, strategy, targets, retry, fallback, timeouts, stream, hedge, forward_headers",
        ],
    );
    let syntax = errors("providers:\n  a: { kind: openai\nroutes: []\n");
    assert_eq!(syntax.len(), 1);
    assert!(
        syntax[0].starts_with("t.yaml:3: invalid YAML:"),
        "{syntax:?}"
    );
    let duplicate = errors("providers: {}\nproviders: {}\n");
    assert!(duplicate[0].contains("duplicate"), "{duplicate:?}");
}

#[test]
fn empty_secrets_are_rejected() {
    let env = |_: &str| Some(String::new());
    let text = with_routes(ONE_ROUTE).replace(
        "api.openai.com/v1 }",
        "api.openai.com/v1, api_key: \"${EMPTY}\" }",
    );
    let errors = load_str(&text, "t.yaml", &env).unwrap_err().to_string();
    assert_eq!(errors, "t.yaml:2: providers.openai.api_key: is empty (an empty environment variable?); omit it for no key");
}

#[test]
fn redacted_json_hides_every_secret() {
    let text = std::fs::read_to_string(repo_file("config/switchyard.example.yaml")).unwrap();
    let config = load_str(&text, "x.yaml", &example_env).unwrap();
    let json = redacted_json(&config);
    let shown = json.to_string();
    assert!(!shown.contains("secret-"), "{shown}");
    assert_eq!(json["providers"]["openai"]["api_key"], "<redacted>");
    assert_eq!(json["admin"]["token"], "<redacted>");
    assert_eq!(json["keys"][0]["key"], "<redacted>");
    assert_eq!(json["keys"][0]["name"], "support-agent");
    assert_eq!(json["routes"][0]["targets"][2]["provider"], "groq");
    assert_eq!(json["providers"]["anthropic"]["api_key"], "<redacted>");
    assert_eq!(json["routes"][0]["retry"]["backoff"], "100ms");
    assert_eq!(
        json["providers"]["local"]["api_key"],
        serde_json::Value::Null
    );
}

/// A variable used where a plain value belongs: every error names `${SECRET}`
/// and none quotes its value, whatever check rejects it.
#[test]
fn misused_variables_are_named_never_shown() {
    const VALUE: &str = "sk-live-1234567890abcdef";
    let env = |name: &str| (name == "SECRET").then(|| VALUE.to_string());
    let text = "\
listen: \"${SECRET}\"
driver: \"${SECRET}\"
shards: \"${SECRET}\"
shutdown_grace: \"5${SECRET}\"
log: { format: \"${SECRET}\" }
keys:
  - { name: \"${SECRET}\", key: k1 }
  - { name: \"${SECRET}\", key: k2 }
providers:
  openai: { kind: \"${SECRET}\", base_url: https://api.openai.com/v1, ca_file: \"${SECRET}\" }
routes:
  - name: \"${SECRET}\"
    match: { keys: [\"x${SECRET}\"] }
    targets: [{ provider: \"${SECRET}\", model: m }]
    fallback: { on_context_length: \"${SECRET}\" }
    timeouts: { connect: \"${SECRET}\" }
  - name: \"${SECRET}\"
    targets: [{ provider: openai, model: m }]
";
    let errors = load_str(text, "t.yaml", &env).unwrap_err().to_string();
    assert!(!errors.contains(VALUE), "{errors}");
    assert!(!errors.contains("sk-live"), "{errors}");
    for expected in [
        "t.yaml:1: listen: `${SECRET}` is not a listen address",
        "t.yaml:2: driver: unknown value `${SECRET}`",
        "t.yaml:4: shutdown_grace: `5${SECRET}`",
        "t.yaml:5: log.format: unknown value `${SECRET}`",
        "t.yaml:8: keys[1].name: duplicate client key name `${SECRET}`",
        "t.yaml:10: providers.openai.kind: unknown value `${SECRET}`",
        "t.yaml:10: providers.openai.ca_file: `${SECRET}`",
        "t.yaml:13: routes[0].match.keys[0]: unknown client key `x${SECRET}`; expected one of: ${SECRET}, ${SECRET}",
        "t.yaml:14: routes[0].targets[0].provider: unknown provider `${SECRET}`",
        "t.yaml:15: routes[0].fallback.on_context_length: route `${SECRET}` cannot fall back to itself",
        "t.yaml:16: routes[0].timeouts.connect: `${SECRET}`",
        "t.yaml:17: routes[1].name: duplicate route name `${SECRET}`",
    ] {
        assert!(errors.contains(expected), "no `{expected}` in:\n{errors}");
    }
}

#[test]
fn a_public_admin_listener_needs_a_token_or_an_explicit_opt_in() {
    let with_admin = |admin: &str| format!("admin: {admin}\n{}", with_routes(ONE_ROUTE));
    for public in ["0.0.0.0:9090", "10.1.2.3:9090", "\"[::]:9090\""] {
        let errors = errors(&with_admin(&format!("{{ listen: {public} }}")));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "t.yaml:1: admin.listen: is not a loopback address and `admin.token` is not set"
            ) && errors[0].contains("allow_public_without_token: true"),
            "{errors:?}"
        );
        let refused = format!("{{ listen: {public}, allow_public_without_token: false }}");
        assert_eq!(self::errors(&with_admin(&refused)).len(), 1);
        for fine in [
            format!("{{ listen: {public}, token: t0ken }}"),
            format!("{{ listen: {public}, allow_public_without_token: true }}"),
        ] {
            let config = load(&with_admin(&fine)).unwrap_or_else(|e| panic!("{fine}: {e}"));
            assert!(config.admin.is_some());
        }
    }
    for loopback in ["127.0.0.1:9090", "127.0.0.2:0", "\"[::1]:9090\"", "{}"] {
        let admin = if loopback == "{}" {
            "{}".to_string()
        } else {
            format!("{{ listen: {loopback} }}")
        };
        load(&with_admin(&admin)).unwrap_or_else(|e| panic!("{loopback}: {e}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = load(&text);
    }

    #[test]
    fn never_panics_on_mutated_examples(cut in 0usize..4000, len in 0usize..40, insert in "[ \\-:{}\\[\\],#&*!|>'\"$a-z0-9\n]{0,12}") {
        let base = include_str!("../../config/switchyard.example.yaml");
        let start = base.char_indices().map(|(i, _)| i).find(|i| *i >= cut % base.len().max(1)).unwrap_or(0);
        let end = base.char_indices().map(|(i, _)| i).find(|i| *i >= start + len).unwrap_or(base.len());
        let mutated = format!("{}{}{}", &base[..start], insert, &base[end..]);
        let _ = load_str(&mutated, "m.yaml", &example_env);
    }
}

/// Found by the property tests: serde_yaml reports a file of several documents
/// (here a top-level key indented by mistake, or a stray `---`) without a
/// position; the error now names the line where the second document starts.
#[test]
fn a_second_document_is_placed() {
    let message =
        "invalid YAML: deserializing from YAML containing more than one document is not supported";
    assert_errors(
        "# comment\n  listen: 127.0.0.1:8080\nshards: 1\n",
        &[&format!("t.yaml:3: {message}")],
    );
    assert_errors(
        "listen: 127.0.0.1:8080\n---\nshards: 1\n",
        &[&format!("t.yaml:3: {message}")],
    );
}

/// A short `total` is enough on its own: the inherited connect and first-byte
/// defaults give way to it instead of failing a key the file never wrote.
#[test]
fn inherited_timeouts_give_way_to_a_short_total() {
    let text = with_routes(
        "  - name: chat\n    targets: [{ provider: openai, model: a }]\n    timeouts: { total: 500ms }\n",
    );
    let config = load(&text).expect("a short total alone is valid");
    let timeouts = config.routes[0].timeouts;
    assert_eq!(timeouts.first_byte, Duration::from_millis(500));
    assert!(timeouts.connect <= Duration::from_millis(500));
}

/// `first_token` is `auto` or a duration, on routes and targets; a target's key
/// overrides the route's, an absent one inherits it.
#[test]
fn first_token_is_auto_or_a_duration_and_targets_override_it() {
    let text = with_routes(
        "  - name: chat
    targets:
      - { provider: openai, model: a }
      - { provider: openai, model: b, timeouts: { first_token: auto } }
      - { provider: openai, model: c, timeouts: { first_byte: 20s } }
      - { provider: openai, model: d, timeouts: { first_token: 1.5s } }
    timeouts: { first_byte: 30s, first_token: 300ms }
  - name: other
    targets: [{ provider: openai, model: e, timeouts: { first_token: 2s } }]
",
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    let chat = &config.routes[0];
    assert_eq!(
        chat.timeouts.first_token,
        FirstToken::Fixed(Duration::from_millis(300))
    );
    let of = |route: &Route| -> Vec<FirstToken> {
        route
            .targets
            .iter()
            .map(|t| t.timeouts.first_token)
            .collect()
    };
    assert_eq!(
        of(chat),
        [
            FirstToken::Fixed(Duration::from_millis(300)),
            FirstToken::Auto,
            FirstToken::Fixed(Duration::from_millis(300)),
            FirstToken::Fixed(Duration::from_millis(1500)),
        ]
    );
    assert_eq!(chat.targets[2].timeouts.first_byte, Duration::from_secs(20));
    let other = &config.routes[1];
    assert_eq!(other.timeouts.first_token, FirstToken::Auto);
    assert_eq!(of(other), [FirstToken::Fixed(Duration::from_secs(2))]);
    let json = redacted_json(&config);
    assert_eq!(json["routes"][0]["timeouts"]["first_token"], "300ms");
    assert_eq!(json["routes"][1]["timeouts"]["first_token"], "auto");
}

#[test]
fn first_token_errors_are_placed() {
    let text = with_routes(
        "  - name: chat
    targets:
      - { provider: openai, model: a, timeouts: { first_token: 20s } }
      - { provider: openai, model: b, timeouts: { first_token: 0s } }
    timeouts:
      first_token: soon
      total: 1m
  - name: two
    targets: [{ provider: openai, model: c }]
    timeouts: { first_token: 2m, total: 1m }
",
    );
    assert_errors(
        &text,
        &[
            "t.yaml:7: routes[0].targets[0].timeouts.first_token: first_token (20s) must not be longer than first_byte (15s)",
            "t.yaml:8: routes[0].targets[1].timeouts.first_token: must be greater than zero (or `auto`)",
            "t.yaml:10: routes[0].timeouts.first_token: `soon` is not a valid duration; expected a number with a unit (ms, s, m, h), like `250ms`, `1.5s`, `2m` or `1h`; or `auto` (learned from the target's time to first token)",
            "t.yaml:14: routes[1].timeouts.first_token: first_token (2m) must not be longer than total (1m)",
        ],
    );
}

/// `hedge:` is off when absent; `after` is `p95` (the default) or a duration, and
/// the budget defaults to 5 % of the route's requests with 1 a second always.
#[test]
fn hedge_is_off_unless_configured_and_defaults_its_budget() {
    let text = with_routes(
        "  - name: off
    targets: [{ provider: openai, model: a }]
  - name: p95
    targets: [{ provider: openai, model: a }, { provider: openai, model: b }]
    hedge: { after: p95 }
  - name: fixed
    targets: [{ provider: openai, model: a }, { provider: openai, model: b }]
    hedge: { after: 250ms, max_extra: 1, budget_ratio: 0, budget_min_per_sec: 0 }
",
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.routes[0].hedge, None);
    let p95 = config.routes[1].hedge.expect("hedge on");
    assert_eq!(p95.after, HedgeAfter::P95);
    assert_eq!(
        (p95.max_extra, p95.budget_ratio, p95.budget_min_per_sec),
        (1, 0.05, 1)
    );
    let fixed = config.routes[2].hedge.expect("hedge on");
    assert_eq!(fixed.after, HedgeAfter::Fixed(Duration::from_millis(250)));
    assert_eq!((fixed.budget_ratio, fixed.budget_min_per_sec), (0.0, 0));
    let json = redacted_json(&config);
    assert_eq!(json["routes"][0]["hedge"], serde_json::Value::Null);
    assert_eq!(json["routes"][1]["hedge"]["after"], "p95");
    assert_eq!(json["routes"][2]["hedge"]["after"], "250ms");
}

#[test]
fn hedge_errors_are_placed() {
    let text = with_routes(
        "  - name: chat
    targets: [{ provider: openai, model: a }]
    hedge:
      after: soon
      max_extra: 2
      budget_ratio: 1.5
  - name: two
    targets: [{ provider: openai, model: b }]
    hedge: { after: 0s }
",
    );
    assert_errors(
        &text,
        &[
            "t.yaml:8: routes[0].hedge.after: `soon` is not a valid duration; expected a number with a unit (ms, s, m, h), like `250ms`, `1.5s`, `2m` or `1h`; or `p95` (the target's observed p95 TTFT)",
            "t.yaml:9: routes[0].hedge.max_extra: must be 1 (one extra attempt per request), got 2",
            "t.yaml:10: routes[0].hedge.budget_ratio: must be a number from 0 to 1, got 1.5",
            "t.yaml:13: routes[1].hedge.after: must be greater than zero (or `p95`)",
        ],
    );
}

/// `forward_headers:` is empty when absent; names are lower-cased and kept in
/// order, a trailing `*` kept as the prefix marker.
#[test]
fn forward_headers_parse_and_default() {
    let text = with_routes(
        "  - name: plain
    targets: [{ provider: openai, model: a }]
  - name: acme
    targets: [{ provider: openai, model: b }]
    forward_headers:
      allow: [X-Acme-Team, x-trace-*]
      deny: [traceparent, User-Agent]
",
    );
    let config = load(&text).expect("valid");
    assert_eq!(config.routes[0].forward_headers, ForwardHeaders::default());
    let acme = &config.routes[1].forward_headers;
    assert_eq!(acme.allow, ["x-acme-team", "x-trace-*"]);
    assert_eq!(acme.deny, ["traceparent", "user-agent"]);
    let json = redacted_json(&config);
    assert_eq!(
        json["routes"][1]["forward_headers"]["allow"][0],
        "x-acme-team"
    );
    assert_eq!(
        json["routes"][1]["forward_headers"]["deny"][1],
        "user-agent"
    );
}

/// An allow entry the gateway would never honour is refused at its line, with
/// why; so is anything that is not a header name. Denying one is harmless.
#[test]
fn forward_headers_errors_are_placed() {
    let text = with_routes(
        "  - name: chat
    targets: [{ provider: openai, model: a }]
    forward_headers:
      allow:
        - authorization
        - x-amz-*
        - x-switchyard-target
        - \"x acme\"
      deny: [cookie, \"bad:name\"]
      keep: [x]
",
    );
    assert_errors(
        &text,
        &[
            "t.yaml:14: routes[0].forward_headers.keep: unknown key `keep`; expected one of: allow or deny",
        ],
    );
    let text = text.replace("      keep: [x]\n", "");
    assert_errors(
        &text,
        &[
            "t.yaml:9: routes[0].forward_headers.allow[0]: `authorization` is never forwarded to a provider: it carries credentials; the provider gets its own",
            "t.yaml:10: routes[0].forward_headers.allow[1]: `x-amz-*` is never forwarded to a provider: AWS signing headers are the gateway's to sign",
            "t.yaml:11: routes[0].forward_headers.allow[2]: `x-switchyard-target` is never forwarded to a provider: the gateway's own headers are never forwarded",
            "t.yaml:12: routes[0].forward_headers.allow[3]: `x acme` is not a header name (letters, digits and -_.!#$%&'+^`|~, optionally ending in `*`)",
            "t.yaml:13: routes[0].forward_headers.deny[1]: `bad:name` is not a header name (letters, digits and -_.!#$%&'+^`|~, optionally ending in `*`)",
        ],
    );
}

/// A file under the system temp dir holding `text`, removed when dropped.
struct SideFile(std::path::PathBuf);

impl SideFile {
    fn new(name: &str, text: &str) -> SideFile {
        let path = std::env::temp_dir().join(format!("switchyard-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        SideFile(path)
    }

    fn name(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for SideFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn prices_budgets_and_state_parse() {
    let file = SideFile::new(
        "prices.yaml",
        "# reviewed 2026-12-01\nanthropic/claude: { input: 3, output: 15, cached_input: 0.3 }\n",
    );
    let text = format!(
        "keys:\n  - {{ name: a, key: k1, budget: {{ usd: 12.5, period: 7d }} }}\n  - {{ name: b, key: k2 }}\n{}prices:\n  openai/gpt-4o: {{ input: 2.50, output: 10.00, cached_input: 1.25 }}\n  openai/*: {{ input: 0.15, output: 0.6 }}\nprices_file: {}\nstate_dir: /tmp/sy-state\nstate_flush: 250ms\n",
        with_routes(ONE_ROUTE),
        file.name()
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.keys[0].budget,
        Some(Budget {
            limit_micros: 12_500_000,
            period: BudgetPeriod::Week
        })
    );
    assert_eq!(config.keys[1].budget, None);
    let prices: Vec<(usize, &str, Rate)> = config
        .prices
        .iter()
        .map(|p| (p.provider, p.model.as_str(), p.rate))
        .collect();
    let rate = |input, output, cached_input| Rate {
        input,
        output,
        cached_input,
    };
    assert_eq!(
        prices,
        [
            (0, "gpt-4o", rate(2_500_000, 10_000_000, 1_250_000)),
            (0, "*", rate(150_000, 600_000, 150_000)),
            (1, "claude", rate(3_000_000, 15_000_000, 300_000)),
        ]
    );
    assert_eq!(
        config.state,
        StateConfig {
            dir: "/tmp/sy-state".into(),
            configured: true,
            flush: Duration::from_millis(250),
        }
    );
    let plain = load(&with_routes(ONE_ROUTE)).unwrap();
    assert_eq!(
        plain.state,
        StateConfig {
            dir: DEFAULT_STATE_DIR.into(),
            configured: false,
            flush: Duration::from_secs(5),
        }
    );
    assert!(plain.prices.is_empty());
}

#[test]
fn budget_and_price_mistakes_name_their_line() {
    let text = format!(
        "keys:\n  - {{ name: a, key: k1, budget: {{ usd: 5, period: 2d }} }}\n  - {{ name: b, key: k2, budget: {{ usd: -1, period: 1d }} }}\n  - {{ name: c, key: k3, budget: {{ period: total }} }}\n  - {{ name: d, key: k4, budget: {{ usd: 1 }} }}\n{}prices:\n  opnai/gpt-4o: {{ input: 1, output: 1 }}\n  openai/x: {{ input: -2, output: 1 }}\n  openai/y: {{ input: 1 }}\n  gpt-4o: {{ input: 1, output: 1 }}\nstate_dir: \"\"\nstate_flush: 0s\n",
        with_routes(ONE_ROUTE)
    );
    let errors = errors(&text);
    let expected = [
        "t.yaml:2: keys[0].budget.period: unknown period `2d`; expected 1d (resets 00:00 UTC), 7d (Monday 00:00 UTC), 30d (the 1st of each month, 00:00 UTC) or total (never)",
        "t.yaml:3: keys[1].budget.usd: must be from 0 to 17000000 USD, got -1",
        "t.yaml:4: keys[2].budget.usd: is required (the most this key may spend per period, in USD)",
        "t.yaml:5: keys[3].budget.period: is required: 1d (resets 00:00 UTC), 7d (Monday 00:00 UTC), 30d (the 1st of each month, 00:00 UTC) or total (never)",
        "t.yaml:13: prices.opnai/gpt-4o: unknown provider `opnai`; configured: openai, anthropic",
        "t.yaml:14: prices.openai/x.input: must be from 0 to 1000000 (USD per million tokens), got -2",
        "t.yaml:15: prices.openai/y.output: is required (USD per million tokens; 0 for free)",
        "t.yaml:16: prices.gpt-4o: `gpt-4o` is not `provider/model` (use `provider/*` for every model of a provider)",
        "t.yaml:17: state_dir: is empty; omit it for the default, /var/lib/switchyard",
        "t.yaml:18: state_flush: must be greater than zero",
    ];
    assert_eq!(errors, expected, "{errors:#?}");
}

#[test]
fn keys_file_adds_keys_with_its_own_file_and_lines() {
    let file = SideFile::new(
        "keys-ok.yaml",
        "- { name: b, key_sha256: \"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\" }\n- name: c\n  key: k3\n  budget: { usd: 1, period: total }\n",
    );
    let text = format!(
        "keys:\n  - {{ name: a, key: k1 }}\nkeys_file: {}\n{}",
        file.name(),
        with_routes(ONE_ROUTE)
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = config.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(config.keys[2].digest, keys::digest(b"k3"));
    // An empty keys file adds nothing (every key revoked).
    std::fs::write(&file.0, "# no keys\n").unwrap();
    assert_eq!(load(&text).unwrap().keys.len(), 1);
}

#[test]
fn keys_file_mistakes_name_that_file() {
    let file = SideFile::new(
        "keys-bad.yaml",
        "- { name: x, key: k9 }\n- { name: a, key: k2 }\n- { name: y, key: k1 }\n- { name: z, key: k5, budget: { usd: 1, period: 1w } }\n",
    );
    let text = format!(
        "keys:\n  - {{ name: a, key: k1 }}\nkeys_file: {}\n{}",
        file.name(),
        with_routes(ONE_ROUTE)
    );
    let name = file.name();
    let errors = errors(&text);
    let expected = [
        format!("{name}:2: [1].name: duplicate client key name `a` (also in `keys:` of the config file)"),
        format!("{name}:3: [2].key: uses the same key value as client key `a` (also in `keys:` of the config file); each client needs its own key"),
        format!("{name}:4: [3].budget.period: unknown period `1w`; expected 1d (resets 00:00 UTC), 7d (Monday 00:00 UTC), 30d (the 1st of each month, 00:00 UTC) or total (never)"),
    ];
    assert_eq!(errors, expected, "{errors:#?}");
    std::fs::write(&file.0, "- { name: x, key: k9, rpm: lots }\n- { nme: y }\n").unwrap();
    let errors = self::errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].starts_with(&format!("{name}:1: [0].rpm: invalid type")),
        "{errors:#?}"
    );
    assert!(
        errors[1].starts_with(&format!("{name}:2: [1].nme: unknown key `nme`")),
        "{errors:#?}"
    );
    std::fs::write(&file.0, "a: b\n").unwrap();
    let errors = self::errors(&text);
    assert!(
        errors[0].starts_with(&format!("{name}:1: invalid type: map, expected a sequence")),
        "{errors:#?}"
    );
}

#[test]
fn a_missing_side_file_is_an_error_at_its_line() {
    let text = format!(
        "{}keys_file: /nonexistent/switchyard-keys.yaml\nprices_file: \"\"\n",
        with_routes(ONE_ROUTE)
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].starts_with(
            "t.yaml:7: keys_file: cannot read `/nonexistent/switchyard-keys.yaml`: No such file"
        ),
        "{errors:#?}"
    );
    assert_eq!(
        errors[1],
        "t.yaml:8: prices_file: is empty; omit it for none"
    );
}

#[test]
fn prices_file_mistakes_name_that_file() {
    let file = SideFile::new(
        "prices-bad.yaml",
        "openai/gpt-4o: { input: 1, output: 1 }\nnope/m: { input: 1, output: 1 }\n",
    );
    let text = format!(
        "{}prices:\n  openai/gpt-4o: {{ input: 2, output: 2 }}\nprices_file: {}\n",
        with_routes(ONE_ROUTE),
        file.name()
    );
    let name = file.name();
    let errors = errors(&text);
    let expected = [
        format!("{name}:1: openai/gpt-4o: `openai/gpt-4o` is priced twice"),
        format!("{name}:2: nope/m: unknown provider `nope`; configured: openai, anthropic"),
    ];
    assert_eq!(errors, expected, "{errors:#?}");
}

#[test]
fn example_price_file_validates() {
    let prices = repo_file("config/prices.example.yaml");
    let text = format!(
        "providers:\n  openai: {{ kind: openai, base_url: https://api.openai.com/v1 }}\n  anthropic: {{ kind: anthropic, base_url: https://api.anthropic.com, api_key: x }}\n  gemini: {{ kind: gemini, base_url: https://generativelanguage.googleapis.com, api_key: x }}\n{}prices_file: {}\n",
        &with_routes(ONE_ROUTE)[PROVIDERS.len()..],
        prices.display()
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.prices.len() >= 20, "{}", config.prices.len());
    let gpt4o = config
        .prices
        .iter()
        .find(|p| p.provider == 0 && p.model == "gpt-4o")
        .expect("gpt-4o priced");
    assert!(gpt4o.rate.output > gpt4o.rate.input && gpt4o.rate.cached_input < gpt4o.rate.input);
    for provider in 0..3 {
        assert!(config.prices.iter().any(|p| p.provider == provider));
    }
}

#[test]
fn cluster_section_parses_with_defaults_and_a_secret_password() {
    let text = format!(
        "{}cluster:\n  redis: \"redis://:${{REDIS_PASSWORD}}@10.0.0.5:6380/2\"\n",
        with_routes(ONE_ROUTE)
    );
    let env = |name: &str| (name == "REDIS_PASSWORD").then(|| "s3cret".to_string());
    let config = load_str(&text, "t.yaml", &env).unwrap_or_else(|e| panic!("{e}"));
    let cluster = config.cluster.as_ref().expect("cluster section");
    assert_eq!(cluster.redis, "redis://:s3cret@10.0.0.5:6380/2");
    assert_eq!(cluster.sync_interval, Duration::from_millis(50));
    assert!(
        cluster
            .node_id
            .ends_with(&format!("-{}", std::process::id())),
        "auto is hostname-pid: {}",
        cluster.node_id
    );
    let shown = redacted_json(&config)["cluster"]["redis"].to_string();
    assert!(!shown.contains("s3cret"), "{shown}");
    let named = format!(
        "{}cluster: {{ redis: \"rediss://r:6379/0\", node_id: east-1, sync_interval: 20ms }}\n",
        with_routes(ONE_ROUTE)
    );
    let cluster = load(&named).unwrap().cluster.unwrap();
    assert_eq!(
        (cluster.node_id.as_str(), cluster.sync_interval),
        ("east-1", Duration::from_millis(20))
    );
    assert!(load(&with_routes(ONE_ROUTE)).unwrap().cluster.is_none());
}

#[test]
fn cluster_section_errors_have_lines() {
    let base = with_routes(ONE_ROUTE);
    let line = base.lines().count() + 2;
    assert_errors(
        &format!(
            "{base}cluster:\n  redis: \"http://r:6379\"\n  node_id: \"\"\n  sync_interval: 0s\n"
        ),
        &[
            &format!("t.yaml:{line}: cluster.redis: a redis URL starts with redis:// or rediss://"),
            &format!(
                "t.yaml:{}: cluster.node_id: is empty; omit it (or `auto`) for hostname-pid",
                line + 1
            ),
            &format!(
                "t.yaml:{}: cluster.sync_interval: must be greater than zero",
                line + 2
            ),
        ],
    );
    assert_errors(
        &format!("{base}cluster:\n  node_id: a\n"),
        &[&format!(
            "t.yaml:{}: cluster.redis: is required: redis://host:port/db or rediss://...",
            line - 1
        )],
    );
}

#[test]
fn telemetry_is_checked_with_lines() {
    let base = with_routes(ONE_ROUTE);
    let lines = base.lines().count();
    let text = format!(
        "{base}telemetry:\n  otlp_endpoint: https://collector:4318/v1/traces\n  sample_ratio: 2\n"
    );
    assert_errors(
        &text,
        &[
            &format!("t.yaml:{}: telemetry.otlp_endpoint: `https://collector:4318/v1/traces`: must start with http:// (https is not supported; export to a local collector)", lines + 2),
            &format!("t.yaml:{}: telemetry.sample_ratio: must be a number from 0 to 1, got 2", lines + 3),
        ],
    );
    let ok = load(&format!(
        "{base}telemetry: {{ otlp_endpoint: \"http://127.0.0.1:4318\", headers: {{ X-Api-Key: k }} }}\n"
    ));
    let telemetry = ok.unwrap().telemetry.expect("telemetry");
    assert_eq!(telemetry.endpoint.port, 4318);
    assert_eq!(telemetry.endpoint.path, "/v1/traces");
    assert_eq!(telemetry.sample_ratio, 1.0);
    assert_eq!(
        telemetry.headers,
        vec![("x-api-key".to_string(), "k".to_string())]
    );
}

#[test]
fn otlp_endpoints_parse() {
    type Parts<'a> = Option<(&'a str, u16, &'a str)>;
    let table: [(&str, Parts); 5] = [
        (
            "http://otel:4318/v1/traces",
            Some(("otel", 4318, "/v1/traces")),
        ),
        ("http://otel/custom", Some(("otel", 80, "/custom"))),
        (
            "http://127.0.0.1:4318",
            Some(("127.0.0.1", 4318, "/v1/traces")),
        ),
        ("http://:4318/v1/traces", None),
        ("http://otel:99999/v1/traces", None),
    ];
    for (text, want) in table {
        let got = OtlpEndpoint::parse(text).ok();
        let got = got
            .as_ref()
            .map(|e| (e.host.as_str(), e.port, e.path.as_str()));
        assert_eq!(got, want, "{text}");
    }
}
