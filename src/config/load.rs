//! Loading a config: YAML text → shape check → `${VAR}` expansion → defaults and
//! validation → [`Config`], reporting every mistake with its file and line.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;

use super::env;
use super::error::{ConfigError, ConfigErrors, Report};
use super::locate::YamlPath;
use super::raw::{self, RawAdmin, RawConfig, RawHealth, RawLimits, RawLog, RawProvider};
use super::routes;
use super::types::*;

const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8080);
const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9090);

const DRIVERS: &[(&str, DriverChoice)] = &[
    ("auto", DriverChoice::Auto),
    ("io_uring", DriverChoice::IoUring),
    ("legacy", DriverChoice::Legacy),
];

const KINDS: &[(&str, ProviderKind)] = &[
    ("openai", ProviderKind::OpenAi),
    ("openai-compatible", ProviderKind::OpenAiCompatible),
    ("azure", ProviderKind::Azure),
    ("anthropic", ProviderKind::Anthropic),
    ("gemini", ProviderKind::Gemini),
    ("bedrock", ProviderKind::Bedrock),
];

const LOG_FORMATS: &[(&str, LogFormat)] =
    &[("logfmt", LogFormat::Logfmt), ("json", LogFormat::Json)];

/// Reads and validates a config file; `${VAR}` comes from the process environment.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors(vec![ConfigError {
            origin: origin.clone(),
            line: None,
            path: String::new(),
            message: format!("cannot read the config file: {error}"),
        }])
    })?;
    load_str(&text, &origin, &|name| std::env::var(name).ok())
}

/// Validates config text; `origin` names it in errors, `env` resolves `${VAR}`.
pub fn load_str(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut report = Report::new(text, origin);
    let empty = Value::Mapping(serde_yaml::Mapping::new());
    let Some(raw) = read::<RawConfig>(text, env, &mut report, empty) else {
        return Err(report.into_errors());
    };
    let mut side = SideFiles {
        env,
        errors: Vec::new(),
    };
    let config = build(raw, &mut report, &mut side);
    match report.finish(config) {
        Ok(config) if side.errors.is_empty() => Ok(config),
        Ok(_) => Err(ConfigErrors(side.errors)),
        Err(mut errors) => {
            errors.0.extend(side.errors);
            Err(errors)
        }
    }
}

/// Files the config names that hold part of it (`keys_file`, `prices_file`):
/// each is read with its own report, so its errors carry its own name and lines.
struct SideFiles<'e> {
    env: &'e dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

impl SideFiles<'_> {
    /// Reads `file` (named at `at` in the main file) as a `T` and hands it to
    /// `check` with the file's own report. A relative path is relative to the
    /// working directory, like `ca_file`.
    fn read<T: serde::de::DeserializeOwned, R>(
        &mut self,
        file: &str,
        at: &YamlPath,
        empty: Value,
        r: &mut Report<'_>,
        check: impl FnOnce(T, &mut Report<'_>) -> R,
    ) -> Option<R> {
        if file.trim().is_empty() {
            r.error(at, "is empty; omit it for none");
            return None;
        }
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) => {
                r.error(at, format!("cannot read `{file}`: {error}"));
                return None;
            }
        };
        let mut report = Report::new(&text, file);
        let raw = read::<T>(&text, self.env, &mut report, empty);
        let out = raw.map(|raw| check(raw, &mut report));
        self.errors.extend(report.into_errors().0);
        out
    }
}

/// Parses, shape-checks and expands; `None` only when the text is not YAML or
/// nothing of it could be read. A node of the wrong shape is reported and cut
/// out, and the rest is still validated, so one pass shows every mistake; later
/// errors at a cut node's path would only echo it, so they are muted. An empty
/// document reads as `empty`.
fn read<T: serde::de::DeserializeOwned>(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    report: &mut Report<'_>,
    empty: Value,
) -> Option<T> {
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(doc) => doc,
        Err(error) => {
            let line = error
                .location()
                .map(|l| l.line())
                .or_else(|| super::locate::second_document_line(text));
            report.error_at(line, String::new(), format!("invalid YAML: {error}"));
            return None;
        }
    };
    let shape = raw::read_pruned::<T>(&doc, empty.clone());
    for error in &shape.errors {
        report.error(&error.path, error.message.clone());
        report.mute(&error.path);
        if error.message.starts_with("unknown key") {
            let segments = error.path.segments();
            let parent = segments[..segments.len().saturating_sub(1)].iter();
            report.mute_within(&parent.fold(YamlPath::default(), |p, s| p.with(s.clone())));
        }
    }
    shape.value.as_ref()?;
    // A string whose `${VAR}` failed stays unexpanded; validation goes on, but
    // errors at that path would only echo the env error, so they are muted.
    let mut expanded = shape.tree;
    let found = env::expand_tree(&mut expanded, &YamlPath::default(), env);
    report.hide(found.hidden);
    for (path, error) in found.errors {
        report.error(&path, error.to_string());
        report.mute(&path);
    }
    let after = raw::read_pruned::<T>(&expanded, empty);
    for error in &after.errors {
        report.error(&error.path, "invalid value after ${VAR} expansion");
        report.mute(&error.path);
    }
    after.value
}

