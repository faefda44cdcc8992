//! The validated, runtime form of the configuration: what shards route with.
//!
//! Everything here has already been checked by the loader (see `config::load`):
//! references resolve, durations are positive, secrets are expanded. Shards hold an
//! `Arc<Config>` and swap it whole on reload, so nothing in here is mutable.

use std::net::SocketAddr;
use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub shards: ShardCount,
    pub driver: DriverChoice,
    pub admin: Option<AdminConfig>,
    /// Client keys; empty means an open gateway (logged loudly at start).
    pub keys: Vec<ClientKey>,
    pub providers: Vec<Provider>,
    pub routes: Vec<Route>,
    pub health: HealthConfig,
    pub limits: Limits,
    pub log: LogConfig,
    /// How long SIGTERM waits for in-flight requests and streams.
    pub shutdown_grace: Duration,
    /// `GET /healthz` and `/readyz` on the data port, unauthenticated.
    pub health_endpoints: bool,
    /// The window every rpm and tpm limit counts over.
    pub rate_window: Duration,
    /// What each (provider, model) costs, from `prices:` and `prices_file:`.
    pub prices: Vec<Price>,
    /// Where spend is kept across restarts, and how often it is written.
    pub state: StateConfig,
    /// Cluster mode (shared provider health through Redis); `None`: a lone node.
    pub cluster: Option<ClusterConfig>,
    /// `telemetry:`: traces exported over OTLP/HTTP; `None` costs nothing.
    pub telemetry: Option<TelemetryConfig>,
}

/// `cluster:`: the Redis the fleet shares and this node's name in it.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://` or `rediss://`, already checked by `LinkUrl::parse`.
    pub redis: String,
    /// This node's name in the fleet's messages (`auto`: hostname-pid).
    pub node_id: String,
    /// How often local breaker transitions are published and the fleet's read.
    pub sync_interval: Duration,
    /// What limited keys get while Redis is unreachable.
    pub on_redis_down: OnRedisDown,
}

/// `cluster.on_redis_down`: how a node enforces fleet-wide limits while it
/// cannot reach Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisDown {
    /// Each node enforces its share of every limit (the limit over the nodes
    /// last seen) and keeps serving.
    Local,
    /// Keys with any limit or budget are refused (503) until Redis is back;
    /// keys without one are served.
    Closed,
}

impl OnRedisDown {
    pub fn as_str(self) -> &'static str {
        match self {
            OnRedisDown::Local => "local",
            OnRedisDown::Closed => "closed",
        }
    }
}

/// `prices:` entry: one provider's model (or every model, `*`) and its rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// Index into `Config::providers`.
    pub provider: usize,
    /// The model sent to the provider, or `*` for every model without its own.
    pub model: String,
    pub rate: Rate,
}

/// Rates in pico-dollars per token (USD per million tokens × 10⁶), so costs sum
/// in integers: $2.50 per million tokens is 2 500 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rate {
    pub input: u64,
    pub output: u64,
    /// Input tokens served from the provider's prompt cache.
    pub cached_input: u64,
}

/// `budget:` of a key: at most `limit_micros` spent per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The limit in micro-dollars (USD × 10⁶).
    pub limit_micros: u64,
    pub period: BudgetPeriod,
}

/// When a budget's spend starts again at zero; every boundary is UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetPeriod {
    /// `1d`: every day at 00:00 UTC.
    Day,
    /// `7d`: every Monday at 00:00 UTC.
    Week,
    /// `30d`: the 1st of every calendar month at 00:00 UTC.
    Month,
    /// `total`: never.
    Total,
}

impl BudgetPeriod {
    pub const ALL: [(&'static str, BudgetPeriod); 4] = [
        ("1d", BudgetPeriod::Day),
        ("7d", BudgetPeriod::Week),
        ("30d", BudgetPeriod::Month),
        ("total", BudgetPeriod::Total),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "1d",
            BudgetPeriod::Week => "7d",
            BudgetPeriod::Month => "30d",
            BudgetPeriod::Total => "total",
        }
    }

    pub fn parse(text: &str) -> Option<BudgetPeriod> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, period)| *period)
    }
}

