//! Scenario files: the YAML schema, what a valid scenario must satisfy, and the
//! shortened `--smoke` form of each scenario.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cluster::ClusterSpec;
use super::efficiency::{self, EfficiencySpec};
use super::timeline::{PROBE_BATCHES, PROBE_BATCH_GAP};
use super::SuiteError;
use crate::mock::{Continuation, Fault};

/// One scenario, as written in `loadtest/scenarios/NAME.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short kebab-case name, used for `--only` and file names in the report.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// In-process mock providers, each with a control listener.
    pub mocks: Vec<MockSpec>,
    /// Gateway config template. `{{mock.NAME}}` becomes that mock's base URL; the
    /// suite sets `listen` and `shards` itself.
    pub gateway: String,
    pub traffic: Traffic,
    /// What `--smoke` changes (shorter, slower); fault times scale with the duration.
    #[serde(default)]
    pub smoke: SmokeOverride,
    /// Fault timeline, relative to the start of the measured window.
    #[serde(default)]
    pub faults: Vec<FaultStep>,
    /// Sequential probe requests at one moment (fail-fast latency, Retry-After).
    #[serde(default)]
    pub probe: Option<Probe>,
    /// Time after the first fault before the breaker is expected open;
    /// `error_rate_after_breaker` and `fault_throughput_ratio` skip it.
    #[serde(default)]
    pub settle: Dur,
    /// `recovery_s` measures until this mock serves half the offered rate again;
    /// without it, until client-visible errors are back under 1%.
    #[serde(default)]
    pub recovery_mock: Option<String>,
    /// Makes this a comparison scenario (direct vs through the gateway).
    #[serde(default)]
    pub compare: Option<Compare>,
    /// Makes this a neighbour scenario: `traffic` runs in alternating quiet and
    /// loaded slices, and in every loaded slice these streams run beside it.
    #[serde(default)]
    pub extra_traffic: Option<ExtraTraffic>,
    /// Makes this a fleet scenario: N nodes sharing a real redis-server, then the
    /// same N independent (see `suite::cluster`).
    #[serde(default)]
    pub cluster: Option<ClusterSpec>,
    /// Makes this an efficiency scenario: each workload direct and through the
    /// gateway (and HAProxy), CPU per request from task clocks (see
    /// `suite::efficiency`; `traffic` is then only the readiness model and timeout).
    #[serde(default)]
    pub efficiency: Option<EfficiencySpec>,
    /// Pass criteria: metric → bound. These decide the verdict, so they must be
    /// counts and ratios measured within the run (see loadtest/README.md).
    #[serde(default)]
    pub criteria: BTreeMap<Metric, Bound>,
    /// DESIGN.md's absolute budgets (µs, req/s, ms): measured and reported as
    /// met/missed, never part of the verdict, because on a shared machine they
    /// measure the machine as much as the gateway.
    #[serde(default)]
    pub budgets: BTreeMap<Metric, Bound>,
}

/// How much longer than the `recovery_s` bound a run must go on after the heal:
/// the recovery mock's rate is judged over 0.3 s windows of 100 ms samples, so a
/// recovery right at the bound is only seen about 0.4 s later; the rest absorbs a
/// timeline thread that applies the heal late on a busy machine.
pub const RECOVERY_TAIL_MARGIN: Duration = Duration::from_secs(1);

/// Most slices per compare phase: each costs a warmup, and best-of-N gains
/// little past a handful.
pub const MAX_ROUNDS: usize = 10;

/// One mock provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockSpec {
    pub name: String,
    #[serde(default = "one")]
    pub threads: usize,
    #[serde(default = "eight")]
    pub stream_chunks: usize,
    #[serde(default)]
    pub chunk_delay: Dur,
    #[serde(default)]
    pub latency: Dur,
    /// Fault in force at start.
    #[serde(default)]
    pub fault: Fault,
    /// How the mock answers a continuation at start (`{ mode: honest }`, ...;
    /// see `loadtest/src/mock/answer.rs`).
    #[serde(default)]
    pub continuation: Continuation,
}

/// The load, sent open loop at `rate` (closed loop without it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    #[serde(default)]
    pub rate: Option<f64>,
    pub duration: Dur,
    #[serde(default = "default_warmup")]
    pub warmup: Dur,
    #[serde(default = "default_connections")]
    pub connections: usize,
    #[serde(default)]
    pub stream: bool,
    #[serde(default = "default_model")]
    pub model: String,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Sent as `authorization: Bearer {key}`; none by default.
    #[serde(default)]
    pub key: Option<String>,
}

/// Streams that run beside `traffic`, each with its own key, rate and report.
/// `traffic.duration` is cut into `2 × rounds` slices of equal length, quiet
/// (`traffic` alone) and loaded (`traffic` + every stream) alternating, so a
/// noisy stretch of the machine's time hits both sides alike.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraTraffic {
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    pub streams: Vec<ExtraStream>,
}

/// One extra stream: open loop at `rate`, its own connections and key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraStream {
    pub name: String,
    #[serde(default)]
    pub key: Option<String>,
    pub rate: f64,
    #[serde(default = "default_extra_connections")]
    pub connections: usize,
    /// Default: `traffic.model`.
    #[serde(default)]
    pub model: Option<String>,
}

/// Overrides for `--smoke`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeOverride {
    pub rate: Option<f64>,
    pub duration: Option<Dur>,
    pub connections: Option<usize>,
    /// Neighbour scenarios: `extra_traffic.rounds` in smoke mode (default: the same).
    pub rounds: Option<usize>,
}

