//! Turning a scenario's measurements into the values its criteria and budgets
//! name, and each into a verdict: PASS, FAIL, or NOT MEASURED with the reason.
//!
//! Everything here is a pure function of what one run recorded, and every value
//! is a count, a ratio of two things measured in the same run, or (`recovery_s`)
//! a time set by the gateway's own breaker timers: machine noise moves the raw
//! figures, but not these. A value the run could not produce (the heal was never
//! applied, the run ended before a recovery could be seen, nothing was sent) is
//! NOT MEASURED — a harness problem with its reason, never a silent FAIL — while
//! a failure the run did show (the primary healed and the gateway never came
//! back to it in a window long enough for the bound) is a FAIL.

use serde::Serialize;

use super::runner::ScenarioRun;
use super::scenario::{Bound, Metric, Scenario};
use super::timeline::{ProbeResult, Sample};
use crate::loadgen::SecondStats;

/// Share of the offered rate the recovery mock(s) must serve to count as back.
pub const RECOVERED_SHARE: f64 = 0.5;
/// Shortest window the mocks' request rate is measured over (samples are 100 ms
/// apart, so this spans at least three of them).
pub const RATE_WINDOW_S: f64 = 0.3;
/// How much longer than the `recovery_s` bound the run must have watched after
/// the heal before "no recovery seen" counts as a FAIL: one rate window plus one
/// sample tick, the delay with which a recovery right at the bound is seen.
pub const WATCH_MARGIN_S: f64 = 0.5;

/// How a criterion (or budget) came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// The run could not produce the value: a harness problem, not a verdict.
    NotMeasured,
}

/// What measuring a metric gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// The value, to be held against the bound.
    Value(f64),
    /// A failure the run showed without a number to put on it (e.g. no recovery
    /// in a window longer than the bound).
    Failed(String),
    /// The run could not measure it, and why.
    Missing(String),
}

/// One criterion's (or budget's) outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub metric: &'static str,
    pub bound: Bound,
    /// The value, when there is one.
    pub measured: Option<f64>,
    pub outcome: Outcome,
    /// Why it failed without a value, or why it could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Pass
    }
}

/// Holds `measure` against `bound`.
pub fn judge(metric: Metric, bound: Bound, measure: Measure) -> Verdict {
    let (measured, outcome, reason) = match measure {
        Measure::Value(v) if v.is_nan() => (
            None,
            Outcome::NotMeasured,
            Some("the value is not a number".to_string()),
        ),
        Measure::Value(v) if bound.holds(v) => (Some(v), Outcome::Pass, None),
        Measure::Value(v) => (Some(v), Outcome::Fail, None),
        Measure::Failed(why) => (None, Outcome::Fail, Some(why)),
        Measure::Missing(why) => (None, Outcome::NotMeasured, Some(why)),
    };
    Verdict {
        metric: metric.name(),
        bound,
        measured,
        outcome,
        reason,
    }
}

/// Every criterion of `sc` against `run`.
pub fn evaluate(sc: &Scenario, run: &ScenarioRun) -> Vec<Verdict> {
    sc.criteria
        .iter()
        .map(|(metric, bound)| judge(*metric, *bound, measure(*metric, sc, run)))
        .collect()
}

/// Every budget of `sc` against `run` (reported, never part of the verdict).
pub fn evaluate_budgets(sc: &Scenario, run: &ScenarioRun) -> Vec<Verdict> {
    sc.budgets
        .iter()
        .map(|(metric, bound)| judge(*metric, *bound, measure(*metric, sc, run)))
        .collect()
}

/// The value of `metric` in `run`, or why there is none.
pub fn measure(metric: Metric, sc: &Scenario, run: &ScenarioRun) -> Measure {
    match value(metric, sc, run) {
        Ok(m) => m,
        Err(why) => Measure::Missing(why),
    }
}

