//! The efficiency scenario (`efficiency:`): what each kind of request costs the
//! gateway in CPU time, from its own task clock, per request (per relayed event
//! for streams), beside throughput and added latency — each workload measured
//! direct to its mock and through the gateway in the same run, slices
//! alternating, and pass-through also through HAProxy as the reference proxy.
//!
//! A task clock counts only the time a thread ran, so a busy machine that takes
//! throughput away moves CPU per request far less (it still adds some: wakeups
//! that serve fewer requests each, a neighbour's cache traffic), and the least
//! of a few slices is the least disturbed. It is not steady enough to show a
//! 10–20 % change on a shared VM (one build moved ±25 % run to run in session
//! 14; the mock's own figure moved with it), so compare rows of the same run
//! and use callgrind's instruction counts for small changes. The mock's and the
//! load generator's clocks (threads of this process) are reported beside it,
//! both ways, so a reader sees what the load side costs and what going through
//! a proxy does to that.
//!
//! The figures themselves (rows, criteria values, the table) are in `figures`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::gateway::GatewayProcess;
use super::haproxy::{self, HaproxyProcess};
use super::mocks::{Mock, MockSet};
use super::runner::{Context, LOADGEN_START_DELAY};
use super::scenario::{Dur, Metric, Scenario, MAX_ROUNDS};
use super::SuiteError;
use crate::loadgen::{self, LoadReport, LoadSpec};
use crate::taskclock;

mod figures;

use figures::rows;
pub use figures::{method, slices, table, value, EfficiencyRun, Row, SideRun, Slice, WorkloadRun};

/// Longest warmup or slice a timing may give (every slice is a bounded wait).
pub const MAX_SLICE: Duration = Duration::from_secs(30);

/// The kinds of request the scenario can measure (each at most once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Non-streaming chat completion to an OpenAI-compatible target.
    Passthrough,
    /// Streamed chat completion; figures per SSE event the client received.
    Streaming,
    /// OpenAI client, `kind: anthropic` target (direct: the mock's Messages API).
    Translated,
    /// The first target answers 503 to everything (breaker open), the fallback serves.
    Failover,
    /// A client key with rpm/tpm limits too high ever to refuse.
    LimitCheck,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Passthrough => "passthrough",
            Workload::Streaming => "streaming",
            Workload::Translated => "translated",
            Workload::Failover => "failover",
            Workload::LimitCheck => "limit_check",
        }
    }

    fn stream(self) -> bool {
        self == Workload::Streaming
    }

    /// Whether HAProxy proxies this workload's mock as the reference: plain
    /// HTTP both ways (pass-through, and streams relayed as they come), which
    /// an L7 proxy that does no LLM routing can serve.
    pub fn has_reference(self) -> bool {
        matches!(self, Workload::Passthrough | Workload::Streaming)
    }

    /// The path a direct request takes to the workload's mock.
    fn direct_path(self) -> &'static str {
        match self {
            Workload::Translated => "/v1/messages",
            _ => "/v1/chat/completions",
        }
    }

    /// What the CPU figures are divided by.
    fn unit(self) -> &'static str {
        if self.stream() {
            "event"
        } else {
            "request"
        }
    }
}

/// One workload: its route (`model`), key, direct mock and, for failover, the
/// mock that is down for the run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub name: Workload,
    pub model: String,
    /// Sent as `authorization: Bearer` (`x-api-key` on a direct Messages call).
    #[serde(default)]
    pub key: Option<String>,
    /// The mock a direct request goes to (the one the gateway's route serves from).
    pub direct: String,
    /// Failover only: the first target's mock, answering 503 for the whole run.
    #[serde(default)]
    pub dead: Option<String>,
}

/// How long and how hard each side is measured.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Slices per side and phase; sides alternate within a round.
    pub rounds: usize,
    /// Measured time of one closed-loop slice.
    pub slice: Dur,
    /// Unrecorded time before each slice (connections open, breaker settles).
    pub warmup: Dur,
    /// Closed-loop connections.
    pub connections: usize,
    /// The open-loop latency phase: this rate, slices of `latency_slice`.
    pub latency_rate: f64,
    pub latency_slice: Dur,
}