fn build(raw: RawConfig, r: &mut Report<'_>, side: &mut SideFiles<'_>) -> Config {
    let root = YamlPath::default();
    let keys = all_keys(
        raw.keys.unwrap_or_default(),
        raw.keys_file.as_deref(),
        r,
        side,
    );
    let providers = providers(
        raw.providers.map(|p| p.0).unwrap_or_default(),
        &root.key("providers"),
        r,
    );
    let prices = all_prices(
        raw.prices.map(|p| p.0).unwrap_or_default(),
        raw.prices_file.as_deref(),
        &providers,
        r,
        side,
    );
    let state = state(raw.state_dir.as_deref(), raw.state_flush.as_ref(), r);
    let refs = routes::Refs {
        providers: &providers,
        keys: &keys,
    };
    let routes = routes::routes(
        raw.routes.unwrap_or_default(),
        &refs,
        &root.key("routes"),
        r,
    );
    let listen = r.socket_addr(raw.listen.as_deref(), &root.key("listen"), DEFAULT_LISTEN);
    let config = Config {
        listen,
        shards: shards(raw.shards.as_ref(), &root.key("shards"), r),
        driver: r.choice(
            raw.driver.as_deref(),
            &root.key("driver"),
            DRIVERS,
            DriverChoice::Auto,
        ),
        admin: raw
            .admin
            .map(|admin_raw| admin(admin_raw, listen, &root.key("admin"), r)),
        keys,
        providers,
        routes,
        health: health(raw.health.unwrap_or_default(), &root.key("health"), r),
        limits: limits(raw.limits.unwrap_or_default(), &root.key("limits"), r),
        log: log(raw.log.unwrap_or_default(), &root.key("log"), r),
        shutdown_grace: r.duration(
            raw.shutdown_grace.as_ref(),
            &root.key("shutdown_grace"),
            Duration::from_secs(30),
        ),
        health_endpoints: raw.health_endpoints.unwrap_or(true),
        rate_window: r.positive_duration(
            raw.rate_window.as_ref(),
            &root.key("rate_window"),
            Duration::from_secs(60),
        ),
        prices,
        state,
        cluster: raw.cluster.map(|c| cluster(c, &root.key("cluster"), r)),
        telemetry: raw
            .telemetry
            .and_then(|t| telemetry(t, &root.key("telemetry"), r)),
    };
    check_fleet_window(&config, &root.key("rate_window"), r);
    config
}

/// `telemetry:`: `otlp_endpoint` is required and must be http://.
fn telemetry(
    raw: raw::RawTelemetry,
    path: &YamlPath,
    r: &mut Report<'_>,
) -> Option<TelemetryConfig> {
    let sample_ratio = r.fraction(raw.sample_ratio, &path.key("sample_ratio"), 1.0, true);
    let headers = r.headers(raw.headers.as_ref(), &path.key("headers"), true);
    let here = path.key("otlp_endpoint");
    let Some(text) = raw.otlp_endpoint else {
        r.error(&here, "is required, e.g. http://127.0.0.1:4318/v1/traces");
        return None;
    };
    match OtlpEndpoint::parse(text.trim()) {
        Ok(endpoint) => Some(TelemetryConfig {
            endpoint,
            sample_ratio,
            headers,
        }),
        Err(e) => {
            r.error(&here, e);
            None
        }
    }
}

