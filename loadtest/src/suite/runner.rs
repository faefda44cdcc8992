//! Running one scenario: mocks in-process, the gateway as a pinned child process,
//! the load in-process, the fault timeline on its own thread; everything is
//! stopped by drop guards whatever happens.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cluster::{self, ClusterRun, ClusterSpec};
use super::efficiency::{self, EfficiencyRun};
use super::gateway::{free_port, render_config, GatewayProcess};
use super::mocks::MockSet;
use super::neighbour::{self, NeighbourRun};
use super::scenario::{self, Scenario, Traffic};
use super::timeline::{
    ProbePlan, Timeline, TimelineLog, TimelinePlan, PROBE_BATCHES, PROBE_BATCH_GAP,
};
use super::SuiteError;
use crate::loadgen::{self, LoadReport, LoadSpec};
use crate::mock::Fault;

/// `loadgen::run` starts its clock this long after it is called (its START_DELAY).
pub(crate) const LOADGEN_START_DELAY: Duration = Duration::from_millis(30);
/// Warmup of each compare slice: enough to open the connections and let a
/// breaker that the phase trips settle, short enough that slices stay cheap.
pub(crate) const SLICE_WARMUP: Duration = Duration::from_millis(250);

/// Which cores the gateway and the load side (load threads, mocks, timeline) use.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Placement {
    pub gateway: Option<usize>,
    pub load: Option<usize>,
}

impl Placement {
    /// Gateway on the first allowed core, load side on the second, when there are two.
    pub fn detect() -> Placement {
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        match cores.as_slice() {
            [gw, load, ..] => Placement {
                gateway: Some(gw.id),
                load: Some(load.id),
            },
            _ => Placement::default(),
        }
    }
}

/// Where the runner finds the gateway and puts its files.
pub struct Context<'a> {
    pub binary: &'a Path,
    pub logs: &'a Path,
    pub placement: Placement,
}

/// Everything measured in one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRun {
    pub name: String,
    pub description: String,
    pub kind: &'static str,
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub stream: bool,
    pub gateway_cpus: String,
    /// The run the timeline applies to (compare: the gateway at the fixed rate).
    pub load: LoadReport,
    /// Compare only: direct, gateway, direct_max, gateway_max, gateway_max_down.
    pub phases: BTreeMap<String, LoadReport>,
    /// Compare only: every slice of each phase, in the order run; `phases`
    /// holds the best slice of each (lowest p50 at a fixed rate, highest
    /// throughput closed loop).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub slices: BTreeMap<String, Vec<SliceSummary>>,
    pub timeline: TimelineLog,
    /// When the first fault and the heal were actually applied (the timeline
    /// thread can run late on a busy machine); None: planned but never applied.
    pub fault_start_s: Option<f64>,
    pub heal_s: Option<f64>,
    /// When the scenario planned them.
    pub planned_fault_start_s: Option<f64>,
    pub planned_heal_s: Option<f64>,
    pub settle_s: f64,
    /// Neighbour scenarios only: the quiet and loaded slices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neighbour: Option<NeighbourRun>,
    /// Fleet scenarios only: both fleets, or why the scenario was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterRun>,
    /// Efficiency scenarios only: every workload's slices and the table's rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub efficiency: Option<EfficiencyRun>,
}

/// The counts and figures of one compare slice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SliceSummary {
    pub requests: u64,
    pub errors: u64,
    pub throughput: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Answers that carried `x-switchyard-attempts`, and of those the ones that
    /// took more than one attempt.
    pub attempted: u64,
    pub retried: u64,
}

impl SliceSummary {
    pub fn of(r: &LoadReport) -> SliceSummary {
        SliceSummary {
            requests: r.requests,
            errors: r.errors,
            throughput: r.throughput,
            p50_us: r.latency_us.p50,
            p99_us: r.latency_us.p99,
            attempted: r.attempts.values().sum(),
            retried: r
                .attempts
                .iter()
                .filter(|(n, _)| **n > 1)
                .map(|(_, c)| c)
                .sum(),
        }
    }
}