/// The `efficiency:` block of a scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfficiencySpec {
    pub workloads: Vec<WorkloadSpec>,
    /// Measure HAProxy beside pass-through (when the binary is there).
    #[serde(default)]
    pub haproxy: bool,
    pub timing: Timing,
    /// The `--smoke` timing.
    pub smoke_timing: Timing,
}

impl Timing {
    fn validate(&self, what: &str) -> Result<(), String> {
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return Err(format!("efficiency.{what}.rounds must be 1..={MAX_ROUNDS}"));
        }
        let times = [self.slice, self.latency_slice, self.warmup];
        if self.slice.0.is_zero() || self.latency_slice.0.is_zero() || self.connections == 0 {
            return Err(format!(
                "efficiency.{what}: slice, latency_slice and connections must be positive"
            ));
        }
        if times.iter().any(|d| d.0 > MAX_SLICE) {
            return Err(format!(
                "efficiency.{what}: slices and warmup are at most {} s",
                MAX_SLICE.as_secs()
            ));
        }
        if !(self.latency_rate.is_finite() && self.latency_rate > 0.0) {
            return Err(format!("efficiency.{what}.latency_rate must be positive"));
        }
        Ok(())
    }
}

impl WorkloadSpec {
    fn validate(&self, mocks: &[String]) -> Result<(), String> {
        let name = self.name.name();
        for mock in std::iter::once(&self.direct).chain(&self.dead) {
            if !mocks.contains(mock) {
                return Err(format!(
                    "efficiency.workloads.{name}: unknown mock '{mock}'"
                ));
            }
        }
        if (self.name == Workload::Failover) != self.dead.is_some() {
            return Err(format!(
                "efficiency.workloads.{name}: `dead` (the mock down for the run) is \
                 given for failover and only for failover"
            ));
        }
        Ok(())
    }
}

impl EfficiencySpec {
    pub fn validate(&self, mocks: &[String]) -> Result<(), String> {
        self.timing.validate("timing")?;
        self.smoke_timing.validate("smoke_timing")?;
        if self.workloads.is_empty() {
            return Err("efficiency.workloads: at least one workload is needed".into());
        }
        for (i, w) in self.workloads.iter().enumerate() {
            if self.workloads[..i].iter().any(|o| o.name == w.name) {
                return Err(format!(
                    "efficiency.workloads: {} is listed twice",
                    w.name.name()
                ));
            }
            w.validate(mocks)?;
        }
        if self.haproxy && !self.workloads.iter().any(|w| w.name.has_reference()) {
            return Err(
                "efficiency.haproxy: needs the passthrough or the streaming workload".into(),
            );
        }
        Ok(())
    }

    /// The `--smoke` form: the smoke timing.
    pub fn smoke(&mut self) {
        self.timing = self.smoke_timing;
    }

    pub fn get(&self, w: Workload) -> Option<&WorkloadSpec> {
        self.workloads.iter().find(|s| s.name == w)
    }
}

/// The workload a metric needs (besides an `efficiency:` block), and whether
/// it needs the HAProxy reference.
pub fn metric_needs(metric: Metric) -> (Option<Workload>, bool) {
    match metric {
        Metric::StreamEventsMismatch | Metric::StreamingCpuUsPerEvent => {
            (Some(Workload::Streaming), false)
        }
        Metric::DeadPrimaryCallsPerSlice | Metric::FailoverCpuUs => {
            (Some(Workload::Failover), false)
        }
        Metric::PassthroughCpuUs => (Some(Workload::Passthrough), false),
        Metric::GatewayHaproxyCpuRatio => (Some(Workload::Passthrough), true),
        Metric::StreamingHaproxyCpuRatio => (Some(Workload::Streaming), true),
        Metric::GatewayHaproxyP99Ratio | Metric::GatewayHaproxyCpuAtRateRatio => {
            (Some(Workload::Passthrough), true)
        }
        Metric::TranslatedCpuUs => (Some(Workload::Translated), false),
        Metric::LimitCheckCpuUs => (Some(Workload::LimitCheck), false),
        _ => (None, false),
    }
}

/// Where a side's requests go and whose task clock is the proxy's.
#[derive(Clone, Copy)]
struct Target {
    side: Side,
    addr: SocketAddr,
    pid: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Direct,
    Gateway,
    Haproxy,
}