/// `cluster:`: `redis` is required and must parse; `node_id: auto` (or left
/// out) names the node hostname-pid.
fn cluster(raw: raw::RawCluster, path: &YamlPath, r: &mut Report<'_>) -> ClusterConfig {
    let redis = raw.redis.unwrap_or_default();
    if redis.trim().is_empty() {
        r.error(
            &path.key("redis"),
            "is required: redis://host:port/db or rediss://...",
        );
    } else if let Err(e) = crate::cluster::link::LinkUrl::parse(&redis) {
        r.error(&path.key("redis"), e.to_string());
    }
    let node_id = match raw.node_id.as_deref().map(str::trim) {
        None | Some("auto") => auto_node_id(),
        Some("") => {
            r.error(
                &path.key("node_id"),
                "is empty; omit it (or `auto`) for hostname-pid",
            );
            String::new()
        }
        Some(name) => name.to_string(),
    };
    ClusterConfig {
        redis,
        node_id,
        sync_interval: r.positive_duration(
            raw.sync_interval.as_ref(),
            &path.key("sync_interval"),
            Duration::from_millis(50),
        ),
        on_redis_down: r.choice(
            raw.on_redis_down.as_deref(),
            &path.key("on_redis_down"),
            &[
                ("local", OnRedisDown::Local),
                ("closed", OnRedisDown::Closed),
            ],
            OnRedisDown::Local,
        ),
    }
}

/// In cluster mode every node must start its rate windows at the same
/// moments: they count from the hour, so a window must divide it.
fn check_fleet_window(config: &Config, path: &YamlPath, r: &mut Report<'_>) {
    let window = config.rate_window.as_millis();
    if config.cluster.is_some() && window > 0 && 3_600_000 % window != 0 {
        r.error(
            path,
            format!(
                "is {}; in cluster mode it must divide an hour (e.g. 1s, 10s, 1m, 5m) so every node's windows start together",
                crate::config::format_duration(config.rate_window)
            ),
        );
    }
}

/// hostname-pid, or a random id when the host has no readable name.
fn auto_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("node{:08x}", fastrand::u32(..)));
    format!("{host}-{}", std::process::id())
}

/// `keys:` and then the keys of `keys_file:`; a name in both is an error.
fn all_keys(
    inline: Vec<raw::RawKey>,
    file: Option<&str>,
    r: &mut Report<'_>,
    side: &mut SideFiles<'_>,
) -> Vec<ClientKey> {
    let root = YamlPath::default();
    let mut keys = Vec::new();
    super::keys::keys(inline, &root.key("keys"), &mut keys, "", r);
    if let Some(file) = file {
        let elsewhere = " (also in `keys:` of the config file)";
        let empty = Value::Sequence(Vec::new());
        side.read(
            file,
            &root.key("keys_file"),
            empty,
            r,
            |raw: Vec<raw::RawKey>, fr| super::keys::keys(raw, &root, &mut keys, elsewhere, fr),
        );
    }
    keys
}

/// `prices:` and then those of `prices_file:`; an entry in both is an error.
fn all_prices(
    inline: Vec<(String, raw::RawPrice)>,
    file: Option<&str>,
    providers: &[Provider],
    r: &mut Report<'_>,
    side: &mut SideFiles<'_>,
) -> Vec<Price> {
    let root = YamlPath::default();
    let mut prices = Vec::new();
    super::prices::prices(inline, providers, &root.key("prices"), &mut prices, r);
    if let Some(file) = file {
        let empty = Value::Mapping(serde_yaml::Mapping::new());
        side.read(
            file,
            &root.key("prices_file"),
            empty,
            r,
            |raw: raw::OrderedMap<raw::RawPrice>, fr| {
                super::prices::prices(raw.0, providers, &root, &mut prices, fr)
            },
        );
    }
    prices
}

/// `state_dir:` (default [`DEFAULT_STATE_DIR`]) and `state_flush:` (5 s).
fn state(dir: Option<&str>, flush: Option<&raw::DurationText>, r: &mut Report<'_>) -> StateConfig {
    let root = YamlPath::default();
    if dir.is_some_and(|d| d.trim().is_empty()) {
        r.error(
            &root.key("state_dir"),
            "is empty; omit it for the default, /var/lib/switchyard",
        );
    }
    StateConfig {
        dir: std::path::PathBuf::from(dir.unwrap_or(DEFAULT_STATE_DIR)),
        configured: dir.is_some(),
        flush: r.positive_duration(flush, &root.key("state_flush"), Duration::from_secs(5)),
    }
}