/// `state_dir:` and `state_flush:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    pub dir: std::path::PathBuf,
    /// Whether `state_dir` was written in the file: only then is an unwritable
    /// directory a start-up error (the default falls back to memory, with a warning).
    pub configured: bool,
    /// How often spend is written; a crash loses at most this much of it.
    pub flush: Duration,
}

/// Where spend lives when `state_dir` is not set (the systemd unit's
/// `StateDirectory=switchyard`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/switchyard";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardCount {
    /// One shard per CPU the process may use (affinity mask and cgroup quota).
    Auto,
    Fixed(usize),
}

/// Which monoio driver each shard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    /// io_uring when the kernel allows it, else the legacy epoll driver.
    Auto,
    IoUring,
    Legacy,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Optional bearer token required on admin requests.
    pub token: Option<String>,
}

/// A client key: who may call, what it may use, and its limits.
#[derive(Clone)]
pub struct ClientKey {
    pub name: String,
    /// SHA-256 of the secret, what authentication compares (configured as
    /// `key_sha256`, or computed from `key` at load).
    pub digest: [u8; 32],
    pub limits: Quota,
    /// Most requests of this key in flight at once, across the gateway.
    pub max_concurrency: Option<u32>,
    /// Route names the key may use; empty: every route its requests match.
    pub routes: Vec<String>,
    /// Client model names the key may ask for (`*` or a `prefix*`); empty: any.
    pub models: Vec<String>,
    /// Free-form labels (team, owner) shown in /admin/keys.
    pub metadata: Vec<(String, String)>,
    /// After this, the key is refused like a wrong one.
    pub expires: Option<std::time::SystemTime>,
    /// Most the key may spend per period; `None`: spend is counted, never refused.
    pub budget: Option<Budget>,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field("routes", &self.routes)
            .field("models", &self.models)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// Whether the key may ask for client model `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty()
            || self
                .models
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => model.starts_with(prefix),
                    None => pattern == model,
                })
    }

    /// Whether the key may use route `route`.
    pub fn allows_route(&self, route: &str) -> bool {
        self.routes.is_empty() || self.routes.iter().any(|r| r == route)
    }
}

/// Requests and tokens (input + output) per `rate_window`; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl Quota {
    pub fn is_limited(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    OpenAiCompatible,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Azure => "azure",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Bedrock => "bedrock",
        }
    }
}

/// A parsed `base_url`: `http[s]://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/v1` (empty for none).
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: BaseUrl,
    pub api_key: Option<String>,
    /// Extra headers sent on every request to this provider.
    pub headers: Vec<(String, String)>,
    /// Upper bound on open upstream connections per shard.
    pub max_connections: usize,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Azure OpenAI `api-version` query parameter.
    pub api_version: Option<String>,
    /// The provider serves OpenAI's Responses API itself (`/v1/responses` passes
    /// through to it); otherwise Responses requests are translated onto chat.
    pub responses: bool,
    /// The account's (or deployment's) quota, shared by every target on it: at
    /// it, the provider's targets are skipped until the window frees.
    pub quota: Quota,
    /// AWS region (Bedrock).
    pub region: Option<String>,
    /// AWS credentials (Bedrock), usually from `${ENV}`.
    pub aws: Option<AwsCredentials>,
    /// Extra PEM root certificates trusted for this provider (private CAs), read
    /// and checked by the loader.
    pub ca_file: Option<CaFile>,
}

/// A provider's extra trust roots: the PEM file the config names and the
/// certificates the loader read from it. Parsed once on the control plane (at load
/// and reload), so shards build their TLS settings without touching the disk and
/// every shard trusts the same roots.
#[derive(Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: std::path::PathBuf,
    /// DER certificates, in file order; never empty.
    pub roots: std::sync::Arc<[rustls::pki_types::CertificateDer<'static>]>,
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("roots", &self.roots.len())
            .finish()
    }
}