/// `Err` = not measurable, with the reason.
fn value(metric: Metric, sc: &Scenario, run: &ScenarioRun) -> Result<Measure, String> {
    let load = &run.load;
    let phase = |name: &str| {
        run.phases
            .get(name)
            .ok_or_else(|| format!("the `{name}` phase did not run"))
    };
    let v = match metric {
        Metric::ErrorRate => {
            // Compare runs: every gateway slice at the fixed rate, not just the
            // best one, so no error hides in a slice that was not picked.
            let (errors, requests) = match run.slices.get("gateway") {
                Some(slices) => slices
                    .iter()
                    .fold((0, 0), |(e, n), s| (e + s.errors, n + s.requests)),
                None => (load.errors, load.requests),
            };
            ratio(errors as f64, requests as f64, "no request")?
        }
        Metric::ErrorRateAfterBreaker => {
            let w = window(&load.series, breaker_window(run)?);
            ratio(w.errors, w.ok + w.errors, "no request completed in it")
                .map_err(|e| in_window(run, &e))?
        }
        Metric::RetriedAfterBreaker => {
            let w = window(&load.series, breaker_window(run)?);
            ratio(w.retried, w.ok + w.errors, "no request completed in it")
                .map_err(|e| in_window(run, &e))?
        }
        Metric::FaultThroughputRatio => {
            let w = window(&load.series, breaker_window(run)?);
            if w.seconds == 0.0 {
                return Err(in_window(run, "no second of the run lies in it"));
            }
            let fault = run
                .fault_start_s
                .ok_or("the first fault was never applied")?;
            let before = before_fault(&load.series, fault)
                .or(run.rate)
                .ok_or("no whole second before the first fault and no fixed rate")?;
            ratio(
                w.ok / w.seconds,
                before,
                "nothing was served before the fault",
            )?
        }
        Metric::RecoveryS => return recovery_of(sc, run),
        Metric::StreamCompletion => {
            let s = load.streams.ok_or("the run did not account streams")?;
            ratio(
                s.completed as f64,
                (s.completed + s.errored) as f64,
                "no stream got a 2xx answer",
            )?
        }
        Metric::BadSuccessStreams => {
            let s = load.streams.ok_or("the run did not account streams")?;
            if s.completed == 0 {
                return Err("no stream completed".into());
            }
            s.bad_success as f64
        }
        Metric::ContinuedStreams => {
            load.streams
                .ok_or("the run did not account streams")?
                .continued_full as f64
        }
        Metric::TtftP99S => {
            let ttft = load.ttft_us.ok_or("the run did not account streams")?;
            if ttft.max == 0 {
                return Err("no stream got a first content byte".into());
            }
            ttft.p99 as f64 / 1e6
        }
        Metric::TrafficErrors
        | Metric::LoadedP99Ratio
        | Metric::ExtraAdmittedPerS
        | Metric::ExtraRefused
        | Metric::UpstreamExcess => super::neighbour::value(metric, run.neighbour.as_ref())?,
        Metric::ClusterClientErrors
        | Metric::ClusterDeadCallsRatio
        | Metric::ClusterAdmittedPerWindow => {
            return super::cluster::value(metric, run.cluster.as_ref())
        }
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
        | Metric::GatewayHaproxyCpuAtRateRatio => {
            return super::efficiency::value(metric, run.efficiency.as_ref())
        }
        Metric::UpstreamCallsPerRequest => {
            let calls = upstream_calls(&run.timeline.samples)
                .ok_or("no mock counter sample before and after the measured window")?;
            ratio(calls, load.requests as f64, "no request")?
        }
        Metric::FailFastP99Ms => fault_probe(run)?.p99_us as f64 / 1000.0,
        Metric::FailFastRatioP50 => {
            let probe = fault_probe(run)?;
            let reference = reference_probe(run)?;
            let best = |p: &ProbeResult| p.best_batch_p50_us().unwrap_or(p.p50_us) as f64;
            let healthy = reference.statuses.get(&200).copied().unwrap_or(0);
            if healthy != reference.requests as u64 {
                // The gateway failed requests while every target was up: that is
                // a failure in itself, not a gap in the measurement.
                return Ok(Measure::Failed(format!(
                    "the reference probe before the fault got statuses {:?}, not all 200",
                    reference.statuses
                )));
            }
            ratio(best(probe), best(reference), "the reference probe p50 is 0")?
        }
        Metric::RetryAfterRatio => {
            let p = fault_probe(run)?;
            ratio(p.with_retry_after as f64, p.requests as f64, "no probe")?
        }
        Metric::OverheadP50Us => {
            phase("gateway")?.latency_us.p50 as f64 - phase("direct")?.latency_us.p50 as f64
        }
        Metric::OverheadP99Us => {
            phase("gateway")?.latency_us.p99 as f64 - phase("direct")?.latency_us.p99 as f64
        }
        Metric::OverheadRatioP50 => ratio(
            phase("gateway")?.latency_us.p50 as f64,
            phase("direct")?.latency_us.p50 as f64,
            "the direct p50 is 0",
        )?,
        Metric::OverheadRatioP99 => ratio(
            phase("gateway")?.latency_us.p99 as f64,
            phase("direct")?.latency_us.p99 as f64,
            "the direct p99 is 0",
        )?,
        Metric::MaxThroughputRatio => ratio(
            phase("gateway_max")?.throughput,
            phase("direct_max")?.throughput,
            "nothing was served direct",
        )?,
        Metric::GatewayMaxRps => phase("gateway_max")?.throughput,
        Metric::DownThroughputRatio => ratio(
            phase("gateway_max_down")?.throughput,
            phase("gateway_max")?.throughput,
            "nothing was served with the primary up",
        )?,
        Metric::DownRetriedRatio => {
            // Every slice of the down phase: each pays for its own half-open probes.
            let slices = run
                .slices
                .get("gateway_max_down")
                .ok_or("the `gateway_max_down` phase did not run")?;
            let (retried, attempted) = slices
                .iter()
                .fold((0, 0), |(r, a), s| (r + s.retried, a + s.attempted));
            ratio(
                retried as f64,
                attempted as f64,
                "no answer in the down phase carried x-switchyard-attempts",
            )?
        }
    };
    Ok(Measure::Value(v))
}