/// At `at`, set mock `mock` to `fault` (`POST /_mock/fault`), or its
/// continuation mode to `continuation` (`POST /_mock/continuation`), through its
/// control endpoint. A step sets exactly one of the two; only fault steps make
/// the fault window (first fault, heal).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultStep {
    pub at: Dur,
    pub mock: String,
    #[serde(default)]
    pub fault: Option<Fault>,
    #[serde(default)]
    pub continuation: Option<Continuation>,
}

impl FaultStep {
    /// Whether this step sets a fault other than `none`.
    pub fn is_fault(&self) -> bool {
        self.fault.as_ref().is_some_and(|f| *f != Fault::None)
    }
}

/// `requests` sequential requests to the gateway at `at`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub at: Dur,
    #[serde(default = "default_probes")]
    pub requests: usize,
}

/// A comparison run: `traffic` at its rate direct to `direct` and through the
/// gateway, then max throughput (closed loop) both ways, then optionally max
/// throughput through the gateway while `down` refuses connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    pub direct: String,
    pub max_duration: Dur,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default)]
    pub down: Option<String>,
    /// Each max-throughput phase is split into this many slices, direct and gateway
    /// slices alternating, and the best slice counts: noise from other processes
    /// only ever lowers throughput, so the best of a few short slices is the
    /// estimate least disturbed by it, and alternating gives both sides the same
    /// chances at a quiet moment.
    #[serde(default = "default_rounds")]
    pub rounds: usize,
}

/// What a criterion measures (see loadtest/README.md for each definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ErrorRate,
    ErrorRateAfterBreaker,
    RetriedAfterBreaker,
    FaultThroughputRatio,
    RecoveryS,
    StreamCompletion,
    BadSuccessStreams,
    ContinuedStreams,
    TtftP99S,
    TrafficErrors,
    LoadedP99Ratio,
    ExtraAdmittedPerS,
    ExtraRefused,
    UpstreamExcess,
    UpstreamCallsPerRequest,
    FailFastP99Ms,
    FailFastRatioP50,
    RetryAfterRatio,
    OverheadP50Us,
    OverheadP99Us,
    OverheadRatioP50,
    OverheadRatioP99,
    MaxThroughputRatio,
    GatewayMaxRps,
    DownThroughputRatio,
    DownRetriedRatio,
    ClusterClientErrors,
    ClusterDeadCallsRatio,
    ClusterAdmittedPerWindow,
    EfficiencyClientErrors,
    StreamEventsMismatch,
    DeadPrimaryCallsPerSlice,
    CpuFiguresMissing,
    PassthroughCpuUs,
    StreamingCpuUsPerEvent,
    TranslatedCpuUs,
    FailoverCpuUs,
    LimitCheckCpuUs,
    GatewayHaproxyCpuRatio,
    StreamingHaproxyCpuRatio,
    GatewayHaproxyP99Ratio,
    GatewayHaproxyCpuAtRateRatio,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::ErrorRateAfterBreaker => "error_rate_after_breaker",
            Metric::RetriedAfterBreaker => "retried_after_breaker",
            Metric::FaultThroughputRatio => "fault_throughput_ratio",
            Metric::RecoveryS => "recovery_s",
            Metric::StreamCompletion => "stream_completion",
            Metric::BadSuccessStreams => "bad_success_streams",
            Metric::ContinuedStreams => "continued_streams",
            Metric::TtftP99S => "ttft_p99_s",
            Metric::TrafficErrors => "traffic_errors",
            Metric::LoadedP99Ratio => "loaded_p99_ratio",
            Metric::ExtraAdmittedPerS => "extra_admitted_per_s",
            Metric::ExtraRefused => "extra_refused",
            Metric::UpstreamExcess => "upstream_excess",
            Metric::UpstreamCallsPerRequest => "upstream_calls_per_request",
            Metric::FailFastP99Ms => "fail_fast_p99_ms",
            Metric::FailFastRatioP50 => "fail_fast_ratio_p50",
            Metric::RetryAfterRatio => "retry_after_ratio",
            Metric::OverheadP50Us => "overhead_p50_us",
            Metric::OverheadP99Us => "overhead_p99_us",
            Metric::OverheadRatioP50 => "overhead_ratio_p50",
            Metric::OverheadRatioP99 => "overhead_ratio_p99",
            Metric::MaxThroughputRatio => "max_throughput_ratio",
            Metric::GatewayMaxRps => "gateway_max_rps",
            Metric::DownThroughputRatio => "down_throughput_ratio",
            Metric::DownRetriedRatio => "down_retried_ratio",
            Metric::ClusterClientErrors => "cluster_client_errors",
            Metric::ClusterDeadCallsRatio => "cluster_dead_calls_ratio",
            Metric::ClusterAdmittedPerWindow => "cluster_admitted_per_window",
            Metric::EfficiencyClientErrors => "efficiency_client_errors",
            Metric::StreamEventsMismatch => "stream_events_mismatch",
            Metric::DeadPrimaryCallsPerSlice => "dead_primary_calls_per_slice",
            Metric::CpuFiguresMissing => "cpu_figures_missing",
            Metric::PassthroughCpuUs => "passthrough_cpu_us",
            Metric::StreamingCpuUsPerEvent => "streaming_cpu_us_per_event",
            Metric::TranslatedCpuUs => "translated_cpu_us",
            Metric::FailoverCpuUs => "failover_cpu_us",
            Metric::LimitCheckCpuUs => "limit_check_cpu_us",
            Metric::GatewayHaproxyCpuRatio => "gateway_haproxy_cpu_ratio",
            Metric::StreamingHaproxyCpuRatio => "streaming_haproxy_cpu_ratio",
            Metric::GatewayHaproxyP99Ratio => "gateway_haproxy_p99_ratio",
            Metric::GatewayHaproxyCpuAtRateRatio => "gateway_haproxy_cpu_at_rate_ratio",
        }
    }

    /// Absolute figures (time or rate in units of the machine): allowed as budgets,
    /// rejected as criteria, because a busy machine moves them whatever the
    /// gateway does. `recovery_s` is a time too, but one set by the gateway's own
    /// breaker timers (seconds), so it stays a criterion with a bound in seconds.
    pub fn is_absolute(self) -> bool {
        matches!(
            self,
            Metric::FailFastP99Ms
                | Metric::OverheadP50Us
                | Metric::OverheadP99Us
                | Metric::GatewayMaxRps
                | Metric::PassthroughCpuUs
                | Metric::StreamingCpuUsPerEvent
                | Metric::TranslatedCpuUs
                | Metric::FailoverCpuUs
                | Metric::LimitCheckCpuUs
        )
    }

    fn needs_efficiency(self) -> bool {
        matches!(
            self,
            Metric::EfficiencyClientErrors
                | Metric::StreamEventsMismatch
                | Metric::DeadPrimaryCallsPerSlice
                | Metric::CpuFiguresMissing
                | Metric::PassthroughCpuUs
                | Metric::StreamingCpuUsPerEvent
                | Metric::TranslatedCpuUs
                | Metric::FailoverCpuUs
                | Metric::LimitCheckCpuUs
                | Metric::GatewayHaproxyCpuRatio
                | Metric::StreamingHaproxyCpuRatio
                | Metric::GatewayHaproxyP99Ratio
                | Metric::GatewayHaproxyCpuAtRateRatio
        )
    }

    fn needs_compare(self) -> bool {
        matches!(
            self,
            Metric::OverheadP50Us
                | Metric::OverheadP99Us
                | Metric::OverheadRatioP50
                | Metric::OverheadRatioP99
                | Metric::MaxThroughputRatio
                | Metric::GatewayMaxRps
                | Metric::DownThroughputRatio
                | Metric::DownRetriedRatio
        )
    }

    fn needs_cluster(self) -> bool {
        matches!(
            self,
            Metric::ClusterClientErrors
                | Metric::ClusterDeadCallsRatio
                | Metric::ClusterAdmittedPerWindow
        )
    }

    fn needs_extra_traffic(self) -> bool {
        matches!(
            self,
            Metric::TrafficErrors
                | Metric::LoadedP99Ratio
                | Metric::ExtraAdmittedPerS
                | Metric::ExtraRefused
                | Metric::UpstreamExcess
        )
    }
}