/// AWS credentials for SigV4 signing. `Debug` never shows the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub strategy: Strategy,
    pub targets: Vec<Target>,
    pub retry: RetryPolicy,
    pub fallback: FallbackPolicy,
    pub timeouts: Timeouts,
    pub stream: StreamPolicy,
    /// Hedged requests; `None` (no `hedge:` key) is off.
    pub hedge: Option<HedgePolicy>,
    /// Which client headers reach this route's providers beyond the kind's
    /// defaults (see `proxy::headers`).
    pub forward_headers: ForwardHeaders,
}

/// `forward_headers:` of a route: header names (lower-cased; a trailing `*` is a
/// prefix) forwarded from the client, and names never forwarded by this route
/// (`deny` wins over `allow` and the kind's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardHeaders {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// `hedge:` of a route: when the first attempt has no first content `after` this,
/// the same request starts on the next healthy target and the first to commit wins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgePolicy {
    pub after: HedgeAfter,
    /// Extra attempts one request may start (only 1 is supported).
    pub max_extra: u32,
    /// Hedges allowed as a fraction of the route's recent requests (per shard).
    pub budget_ratio: f64,
    /// Hedges always allowed per second on the route, whatever the ratio says.
    pub budget_min_per_sec: u32,
}

/// How long the first attempt runs alone before a hedge starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeAfter {
    /// The primary target's observed p95 time to first token (no hedge while it
    /// has too few samples for one).
    P95,
    Fixed(Duration),
}

/// A rule matches when every present condition holds.
#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    /// Model names the client sends; `*` matches any. Empty = any model.
    pub models: Vec<String>,
    /// Client key names allowed on this route. Empty = any key.
    pub keys: Vec<String>,
    /// Request headers that must be present with exactly this value
    /// (names lower-cased).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Priority,
    Weighted,
    Latency,
    LeastBusy,
}

#[derive(Debug, Clone)]
pub struct Target {
    /// Index into `Config::providers`.
    pub provider: usize,
    /// Model name sent to the provider.
    pub model: String,
    pub priority: u32,
    pub weight: u32,
    /// Per-target retry override; `None` uses the route's.
    pub retry: Option<RetryPolicy>,
    /// Whether a stream continued on this target is sent as prefill (the partial
    /// answer as the last, assistant message).
    pub prefill: Prefill,
    /// Extra headers sent to this target only (after the provider's).
    pub headers: Vec<(String, String)>,
    /// Extra query parameters appended to this target's request path.
    pub query: Vec<(String, String)>,
    /// This target's timeouts, resolved at load: its own override with absent keys
    /// from the route's (or the route's). `total` is always the route's. Every
    /// attempt and stream on the target uses these; nothing merges them again.
    pub timeouts: Timeouts,
    /// This target's own quota (e.g. an Azure deployment's TPM); at it, the target
    /// is skipped until the window frees.
    pub quota: Quota,
}

/// `prefill:` of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prefill {
    /// Try prefill first unless this target model was seen to refuse it (or to
    /// answer it with a restart); learned at run time, gateway-wide.
    #[default]
    Auto,
    /// Always prefill.
    Always,
    /// Never: instruction style only.
    Never,
}