/// Runs every workload of `spec` against `gateway` (started from `sc`'s template
/// with `mocks`), with HAProxy in front of the same mock beside pass-through
/// and streaming when asked and installed.
pub fn run(
    sc: &Scenario,
    spec: &EfficiencySpec,
    ctx: &Context,
    mocks: &MockSet,
    gateway: &GatewayProcess,
) -> Result<EfficiencyRun, SuiteError> {
    let mut out = EfficiencyRun::default();
    for w in &spec.workloads {
        let direct = Target {
            side: Side::Direct,
            addr: mocks.get(&w.direct)?.handle.addr(),
            pid: None,
        };
        let mut targets = vec![
            direct,
            Target {
                side: Side::Gateway,
                addr: gateway.addr,
                pid: Some(gateway.pid()),
            },
        ];
        let reference = reference_for(sc, spec, w, ctx, direct.addr, &mut out);
        if let Some(p) = &reference {
            targets.push(Target {
                side: Side::Haproxy,
                addr: p.addr,
                pid: Some(p.pid()),
            });
        }
        let (run, chart) = run_workload(sc, spec, w, ctx, mocks, &targets)?;
        drop(reference);
        if out.chart.is_none() {
            out.chart = chart;
        }
        out.workloads.push(run);
    }
    out.rows = rows(&out);
    Ok(out)
}

/// HAProxy in front of `w`'s mock when the workload has a reference and it is
/// asked for; why not (once, for the report) when it cannot start.
fn reference_for(
    sc: &Scenario,
    spec: &EfficiencySpec,
    w: &WorkloadSpec,
    ctx: &Context,
    server: SocketAddr,
    out: &mut EfficiencyRun,
) -> Option<HaproxyProcess> {
    if !w.name.has_reference() || out.haproxy_missing.is_some() {
        return None;
    }
    if !spec.haproxy {
        out.haproxy_missing = Some("not asked for (efficiency.haproxy: false)".into());
        return None;
    }
    let started = haproxy::binary()
        .ok_or_else(|| {
            "no haproxy binary on PATH or at /usr/sbin/haproxy (apt-get install haproxy)".into()
        })
        .and_then(|binary| {
            let name = format!("{}-{}", sc.name, w.name.name());
            HaproxyProcess::start(&binary, server, ctx.logs, &name, ctx.placement.gateway)
        });
    match started {
        Ok(p) => {
            out.haproxy_configs
                .push(p.config_path.display().to_string());
            Some(p)
        }
        Err(why) => {
            eprintln!("  haproxy: NOT MEASURED ({why})");
            out.haproxy_missing = Some(why);
            None
        }
    }
}

type WorkloadResult = (WorkloadRun, Option<(LoadReport, LoadReport)>);

/// `rounds` × every target closed loop, then `rounds` × every target at the
/// latency rate; the sides alternate so a noisy stretch hits them alike.
fn run_workload(
    sc: &Scenario,
    spec: &EfficiencySpec,
    w: &WorkloadSpec,
    ctx: &Context,
    mocks: &MockSet,
    targets: &[Target],
) -> Result<WorkloadResult, SuiteError> {
    let t = spec.timing;
    let mut watched: Vec<&Mock> = vec![mocks.get(&w.direct)?];
    let dead = match &w.dead {
        Some(name) => Some(mocks.get(name)?),
        None => None,
    };
    watched.extend(dead);
    let mut sides: BTreeMap<Side, SideRun> = BTreeMap::new();
    let mut best_latency: BTreeMap<Side, LoadReport> = BTreeMap::new();
    for open_loop in [false, true] {
        for round in 0..t.rounds {
            for target in targets {
                eprintln!(
                    "  {}/{} {} {}/{}",
                    w.name.name(),
                    side_name(target.side),
                    if open_loop { "latency" } else { "closed" },
                    round + 1,
                    t.rounds
                );
                let load = slice_spec(sc, &t, w, *target, open_loop, ctx.placement.load);
                let (slice, report) = measure(&load, target.pid, &watched, dead, ctx)?;
                let key = target.side;
                let side = sides.entry(key).or_default();
                if open_loop {
                    side.latency.push(slice);
                    let better = best_latency
                        .get(&key)
                        .is_none_or(|b| report.latency_us.p50 < b.latency_us.p50);
                    if better {
                        best_latency.insert(key, report);
                    }
                } else {
                    side.closed.push(slice);
                }
            }
        }
    }
    let mut take = |s: Side| sides.remove(&s).unwrap_or_default();
    let run = WorkloadRun {
        name: w.name,
        per: w.name.unit(),
        direct: take(Side::Direct),
        gateway: take(Side::Gateway),
        haproxy: sides.remove(&Side::Haproxy),
    };
    let chart = best_latency
        .remove(&Side::Direct)
        .zip(best_latency.remove(&Side::Gateway));
    Ok((run, chart))
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Direct => "direct",
        Side::Gateway => "gateway",
        Side::Haproxy => "haproxy",
    }
}