/// A criterion's bound: the measured value must be ≥ `min` and ≤ `max`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Bound {
    pub fn holds(&self, value: f64) -> bool {
        let above = match self.min {
            Some(m) => value >= m,
            None => true,
        };
        let below = match self.max {
            Some(m) => value <= m,
            None => true,
        };
        above && below
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.min, self.max) {
            (Some(lo), Some(hi)) => write!(f, "{lo} ..= {hi}"),
            (Some(lo), None) => write!(f, "≥ {lo}"),
            (None, Some(hi)) => write!(f, "≤ {hi}"),
            (None, None) => write!(f, "any"),
        }
    }
}

/// A duration written as `250ms`, `5s`, `1.5s`, `2m` or a bare number of seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "DurRepr")]
pub struct Dur(pub Duration);

#[derive(Deserialize)]
#[serde(untagged)]
enum DurRepr {
    Secs(f64),
    Text(String),
}

impl TryFrom<DurRepr> for Dur {
    type Error = String;

    fn try_from(repr: DurRepr) -> Result<Self, String> {
        let seconds = match repr {
            DurRepr::Secs(s) => s,
            DurRepr::Text(text) => crate::loadgen::parse_seconds(&text)?,
        };
        Duration::try_from_secs_f64(seconds)
            .map(Dur)
            .map_err(|_| format!("invalid duration {seconds} s (must be ≥ 0 and finite)"))
    }
}

impl Dur {
    pub fn secs(self) -> f64 {
        self.0.as_secs_f64()
    }
}

fn one() -> usize {
    1
}
fn eight() -> usize {
    8
}
fn default_warmup() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_connections() -> usize {
    32
}
fn default_model() -> String {
    "chat".to_string()
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_probes() -> usize {
    20
}
fn default_max_connections() -> usize {
    64
}
fn default_rounds() -> usize {
    3
}
fn default_extra_connections() -> usize {
    16
}

/// Reads every `*.yaml` in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Scenario)>, SuiteError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SuiteError::Io {
        what: format!("cannot read scenario directory {}", dir.display()),
        source: e,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut scenarios = Vec::with_capacity(files.len());
    let mut names = BTreeSet::new();
    for file in files {
        let scenario = load_file(&file)?;
        if !names.insert(scenario.name.clone()) {
            return Err(invalid(
                &file,
                format!("scenario name '{}' is used twice", scenario.name),
            ));
        }
        scenarios.push((file, scenario));
    }
    Ok(scenarios)
}

/// Reads and validates one scenario file.
pub fn load_file(path: &Path) -> Result<Scenario, SuiteError> {
    let text = std::fs::read_to_string(path).map_err(|e| SuiteError::Io {
        what: format!("cannot read {}", path.display()),
        source: e,
    })?;
    parse(&text, path)
}

/// Parses and validates scenario YAML; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Scenario, SuiteError> {
    let mut scenario: Scenario =
        serde_yaml::from_str(text).map_err(|e| invalid(path, e.to_string()))?;
    scenario
        .faults
        .sort_by(|a, b| a.at.partial_cmp(&b.at).unwrap_or(std::cmp::Ordering::Equal));
    validate(&scenario).map_err(|problem| invalid(path, problem))?;
    Ok(scenario)
}