impl Prefill {
    pub fn as_str(self) -> &'static str {
        match self {
            Prefill::Auto => "auto",
            Prefill::Always => "true",
            Prefill::Never => "false",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total tries on the same target, including the first (1 = no retry).
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub on_status: Vec<u16>,
    /// Retries allowed as a fraction of recent requests per target.
    pub budget_ratio: f64,
    /// Retries always allowed per second per target, whatever the ratio says.
    pub budget_min_per_sec: u32,
    /// Cap on how long a provider's `Retry-After` can make us wait.
    pub max_retry_after: Duration,
    /// An overloaded target whose `Retry-After` is at most this is waited for and
    /// retried even when another target could take the request (for routes whose
    /// fallback is a worse model). Zero (the default): always move on at once.
    pub wait_retry_after_up_to: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FallbackPolicy {
    pub on_status: Vec<u16>,
    pub on_timeout: bool,
    pub on_connect_error: bool,
    /// Route to re-route a `context_length_exceeded` request to.
    pub on_context_length: Option<String>,
    /// Fall back on a content-policy rejection instead of returning it.
    pub on_content_policy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    /// Streams only: send to first content, on every target but the last one
    /// that could still take the request.
    pub first_token: FirstToken,
    pub between_chunks: Duration,
    pub total: Duration,
}

impl Timeouts {
    /// The documented defaults: connect 3s, first_byte 15s, first_token auto,
    /// between_chunks 20s, total 120s. Connect outlasts one SYN retransmit (1 s),
    /// so an upstream whose accept backlog dropped a SYN under a connection storm
    /// is not failed.
    pub const DEFAULT: Timeouts = Timeouts {
        connect: Duration::from_secs(3),
        first_byte: Duration::from_secs(15),
        first_token: FirstToken::Auto,
        between_chunks: Duration::from_secs(20),
        total: Duration::from_secs(120),
    };
}

/// `timeouts.first_token`: how long a stream may take from sending the request to
/// its first content (not a role-only or empty chunk; reasoning deltas count)
/// before the attempt fails over to the next target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstToken {
    /// Learned per target on each shard from its recent times to first token:
    /// `max(10 s, 4 × p95)`, 10 s until 20 samples (see `health::ttft`).
    Auto,
    /// A fixed limit.
    Fixed(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamPolicy {
    /// Continue a stream that broke after commit on the next targets (`auto`, the
    /// default, and `true`: every continuation is alignment-checked before a byte
    /// of it is sent, so it happens only where a verified path exists; `false`:
    /// never, the stream ends with the clean error).
    pub continue_after_commit: bool,
    /// Hold the client's response head until the first chunk that carries
    /// content (not just a role delta). `false` commits on the first event.
    pub hold_until_content: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthConfig {
    pub window: Duration,
    pub min_requests: u32,
    pub failure_rate: f64,
    pub consecutive_failures: u32,
    pub cooldown: Duration,
    pub max_cooldown: Duration,
    /// Successful probes in a row needed to close a half-open breaker; they go
    /// one at a time, gateway-wide.
    pub half_open_probes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    /// Largest whole (non-streaming) provider answer buffered, after decoding;
    /// a larger one fails its attempt.
    pub max_response_bytes: usize,
    pub max_connections: usize,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// A started request must arrive completely within this long (else 408).
    pub request_timeout: Duration,
    /// Longest a write to a client may wait for it to read (then the connection
    /// closes and any upstream held for it is released).
    pub client_write_timeout: Duration,
    /// Most bytes one streaming request keeps: events held before the first
    /// content, and the answer text kept for continuation.
    pub max_stream_buffer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Logfmt,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// The least level written (`SWITCHYARD_LOG` overrides it at start and reload).
    pub level: crate::log::Level,
    /// Fraction of requests logged one line each (0 = none, 1 = all).
    pub request_sample: f64,
}

/// `telemetry:`: where and how much of the request traces go.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    pub endpoint: OtlpEndpoint,
    /// Fraction of new traces kept (a client's sampled flag wins).
    pub sample_ratio: f64,
    /// Sent with every export (a collector's API key).
    pub headers: Vec<(String, String)>,
}

/// An `http://host:port/path` OTLP/HTTP traces endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint {
    pub host: String,
    pub port: u16,
    pub path: String,
    /// As written, for logs.
    pub text: String,
}

impl OtlpEndpoint {
    /// `http://host[:port][/path]` (port 80, path `/v1/traces` by default).
    /// Plain HTTP only: a collector is usually a local agent or sidecar.
    pub fn parse(text: &str) -> Result<OtlpEndpoint, String> {
        let rest = text.strip_prefix("http://").ok_or_else(|| {
            format!("`{text}`: must start with http:// (https is not supported; export to a local collector)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/v1/traces"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("`{text}`: bad port `{port}`"))?,
            ),
            None => (authority, 80),
        };
        if host.is_empty() || path.contains([' ', '\r', '\n']) {
            return Err(format!("`{text}`: expected http://host:port/path"));
        }
        Ok(OtlpEndpoint {
            host: host.to_string(),
            port,
            path: path.to_string(),
            text: text.to_string(),
        })
    }
}