fn slice_spec(
    sc: &Scenario,
    t: &Timing,
    w: &WorkloadSpec,
    target: Target,
    open_loop: bool,
    core: Option<usize>,
) -> LoadSpec {
    let direct = target.side == Side::Direct;
    LoadSpec {
        target: target.addr,
        path: if direct {
            w.name.direct_path()
        } else {
            "/v1/chat/completions"
        }
        .to_string(),
        model: w.model.clone(),
        api_key: w.key.clone(),
        rate: open_loop.then_some(t.latency_rate),
        duration: if open_loop {
            t.latency_slice.0
        } else {
            t.slice.0
        },
        warmup: t.warmup.0,
        connections: t.connections,
        threads: 1,
        stream: w.name.stream(),
        timeout: sc.traffic.timeout.0,
        pin_cores: core.into_iter().collect(),
        expected_answers: Vec::new(),
    }
}

/// Task clocks and the dead mock's counter at one moment.
#[derive(Debug, Clone, Copy)]
struct Reading {
    proxy: Option<u64>,
    mocks: Option<u64>,
    dead: Option<u64>,
}

impl Reading {
    fn take(proxy: Option<u32>, mock_tids: &[u32], dead: Option<&Mock>) -> Reading {
        Reading {
            proxy: proxy.and_then(taskclock::process_ns),
            mocks: taskclock::threads_ns(mock_tids),
            dead: dead.map(Mock::requests),
        }
    }
}

/// One load run, with the proxy's and the mocks' task clocks read at the end
/// of its warmup (by a thread on the load core that sleeps until then) and
/// after its last answer; the load threads read their own clocks over the same span.
fn measure(
    load: &LoadSpec,
    proxy: Option<u32>,
    watched: &[&Mock],
    dead: Option<&Mock>,
    ctx: &Context,
) -> Result<(Slice, LoadReport), SuiteError> {
    let tids: Vec<u32> = watched.iter().flat_map(|m| m.handle.thread_ids()).collect();
    let warm_end = Instant::now() + LOADGEN_START_DELAY + load.warmup;
    let core = ctx.placement.load;
    let tids_ref = &tids;
    let (report, before) = std::thread::scope(|scope| {
        let clock = std::thread::Builder::new()
            .name("efficiency-clock".into())
            .spawn_scoped(scope, move || {
                if let Some(id) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                std::thread::sleep(warm_end.saturating_duration_since(Instant::now()));
                Reading::take(proxy, tids_ref, dead)
            })
            .map_err(|e| SuiteError::Io {
                what: "cannot spawn the clock-reading thread".into(),
                source: e,
            })?;
        let report = loadgen::run(load);
        let before = clock
            .join()
            .map_err(|_| SuiteError::Mock("the clock-reading thread panicked".into()))?;
        Ok::<_, SuiteError>((report, before))
    })?;
    let report = report?;
    let after = Reading::take(proxy, &tids, dead);
    let delta = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b.saturating_sub(a));
    let streams = report.streams;
    let slice = Slice {
        open_loop: report.open_loop,
        requests: report.requests,
        ok: report.ok,
        errors: report.errors,
        throughput: report.throughput,
        p50_us: report.latency_us.p50,
        p99_us: report.latency_us.p99,
        events: streams.map(|s| s.events),
        events_min: streams.and_then(|s| s.events_min),
        events_max: streams.and_then(|s| s.events_max),
        proxy_cpu_ns: delta(before.proxy, after.proxy),
        mock_cpu_ns: delta(before.mocks, after.mocks),
        load_cpu_ns: report.cpu_ns,
        dead_calls: delta(before.dead, after.dead),
    };
    Ok((slice, report))
}