/// Runs `sc` (already shortened for smoke mode) from `file`.
pub fn run(sc: &Scenario, file: &Path, ctx: &Context) -> Result<ScenarioRun, SuiteError> {
    if let Some(spec) = &sc.cluster {
        return run_cluster(sc, spec, ctx);
    }
    let mocks = MockSet::start(&sc.mocks, ctx.placement.load)?;
    let addr = free_port()?;
    let config = render_config(&sc.gateway, &mocks.urls(), addr).map_err(|problem| {
        SuiteError::Scenario {
            file: file.to_path_buf(),
            problem,
        }
    })?;
    let gateway = GatewayProcess::start(
        ctx.binary,
        &config,
        addr,
        ctx.logs,
        &sc.name,
        ctx.placement.gateway,
        &sc.traffic.model,
    )?;
    let mut out = ScenarioRun {
        name: sc.name.clone(),
        description: sc.description.trim().to_string(),
        kind: match (&sc.compare, &sc.extra_traffic, &sc.efficiency) {
            (Some(_), _, _) => "compare",
            (None, Some(_), _) => "neighbour",
            (None, None, Some(_)) => "efficiency",
            (None, None, None) => "timeline",
        },
        rate: sc.traffic.rate,
        duration_s: sc.traffic.duration.secs(),
        stream: sc.traffic.stream,
        gateway_cpus: gateway.cpus.clone(),
        load: empty_report(),
        phases: BTreeMap::new(),
        slices: BTreeMap::new(),
        timeline: TimelineLog::default(),
        fault_start_s: None,
        heal_s: None,
        planned_fault_start_s: scenario::fault_start(sc).map(|d| d.secs()),
        planned_heal_s: scenario::heal_at(sc).map(|d| d.secs()),
        settle_s: sc.settle.secs(),
        neighbour: None,
        cluster: None,
        efficiency: None,
    };
    match (&sc.compare, &sc.efficiency) {
        (None, Some(spec)) => {
            let run = efficiency::run(sc, spec, ctx, &mocks, &gateway)?;
            out.rate = Some(spec.timing.latency_rate);
            out.duration_s = efficiency::duration_s(spec);
            // The chart: the first workload's best latency slices, direct dashed.
            if let Some((direct, through)) = &run.chart {
                out.load = through.clone();
                out.phases.insert("direct".into(), direct.clone());
                out.phases.insert("gateway".into(), through.clone());
            }
            out.efficiency = Some(run);
        }
        (None, None) if sc.extra_traffic.is_some() => {
            let run = neighbour::run(sc, &mocks, gateway.addr, ctx.placement.load)?;
            if let Some(best) = run.best_loaded() {
                out.load = best.clone();
            }
            out.neighbour = Some(run);
        }
        (None, None) => {
            let mut spec = load_spec(&sc.traffic, gateway.addr, ctx.placement.load);
            if sc.traffic.stream {
                spec.expected_answers = sc.mocks.iter().map(full_answer).collect();
            }
            let (report, log) = measured(sc, &mocks, &spec, &sc.name, Some(gateway.addr))?;
            (out.fault_start_s, out.heal_s) = applied_times(sc, &log.applied);
            out.load = report;
            out.timeline = log;
        }
        (Some(compare), _) => {
            let direct = mocks.get(&compare.direct)?.handle.addr();
            let rounds = u32::try_from(compare.rounds).unwrap_or(1);
            let slice = |target, rate: bool| {
                let mut spec = load_spec(&sc.traffic, target, ctx.placement.load);
                spec.warmup = spec.warmup.min(SLICE_WARMUP);
                if rate {
                    spec.duration /= rounds;
                } else {
                    spec.rate = None;
                    spec.duration = compare.max_duration.0 / rounds;
                    spec.connections = compare.max_connections;
                }
                spec
            };
            let quiet = Scenario {
                faults: Vec::new(),
                probe: None,
                ..sc.clone()
            };
            let mut slices: BTreeMap<&str, Vec<LoadReport>> = BTreeMap::new();
            let mut run_slice = |phase: &'static str, spec: &LoadSpec, round: usize| {
                let name = format!("{}/{phase} {}/{}", sc.name, round + 1, compare.rounds);
                let (report, log) = measured(&quiet, &mocks, spec, &name, None)?;
                if phase == "gateway" && round == 0 {
                    out.timeline = log;
                }
                slices.entry(phase).or_default().push(report);
                Ok::<_, SuiteError>(())
            };
            // Direct and gateway slices alternate, so a noisy stretch of the
            // machine's time hits both sides alike.
            for round in 0..compare.rounds {
                run_slice("direct", &slice(direct, true), round)?;
                run_slice("gateway", &slice(gateway.addr, true), round)?;
            }
            for round in 0..compare.rounds {
                run_slice("direct_max", &slice(direct, false), round)?;
                run_slice("gateway_max", &slice(gateway.addr, false), round)?;
            }
            if let Some(down) = &compare.down {
                mocks.get(down)?.set_fault(&Fault::Refuse)?;
                for round in 0..compare.rounds {
                    run_slice("gateway_max_down", &slice(gateway.addr, false), round)?;
                }
            }
            for (phase, reports) in slices {
                out.slices.insert(
                    phase.to_string(),
                    reports.iter().map(SliceSummary::of).collect(),
                );
                // Noise only adds latency and takes throughput: the best slice is
                // the one it disturbed least.
                let best = if reports.first().is_some_and(|r| r.open_loop) {
                    reports.into_iter().min_by_key(|r| r.latency_us.p50)
                } else {
                    reports
                        .into_iter()
                        .max_by(|a, b| a.throughput.total_cmp(&b.throughput))
                };
                if let Some(best) = best {
                    if phase == "gateway" {
                        out.load = best.clone();
                    }
                    out.phases.insert(phase.to_string(), best);
                }
            }
        }
    }
    drop(gateway);
    drop(mocks);
    Ok(out)
}

