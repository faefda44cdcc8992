//! The thread that runs beside the load: applies the fault timeline on time, sends
//! the probe requests, samples each mock's request counter and prints progress.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::mocks::Mock;
use super::scenario::FaultStep;
use crate::client::{chat_body, Client};

/// How often mock counters are sampled.
const TICK: Duration = Duration::from_millis(100);
/// A probe is sent as this many batches, spread out: a stall of the gateway's
/// core on a busy machine can delay every request of one batch, and since noise
/// only ever adds latency, the least-delayed batch is the honest figure.
pub const PROBE_BATCHES: usize = 3;
/// Time between probe batches during the fault: three batches span 0.3 s, enough
/// that one short stall cannot delay them all, short enough to fit between two
/// half-open tries of a breaker with a 1 s cooldown.
pub const PROBE_BATCH_GAP: Duration = Duration::from_millis(150);

/// What the thread needs.
pub struct TimelinePlan {
    pub label: String,
    /// When the measured window starts (fault times are relative to it).
    pub start: Instant,
    pub duration: Duration,
    pub steps: Vec<FaultStep>,
    pub mocks: Vec<Mock>,
    pub probe: Option<ProbePlan>,
    pub pin_core: Option<usize>,
}

/// Sequential probe requests: `requests` per batch, one batch at each of
/// `times` (during the fault) and of `reference_times` (before it, while
/// everything is healthy: the same-run reference for the latency).
#[derive(Debug, Clone)]
pub struct ProbePlan {
    pub times: Vec<Duration>,
    pub reference_times: Vec<Duration>,
    pub requests: usize,
    pub addr: SocketAddr,
    pub model: String,
}

/// What happened, in seconds relative to the measured window's start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimelineLog {
    pub mocks: Vec<String>,
    pub applied: Vec<AppliedStep>,
    /// Cumulative provider requests per mock (same order as `mocks`).
    pub samples: Vec<Sample>,
    pub probe: Option<ProbeResult>,
    /// The probe sent before the first fault (see [`ProbePlan::reference_times`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_probe: Option<ProbeResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppliedStep {
    pub at_s: f64,
    pub mock: String,
    pub fault: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub requests: Vec<u64>,
}

/// Sequential requests sent in batches: status, latency, Retry-After over all of
/// them, and each batch's time and p50.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeResult {
    /// When the first batch went out.
    pub at_s: f64,
    /// When the last batch went out.
    pub last_at_s: f64,
    pub requests: usize,
    pub statuses: BTreeMap<u16, u64>,
    /// Answers with status 503 and a `retry-after` header.
    pub with_retry_after: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub batch_p50_us: Vec<u64>,
}

impl ProbeResult {
    /// The p50 of the least-delayed batch.
    pub fn best_batch_p50_us(&self) -> Option<u64> {
        self.batch_p50_us.iter().copied().min()
    }
}

/// A running timeline thread.
pub struct Timeline {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<TimelineLog>,
}

impl Timeline {
    pub fn spawn(plan: TimelinePlan) -> std::io::Result<Timeline> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("suite-timeline".into())
            .spawn(move || run(plan, &flag))?;
        Ok(Timeline { stop, thread })
    }

    /// Stops the thread and returns its log.
    pub fn finish(self) -> TimelineLog {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

fn run(plan: TimelinePlan, stop: &AtomicBool) -> TimelineLog {
    if let Some(core) = plan.pin_core {
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
    }
    let mut log = TimelineLog {
        mocks: plan.mocks.iter().map(|m| m.name.clone()).collect(),
        ..TimelineLog::default()
    };
    let mut next_step = 0;
    let mut probes = ProbeRunner::new(plan.probe.as_ref(), false);
    let mut references = ProbeRunner::new(plan.probe.as_ref(), true);
    let mut progress = Progress::new(&plan.label, plan.duration);
    let mut next_tick = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let t = signed_secs(now, plan.start);
        while let Some(step) = plan.steps.get(next_step).filter(|s| t >= s.at.secs()) {
            log.applied.push(apply(step, &plan.mocks, t));
            next_step += 1;
        }
        references.poll(t, &mut log.reference_probe);
        probes.poll(t, &mut log.probe);
        log.samples.push(Sample {
            t_s: t,
            requests: plan.mocks.iter().map(Mock::requests).collect(),
        });
        progress.show(t, &log);
        next_tick += TICK;
        std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
    }
    progress.done();
    log
}

/// How an applied continuation step is written in [`AppliedStep::fault`].
pub const CONTINUATION_PREFIX: &str = "continuation ";

fn apply(step: &FaultStep, mocks: &[Mock], t: f64) -> AppliedStep {
    let mock = mocks.iter().find(|m| m.name == step.mock);
    let (what, result) = match (mock, &step.fault, step.continuation) {
        (None, _, _) => (String::new(), Err(format!("no mock named '{}'", step.mock))),
        (Some(mock), Some(fault), _) => (
            fault.to_json(),
            mock.set_fault(fault).map_err(|e| e.to_string()),
        ),
        (Some(mock), None, Some(mode)) => (
            format!("{CONTINUATION_PREFIX}{}", mode.to_json()),
            mock.set_continuation(mode).map_err(|e| e.to_string()),
        ),
        (Some(_), None, None) => (String::new(), Err("empty step".to_string())),
    };
    AppliedStep {
        at_s: t,
        mock: step.mock.clone(),
        fault: what,
        error: result.err(),
    }
}