fn shards(raw: Option<&Value>, path: &YamlPath, r: &mut Report<'_>) -> ShardCount {
    const EXPECTED: &str = "expected `auto` or a positive integer";
    let count = match raw {
        None => return ShardCount::Auto,
        Some(Value::String(s)) if s.trim() == "auto" => return ShardCount::Auto,
        Some(Value::String(s)) => s.trim().parse::<usize>().ok(),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        Some(_) => None,
    };
    match count {
        Some(n) if n > 0 => ShardCount::Fixed(n),
        Some(_) => {
            r.error(path, format!("must not be 0; {EXPECTED}"));
            ShardCount::Auto
        }
        None => {
            r.error(path, EXPECTED);
            ShardCount::Auto
        }
    }
}

fn admin(
    raw: RawAdmin,
    main_listen: SocketAddr,
    path: &YamlPath,
    r: &mut Report<'_>,
) -> AdminConfig {
    let listen_path = path.key("listen");
    let listen = r.socket_addr(raw.listen.as_deref(), &listen_path, DEFAULT_ADMIN_LISTEN);
    // Port 0 asks for any free port: two such listeners never collide.
    if listen == main_listen && listen.port() != 0 {
        r.error(&listen_path, "must differ from the top-level `listen`");
    }
    if raw.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        r.error(
            &path.key("token"),
            "is empty (an empty environment variable?); omit it for no token",
        );
    }
    // Anyone who reaches a tokenless admin listener can reload the config and
    // read every target's state; off loopback that must be a deliberate choice.
    let public = !listen.ip().is_loopback();
    if public && raw.token.is_none() && raw.allow_public_without_token != Some(true) {
        r.error(
            &listen_path,
            "is not a loopback address and `admin.token` is not set, so anyone who can \
             reach it could reload the config; set `admin.token`, or \
             `admin.allow_public_without_token: true` to accept that",
        );
    }
    AdminConfig {
        listen,
        token: raw.token,
    }
}

fn providers(
    raw: Vec<(String, RawProvider)>,
    path: &YamlPath,
    r: &mut Report<'_>,
) -> Vec<Provider> {
    if raw.is_empty() {
        r.error(path, "at least one provider is required");
    }
    raw.into_iter()
        .map(|(name, p)| provider(name.clone(), p, &path.key(&name), r))
        .collect()
}

/// Bedrock signs requests with AWS credentials: both halves or neither.
fn aws_credentials(
    raw: &RawProvider,
    kind: ProviderKind,
    path: &YamlPath,
    r: &mut Report<'_>,
) -> Option<AwsCredentials> {
    match (&raw.aws_access_key_id, &raw.aws_secret_access_key) {
        (Some(id), Some(secret)) => Some(AwsCredentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: raw.aws_session_token.clone(),
        }),
        (None, None) if kind != ProviderKind::Bedrock => None,
        (None, None) => {
            r.error(
                &path.key("aws_access_key_id"),
                "is required for kind `bedrock` (with aws_secret_access_key)",
            );
            None
        }
        (Some(_), None) => {
            r.error(
                &path.key("aws_secret_access_key"),
                "is required when aws_access_key_id is set",
            );
            None
        }
        (None, Some(_)) => {
            r.error(
                &path.key("aws_access_key_id"),
                "is required when aws_secret_access_key is set",
            );
            None
        }
    }
}

/// Reads and checks a provider's `ca_file` now, on the control plane, so a missing
/// or bad file is a config error (with its line) and shards never read the disk.
/// A relative path is relative to the working directory.
fn ca_file(
    raw: Option<&str>,
    base_url: &BaseUrl,
    path: &YamlPath,
    r: &mut Report<'_>,
) -> Option<CaFile> {
    let file = std::path::PathBuf::from(raw?);
    if file.as_os_str().is_empty() {
        r.error(path, "is empty; omit it to trust only the public roots");
        return None;
    }
    if !base_url.tls && !base_url.host.is_empty() {
        r.error(
            path,
            "is set but `base_url` is not https; a CA file only applies to TLS",
        );
        return None;
    }
    match crate::upstream::tls::read_ca_file(&file) {
        Ok(roots) => Some(CaFile {
            path: file,
            roots: roots.into(),
        }),
        Err(error) => {
            r.error(path, format!("`{}` {error}", file.display()));
            None
        }
    }
}

