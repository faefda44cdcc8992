//! Turning a scenario's measurements into the values its criteria name, and
//! each criterion into a PASS/FAIL verdict.

use serde::Serialize;

use super::runner::ScenarioRun;
use super::scenario::{Bound, Metric, Scenario};
use crate::loadgen::SecondStats;

/// Error rate a second may have and still count as recovered.
const CLEAN_SECOND: f64 = 0.01;
/// Share of the offered rate the recovery mock must serve to count as back.
const RECOVERED_SHARE: f64 = 0.5;
/// Width of the window the mock's request rate is measured over.
const RATE_WINDOW_S: f64 = 0.3;

/// One criterion's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub metric: &'static str,
    pub bound: Bound,
    /// None: could not be measured (counts as FAIL).
    pub measured: Option<f64>,
    pub pass: bool,
}

/// Every criterion of `sc` against `run`.
pub fn evaluate(sc: &Scenario, run: &ScenarioRun) -> Vec<Verdict> {
    sc.criteria
        .iter()
        .map(|(metric, bound)| {
            let measured = value(*metric, sc, run).filter(|v| !v.is_nan());
            Verdict {
                metric: metric.name(),
                bound: *bound,
                measured,
                pass: measured.is_some_and(|v| bound.holds(v)),
            }
        })
        .collect()
}

/// The value of `metric` in `run`, when it could be measured.
pub fn value(metric: Metric, sc: &Scenario, run: &ScenarioRun) -> Option<f64> {
    let load = &run.load;
    let phase = |name: &str| run.phases.get(name);
    match metric {
        Metric::ErrorRate => ratio(load.errors as f64, load.requests as f64),
        Metric::ErrorRateAfterBreaker => {
            let (ok, errors, _) = window(&load.series, breaker_window(run)?);
            ratio(errors, ok + errors)
        }
        Metric::FaultThroughputRatio => {
            let (ok, _, secs) = window(&load.series, breaker_window(run)?);
            let during = ok / secs.max(1.0);
            let before = before_fault(&load.series, run.fault_start_s?).or(run.rate)?;
            ratio(during, before)
        }
        Metric::RecoveryS => recovery(sc, run),
        Metric::StreamCompletion => {
            let s = load.streams?;
            ratio(s.completed as f64, (s.completed + s.errored) as f64)
        }
        Metric::FailFastP99Ms => run
            .timeline
            .probe
            .as_ref()
            .map(|p| p.p99_us as f64 / 1000.0),
        Metric::RetryAfterRatio => {
            let p = run.timeline.probe.as_ref()?;
            ratio(p.with_retry_after as f64, p.requests as f64)
        }
        Metric::OverheadP50Us => {
            Some(phase("gateway")?.latency_us.p50 as f64 - phase("direct")?.latency_us.p50 as f64)
        }
        Metric::OverheadP99Us => {
            Some(phase("gateway")?.latency_us.p99 as f64 - phase("direct")?.latency_us.p99 as f64)
        }
        Metric::OverheadRatioP99 => ratio(
            phase("gateway")?.latency_us.p99 as f64,
            phase("direct")?.latency_us.p99 as f64,
        ),
        Metric::MaxThroughputRatio => ratio(
            phase("gateway_max")?.throughput,
            phase("direct_max")?.throughput,
        ),
        Metric::GatewayMaxRps => Some(phase("gateway_max")?.throughput),
        Metric::DownThroughputRatio => ratio(
            phase("gateway_max_down")?.throughput,
            phase("gateway_max")?.throughput,
        ),
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// From the first fault plus the settle time to the heal (or the end).
fn breaker_window(run: &ScenarioRun) -> Option<(f64, f64)> {
    let from = run.fault_start_s? + run.settle_s;
    let to = run.heal_s.unwrap_or(run.duration_s);
    (to > from).then_some((from, to))
}

/// (ok, errors, seconds) summed over the per-second buckets that lie at least half
/// inside `[from, to)`; any overlapping bucket when none does (short smoke runs).
fn window(series: &[SecondStats], (from, to): (f64, f64)) -> (f64, f64, f64) {
    let overlap = |s: &SecondStats| {
        let a = f64::from(s.second);
        (to.min(a + 1.0) - from.max(a)).max(0.0)
    };
    let mut picked: Vec<&SecondStats> = series.iter().filter(|s| overlap(s) >= 0.5).collect();
    if picked.is_empty() {
        picked = series.iter().filter(|s| overlap(s) > 0.0).collect();
    }
    let ok = picked.iter().map(|s| s.ok as f64).sum();
    let errors = picked.iter().map(|s| s.errors as f64).sum();
    (ok, errors, picked.len() as f64)
}

/// Mean ok/s over the whole seconds before the first fault.
fn before_fault(series: &[SecondStats], fault_start: f64) -> Option<f64> {
    let before: Vec<&SecondStats> = series
        .iter()
        .filter(|s| f64::from(s.second) + 1.0 <= fault_start)
        .collect();
    (!before.is_empty())
        .then(|| before.iter().map(|s| s.ok as f64).sum::<f64>() / before.len() as f64)
}

/// Seconds from the heal until the recovery mock serves half the offered rate
/// again (measured from its request counter), or, without a recovery mock, until
/// the first second with at most 1% client errors.
fn recovery(sc: &Scenario, run: &ScenarioRun) -> Option<f64> {
    let heal = run.heal_s?;
    let Some(name) = &sc.recovery_mock else {
        let clean = run.load.series.iter().find(|s| {
            let total = (s.ok + s.errors) as f64;
            f64::from(s.second) + 1.0 > heal
                && total > 0.0
                && s.errors as f64 / total <= CLEAN_SECOND
        })?;
        return Some((f64::from(clean.second) - heal).max(0.0));
    };
    let log = &run.timeline;
    let index = log.mocks.iter().position(|m| m == name)?;
    let offered = run.rate.or_else(|| {
        let before = before_fault(&run.load.series, run.fault_start_s?)?;
        Some(before)
    })?;
    let samples = &log.samples;
    for (i, b) in samples.iter().enumerate() {
        if b.t_s < heal {
            continue;
        }
        let Some(a) = samples[..i]
            .iter()
            .rev()
            .find(|a| b.t_s - a.t_s >= RATE_WINDOW_S)
        else {
            continue;
        };
        if a.t_s < heal {
            continue;
        }
        let served = b.requests[index].saturating_sub(a.requests[index]) as f64;
        if served / (b.t_s - a.t_s) >= RECOVERED_SHARE * offered {
            return Some(((a.t_s + b.t_s) / 2.0 - heal).max(0.0));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(second: u32, ok: u64, errors: u64) -> SecondStats {
        SecondStats {
            second,
            ok,
            errors,
            p50_us: 0,
            p99_us: 0,
        }
    }

    #[test]
    fn window_takes_buckets_mostly_inside() {
        let series: Vec<_> = (0..6).map(|s| sec(s, 100, u64::from(s))).collect();
        assert_eq!(window(&series, (1.2, 4.0)), (300.0, 6.0, 3.0));
        assert_eq!(window(&series, (1.2, 1.4)), (100.0, 1.0, 1.0));
        assert_eq!(before_fault(&series, 2.5), Some(100.0));
        assert_eq!(before_fault(&series, 0.5), None);
    }
}
