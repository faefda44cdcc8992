//! Neighbour scenarios: the main `traffic` stream in alternating quiet and
//! loaded slices, the `extra_traffic` streams (each with its own key, rate,
//! connections and report) beside it in every loaded slice, and the mocks'
//! request counters around every slice.
//!
//! Quiet and loaded slices alternate, like a compare scenario's direct and
//! gateway slices, so a noisy stretch of a shared machine's time falls on both
//! sides alike; the best slice of each side is the one noise disturbed least.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::mocks::MockSet;
use super::scenario::{self, ExtraStream, Metric, Scenario};
use super::SuiteError;
use crate::loadgen::{self, LoadReport, LoadSpec};

/// One quiet or loaded slice: the main stream's report, every extra stream's
/// (loaded slices only) and how many requests the mocks received meanwhile.
#[derive(Debug, Clone, Serialize)]
pub struct NeighbourSlice {
    pub loaded: bool,
    pub round: usize,
    pub main: LoadReport,
    pub extra: BTreeMap<String, LoadReport>,
    /// Provider requests every mock received from just before the slice to
    /// after its last answer.
    pub mock_requests: u64,
}

/// Everything a neighbour scenario measured, slices in the order run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NeighbourRun {
    pub slice_s: f64,
    pub slices: Vec<NeighbourSlice>,
}

impl NeighbourRun {
    /// The slices of one side.
    pub fn side(&self, loaded: bool) -> impl Iterator<Item = &NeighbourSlice> {
        self.slices.iter().filter(move |s| s.loaded == loaded)
    }

    /// The main stream's lowest p99 over the slices of one side, if any ran.
    pub fn best_p99(&self, loaded: bool) -> Option<u64> {
        self.side(loaded).map(|s| s.main.latency_us.p99).min()
    }

    /// The main stream's report of the loaded slice with the lowest p99.
    pub fn best_loaded(&self) -> Option<&LoadReport> {
        self.side(true)
            .map(|s| &s.main)
            .min_by_key(|r| r.latency_us.p99)
    }
}

/// Runs the slices of `sc` against the gateway at `gateway`.
pub fn run(
    sc: &Scenario,
    mocks: &MockSet,
    gateway: SocketAddr,
    core: Option<usize>,
) -> Result<NeighbourRun, SuiteError> {
    let Some(extra) = &sc.extra_traffic else {
        return Ok(NeighbourRun::default());
    };
    let slice = scenario::slice_duration(sc).unwrap_or(sc.traffic.duration.0);
    let mut main = super::runner::load_spec(&sc.traffic, gateway, core);
    if !sc.traffic.warmup.0.is_zero() {
        // One unrecorded run opens the gateway's pools and warms its caches;
        // the slices then record everything they send (warmup 0), so the mock
        // counters cover exactly the requests the reports count.
        let mut warm = main.clone();
        warm.duration = sc.traffic.warmup.0;
        warm.warmup = Duration::ZERO;
        loadgen::run(&warm)?;
    }
    main.duration = slice;
    main.warmup = Duration::ZERO;
    let streams: Vec<(String, LoadSpec)> = extra
        .streams
        .iter()
        .map(|st| (st.name.clone(), extra_spec(st, &main)))
        .collect();
    let mut out = NeighbourRun {
        slice_s: slice.as_secs_f64(),
        slices: Vec::with_capacity(extra.rounds * 2),
    };
    for round in 0..extra.rounds {
        for loaded in [false, true] {
            let active = if loaded { &streams[..] } else { &[] };
            out.slices
                .push(run_slice(&main, active, mocks, loaded, round)?);
            progress(&sc.name, out.slices.last(), extra.rounds);
        }
    }
    Ok(out)
}

fn extra_spec(st: &ExtraStream, main: &LoadSpec) -> LoadSpec {
    LoadSpec {
        api_key: st.key.clone(),
        rate: Some(st.rate),
        connections: st.connections,
        model: st.model.clone().unwrap_or_else(|| main.model.clone()),
        stream: false,
        expected_answers: Vec::new(),
        ..main.clone()
    }
}