fn provider(name: String, raw: RawProvider, path: &YamlPath, r: &mut Report<'_>) -> Provider {
    let kind_path = path.key("kind");
    if raw.kind.is_none() {
        r.error(
            &kind_path,
            format!("is required but missing; expected one of: {}", names(KINDS)),
        );
    }
    let kind = r.choice(raw.kind.as_deref(), &kind_path, KINDS, ProviderKind::OpenAi);
    let url_path = path.key("base_url");
    let url_text = r.required(raw.base_url.as_deref(), &url_path);
    let base_url = parse_base_url(&url_text).unwrap_or_else(|message| {
        if !url_text.is_empty() {
            r.error(&url_path, message);
        }
        BaseUrl {
            tls: false,
            host: String::new(),
            port: 0,
            path: String::new(),
        }
    });
    if raw.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        r.error(
            &path.key("api_key"),
            "is empty (an empty environment variable?); omit it for no key",
        );
    }
    let aws = aws_credentials(&raw, kind, path, r);
    if kind == ProviderKind::Bedrock && raw.region.is_none() {
        r.error(
            &path.key("region"),
            "is required for kind `bedrock` (e.g. us-east-1)",
        );
    }
    if kind == ProviderKind::Azure && raw.api_key.is_none() {
        r.error(&path.key("api_key"), "is required for kind `azure`");
    }
    if kind == ProviderKind::Anthropic && raw.api_key.is_none() {
        r.error(&path.key("api_key"), "is required for kind `anthropic`");
    }
    if kind == ProviderKind::Gemini && raw.api_key.is_none() {
        r.error(&path.key("api_key"), "is required for kind `gemini`");
    }
    let responses = responses_setting(raw.responses, kind, &path.key("responses"), r);
    Provider {
        api_version: raw.api_version.clone(),
        responses,
        quota: super::keys::quota(raw.rpm, raw.tpm, path, r),
        region: raw.region.clone(),
        aws,
        ca_file: ca_file(raw.ca_file.as_deref(), &base_url, &path.key("ca_file"), r),
        name,
        kind,
        base_url,
        api_key: raw.api_key,
        headers: r.headers(raw.headers.as_ref(), &path.key("headers"), false),
        max_connections: r.at_least_one(raw.max_connections, &path.key("max_connections"), 1024),
        pool_idle_timeout: r.positive_duration(
            raw.pool_idle_timeout.as_ref(),
            &path.key("pool_idle_timeout"),
            Duration::from_secs(90),
        ),
    }
}

/// `responses:` — whether `/v1/responses` passes through to this provider. Only
/// OpenAI-shaped kinds can serve it; OpenAI itself does by default.
fn responses_setting(
    setting: Option<bool>,
    kind: ProviderKind,
    path: &YamlPath,
    r: &mut Report<'_>,
) -> bool {
    let openai_shaped = matches!(
        kind,
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Azure
    );
    match setting {
        Some(true) if !openai_shaped => {
            r.error(
                path,
                format!(
                    "kind `{}` does not serve OpenAI's Responses API; its /v1/responses requests are translated (remove the setting)",
                    kind.as_str()
                ),
            );
            false
        }
        Some(on) => on,
        None => kind == ProviderKind::OpenAi,
    }
}

fn names<T>(options: &[(&str, T)]) -> String {
    options
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `http[s]://host[:port][/path]`; the message never repeats the URL.
pub(crate) fn parse_base_url(text: &str) -> Result<BaseUrl, &'static str> {
    let text = text.trim();
    let (tls, rest) = if let Some(rest) = strip_prefix_ignore_case(text, "https://") {
        (true, rest)
    } else if let Some(rest) = strip_prefix_ignore_case(text, "http://") {
        (false, rest)
    } else {
        return Err("expected a URL starting with http:// or https://");
    };
    if rest.contains(['?', '#']) {
        return Err("base_url must not have a query or fragment");
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err("credentials in base_url are not supported; use api_key");
    }
    let (host, port) = split_host_port(authority)?;
    let port = port.unwrap_or(if tls { 443 } else { 80 });
    let path = path.trim_end_matches('/').to_string();
    Ok(BaseUrl {
        tls,
        host,
        port,
        path,
    })
}

fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

/// `host`, `host:port` or `[v6]:port`; the host is returned without brackets.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), &'static str> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("base_url has an unclosed `[` in its host")?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("base_url has junk after its `]`")?,
            ),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("base_url has no valid host");
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or("base_url has an invalid port")?,
        ),
    };
    Ok((host.to_ascii_lowercase(), port))
}