/// Sends the batches of one probe plan as their times come.
struct ProbeRunner<'a> {
    plan: Option<&'a ProbePlan>,
    times: &'a [Duration],
    next: usize,
    latencies: Vec<u64>,
}

impl<'a> ProbeRunner<'a> {
    fn new(plan: Option<&'a ProbePlan>, reference: bool) -> Self {
        let times = plan.map_or(&[][..], |p| {
            if reference {
                &p.reference_times
            } else {
                &p.times
            }
        });
        ProbeRunner {
            plan,
            times,
            next: 0,
            latencies: Vec::new(),
        }
    }

    /// Sends the batch that is due at `t`, if any, and folds it into `result`.
    fn poll(&mut self, t: f64, result: &mut Option<ProbeResult>) {
        let Some(plan) = self.plan else { return };
        if !self
            .times
            .get(self.next)
            .is_some_and(|at| t >= at.as_secs_f64())
        {
            return;
        }
        self.next += 1;
        let r = result.get_or_insert_with(|| ProbeResult {
            at_s: t,
            ..ProbeResult::default()
        });
        let mut batch = send_probes(plan.addr, &plan.model, plan.requests, r);
        r.last_at_s = t;
        batch.sort_unstable();
        r.batch_p50_us.push(quantile(&batch, 0.5));
        self.latencies.extend(batch);
        self.latencies.sort_unstable();
        r.p50_us = quantile(&self.latencies, 0.5);
        r.p99_us = quantile(&self.latencies, 0.99);
        r.max_us = self.latencies.last().copied().unwrap_or(0);
    }
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

/// Sends `n` sequential requests, counts their answers into `result` and
/// returns their latencies in µs.
fn send_probes(addr: SocketAddr, model: &str, n: usize, result: &mut ProbeResult) -> Vec<u64> {
    let body = chat_body(model, false);
    result.requests += n;
    let mut latencies = Vec::with_capacity(n);
    let mut client = None;
    for _ in 0..n {
        let began = Instant::now();
        let answer = match client.take() {
            Some(c) => Ok(c),
            None => Client::connect(addr),
        }
        .and_then(|mut c| {
            c.set_read_timeout(Duration::from_secs(5))?;
            let r = c.chat(&body, &[]);
            client = Some(c);
            r
        });
        latencies.push(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
        let status = match answer {
            Ok(r) => {
                let retry_after = r.header("retry-after").is_some();
                result.with_retry_after += u64::from(r.status == 503 && retry_after);
                r.status
            }
            Err(_) => {
                client = None;
                0
            }
        };
        *result.statuses.entry(status).or_default() += 1;
    }
    latencies
}

/// Seconds from `start` to `now`, negative before it.
fn signed_secs(now: Instant, start: Instant) -> f64 {
    if now >= start {
        (now - start).as_secs_f64()
    } else {
        -(start - now).as_secs_f64()
    }
}

/// One progress line: rewritten in place on a terminal, every 5 s otherwise.
struct Progress {
    label: String,
    total: f64,
    tty: bool,
    last: Option<f64>,
}

impl Progress {
    fn new(label: &str, duration: Duration) -> Self {
        Progress {
            label: label.to_string(),
            total: duration.as_secs_f64(),
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, t: f64, log: &TimelineLog) {
        let every = if self.tty { 0.5 } else { 5.0 };
        if self.last.is_some_and(|l| t - l < every) {
            return;
        }
        self.last = Some(t);
        let rates = rates(log);
        let faults: Vec<String> = log
            .applied
            .iter()
            .rev()
            .take(2)
            .map(|a| format!("{}@{:.1}s={}", a.mock, a.at_s, short_fault(&a.fault)))
            .collect();
        let line = format!(
            "[{}] {:>5.1}/{:.0} s | mock req/s: {} | last faults: {}",
            self.label,
            t.max(0.0),
            self.total,
            rates,
            if faults.is_empty() {
                "-".to_string()
            } else {
                faults.join(", ")
            }
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    fn done(&self) {
        if self.tty && self.last.is_some() {
            eprintln!();
        }
    }
}

fn rates(log: &TimelineLog) -> String {
    let n = log.samples.len();
    let (Some(a), Some(b)) = (
        n.checked_sub(6).map(|i| &log.samples[i]),
        log.samples.last(),
    ) else {
        return "-".to_string();
    };
    let dt = (b.t_s - a.t_s).max(1e-3);
    log.mocks
        .iter()
        .zip(a.requests.iter().zip(&b.requests))
        .map(|(name, (x, y))| format!("{name} {:.0}", y.saturating_sub(*x) as f64 / dt))
        .collect::<Vec<_>>()
        .join(", ")
}

fn short_fault(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| {
            let mode = v["mode"].as_str()?.to_string();
            Some(match v["status"].as_u64() {
                Some(s) => format!("{mode} {s}"),
                None => mode,
            })
        })
        .unwrap_or_else(|| json.to_string())
}