/// Upstream requests every mock together received from the last counter sample
/// at or before the measured window's start to the last sample (taken after the
/// load ended).
pub fn upstream_calls(samples: &[Sample]) -> Option<f64> {
    let total = |s: &Sample| s.requests.iter().sum::<u64>();
    let start = samples.iter().rev().find(|s| s.t_s <= 0.0)?;
    let end = samples.last().filter(|s| s.t_s > 0.0)?;
    Some(total(end).saturating_sub(total(start)) as f64)
}

fn ratio(a: f64, b: f64, why_not: &str) -> Result<f64, String> {
    if b > 0.0 {
        Ok(a / b)
    } else {
        Err(why_not.to_string())
    }
}

fn in_window(run: &ScenarioRun, problem: &str) -> String {
    match breaker_window(run) {
        Ok((from, to)) => format!("breaker window {from:.2}..{to:.2} s: {problem}"),
        Err(e) => e,
    }
}

/// From the applied first fault plus the settle time to the applied heal (or the
/// end of the run).
pub fn breaker_window(run: &ScenarioRun) -> Result<(f64, f64), String> {
    let fault = run.fault_start_s.ok_or_else(|| {
        format!(
            "the first fault (planned at {} s) was never applied",
            secs(run.planned_fault_start_s)
        )
    })?;
    let from = fault + run.settle_s;
    let to = match (run.planned_heal_s, run.heal_s) {
        (Some(planned), None) => {
            return Err(format!(
                "the heal (planned at {planned} s) was never applied"
            ))
        }
        (_, heal) => heal.unwrap_or(run.duration_s),
    };
    if to > from {
        Ok((from, to))
    } else {
        Err(format!(
            "the breaker window {from:.2}..{to:.2} s is empty (fault applied at {fault:.2} s, settle {} s)",
            run.settle_s
        ))
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |s| format!("{s}"))
}

/// Counts summed over a window of the per-second series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowCounts {
    pub ok: f64,
    pub errors: f64,
    pub retried: f64,
    pub seconds: f64,
}

/// The requests whose intended send time lies in the per-second buckets at
/// least half inside `[from, to)` (any overlapping bucket when none does: short
/// smoke runs). By send time, not completion time: a stall on a busy machine
/// delays answers into later seconds, but cannot move a request out of the
/// second it was meant for.
pub fn window(series: &[SecondStats], (from, to): (f64, f64)) -> WindowCounts {
    let overlap = |s: &SecondStats| {
        let a = f64::from(s.second);
        (to.min(a + 1.0) - from.max(a)).max(0.0)
    };
    let mut picked: Vec<&SecondStats> = series.iter().filter(|s| overlap(s) >= 0.5).collect();
    if picked.is_empty() {
        picked = series.iter().filter(|s| overlap(s) > 0.0).collect();
    }
    WindowCounts {
        ok: picked.iter().map(|s| s.sent_ok as f64).sum(),
        errors: picked
            .iter()
            .map(|s| s.sent.saturating_sub(s.sent_ok) as f64)
            .sum(),
        retried: picked.iter().map(|s| s.sent_retried as f64).sum(),
        seconds: picked.len() as f64,
    }
}

/// Mean ok answers per second of send time over the whole seconds before the
/// first fault.
pub fn before_fault(series: &[SecondStats], fault_start: f64) -> Option<f64> {
    let before: Vec<&SecondStats> = series
        .iter()
        .filter(|s| f64::from(s.second) + 1.0 <= fault_start)
        .collect();
    (!before.is_empty())
        .then(|| before.iter().map(|s| s.sent_ok as f64).sum::<f64>() / before.len() as f64)
}