fn health(raw: RawHealth, path: &YamlPath, r: &mut Report<'_>) -> HealthConfig {
    let window = r.positive_duration(
        raw.window.as_ref(),
        &path.key("window"),
        Duration::from_secs(60),
    );
    if window < Duration::from_secs(1) {
        r.error(
            &path.key("window"),
            "must be at least 1s (health is counted in one-second buckets)",
        );
    }
    let cooldown = r.positive_duration(
        raw.cooldown.as_ref(),
        &path.key("cooldown"),
        Duration::from_secs(5),
    );
    // Capped at 10 s by default so a healed target gets traffic back within 10 s
    // however long it was down; never below the cooldown a file sets.
    let max_cooldown = r.duration(
        raw.max_cooldown.as_ref(),
        &path.key("max_cooldown"),
        Duration::from_secs(10).max(cooldown),
    );
    r.not_longer(
        ("cooldown", cooldown),
        ("max_cooldown", max_cooldown),
        &path.key("max_cooldown"),
    );
    HealthConfig {
        window,
        min_requests: raw.min_requests.unwrap_or(20),
        failure_rate: r.fraction(raw.failure_rate, &path.key("failure_rate"), 0.5, false),
        consecutive_failures: r.at_least_one(
            raw.consecutive_failures,
            &path.key("consecutive_failures"),
            5,
        ),
        cooldown,
        max_cooldown,
        half_open_probes: r.at_least_one(raw.half_open_probes, &path.key("half_open_probes"), 1),
    }
}

fn limits(raw: RawLimits, path: &YamlPath, r: &mut Report<'_>) -> Limits {
    Limits {
        max_header_bytes: r.at_least_one(
            raw.max_header_bytes,
            &path.key("max_header_bytes"),
            32 * 1024,
        ),
        max_body_bytes: r.at_least_one(
            raw.max_body_bytes,
            &path.key("max_body_bytes"),
            10 * 1024 * 1024,
        ),
        max_response_bytes: r.at_least_one(
            raw.max_response_bytes,
            &path.key("max_response_bytes"),
            32 * 1024 * 1024,
        ),
        max_connections: r.at_least_one(raw.max_connections, &path.key("max_connections"), 10_000),
        idle_timeout: r.positive_duration(
            raw.idle_timeout.as_ref(),
            &path.key("idle_timeout"),
            Duration::from_secs(60),
        ),
        request_timeout: r.positive_duration(
            raw.request_timeout.as_ref(),
            &path.key("request_timeout"),
            Duration::from_secs(30),
        ),
        client_write_timeout: r.positive_duration(
            raw.client_write_timeout.as_ref(),
            &path.key("client_write_timeout"),
            Duration::from_secs(30),
        ),
        max_stream_buffer_bytes: r.at_least_one(
            raw.max_stream_buffer_bytes,
            &path.key("max_stream_buffer_bytes"),
            4 * 1024 * 1024,
        ),
    }
}

fn log(raw: RawLog, path: &YamlPath, r: &mut Report<'_>) -> LogConfig {
    LogConfig {
        format: r.choice(
            raw.format.as_deref(),
            &path.key("format"),
            LOG_FORMATS,
            LogFormat::Logfmt,
        ),
        level: r.choice(
            raw.level.as_deref(),
            &path.key("level"),
            crate::log::Level::NAMES,
            crate::log::Level::Info,
        ),
        request_sample: r.fraction(raw.request_sample, &path.key("request_sample"), 0.0, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let url = parse_base_url("https://api.openai.com/v1/").unwrap();
        assert_eq!(
            url,
            BaseUrl {
                tls: true,
                host: "api.openai.com".into(),
                port: 443,
                path: "/v1".into()
            }
        );
        let url = parse_base_url("http://127.0.0.1:9001").unwrap();
        assert_eq!((url.tls, url.port, url.path.as_str()), (false, 9001, ""));
        let url = parse_base_url("HTTP://[::1]:8080/x/y").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("::1", 8080, "/x/y")
        );
        for bad in [
            "ftp://x",
            "api.openai.com",
            "https://",
            "https://:80/v1",
            "http://h:0",
            "http://h:99999",
            "http://u:p@h",
            "http://h/?q=1",
            "http://[::1",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }
}