/// A fleet scenario: its own nodes, redis-server and load (see `suite::cluster`).
fn run_cluster(
    sc: &Scenario,
    spec: &ClusterSpec,
    ctx: &Context,
) -> Result<ScenarioRun, SuiteError> {
    let fleets = cluster::run(sc, spec, ctx)?;
    let load = fleets
        .clustered
        .as_ref()
        .map_or_else(empty_report, |f| fleet_report(&f.limit));
    Ok(ScenarioRun {
        name: sc.name.clone(),
        description: sc.description.trim().to_string(),
        kind: "cluster",
        rate: spec.limit.rate,
        duration_s: spec.health.duration.secs() * 2.0 + spec.limit.duration.secs() * 2.0,
        stream: false,
        gateway_cpus: fleets
            .clustered
            .as_ref()
            .map_or_else(|| "-".to_string(), |f| f.gateway_cpus.clone()),
        load,
        phases: BTreeMap::new(),
        slices: BTreeMap::new(),
        timeline: TimelineLog::default(),
        fault_start_s: None,
        heal_s: None,
        planned_fault_start_s: None,
        planned_heal_s: None,
        settle_s: 0.0,
        neighbour: None,
        cluster: Some(fleets),
        efficiency: None,
    })
}

/// The clustered fleet's phase B as a report for the chart (ok per second).
fn fleet_report(f: &cluster::FleetLoad) -> LoadReport {
    let mut r = empty_report();
    r.requests = f.requests;
    r.ok = f.ok;
    r.errors = f.errors;
    r.statuses = f.statuses.clone();
    r.series = f
        .ok_per_s
        .iter()
        .enumerate()
        .map(|(i, ok)| crate::loadgen::SecondStats {
            second: u32::try_from(i).unwrap_or(u32::MAX),
            ok: *ok,
            sent: *ok,
            sent_ok: *ok,
            ..Default::default()
        })
        .collect();
    r
}

/// One load run with the timeline thread beside it.
fn measured(
    sc: &Scenario,
    mocks: &MockSet,
    spec: &LoadSpec,
    label: &str,
    gateway: Option<SocketAddr>,
) -> Result<(LoadReport, TimelineLog), SuiteError> {
    let start = Instant::now() + LOADGEN_START_DELAY + spec.warmup;
    let plan = TimelinePlan {
        label: label.to_string(),
        start,
        duration: spec.duration,
        steps: sc.faults.clone(),
        mocks: mocks.mocks.clone(),
        probe: match (&sc.probe, gateway) {
            (Some(p), Some(addr)) => Some(ProbePlan {
                times: probe_times(p.at),
                reference_times: scenario::fault_start(sc).map_or(Vec::new(), reference_times),
                requests: p.requests,
                addr,
                model: sc.traffic.model.clone(),
            }),
            _ => None,
        },
        pin_core: spec.pin_cores.first().copied(),
    };
    let timeline = Timeline::spawn(plan).map_err(|e| SuiteError::Io {
        what: "cannot spawn the timeline thread".into(),
        source: e,
    })?;
    let report = loadgen::run(spec);
    let log = timeline.finish();
    for step in &log.applied {
        if let Some(e) = &step.error {
            return Err(SuiteError::Mock(e.clone()));
        }
    }
    Ok((report?, log))
}

/// The fault-time probe batches: from `at`, [`PROBE_BATCH_GAP`] apart.
pub fn probe_times(at: scenario::Dur) -> Vec<Duration> {
    (0..PROBE_BATCHES)
        .map(|i| at.0 + PROBE_BATCH_GAP * u32::try_from(i).unwrap_or(0))
        .collect()
}