fn invalid(path: &Path, problem: String) -> SuiteError {
    SuiteError::Scenario {
        file: path.to_path_buf(),
        problem,
    }
}

fn validate(s: &Scenario) -> Result<(), String> {
    let name_ok = !s.name.is_empty()
        && s.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return Err(format!(
            "name '{}' must be non-empty kebab-case (a-z, 0-9, -)",
            s.name
        ));
    }
    if s.mocks.is_empty() {
        return Err("mocks: at least one mock is needed".into());
    }
    let mut mocks = BTreeSet::new();
    for m in &s.mocks {
        if m.name.is_empty()
            || !m
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "mocks: name '{}' must be alphanumeric (also - and _)",
                m.name
            ));
        }
        if !mocks.insert(m.name.as_str()) {
            return Err(format!("mocks: name '{}' is used twice", m.name));
        }
        if m.threads == 0 {
            return Err(format!("mocks.{}.threads must be at least 1", m.name));
        }
        m.fault
            .validate()
            .map_err(|e| format!("mocks.{}.fault: {e}", m.name))?;
    }
    let known = |what: &str, name: &str| -> Result<(), String> {
        if mocks.contains(name) {
            Ok(())
        } else {
            Err(format!(
                "{what}: unknown mock '{name}' (declared: {})",
                mocks.iter().copied().collect::<Vec<_>>().join(", ")
            ))
        }
    };
    validate_traffic(&s.traffic, &s.smoke)?;
    if let Some(c) = &s.cluster {
        validate_traffic(&c.health, &SmokeOverride::default())?;
        validate_traffic(&c.limit, &SmokeOverride::default())?;
        let names: Vec<String> = s.mocks.iter().map(|m| m.name.clone()).collect();
        c.validate(&names).map_err(|e| e.to_string())?;
    }
    let duration = s.traffic.duration;
    for (i, step) in s.faults.iter().enumerate() {
        known(&format!("faults[{i}].mock"), &step.mock)?;
        match (&step.fault, &step.continuation) {
            (Some(fault), None) => fault
                .validate()
                .map_err(|e| format!("faults[{i}].fault: {e}"))?,
            (None, Some(_)) => {}
            _ => {
                return Err(format!(
                    "faults[{i}]: give exactly one of `fault` and `continuation`"
                ))
            }
        }
        if step.at >= duration {
            return Err(format!(
                "faults[{i}].at ({} s) must be before the end of traffic.duration ({} s)",
                step.at.secs(),
                duration.secs()
            ));
        }
    }
    if let Some(p) = &s.probe {
        if p.at >= duration || p.requests == 0 {
            return Err("probe: `at` must be inside traffic.duration and requests ≥ 1".into());
        }
        // Every batch must go out while the breakers are meant to be open.
        let batches = u32::try_from(PROBE_BATCHES - 1).unwrap_or(0);
        let last = p.at.0 + PROBE_BATCH_GAP * batches;
        let opened = fault_start(s).map(|f| f.0 + s.settle.0);
        let closes = heal_at(s).map_or(duration.0, |h| h.0);
        if opened.is_some_and(|o| p.at.0 < o) || last >= closes {
            return Err(format!(
                "probe: its {PROBE_BATCHES} batches ({} s to {} s) must lie between the \
                 first fault + settle and the heal",
                p.at.secs(),
                last.as_secs_f64()
            ));
        }
    }
    if let Some(m) = &s.recovery_mock {
        known("recovery_mock", m)?;
    }
    if let Some(c) = &s.compare {
        known("compare.direct", &c.direct)?;
        if let Some(down) = &c.down {
            known("compare.down", down)?;
        }
        if c.max_duration.0.is_zero() || c.max_connections == 0 {
            return Err("compare: max_duration and max_connections must be positive".into());
        }
        if !(1..=MAX_ROUNDS).contains(&c.rounds) {
            return Err(format!("compare.rounds must be 1..={MAX_ROUNDS}"));
        }
        if s.traffic.rate.is_none() {
            return Err("compare: traffic.rate is required (the fixed-rate overhead run)".into());
        }
    }
    if let Some(x) = &s.extra_traffic {
        validate_extra(s, x)?;
    }
    if let Some(e) = &s.efficiency {
        let alone = s.compare.is_none()
            && s.extra_traffic.is_none()
            && s.cluster.is_none()
            && s.faults.is_empty()
            && s.probe.is_none();
        if !alone {
            return Err(
                "efficiency: an efficiency scenario has no compare, extra_traffic, cluster, \
                 faults or probe"
                    .into(),
            );
        }
        let names: Vec<String> = s.mocks.iter().map(|m| m.name.clone()).collect();
        e.validate(&names)?;
    }
    validate_criteria(s)
}

fn validate_extra(s: &Scenario, x: &ExtraTraffic) -> Result<(), String> {
    if s.compare.is_some() || !s.faults.is_empty() || s.probe.is_some() {
        return Err("extra_traffic: a neighbour scenario has no compare, faults or probe".into());
    }
    let smoke_rounds = s.smoke.rounds.unwrap_or(x.rounds);
    if !(1..=MAX_ROUNDS).contains(&x.rounds) || !(1..=MAX_ROUNDS).contains(&smoke_rounds) {
        return Err(format!(
            "extra_traffic.rounds and smoke.rounds must be 1..={MAX_ROUNDS}"
        ));
    }
    if s.traffic.rate.is_none() {
        return Err("extra_traffic: traffic.rate is required (open loop on both sides)".into());
    }
    if x.streams.is_empty() {
        return Err("extra_traffic.streams: at least one stream is needed".into());
    }
    let mut names = BTreeSet::new();
    for st in &x.streams {
        if st.name.is_empty() || !names.insert(st.name.as_str()) {
            return Err(format!(
                "extra_traffic.streams: name '{}' is empty or used twice",
                st.name
            ));
        }
        if !(st.rate.is_finite() && st.rate > 0.0) || st.connections == 0 {
            return Err(format!(
                "extra_traffic.streams.{}: rate must be positive and connections ≥ 1",
                st.name
            ));
        }
    }
    Ok(())
}