/// One slice: every stream at once, each on its own thread, then the mocks'
/// counter delta once every answer is in.
fn run_slice(
    main: &LoadSpec,
    extra: &[(String, LoadSpec)],
    mocks: &MockSet,
    loaded: bool,
    round: usize,
) -> Result<NeighbourSlice, SuiteError> {
    let before = mock_requests(mocks);
    let (main_report, extra_reports) = std::thread::scope(|scope| {
        let handles: Vec<_> = extra
            .iter()
            .map(|(name, spec)| (name, scope.spawn(move || loadgen::run(spec))))
            .collect();
        let main_report = loadgen::run(main);
        let mut reports = BTreeMap::new();
        for (name, handle) in handles {
            let report = handle
                .join()
                .map_err(|_| SuiteError::Gateway(format!("load thread of `{name}` panicked")))??;
            reports.insert(name.clone(), report);
        }
        Ok::<_, SuiteError>((main_report, reports))
    })?;
    Ok(NeighbourSlice {
        loaded,
        round,
        main: main_report?,
        extra: extra_reports,
        mock_requests: mock_requests(mocks).saturating_sub(before),
    })
}

fn mock_requests(mocks: &MockSet) -> u64 {
    mocks.mocks.iter().map(|m| m.requests()).sum()
}

fn progress(name: &str, slice: Option<&NeighbourSlice>, rounds: usize) {
    let Some(s) = slice else { return };
    let extra: Vec<String> = s
        .extra
        .iter()
        .map(|(n, r)| {
            let refused = r.statuses.get(&429).copied().unwrap_or(0);
            format!("{n} {} ok {refused} refused", r.ok)
        })
        .collect();
    eprintln!(
        "[{name}] {} {}/{rounds}: main {} ok {} errors p50 {} µs p99 {} µs; {}mock requests {}",
        if s.loaded { "loaded" } else { "quiet" },
        s.round + 1,
        s.main.ok,
        s.main.errors,
        s.main.latency_us.p50,
        s.main.latency_us.p99,
        if extra.is_empty() {
            String::new()
        } else {
            format!("{}; ", extra.join(", "))
        },
        s.mock_requests
    );
}

/// The value of a neighbour metric (`Err`: not measurable, with the reason).
pub fn value(metric: Metric, run: Option<&NeighbourRun>) -> Result<f64, String> {
    let run = run.ok_or("the neighbour slices did not run")?;
    if run.side(true).next().is_none() || run.side(false).next().is_none() {
        return Err("a quiet or a loaded slice is missing".into());
    }
    let v = match metric {
        Metric::TrafficErrors => run.slices.iter().map(|s| s.main.errors).sum::<u64>() as f64,
        Metric::LoadedP99Ratio => {
            let (loaded, quiet) = (run.best_p99(true), run.best_p99(false));
            match (loaded, quiet) {
                (Some(l), Some(q)) if q > 0 => l as f64 / q as f64,
                _ => return Err("the quiet slices measured no latency".into()),
            }
        }
        Metric::ExtraAdmittedPerS => {
            median(admitted_per_second(run)).ok_or("no whole second inside a loaded slice")?
        }
        Metric::ExtraRefused => run
            .side(true)
            .flat_map(|s| s.extra.values())
            .map(|r| r.statuses.get(&429).copied().unwrap_or(0))
            .sum::<u64>() as f64,
        Metric::UpstreamExcess => run.slices.iter().map(upstream_excess).sum::<i64>() as f64,
        _ => return Err(format!("{} is not a neighbour metric", metric.name())),
    };
    Ok(v)
}

/// Provider requests a slice caused beyond the answers its clients got ok:
/// a refused request that still reached a provider counts here.
pub fn upstream_excess(s: &NeighbourSlice) -> i64 {
    let ok = s.main.ok + s.extra.values().map(|r| r.ok).sum::<u64>();
    i64::try_from(s.mock_requests).unwrap_or(i64::MAX) - i64::try_from(ok).unwrap_or(i64::MAX)
}

/// Every extra stream's admitted (ok) requests per second of intended send
/// time, over the whole seconds of each loaded slice but its first and last:
/// the first may start inside a window the flood has not yet used up, the last
/// is cut by the slice's end.
pub fn admitted_per_second(run: &NeighbourRun) -> Vec<u64> {
    let whole = run.slice_s.floor() as usize;
    let inner = 1..whole.saturating_sub(1);
    run.side(true)
        .flat_map(|s| s.extra.values())
        .flat_map(|r| {
            r.series
                .iter()
                .filter(|sec| inner.contains(&(sec.second as usize)) && sec.sent > 0)
                .map(|sec| sec.sent_ok)
        })
        .collect()
}

fn median(mut values: Vec<u64>) -> Option<f64> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2] as f64),
        _ => Some((values[n / 2 - 1] + values[n / 2]) as f64 / 2.0),
    }
}