/// The scenario's length in seconds, roughly (for the report).
pub fn duration_s(spec: &EfficiencySpec) -> f64 {
    let t = spec.timing;
    let sides: usize = spec
        .workloads
        .iter()
        .map(|w| {
            if w.name.has_reference() && spec.haproxy {
                3
            } else {
                2
            }
        })
        .sum();
    let per = |d: Dur| (d.0 + t.warmup.0 + LOADGEN_START_DELAY).as_secs_f64();
    (per(t.slice) + per(t.latency_slice)) * (sides * t.rounds) as f64
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::suite::scenario::parse;

    const SCENARIO: &str = r#"
name: eff
mocks: [{ name: up }, { name: dead }, { name: back }]
gateway: "routes: []"
traffic: { duration: 1s }
efficiency:
  haproxy: true
  timing: { rounds: 2, slice: 1s, warmup: 100ms, connections: 8, latency_rate: 100, latency_slice: 1s }
  smoke_timing: { rounds: 1, slice: 200ms, warmup: 100ms, connections: 8, latency_rate: 100, latency_slice: 200ms }
  workloads:
    - { name: passthrough, model: p, direct: up }
    - { name: streaming, model: s, direct: up }
    - { name: failover, model: f, direct: back, dead: dead }
criteria:
  efficiency_client_errors: { max: 0 }
  stream_events_mismatch: { max: 0 }
  dead_primary_calls_per_slice: { max: 5 }
  cpu_figures_missing: { max: 0 }
budgets:
  passthrough_cpu_us: { max: 27 }
  gateway_haproxy_cpu_ratio: { max: 1 }
"#;

    fn err(text: &str) -> String {
        parse(text, Path::new("x.yaml")).unwrap_err().to_string()
    }

    #[test]
    fn the_block_parses_smokes_and_explains_mistakes() {
        let sc = parse(SCENARIO, Path::new("x.yaml")).unwrap();
        let e = sc.efficiency.as_ref().unwrap();
        assert_eq!((e.workloads.len(), e.timing.rounds), (3, 2));
        let short = crate::suite::scenario::smoke(&sc);
        assert_eq!(short.efficiency.unwrap().timing.slice.secs(), 0.2);
        // (change to the file, what the error must say)
        let cases = [
            ("dead: dead }", "dead: nope }", "unknown mock 'nope'"),
            (
                ", dead: dead }",
                " }",
                "given for failover and only for failover",
            ),
            (
                "model: s, direct: up }",
                "model: s, direct: up, dead: dead }",
                "only for failover",
            ),
            (
                "name: streaming",
                "name: passthrough",
                "passthrough is listed twice",
            ),
            ("rounds: 2", "rounds: 0", "timing.rounds must be"),
            ("slice: 1s, warmup", "slice: 31s, warmup", "at most 30 s"),
            (
                "latency_rate: 100, latency_slice: 1s",
                "latency_rate: 0, latency_slice: 1s",
                "latency_rate",
            ),
            (
                "name: streaming",
                "name: translated",
                "stream_events_mismatch: needs the streaming workload",
            ),
            (
                "haproxy: true",
                "haproxy: false",
                "gateway_haproxy_cpu_ratio: needs `efficiency.haproxy: true`",
            ),
            (
                "traffic: { duration: 1s }",
                "traffic: { duration: 1s }\nprobe: { at: 0s }",
                "no compare",
            ),
        ];
        for (from, to, want) in cases {
            assert!(SCENARIO.contains(from), "{from}");
            let e = err(&SCENARIO.replacen(from, to, 1));
            assert!(e.contains(want), "{want}: {e}");
        }
        let neither = SCENARIO
            .replace("passthrough, model", "translated, model")
            .replace("    - { name: streaming, model: s, direct: up }\n", "")
            .replace("  stream_events_mismatch: { max: 0 }\n", "");
        let e = err(&neither);
        assert!(
            e.contains("efficiency.haproxy: needs the passthrough or the streaming workload"),
            "{e}"
        );
        let plain =
            "name: p\nmocks: [{ name: up }]\ngateway: \"routes: []\"\ntraffic: { duration: 1s }\n\
                     criteria:\n  cpu_figures_missing: { max: 0 }\n";
        assert!(err(plain).contains("needs an `efficiency:` section"));
        let absolute = SCENARIO.replace(
            "criteria:\n",
            "criteria:\n  passthrough_cpu_us: { max: 27 }\n",
        );
        assert!(err(&absolute).contains("put it under `budgets:`"));
    }
}