/// The reference batches, evenly spread over the healthy time before the first
/// fault (the gateway is warm by then and nothing is broken yet).
fn reference_times(fault: scenario::Dur) -> Vec<Duration> {
    let parts = u32::try_from(PROBE_BATCHES + 1).unwrap_or(1);
    (1..parts).map(|i| fault.0 * i / parts).collect()
}

/// When the first fault and the heal were applied, from the timeline log. The
/// thread applies `sc.faults` in order, one log entry per step, so entry `i` is
/// step `i`; the heal is the last step (steps are sorted by time).
pub fn applied_times(
    sc: &Scenario,
    applied: &[super::timeline::AppliedStep],
) -> (Option<f64>, Option<f64>) {
    let first = sc.faults.iter().position(scenario::FaultStep::is_fault);
    let fault = first.and_then(|i| applied.get(i)).map(|a| a.at_s);
    // The heal is the last fault step (continuation steps may follow it).
    let heal = scenario::heal_at(sc)
        .and_then(|_| applied.get(sc.faults.iter().rposition(|f| f.fault.is_some())?))
        .map(|a| a.at_s);
    (fault, heal)
}

pub(crate) fn load_spec(t: &Traffic, target: SocketAddr, core: Option<usize>) -> LoadSpec {
    LoadSpec {
        target,
        path: "/v1/chat/completions".to_string(),
        model: t.model.clone(),
        api_key: t.key.clone(),
        rate: t.rate,
        duration: t.duration.0,
        warmup: t.warmup.0,
        connections: t.connections,
        threads: 1,
        stream: t.stream,
        timeout: t.timeout.0,
        pin_cores: core.into_iter().collect(),
        expected_answers: Vec::new(),
    }
}

/// A mock's whole answer, as a client must receive it: `"Hello from {name}: "`
/// then `w0 ` … `w{n-1} ` (see `loadtest/src/mock/answer.rs`).
pub fn full_answer(m: &super::scenario::MockSpec) -> String {
    let mut text = format!("Hello from {}: ", m.name);
    for i in 0..m.stream_chunks.max(1) {
        text.push_str(&format!("w{i} "));
    }
    text
}

/// A report of a run that sent nothing (compare scenarios fill theirs in later).
pub(crate) fn empty_report() -> LoadReport {
    LoadReport {
        open_loop: false,
        requests: 0,
        ok: 0,
        errors: 0,
        statuses: BTreeMap::new(),
        targets: BTreeMap::new(),
        attempts: BTreeMap::new(),
        late_starts: 0,
        unsent: 0,
        elapsed_s: 0.0,
        throughput: 0.0,
        latency_us: Default::default(),
        ttft_us: None,
        streams: None,
        series: Vec::new(),
        cpu_ns: None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::suite::timeline::AppliedStep;

    fn applied(times: &[f64]) -> Vec<AppliedStep> {
        times
            .iter()
            .map(|&at_s| AppliedStep {
                at_s,
                mock: "primary".into(),
                fault: String::new(),
                error: None,
            })
            .collect()
    }

    #[test]
    fn applied_times_map_log_entries_to_steps() {
        let sc = scenario::parse(
            r#"
name: flap
mocks: [{ name: primary }]
gateway: "routes: []"
traffic: { rate: 10, duration: 10s }
faults:
  - { at: 1s, mock: primary, fault: { mode: none } }
  - { at: 2s, mock: primary, fault: { mode: refuse } }
  - { at: 3s, mock: primary, fault: { mode: none } }
"#,
            Path::new("x.yaml"),
        )
        .unwrap();
        // (log entries, first fault applied, heal applied)
        let cases: [(&[f64], Option<f64>, Option<f64>); 4] = [
            (&[1.05, 2.07, 3.01], Some(2.07), Some(3.01)),
            // The run ended before the heal was applied.
            (&[1.05, 2.07], Some(2.07), None),
            (&[1.05], None, None),
            (&[], None, None),
        ];
        for (log, fault, heal) in cases {
            assert_eq!(applied_times(&sc, &applied(log)), (fault, heal), "{log:?}");
        }
    }

    #[test]
    fn probe_batches_spread_as_documented() {
        let secs = |v: Vec<Duration>| v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
        let at = scenario::Dur(Duration::from_millis(4500));
        assert_eq!(secs(probe_times(at)), [4.5, 4.65, 4.8]);
        let fault = scenario::Dur(Duration::from_secs(3));
        assert_eq!(secs(reference_times(fault)), [0.75, 1.5, 2.25]);
    }
}