/// The probe sent during the fault, if it really ran while the breakers were
/// meant to be open: a timeline thread running late could send it after the heal.
fn fault_probe(run: &ScenarioRun) -> Result<&ProbeResult, String> {
    let probe = run
        .timeline
        .probe
        .as_ref()
        .ok_or("the probe was never sent")?;
    let (from, to) = breaker_window(run)?;
    let last = probe.last_at_s.max(probe.at_s);
    if probe.at_s < from || last >= to {
        return Err(format!(
            "the probe ran {:.2}..{last:.2} s, outside the breaker window {from:.2}..{to:.2} s",
            probe.at_s
        ));
    }
    Ok(probe)
}

fn reference_probe(run: &ScenarioRun) -> Result<&ProbeResult, String> {
    let reference = run
        .timeline
        .reference_probe
        .as_ref()
        .ok_or("the reference probe was never sent")?;
    let fault = run
        .fault_start_s
        .ok_or("the first fault was never applied")?;
    let last = reference.last_at_s.max(reference.at_s);
    if last >= fault {
        return Err(format!(
            "the reference probe ran until {last:.2} s, after the first fault at {fault:.2} s"
        ));
    }
    Ok(reference)
}

/// `recovery_s` for `run`: which mocks count, the offered rate and the bound.
fn recovery_of(sc: &Scenario, run: &ScenarioRun) -> Result<Measure, String> {
    let heal = match (run.planned_heal_s, run.heal_s) {
        (_, Some(h)) => h,
        (Some(planned), None) => {
            return Err(format!(
                "the heal (planned at {planned} s) was never applied"
            ))
        }
        (None, None) => return Err("the scenario has no heal".into()),
    };
    let log = &run.timeline;
    let mocks: Vec<usize> = match &sc.recovery_mock {
        Some(name) => vec![log
            .mocks
            .iter()
            .position(|m| m == name)
            .ok_or_else(|| format!("mock '{name}' was not sampled"))?],
        None => (0..log.mocks.len()).collect(),
    };
    let offered = match (run.rate, run.fault_start_s) {
        (Some(rate), _) => rate,
        (None, Some(fault)) => before_fault(&run.load.series, fault)
            .ok_or("closed loop with no whole second before the fault to take the rate from")?,
        (None, None) => return Err("the first fault was never applied".into()),
    };
    let max = sc.criteria.get(&Metric::RecoveryS).and_then(|b| b.max);
    // The load stops at the end of the run; samples after it show no traffic.
    let end = log
        .samples
        .last()
        .map_or(f64::NEG_INFINITY, |s| s.t_s.min(run.duration_s));
    Ok(recovery(&log.samples, &mocks, heal, end, offered, max))
}

