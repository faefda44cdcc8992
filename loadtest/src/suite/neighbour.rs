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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::SecondStats;
    use crate::suite::runner::empty_report;

    /// A report with `ok` answers, `refused` 429s and the given p99, spread
    /// evenly over `seconds` seconds of intended send time.
    fn report(ok: u64, refused: u64, p99: u64, seconds: u32) -> LoadReport {
        let mut r = empty_report();
        r.open_loop = true;
        r.requests = ok + refused;
        r.ok = ok;
        r.errors = refused;
        r.statuses.insert(200, ok);
        if refused > 0 {
            r.statuses.insert(429, refused);
        }
        r.latency_us.p99 = p99;
        let per = |n: u64| n / u64::from(seconds);
        r.series = (0..seconds)
            .map(|second| SecondStats {
                second,
                sent: per(ok + refused),
                sent_ok: per(ok),
                ..Default::default()
            })
            .collect();
        r
    }

    fn slice(loaded: bool, round: usize, p99: u64) -> NeighbourSlice {
        let mut extra = BTreeMap::new();
        if loaded {
            extra.insert("noisy".to_string(), report(250, 2250, 300, 5));
        }
        let upstream = 1000 + if loaded { 250 } else { 0 };
        NeighbourSlice {
            loaded,
            round,
            main: report(1000, 0, p99, 5),
            extra,
            mock_requests: upstream,
        }
    }

    fn clean() -> NeighbourRun {
        NeighbourRun {
            slice_s: 5.0,
            slices: vec![
                slice(false, 0, 2000),
                slice(true, 0, 2600),
                slice(false, 1, 1500),
                slice(true, 1, 1875),
            ],
        }
    }

    fn v(metric: Metric, run: &NeighbourRun) -> Result<f64, String> {
        value(metric, Some(run))
    }

    #[test]
    fn a_clean_run_gives_counts_and_the_best_slice_ratio() {
        let run = clean();
        assert_eq!(v(Metric::TrafficErrors, &run), Ok(0.0));
        // Lowest p99 of each side: 1875 / 1500.
        assert_eq!(v(Metric::LoadedP99Ratio, &run), Ok(1.25));
        assert_eq!(v(Metric::ExtraAdmittedPerS, &run), Ok(50.0));
        assert_eq!(v(Metric::ExtraRefused, &run), Ok(4500.0));
        assert_eq!(v(Metric::UpstreamExcess, &run), Ok(0.0));
        assert_eq!(run.best_loaded().map(|r| r.latency_us.p99), Some(1875));
        // Seconds 1..=3 of the two loaded slices: first and last are left out.
        assert_eq!(admitted_per_second(&run), vec![50; 6]);
    }

    #[test]
    fn broken_runs_show_in_the_values() {
        // A steady request failed, a refused noisy request reached the mock.
        let mut run = clean();
        run.slices[1].main.errors = 3;
        run.slices[3].mock_requests += 7;
        assert_eq!(v(Metric::TrafficErrors, &run), Ok(3.0));
        assert_eq!(v(Metric::UpstreamExcess, &run), Ok(7.0));
        // No limit: every noisy request admitted, none refused.
        let mut run = clean();
        for s in run.slices.iter_mut().filter(|s| s.loaded) {
            s.extra.insert("noisy".into(), report(2500, 0, 300, 5));
        }
        assert_eq!(v(Metric::ExtraAdmittedPerS, &run), Ok(500.0));
        assert_eq!(v(Metric::ExtraRefused, &run), Ok(0.0));
        // The flood slows the steady key down on every loaded slice.
        let mut run = clean();
        for s in run.slices.iter_mut().filter(|s| s.loaded) {
            s.main.latency_us.p99 = 6000;
        }
        assert_eq!(v(Metric::LoadedP99Ratio, &run), Ok(4.0));
    }

    #[test]
    fn a_missing_side_is_not_measured() {
        assert!(value(Metric::TrafficErrors, None).is_err());
        let mut run = clean();
        run.slices.retain(|s| !s.loaded);
        assert!(v(Metric::ExtraRefused, &run).is_err());
        let mut run = clean();
        for s in &mut run.slices {
            s.main.latency_us.p99 = 0;
        }
        assert!(v(Metric::LoadedP99Ratio, &run).is_err());
        // 2 s slices have no inner whole second.
        let mut run = clean();
        run.slice_s = 2.0;
        assert!(v(Metric::ExtraAdmittedPerS, &run).is_err());
        assert!(v(Metric::ErrorRate, &clean()).is_err());
    }
}