/// Shortest loaded slice `extra_admitted_per_s` can judge: three whole seconds.
pub const MIN_ADMITTED_SLICE: Duration = Duration::from_secs(3);

/// Length of one quiet or loaded slice of a neighbour scenario.
pub fn slice_duration(s: &Scenario) -> Option<Duration> {
    let rounds = u32::try_from(s.extra_traffic.as_ref()?.rounds).ok()?;
    Some(s.traffic.duration.0 / (2 * rounds.max(1)))
}

fn validate_traffic(t: &Traffic, smoke: &SmokeOverride) -> Result<(), String> {
    let bad_rate = |r: Option<f64>| r.is_some_and(|r| !(r.is_finite() && r > 0.0));
    if bad_rate(t.rate) || bad_rate(smoke.rate) {
        return Err(
            "traffic.rate / smoke.rate must be a positive number of requests per second".into(),
        );
    }
    if t.duration.0.is_zero() || smoke.duration.is_some_and(|d| d.0.is_zero()) {
        return Err("traffic.duration / smoke.duration must be positive".into());
    }
    if t.connections == 0 || smoke.connections == Some(0) {
        return Err("traffic.connections must be at least 1".into());
    }
    if t.timeout.0.is_zero() {
        return Err("traffic.timeout must be positive".into());
    }
    Ok(())
}

fn validate_criteria(s: &Scenario) -> Result<(), String> {
    for (metric, bound) in &s.criteria {
        if metric.is_absolute() {
            return Err(format!(
                "criteria.{}: an absolute figure depends on how busy the machine is; \
                 put it under `budgets:` and judge a same-run ratio instead",
                metric.name()
            ));
        }
        validate_metric(s, "criteria", *metric, bound)?;
    }
    for (metric, bound) in &s.budgets {
        validate_metric(s, "budgets", *metric, bound)?;
    }
    if let (Some(bound), Some(heal)) = (s.criteria.get(&Metric::RecoveryS), heal_at(s)) {
        // A recovery within the bound must be observable before the run ends, or
        // a slow-but-good gateway could only ever be "not measured".
        let Some(max) = bound.max else {
            return Err("criteria.recovery_s: give a `max` (seconds after the heal)".into());
        };
        let tail = s.traffic.duration.secs() - heal.secs();
        let needed = max + RECOVERY_TAIL_MARGIN.as_secs_f64();
        if tail < needed {
            return Err(format!(
                "criteria.recovery_s: the run ends {tail} s after the heal; it must go on \
                 at least {needed} s (the bound plus {} s) so a recovery within the bound \
                 is observable",
                RECOVERY_TAIL_MARGIN.as_secs_f64()
            ));
        }
    }
    Ok(())
}

fn validate_metric(
    s: &Scenario,
    section: &str,
    metric: Metric,
    bound: &Bound,
) -> Result<(), String> {
    let name = format!("{section}.{}", metric.name());
    if bound.min.is_none() && bound.max.is_none() {
        return Err(format!("{name}: give `min`, `max` or both"));
    }
    if metric.needs_compare() && s.compare.is_none() {
        return Err(format!("{name}: needs a `compare:` section"));
    }
    if metric.needs_cluster() && s.cluster.is_none() {
        return Err(format!("{name}: needs a `cluster:` section"));
    }
    if metric.needs_extra_traffic() && s.extra_traffic.is_none() {
        return Err(format!("{name}: needs an `extra_traffic:` section"));
    }
    if metric.needs_efficiency() {
        let Some(e) = &s.efficiency else {
            return Err(format!("{name}: needs an `efficiency:` section"));
        };
        let (workload, haproxy) = efficiency::metric_needs(metric);
        if let Some(w) = workload.filter(|w| e.get(*w).is_none()) {
            return Err(format!("{name}: needs the {} workload", w.name()));
        }
        if haproxy && !e.haproxy {
            return Err(format!("{name}: needs `efficiency.haproxy: true`"));
        }
    }
    if metric == Metric::ExtraAdmittedPerS {
        // The median is taken over the whole seconds of a loaded slice but its
        // first and last (partly warm, partly cut): at least one must be left,
        // in the full run and the smoke run alike.
        let slice = slice_duration(s)
            .unwrap_or_default()
            .min(slice_duration(&smoke(s)).unwrap_or_default());
        if slice < MIN_ADMITTED_SLICE {
            return Err(format!(
                "{name}: slices are {} s (traffic.duration / (2 × rounds)); per-second \
                 counts need at least {} s",
                slice.as_secs_f64(),
                MIN_ADMITTED_SLICE.as_secs()
            ));
        }
    }
    let needs_down = matches!(
        metric,
        Metric::DownThroughputRatio | Metric::DownRetriedRatio
    );
    if needs_down && s.compare.as_ref().is_some_and(|c| c.down.is_none()) {
        return Err(format!("{name}: needs compare.down"));
    }
    let needs_fault = matches!(
        metric,
        Metric::ErrorRateAfterBreaker | Metric::RetriedAfterBreaker | Metric::FaultThroughputRatio
    );
    if needs_fault && fault_start(s).is_none() {
        return Err(format!("{name}: needs a fault in `faults:`"));
    }
    if metric == Metric::RecoveryS && heal_at(s).is_none() {
        return Err(format!(
            "{name}: needs a heal (a `mode: none` step after a fault)"
        ));
    }
    let needs_stream = matches!(
        metric,
        Metric::StreamCompletion
            | Metric::BadSuccessStreams
            | Metric::ContinuedStreams
            | Metric::TtftP99S
    );
    if needs_stream && !s.traffic.stream {
        return Err(format!("{name}: needs traffic.stream: true"));
    }
    let needs_probe = matches!(
        metric,
        Metric::FailFastP99Ms | Metric::FailFastRatioP50 | Metric::RetryAfterRatio
    );
    if needs_probe && s.probe.is_none() {
        return Err(format!("{name}: needs a `probe:`"));
    }
    if metric == Metric::FailFastRatioP50 && fault_start(s).is_none_or(|f| f.0.is_zero()) {
        return Err(format!(
            "{name}: needs a first fault after 0 s (the reference probe runs before it)"
        ));
    }
    Ok(())
}