/// Seconds from `heal` until the mocks at `mocks` (indexes into each sample)
/// together serve [`RECOVERED_SHARE`] of `offered` again, judged over windows of
/// at least [`RATE_WINDOW_S`] that start after the heal; the value is the middle
/// of the first such window. No such window: FAIL when the samples watched at
/// least `max` + [`WATCH_MARGIN_S`] after the heal (up to `end`), since a
/// recovery within the bound would have been seen; NOT MEASURED otherwise.
pub fn recovery(
    samples: &[Sample],
    mocks: &[usize],
    heal: f64,
    end: f64,
    offered: f64,
    max: Option<f64>,
) -> Measure {
    // Written so that NaN lands here too.
    if offered.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Measure::Missing("the offered rate is zero".into());
    }
    let served = |s: &Sample| -> u64 {
        mocks
            .iter()
            .map(|&i| s.requests.get(i).copied().unwrap_or(0))
            .sum()
    };
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
        let rate = served(b).saturating_sub(served(a)) as f64 / (b.t_s - a.t_s);
        if rate >= RECOVERED_SHARE * offered {
            return Measure::Value(((a.t_s + b.t_s) / 2.0 - heal).max(0.0));
        }
    }
    let watched = end - heal;
    match max {
        Some(max) if watched >= max + WATCH_MARGIN_S => Measure::Failed(format!(
            "not back within {max} s of the heal ({watched:.1} s watched)"
        )),
        Some(max) => Measure::Missing(format!(
            "the run ended {:.1} s after the heal, too soon to see a recovery within {max} s",
            watched.max(0.0)
        )),
        None => Measure::Missing(format!(
            "no recovery in the {:.1} s watched after the heal, and no `max` to judge that by",
            watched.max(0.0)
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::suite::runner::{empty_report, SliceSummary};
    use crate::suite::scenario::parse;
    use crate::suite::timeline::TimelineLog;

    /// A second in which every request was also sent (and answered) in it.
    fn sec(second: u32, ok: u64, errors: u64) -> SecondStats {
        SecondStats {
            second,
            ok,
            errors,
            sent: ok + errors,
            sent_ok: ok,
            ..SecondStats::default()
        }
    }

    const BOUND_MAX_1: Bound = Bound {
        min: None,
        max: Some(1.0),
    };

    #[test]
    fn judge_maps_every_kind_of_measure() {
        let cases: [(Measure, Outcome, Option<f64>); 6] = [
            (Measure::Value(0.5), Outcome::Pass, Some(0.5)),
            (Measure::Value(1.0), Outcome::Pass, Some(1.0)),
            (Measure::Value(1.5), Outcome::Fail, Some(1.5)),
            (Measure::Value(f64::NAN), Outcome::NotMeasured, None),
            (Measure::Failed("never back".into()), Outcome::Fail, None),
            (
                Measure::Missing("run too short".into()),
                Outcome::NotMeasured,
                None,
            ),
        ];
        for (measure, outcome, measured) in cases {
            let label = format!("{measure:?}");
            let v = judge(Metric::RecoveryS, BOUND_MAX_1, measure);
            assert_eq!((v.outcome, v.measured), (outcome, measured), "{label}");
            assert_eq!(v.reason.is_some(), measured.is_none(), "{label}");
            assert_eq!(v.passed(), outcome == Outcome::Pass, "{label}");
        }
        let both = Bound {
            min: Some(0.9),
            max: Some(1.1),
        };
        let outcomes: Vec<Outcome> = [0.8, 0.9, 1.0, 1.1, 1.2]
            .into_iter()
            .map(|v| judge(Metric::ErrorRate, both, Measure::Value(v)).outcome)
            .collect();
        use Outcome::{Fail, Pass};
        assert_eq!(outcomes, [Fail, Pass, Pass, Pass, Fail]);
    }

    #[test]
    fn a_stall_moves_answers_but_not_the_window_counts() {
        // 100 requests meant for each second; a stall from 2.5 s to 3.5 s pushes
        // the answers of second 2's second half and second 3's first half into
        // second 4 by completion, but every one of them is still counted where it
        // was sent.
        let mut series: Vec<_> = (0..6).map(|s| sec(s, 100, 0)).collect();
        series[2].ok = 50;
        series[3].ok = 50;
        series[4].ok = 200;
        let w = window(&series, (2.0, 4.0));
        assert_eq!((w.ok, w.errors, w.seconds), (200.0, 0.0, 2.0));
    }

    #[test]
    fn upstream_calls_span_the_measured_window() {
        let at = |t_s: f64, a: u64, b: u64| Sample {
            t_s,
            requests: vec![a, b],
        };
        let samples = [
            at(-0.2, 5, 0),
            at(-0.1, 7, 1),
            at(0.1, 9, 1),
            at(3.0, 300, 40),
        ];
        assert_eq!(upstream_calls(&samples), Some(332.0));
        assert_eq!(upstream_calls(&samples[2..]), None);
        assert_eq!(upstream_calls(&samples[..2]), None);
    }

    #[test]
    fn window_takes_buckets_mostly_inside() {
        let series: Vec<_> = (0..6).map(|s| sec(s, 100, u64::from(s))).collect();
        let w = window(&series, (1.2, 4.0));
        assert_eq!((w.ok, w.errors, w.seconds), (300.0, 6.0, 3.0));
        let w = window(&series, (1.2, 1.4));
        assert_eq!((w.ok, w.errors, w.seconds), (100.0, 1.0, 1.0));
        assert_eq!(window(&series, (9.0, 10.0)), WindowCounts::default());
        assert_eq!(before_fault(&series, 2.5), Some(100.0));
        assert_eq!(before_fault(&series, 0.5), None);
    }

    /// Samples every 100 ms from 0 to `until`; mock 0 serves `rate(t)` req/s.
    fn samples(until: f64, rate: impl Fn(f64) -> f64) -> Vec<Sample> {
        let mut total = 0.0;
        (0..=((until * 10.0).round() as u32))
            .map(|i| {
                let t = f64::from(i) / 10.0;
                total += rate(t) / 10.0;
                Sample {
                    t_s: t,
                    requests: vec![total.round() as u64, 7],
                }
            })
            .collect()
    }

    #[test]
    fn recovery_table() {
        enum Want {
            Near(f64),
            Fail,
            Missing,
        }
        // (back at, run end, bound): heal at 2 s, offered 200 req/s.
        let cases = [
            (Some(2.0), 10.0, Some(5.0), Want::Near(0.15)),
            (Some(4.0), 10.0, Some(5.0), Want::Near(2.0)),
            // Back after the bound: a value, and the bound fails it.
            (Some(8.0), 10.0, Some(5.0), Want::Near(6.0)),
            // Never back, watched 8 s > 5 + margin: the gateway never returned.
            (None, 10.0, Some(5.0), Want::Fail),
            // Never back but watched only 3 s: cannot tell.
            (None, 5.0, Some(5.0), Want::Missing),
            // Watched exactly the bound: still too short to see a recovery at it.
            (None, 7.0, Some(5.0), Want::Missing),
            (None, 10.0, None, Want::Missing),
        ];
        for (i, (back, end, max, want)) in cases.into_iter().enumerate() {
            let s = samples(end, |t| match back {
                Some(b) if t >= b => 200.0,
                _ if t < 1.0 => 200.0,
                _ => 0.0,
            });
            let got = recovery(&s, &[0], 2.0, end, 200.0, max);
            match (want, &got) {
                (Want::Near(x), Measure::Value(v)) => {
                    assert!((v - x).abs() <= 0.2, "case {i}: {v} vs {x}")
                }
                (Want::Fail, Measure::Failed(why)) => {
                    assert!(why.contains("not back within 5 s"), "case {i}: {why}")
                }
                (Want::Missing, Measure::Missing(_)) => {}
                _ => panic!("case {i}: got {got:?}"),
            }
        }
        // Mock 1 serves a constant 70 req/s, under half of 200: never "back".
        let s = samples(10.0, |_| 0.0);
        assert!(matches!(
            recovery(&s, &[1], 2.0, 10.0, 200.0, Some(5.0)),
            Measure::Failed(_)
        ));
        assert!(matches!(
            recovery(&s, &[0], 2.0, 10.0, 0.0, Some(5.0)),
            Measure::Missing(_)
        ));
    }

    const SCENARIO: &str = r#"
name: outage
mocks: [{ name: primary }, { name: fallback }]
gateway: "routes: []"
traffic: { rate: 100, duration: 10s }
faults:
  - { at: 2s, mock: primary, fault: { mode: status, status: 503 } }
  - { at: 4s, mock: primary, fault: { mode: none } }
probe: { at: 3s, requests: 10 }
settle: 500ms
recovery_mock: primary
criteria:
  error_rate: { max: 0.01 }
  error_rate_after_breaker: { max: 0.001 }
  retried_after_breaker: { max: 0.05 }
  fault_throughput_ratio: { min: 0.8 }
  retry_after_ratio: { min: 1.0 }
  fail_fast_ratio_p50: { max: 2 }
  recovery_s: { max: 5 }
budgets:
  fail_fast_p99_ms: { max: 1 }
"#;

    /// Three batches of 10, 0.2 s apart; the second batch was stalled 50 ms.
    fn probe(at_s: f64, status: u16, p50_us: u64) -> ProbeResult {
        ProbeResult {
            at_s,
            last_at_s: at_s + 0.4,
            requests: 30,
            statuses: BTreeMap::from([(status, 30)]),
            with_retry_after: if status == 503 { 30 } else { 0 },
            p50_us,
            p99_us: 50_000,
            max_us: 50_000,
            batch_p50_us: vec![p50_us, 50_000, p50_us + 10],
        }
    }

    /// A clean run of SCENARIO: 100 ok/s, the fault and heal applied 20 ms late,
    /// the primary back 1 s after the heal, probes where they belong.
    fn clean_run() -> ScenarioRun {
        let mut load = empty_report();
        load.requests = 1000;
        load.ok = 1000;
        load.series = (0..10).map(|s| sec(s, 100, 0)).collect();
        load.series[3].sent_retried = 1;
        let samples = samples(10.0, |t| if !(2.0..5.0).contains(&t) { 100.0 } else { 0.0 });
        ScenarioRun {
            name: "outage".into(),
            description: String::new(),
            kind: "timeline",
            rate: Some(100.0),
            duration_s: 10.0,
            stream: false,
            gateway_cpus: "0".into(),
            load,
            phases: BTreeMap::new(),
            slices: BTreeMap::new(),
            timeline: TimelineLog {
                mocks: vec!["primary".into(), "fallback".into()],
                applied: Vec::new(),
                samples,
                probe: Some(probe(3.0, 503, 100)),
                reference_probe: Some(probe(0.5, 200, 300)),
            },
            fault_start_s: Some(2.02),
            heal_s: Some(4.02),
            planned_fault_start_s: Some(2.0),
            planned_heal_s: Some(4.0),
            settle_s: 0.5,
            neighbour: None,
            cluster: None,
            efficiency: None,
        }
    }

    fn outcomes(sc: &Scenario, run: &ScenarioRun) -> BTreeMap<&'static str, (Outcome, String)> {
        evaluate(sc, run)
            .into_iter()
            .map(|v| {
                let detail = v.reason.unwrap_or_else(|| format!("{:?}", v.measured));
                (v.metric, (v.outcome, detail))
            })
            .collect()
    }

    #[test]
    fn a_clean_run_passes_every_criterion() {
        let sc = parse(SCENARIO, Path::new("x.yaml")).unwrap();
        let run = clean_run();
        for (metric, (outcome, detail)) in outcomes(&sc, &run) {
            assert_eq!(outcome, Outcome::Pass, "{metric}: {detail}");
        }
        // The budget takes every probe, stalled ones too: 50 ms p99 misses 1 ms.
        let budgets = evaluate_budgets(&sc, &run);
        assert_eq!(budgets.len(), 1);
        assert_eq!(
            (budgets[0].measured, budgets[0].outcome),
            (Some(50.0), Outcome::Fail)
        );
    }

    /// Each row breaks one thing in the clean run and names the criteria that
    /// must change outcome (all others must still pass).
    #[test]
    fn verdict_table_over_broken_runs() {
        type Break = fn(&mut ScenarioRun);
        type Row = (&'static str, Break, Vec<(&'static str, Outcome)>);
        let rows: Vec<Row> = vec![
            (
                "client errors after the breaker opened",
                |r| r.load.series[3] = sec(3, 95, 5),
                vec![("error_rate_after_breaker", Outcome::Fail)],
            ),
            (
                "every answer in the window paid a call to the dead primary",
                |r| r.load.series[3].sent_retried = 100,
                vec![("retried_after_breaker", Outcome::Fail)],
            ),
            (
                "throughput halves during the fault",
                |r| {
                    r.load.series[3] = SecondStats {
                        sent: 50,
                        sent_ok: 50,
                        ..sec(3, 100, 0)
                    }
                },
                vec![("fault_throughput_ratio", Outcome::Fail)],
            ),
            (
                "the primary healed but never got traffic back",
                |r| {
                    r.timeline.samples = samples(10.0, |t| if t < 2.0 { 100.0 } else { 0.0 });
                },
                vec![("recovery_s", Outcome::Fail)],
            ),
            (
                "the run ended 1 s after the heal",
                |r| {
                    r.timeline.samples = samples(5.0, |t| if t < 2.0 { 100.0 } else { 0.0 });
                },
                vec![("recovery_s", Outcome::NotMeasured)],
            ),
            (
                "the heal was never applied",
                |r| r.heal_s = None,
                vec![
                    ("error_rate_after_breaker", Outcome::NotMeasured),
                    ("retried_after_breaker", Outcome::NotMeasured),
                    ("fault_throughput_ratio", Outcome::NotMeasured),
                    ("retry_after_ratio", Outcome::NotMeasured),
                    ("fail_fast_ratio_p50", Outcome::NotMeasured),
                    ("recovery_s", Outcome::NotMeasured),
                ],
            ),
            (
                "the probe went out after the heal",
                |r| r.timeline.probe.as_mut().unwrap().last_at_s = 4.1,
                vec![
                    ("retry_after_ratio", Outcome::NotMeasured),
                    ("fail_fast_ratio_p50", Outcome::NotMeasured),
                ],
            ),
            (
                "fail-fast answers are slower than healthy ones",
                |r| r.timeline.probe.as_mut().unwrap().batch_p50_us = vec![900, 700, 1000],
                vec![("fail_fast_ratio_p50", Outcome::Fail)],
            ),
            (
                "healthy requests failed before the fault",
                |r| *r.timeline.reference_probe.as_mut().unwrap() = probe(0.5, 502, 300),
                vec![("fail_fast_ratio_p50", Outcome::Fail)],
            ),
            (
                "some probes were not answered fail-fast",
                |r| r.timeline.probe.as_mut().unwrap().with_retry_after = 29,
                vec![("retry_after_ratio", Outcome::Fail)],
            ),
            (
                "nothing was sent",
                |r| {
                    r.load.requests = 0;
                    r.load.series.clear();
                },
                vec![
                    ("error_rate", Outcome::NotMeasured),
                    ("error_rate_after_breaker", Outcome::NotMeasured),
                    ("retried_after_breaker", Outcome::NotMeasured),
                    ("fault_throughput_ratio", Outcome::NotMeasured),
                ],
            ),
        ];
        let sc = parse(SCENARIO, Path::new("x.yaml")).unwrap();
        for (what, broken, want) in rows {
            let mut run = clean_run();
            broken(&mut run);
            let got = outcomes(&sc, &run);
            for (metric, (outcome, detail)) in &got {
                let expected = want
                    .iter()
                    .find(|(m, _)| m == metric)
                    .map_or(Outcome::Pass, |(_, o)| *o);
                assert_eq!(*outcome, expected, "{what}: {metric}: {detail}");
                if *outcome == Outcome::NotMeasured {
                    assert!(!detail.is_empty() && !detail.starts_with("Some"), "{what}");
                }
            }
        }
    }

    #[test]
    fn compare_metrics_are_same_run_ratios() {
        let sc = parse(
            r#"
name: base
mocks: [{ name: primary }]
gateway: "routes: []"
traffic: { rate: 100, duration: 2s }
compare: { direct: primary, max_duration: 1s, down: primary }
criteria:
  error_rate: { max: 0 }
  overhead_ratio_p50: { max: 4 }
  max_throughput_ratio: { min: 0.1 }
  down_throughput_ratio: { min: 0.5 }
  down_retried_ratio: { max: 0.01 }
"#,
            Path::new("x.yaml"),
        )
        .unwrap();
        let mut run = clean_run();
        let phase = |p50: u64, rps: f64| {
            let mut r = empty_report();
            r.latency_us.p50 = p50;
            r.throughput = rps;
            r
        };
        let slice = |errors: u64, attempted: u64, retried: u64| SliceSummary {
            requests: 100,
            errors,
            attempted,
            retried,
            ..SliceSummary::default()
        };
        run.phases = BTreeMap::from([
            ("direct".to_string(), phase(1000, 100.0)),
            ("gateway".to_string(), phase(1500, 100.0)),
            ("direct_max".to_string(), phase(0, 50_000.0)),
            ("gateway_max".to_string(), phase(0, 10_000.0)),
            ("gateway_max_down".to_string(), phase(0, 9_000.0)),
        ]);
        run.slices = BTreeMap::from([
            ("gateway".to_string(), vec![slice(0, 100, 0); 3]),
            (
                "gateway_max_down".to_string(),
                vec![slice(0, 9000, 2), slice(0, 9000, 1), slice(0, 9000, 0)],
            ),
        ]);
        let values = |run: &ScenarioRun| -> Vec<(&str, Outcome, Option<f64>)> {
            evaluate(&sc, run)
                .into_iter()
                .map(|v| {
                    let m = v.measured.map(|m| (m * 1000.0).round() / 1000.0);
                    (v.metric, v.outcome, m)
                })
                .collect()
        };
        use Outcome::{Fail, NotMeasured, Pass};
        assert_eq!(
            values(&run),
            [
                ("error_rate", Pass, Some(0.0)),
                ("overhead_ratio_p50", Pass, Some(1.5)),
                ("max_throughput_ratio", Pass, Some(0.2)),
                ("down_throughput_ratio", Pass, Some(0.9)),
                ("down_retried_ratio", Pass, Some(0.0)),
            ]
        );
        // An error in a gateway slice that was not the best one still counts.
        run.slices.get_mut("gateway").unwrap()[2].errors = 1;
        // A breaker that never opens: every answer paid a failed call first.
        run.slices.get_mut("gateway_max_down").unwrap()[1].retried = 9000;
        let got = values(&run);
        assert_eq!(got[0], ("error_rate", Fail, Some(0.003)));
        assert_eq!(got[4], ("down_retried_ratio", Fail, Some(0.333)));
        // The down phase never ran: not measured, with the reason.
        run.phases.remove("gateway_max_down");
        run.slices.remove("gateway_max_down");
        for v in evaluate(&sc, &run).into_iter().skip(3) {
            assert_eq!(v.outcome, NotMeasured, "{v:?}");
            assert!(v.reason.unwrap().contains("gateway_max_down"));
        }
    }
}