/// When the first fault (anything but `none`) starts.
pub fn fault_start(s: &Scenario) -> Option<Dur> {
    s.faults.iter().find(|f| f.is_fault()).map(|f| f.at)
}

/// When the last fault is healed: the last `none` step after the first fault, if
/// every mock ends healthy.
pub fn heal_at(s: &Scenario) -> Option<Dur> {
    let start = fault_start(s)?;
    let mut last: BTreeMap<&str, &FaultStep> = BTreeMap::new();
    for step in s.faults.iter().filter(|f| f.fault.is_some()) {
        last.insert(step.mock.as_str(), step);
    }
    let all_healed = last.values().all(|f| !f.is_fault());
    let heal = last.values().map(|f| f.at).max()?;
    (all_healed && heal > start).then_some(heal)
}

/// The `--smoke` form: the smoke duration (default 3 s) and rate (default at most
/// 200 req/s), a short warmup, and every time scaled by the same factor; then,
/// when `recovery_s` is judged, the run is lengthened to go on for the bound plus
/// [`RECOVERY_TAIL_MARGIN`] after the scaled heal. The gateway's breaker timers
/// (cooldowns of seconds) do not shrink with the scenario, so a recovery takes as
/// long in smoke mode as in a full run and must have the same time to be seen.
pub fn smoke(s: &Scenario) -> Scenario {
    let mut out = s.clone();
    let full = s.traffic.duration.secs();
    let short = s.smoke.duration.map_or(full.min(3.0), |d| d.secs());
    let factor = short / full;
    let scale = |d: Dur| Dur(d.0.mul_f64(factor));
    out.traffic.duration = Dur(Duration::from_secs_f64(short));
    out.traffic.warmup = Dur(Duration::from_millis(300));
    out.traffic.rate = s.smoke.rate.or(s.traffic.rate.map(|r| r.min(200.0)));
    out.traffic.connections = s.smoke.connections.unwrap_or(s.traffic.connections);
    for step in &mut out.faults {
        step.at = scale(step.at);
    }
    if let Some(p) = &mut out.probe {
        p.at = scale(p.at);
        p.requests = p.requests.min(10);
    }
    out.settle = scale(out.settle);
    let recovery_max = s.criteria.get(&Metric::RecoveryS).and_then(|b| b.max);
    if let (Some(max), Some(heal)) = (recovery_max, heal_at(&out)) {
        let needed = heal.0 + Duration::from_secs_f64(max) + RECOVERY_TAIL_MARGIN;
        out.traffic.duration = out.traffic.duration.max(Dur(needed));
    }
    if let Some(c) = &mut out.compare {
        c.max_duration = Dur(c.max_duration.0.min(Duration::from_secs(1)));
    }
    // A neighbour scenario keeps its extra streams' rates (a flood is a flood);
    // its slices shorten with the duration, and `smoke.rounds` may take fewer
    // of them (best-of-N is what makes its p99 ratio robust, so not too few).
    if let (Some(x), Some(rounds)) = (&mut out.extra_traffic, s.smoke.rounds) {
        x.rounds = rounds;
    }
    if let Some(c) = &mut out.cluster {
        c.smoke();
    }
    if let Some(e) = &mut out.efficiency {
        e.smoke();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: primary-outage
mocks: [{ name: primary }, { name: fallback }]
gateway: "routes: []"
traffic: { rate: 500, duration: 10s }
faults:
  - { at: 6s, mock: primary, fault: { mode: none } }
  - { at: 2s, mock: primary, fault: { mode: status, status: 503 } }
settle: 1s
criteria:
  error_rate_after_breaker: { max: 0.01 }
  recovery_s: { max: 3 }
"#;

    fn err(text: &str) -> String {
        parse(text, Path::new("x.yaml")).unwrap_err().to_string()
    }

    #[test]
    fn parses_sorts_and_finds_the_fault_window() {
        let s = parse(GOOD, Path::new("x.yaml")).unwrap();
        assert_eq!(s.faults[0].at, Dur(Duration::from_secs(2)));
        assert_eq!(fault_start(&s), Some(Dur(Duration::from_secs(2))));
        assert_eq!(heal_at(&s), Some(Dur(Duration::from_secs(6))));
        let short = smoke(&s);
        assert_eq!(short.faults[0].at, Dur(Duration::from_millis(600)));
        assert_eq!(short.traffic.rate, Some(200.0));
        // The fault timeline shrinks to 3 s, but the run goes on for the recovery
        // bound (3 s) plus the margin after the scaled heal at 1.8 s.
        assert_eq!(heal_at(&short), Some(Dur(Duration::from_millis(1800))));
        assert_eq!(short.traffic.duration, Dur(Duration::from_millis(5800)));
        // Without recovery_s nothing is lengthened.
        let mut plain = s.clone();
        plain.criteria.remove(&Metric::RecoveryS);
        assert_eq!(smoke(&plain).traffic.duration, Dur(Duration::from_secs(3)));
    }

    #[test]
    fn every_smoke_scenario_can_observe_its_recovery_bound() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        for (file, full) in load_dir(&dir).unwrap() {
            let short = smoke(&full);
            validate(&short).unwrap_or_else(|e| panic!("{} (smoke): {e}", file.display()));
            for sc in [short, full] {
                let (Some(bound), Some(heal)) = (sc.criteria.get(&Metric::RecoveryS), heal_at(&sc))
                else {
                    continue;
                };
                let tail = sc.traffic.duration.secs() - heal.secs();
                let needed = bound.max.unwrap() + RECOVERY_TAIL_MARGIN.as_secs_f64();
                assert!(
                    tail >= needed - 1e-9,
                    "{}: tail {tail} < {needed}",
                    file.display()
                );
            }
        }
    }

    #[test]
    fn continuation_steps_set_modes_without_making_the_fault_window() {
        let text = GOOD
            .replace(
                "mocks: [{ name: primary }, { name: fallback }]",
                "mocks: [{ name: primary }, { name: fallback, continuation: { mode: prefill_only } }]",
            )
            .replace(
                "faults:\n",
                "faults:\n  - { at: 1s, mock: fallback, continuation: { mode: restart_reworded } }\n  - { at: 7s, mock: fallback, continuation: { mode: honest } }\n",
            );
        let s = parse(&text, Path::new("x.yaml")).unwrap();
        assert_eq!(s.mocks[1].continuation, Continuation::PrefillOnly);
        assert_eq!(
            s.faults[0].continuation,
            Some(Continuation::RestartReworded)
        );
        assert!(!s.faults[0].is_fault());
        assert_eq!(fault_start(&s), Some(Dur(Duration::from_secs(2))));
        assert_eq!(heal_at(&s), Some(Dur(Duration::from_secs(6))));
        let e = err(&text.replace(
            "continuation: { mode: honest }",
            "continuation: { mode: honest }, fault: { mode: none }",
        ));
        assert!(
            e.contains("exactly one of `fault` and `continuation`"),
            "{e}"
        );
        let e = err(&text.replace("mode: honest", "mode: sincere"));
        assert!(e.starts_with("x.yaml:"), "{e}");
        let e = err(&GOOD.replace("recovery_s: { max: 3 }", "bad_success_streams: { max: 0 }"));
        assert!(e.contains("needs traffic.stream"), "{e}");
    }

    #[test]
    fn explains_mistakes_with_the_file() {
        let e = err(&GOOD.replace(
            "mock: primary, fault: { mode: status",
            "mock: primray, fault: { mode: status",
        ));
        assert!(
            e.starts_with("x.yaml:") && e.contains("unknown mock 'primray'"),
            "{e}"
        );
        let e = err(&GOOD.replace("recovery_s", "recovery_time"));
        assert!(e.contains("unknown variant `recovery_time`"), "{e}");
        let e = err(&GOOD.replace("10s", "10h"));
        assert!(e.contains("unknown unit"), "{e}");
        let e = err(&GOOD.replace("{ max: 3 }", "{ }"));
        assert!(e.contains("give `min`, `max`"), "{e}");
        let e = err(&GOOD.replace("status: 503", "status: 42"));
        assert!(e.contains("outside 100..=999"), "{e}");
        let e = err(&GOOD.replace("at: 6s", "at: 12s"));
        assert!(e.contains("before the end"), "{e}");
        let e = err("name: [");
        assert!(e.starts_with("x.yaml:"), "{e}");
        // The run must go on long enough after the heal to see a recovery in time.
        let e = err(&GOOD.replace("duration: 10s", "duration: 9s"));
        assert!(
            e.contains("recovery_s: the run ends 3 s after the heal"),
            "{e}"
        );
        let e = err(&GOOD.replace("recovery_s: { max: 3 }", "recovery_s: { min: 1 }"));
        assert!(e.contains("give a `max`"), "{e}");
        // Absolute figures are budgets, not criteria.
        let with_probe = GOOD.replace("settle: 1s", "settle: 1s\nprobe: { at: 3s }");
        let e = err(&with_probe.replace("recovery_s: { max: 3 }", "fail_fast_p99_ms: { max: 1 }"));
        assert!(e.contains("put it under `budgets:`"), "{e}");
        let ok = with_probe + "budgets:\n  fail_fast_p99_ms: { max: 1 }\n";
        let s = parse(&ok, Path::new("x.yaml")).unwrap();
        assert_eq!(s.budgets.len(), 1);
        let e = err(&ok.replace(
            "budgets:\n  fail_fast_p99_ms",
            "budgets:\n  stream_completion",
        ));
        assert!(
            e.contains("budgets.stream_completion: needs traffic.stream"),
            "{e}"
        );
    }

    const NEIGHBOUR: &str = r#"
name: neighbour
mocks: [{ name: upstream }]
gateway: "routes: []"
traffic: { rate: 100, duration: 30s, key: sk-steady }
extra_traffic:
  rounds: 3
  streams:
    - { name: noisy, key: sk-noisy, rate: 500 }
smoke: { duration: 18s }
criteria:
  traffic_errors: { max: 0 }
  extra_admitted_per_s: { min: 40, max: 55 }
"#;

    #[test]
    fn extra_traffic_parses_with_defaults_and_smoke_keeps_rounds_and_rates() {
        let s = parse(NEIGHBOUR, Path::new("x.yaml")).unwrap();
        assert_eq!(s.traffic.key.as_deref(), Some("sk-steady"));
        let x = s.extra_traffic.as_ref().unwrap();
        assert_eq!((x.rounds, x.streams.len()), (3, 1));
        let noisy = &x.streams[0];
        assert_eq!(
            (noisy.key.as_deref(), noisy.rate),
            (Some("sk-noisy"), 500.0)
        );
        assert_eq!((noisy.connections, noisy.model.as_deref()), (16, None));
        assert_eq!(slice_duration(&s), Some(Duration::from_secs(5)));
        let short = smoke(&s);
        assert_eq!(short.extra_traffic.as_ref().unwrap().rounds, 3);
        let fewer = NEIGHBOUR.replace(
            "smoke: { duration: 18s }",
            "smoke: { duration: 12s, rounds: 2 }",
        );
        let fewer = smoke(&parse(&fewer, Path::new("x.yaml")).unwrap());
        assert_eq!(fewer.extra_traffic.as_ref().unwrap().rounds, 2);
        assert_eq!(slice_duration(&fewer), Some(Duration::from_secs(3)));
        assert_eq!(short.extra_traffic.unwrap().streams[0].rate, 500.0);
        // Without extra_traffic there are no slices and no key.
        let plain = parse(GOOD, Path::new("x.yaml")).unwrap();
        assert_eq!((slice_duration(&plain), plain.traffic.key), (None, None));
    }

    #[test]
    fn extra_traffic_mistakes_are_explained() {
        let e = err(&NEIGHBOUR.replace("rate: 500", "rate: 0"));
        assert!(e.contains("streams.noisy: rate must be positive"), "{e}");
        let twice = "- { name: noisy, key: sk-noisy, rate: 500 }\n    - { name: noisy, rate: 5 }";
        let e = err(&NEIGHBOUR.replace("- { name: noisy, key: sk-noisy, rate: 500 }", twice));
        assert!(e.contains("used twice"), "{e}");
        let e = err(&NEIGHBOUR.replace("rounds: 3", "rounds: 0"));
        assert!(e.contains("extra_traffic.rounds"), "{e}");
        let e = err(&NEIGHBOUR.replace("rate: 100, ", ""));
        assert!(e.contains("traffic.rate is required"), "{e}");
        let faulted = NEIGHBOUR.replace(
            "criteria:",
            "faults: [{ at: 1s, mock: upstream, fault: { mode: refuse } }]\ncriteria:",
        );
        assert!(err(&faulted).contains("no compare, faults or probe"));
        // 12 s / (2 × 3) = 2 s slices leave no whole second inside a slice.
        let e = err(&NEIGHBOUR.replace("duration: 30s", "duration: 12s"));
        assert!(e.contains("per-second counts need at least 3 s"), "{e}");
        // The smoke run's slices count too: 3 s smoke (the default) / 6.
        let e = err(&NEIGHBOUR.replace("smoke: { duration: 18s }\n", ""));
        assert!(e.contains("per-second counts need at least 3 s"), "{e}");
        let e = err(&NEIGHBOUR.replace("smoke: { duration: 18s }", "smoke: { rounds: 11 }"));
        assert!(e.contains("smoke.rounds must be"), "{e}");
        // A neighbour metric on a scenario without extra streams.
        let e = err(&GOOD.replace(
            "recovery_s: { max: 3 }",
            "recovery_s: { max: 3 }\n  loaded_p99_ratio: { max: 2 }",
        ));
        assert!(
            e.contains("loaded_p99_ratio: needs an `extra_traffic:`"),
            "{e}"
        );
    }

    #[test]
    fn cluster_sections_are_checked() {
        let file = |cluster: &str, criteria: &str| {
            format!(
                "name: c\nmocks: [{{ name: primary }}]\ngateway: \"routes: []\"\n\
                 traffic: {{ rate: 1, duration: 1s }}\n{cluster}criteria:\n  {criteria}\n"
            )
        };
        let good = "cluster:\n  dead_mock: primary\n  health: { rate: 20, duration: 2s }\n  \
                    limit: { rate: 120, duration: 8s }\n  window: 2s\n  limit_per_window: 60\n  \
                    smoke_health: 1s\n  smoke_limit: 4s\n";
        let ok = parse(
            &file(good, "cluster_dead_calls_ratio: { max: 1.0 }"),
            Path::new("x.yaml"),
        )
        .unwrap();
        assert_eq!(ok.cluster.as_ref().map(|c| c.nodes), Some(3));
        let short = smoke(&ok);
        assert_eq!(short.cluster.map(|c| c.limit.duration.secs()), Some(4.0));
        // (cluster section, criterion, expected error)
        let cases = [
            (
                "",
                "cluster_admitted_per_window: { max: 66 }",
                "needs a `cluster:` section",
            ),
            (
                &good.replace("window: 2s", "window: 1500ms"),
                "cluster_client_errors: { max: 0 }",
                "whole number of seconds",
            ),
            (
                &good.replace("dead_mock: primary", "dead_mock: nope"),
                "cluster_client_errors: { max: 0 }",
                "unknown mock 'nope'",
            ),
            (
                &good.replace("smoke_limit: 4s", "smoke_limit: 3s"),
                "cluster_client_errors: { max: 0 }",
                "at least 2 windows",
            ),
            (
                &good.replace("dead_mock", "nodes: 1\n  dead_mock"),
                "cluster_client_errors: { max: 0 }",
                "cluster.nodes",
            ),
        ];
        for (cluster, criterion, want) in cases {
            let e = err(&file(cluster, criterion));
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
