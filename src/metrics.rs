//! Per-shard counters and histograms, and their Prometheus rendering.
//!
//! Each shard counts into plain owned fields (no atomics, no locks on the request
//! path): [`RouteCounters`] and [`TargetCounters`] live in the shard's routing
//! cells. The admin thread asks every shard for a [`ShardSnapshot`] over its inbox,
//! merges them and renders the Prometheus text format, with the process's own
//! series (build info, memory, fds, CPU) read from `/proc/self` on that thread.
//!
//! Series are written when they carry information: an attempt outcome class a
//! target never had is absent (not a zero per target × shard × class), which
//! keeps a many-target scrape small.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::health::{BreakerState, PrefillKnown};
use crate::outcome::{FailureClass, Outcome};

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0,
];

#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|le| seconds <= *le) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }
}

#[derive(Debug, Clone, Default)]
pub struct RouteCounters {
    pub responses: BTreeMap<u16, u64>,
    pub retries: u64,
    /// Hedges sent (a second attempt raced against a slow first one), and those
    /// the hedge won.
    pub hedges: u64,
    pub hedge_wins: u64,
    pub fallbacks: u64,
    pub fail_fast: u64,
    pub latency: Histogram,
    pub ttft: Histogram,
}

#[derive(Debug, Clone, Default)]
pub struct TargetCounters {
    pub successes: u64,
    pub failures: [u64; FailureClass::ALL.len()],
    /// Breaker transitions this shard made: (from, to, reason).
    pub transitions: BTreeMap<(&'static str, &'static str, &'static str), u64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub stream_events_dropped: u64,
    /// Streams that passed `limits.max_stream_buffer_bytes` (held events before the
    /// first content, or the text kept for continuation).
    pub stream_buffer_overflows: u64,
    /// Times the target was skipped at its (or its provider's) rpm/tpm quota.
    pub at_quota: u64,
}

impl TargetCounters {
    /// Counts one attempt's outcome.
    pub fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Success => self.successes += 1,
            Outcome::Failure(class) => self.failures[class.index()] += 1,
        }
    }
}

/// A target as one shard sees it right now.
#[derive(Debug, Clone)]
pub struct TargetSnapshot {
    pub label: String,
    pub counters: TargetCounters,
    /// No quota left now (its own or its provider's): skipped until the window frees.
    pub at_quota: bool,
    pub breaker: BreakerState,
    pub retry_in: Option<Duration>,
    pub window_requests: u32,
    pub window_failures: u32,
    pub ewma_ttfb_us: f64,
    /// p95 time to first token of this shard's recent streams, if any.
    pub ttft_p95: Option<Duration>,
    /// What `timeouts.first_token: auto` means for the target on this shard now.
    pub first_token_auto: Duration,
    pub in_flight: u32,
    pub pool_open: usize,
    pub pool_idle: usize,
    /// What the gateway learned about the target model's prefill.
    pub prefill: PrefillKnown,
}

/// Everything one shard reports to the admin API.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub generation: u64,
    pub routes: Vec<(String, RouteCounters)>,
    pub targets: Vec<TargetSnapshot>,
    pub bad_requests: BTreeMap<u16, u64>,
    pub active_requests: usize,
    pub open_connections: usize,
}

fn breaker_value(state: BreakerState) -> u8 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen { .. } => 1,
        BreakerState::Open { .. } => 2,
        BreakerState::Sidelined { .. } => 3,
    }
}

/// Renders every shard's snapshot as Prometheus text exposition format.
pub fn render_prometheus(snapshots: &[ShardSnapshot]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    render_routes(&mut out, snapshots);
    render_targets(&mut out, snapshots);
    render_shards(&mut out, snapshots);
    render_process(&mut out);
    out
}

/// `switchyard_build_info` and the `process_*` series of the running process.
fn render_process(out: &mut String) {
    header(
        out,
        "switchyard_build_info",
        "gauge",
        "Always 1; the labels say which build is running.",
    );
    let _ = writeln!(
        out,
        "switchyard_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        escape_label(option_env!("SWITCHYARD_COMMIT").unwrap_or("unknown"))
    );
    let (dropped, exported, failed) = crate::telemetry::queue::counts();
    let traces: [(&str, &str, u64); 3] = [
        (
            "switchyard_trace_spans_dropped_total",
            "Spans dropped: the export queue was full or their batch failed.",
            dropped,
        ),
        (
            "switchyard_trace_spans_exported_total",
            "Spans a collector accepted.",
            exported,
        ),
        (
            "switchyard_trace_export_failures_total",
            "Span batches a collector refused or did not answer in time.",
            failed,
        ),
    ];
    for (name, help, value) in traces {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let Some(process) = ProcessStats::read() else {
        return;
    };
    let series: [(&str, &str, &str, f64); 4] = [
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            process.resident_bytes as f64,
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors (client and upstream sockets included).",
            process.open_fds as f64,
        ),
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            process.cpu_seconds,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            process.start_time_seconds,
        ),
    ];
    for (name, kind, help, value) in series {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// What `/proc/self` says about this process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: u64,
    pub open_fds: u64,
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Reads `/proc/self/{stat,statm,fd}` and `/proc/stat`; `None` off Linux or
    /// when procfs is not mounted.
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        // Bounded: the fd table is capped by RLIMIT_NOFILE.
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        // SAFETY: sysconf only reads a constant of the running system.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0)?;
        let page = u64::try_from(page).ok().filter(|p| *p > 0)?;
        parse_process(&stat, &statm, &boot, ticks, page, open_fds)
    }
}

/// [`ProcessStats`] from the text of `/proc/self/stat`, `/proc/self/statm` and
/// `/proc/stat`. The command name in `stat` may hold spaces and parentheses,
/// so fields are counted from its last `)`.
pub fn parse_process(
    stat: &str,
    statm: &str,
    boot: &str,
    ticks_per_second: u64,
    page_bytes: u64,
    open_fds: u64,
) -> Option<ProcessStats> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields after the command: state is field 3, so field n is index n - 3.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime, start_ticks) = (field(14)?, field(15)?, field(22)?);
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let boot_time: u64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let ticks = ticks_per_second as f64;
    Some(ProcessStats {
        resident_bytes: resident_pages * page_bytes,
        open_fds,
        cpu_seconds: (utime + stime) as f64 / ticks,
        start_time_seconds: boot_time as f64 + start_ticks as f64 / ticks,
    })
}

/// (metric name, help, read-out) of a per-route counter.
type RouteCounter = (&'static str, &'static str, fn(&RouteCounters) -> u64);
/// (metric name, type, help, read-out) of a per-target series.
type TargetGauge = (
    &'static str,
    &'static str,
    &'static str,
    fn(&TargetSnapshot) -> f64,
);

fn render_routes(out: &mut String, snapshots: &[ShardSnapshot]) {
    let mut merged: BTreeMap<&str, RouteCounters> = BTreeMap::new();
    for snap in snapshots {
        for (name, c) in &snap.routes {
            let m = merged.entry(name).or_default();
            for (status, n) in &c.responses {
                *m.responses.entry(*status).or_default() += n;
            }
            m.retries += c.retries;
            m.hedges += c.hedges;
            m.hedge_wins += c.hedge_wins;
            m.fallbacks += c.fallbacks;
            m.fail_fast += c.fail_fast;
            m.latency.merge(&c.latency);
            m.ttft.merge(&c.ttft);
        }
    }
    header(
        out,
        "switchyard_responses_total",
        "counter",
        "Responses sent to clients, by route and status.",
    );
    for (route, c) in &merged {
        let route = escape_label(route);
        for (status, n) in &c.responses {
            let _ = writeln!(
                out,
                "switchyard_responses_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
    }
    let simple: [RouteCounter; 5] = [
        (
            "switchyard_retries_total",
            "Retries of the same target.",
            |c| c.retries,
        ),
        (
            "switchyard_hedges_total",
            "Hedges sent: the same request raced on the next target after a slow first token.",
            |c| c.hedges,
        ),
        (
            "switchyard_hedge_wins_total",
            "Hedged requests the hedge won (served by the hedge's target).",
            |c| c.hedge_wins,
        ),
        (
            "switchyard_fallbacks_total",
            "Moves to the next target in the chain.",
            |c| c.fallbacks,
        ),
        (
            "switchyard_fail_fast_total",
            "Requests answered 503 at once because every target was open.",
            |c| c.fail_fast,
        ),
    ];
    for (name, help, get) in simple {
        header(out, name, "counter", help);
        for (route, c) in &merged {
            let route = escape_label(route);
            let _ = writeln!(out, "{name}{{route=\"{route}\"}} {}", get(c));
        }
    }
    header(
        out,
        "switchyard_request_duration_seconds",
        "histogram",
        "Time from request head to last response byte.",
    );
    for (route, c) in &merged {
        histogram(
            out,
            "switchyard_request_duration_seconds",
            &format!("route=\"{}\"", escape_label(route)),
            &c.latency,
        );
    }
    header(
        out,
        "switchyard_time_to_first_token_seconds",
        "histogram",
        "Streams: time to the first content chunk sent to the client.",
    );
    for (route, c) in &merged {
        histogram(
            out,
            "switchyard_time_to_first_token_seconds",
            &format!("route=\"{}\"", escape_label(route)),
            &c.ttft,
        );
    }
}

fn render_targets(out: &mut String, snapshots: &[ShardSnapshot]) {
    header(
        out,
        "switchyard_attempts_total",
        "counter",
        "Upstream attempts by target and outcome class.",
    );
    for snap in snapshots {
        for t in &snap.targets {
            let label = escape_label(&t.label);
            let shard = snap.shard;
            let _ = writeln!(out, "switchyard_attempts_total{{target=\"{label}\",shard=\"{shard}\",outcome=\"success\"}} {}", t.counters.successes);
            // A class the target never had on this shard is absent, not 0.
            for class in FailureClass::ALL {
                let n = t.counters.failures[class.index()];
                if n == 0 {
                    continue;
                }
                let _ = writeln!(out, "switchyard_attempts_total{{target=\"{label}\",shard=\"{shard}\",outcome=\"{}\"}} {n}", class.as_str());
            }
        }
    }
    header(
        out,
        "switchyard_breaker_state",
        "gauge",
        "Circuit breaker per target (shared by the shards): 0 closed, 1 half-open, 2 open, 3 sidelined.",
    );
    for snap in snapshots {
        for t in &snap.targets {
            let _ = writeln!(
                out,
                "switchyard_breaker_state{{target=\"{}\",shard=\"{}\"}} {}",
                escape_label(&t.label),
                snap.shard,
                breaker_value(t.breaker)
            );
        }
    }
    header(
        out,
        "switchyard_breaker_transitions_total",
        "counter",
        "Circuit breaker state changes.",
    );
    for snap in snapshots {
        for t in &snap.targets {
            for ((from, to, reason), n) in &t.counters.transitions {
                let _ = writeln!(out, "switchyard_breaker_transitions_total{{target=\"{}\",shard=\"{}\",from=\"{from}\",to=\"{to}\",reason=\"{reason}\"}} {n}", escape_label(&t.label), snap.shard);
            }
        }
    }
    let gauges: [TargetGauge; 9] = [
        (
            "switchyard_target_in_flight",
            "gauge",
            "Requests in flight to the target.",
            |t| f64::from(t.in_flight),
        ),
        (
            "switchyard_target_ttfb_ewma_seconds",
            "gauge",
            "Peak-EWMA of time to first byte.",
            |t| t.ewma_ttfb_us / 1e6,
        ),
        (
            "switchyard_upstream_connections_open",
            "gauge",
            "Open upstream sockets (pool of the target's provider).",
            |t| t.pool_open as f64,
        ),
        (
            "switchyard_tokens_in_total",
            "counter",
            "Prompt tokens reported by providers.",
            |t| t.counters.tokens_in as f64,
        ),
        (
            "switchyard_tokens_out_total",
            "counter",
            "Completion tokens reported by providers.",
            |t| t.counters.tokens_out as f64,
        ),
        (
            "switchyard_stream_events_dropped_total",
            "counter",
            "Malformed upstream stream events dropped.",
            |t| t.counters.stream_events_dropped as f64,
        ),
        (
            "switchyard_stream_buffer_overflows_total",
            "counter",
            "Streams past limits.max_stream_buffer_bytes (held events or continuation text).",
            |t| t.counters.stream_buffer_overflows as f64,
        ),
        (
            "switchyard_target_at_quota_total",
            "counter",
            "Times the target was skipped at its own or its provider's rpm/tpm quota (never a failure).",
            |t| t.counters.at_quota as f64,
        ),
        (
            "switchyard_target_at_quota",
            "gauge",
            "1 while the target (or its provider) has no quota left in the current window.",
            |t| f64::from(u8::from(t.at_quota)),
        ),
    ];
    for (name, kind, help, get) in gauges {
        header(out, name, kind, help);
        for snap in snapshots {
            for t in &snap.targets {
                let _ = writeln!(
                    out,
                    "{name}{{target=\"{}\",shard=\"{}\"}} {}",
                    escape_label(&t.label),
                    snap.shard,
                    get(t)
                );
            }
        }
    }
}

fn render_shards(out: &mut String, snapshots: &[ShardSnapshot]) {
    header(
        out,
        "switchyard_requests_in_flight",
        "gauge",
        "Client requests being served, per shard.",
    );
    for snap in snapshots {
        let _ = writeln!(
            out,
            "switchyard_requests_in_flight{{shard=\"{}\"}} {}",
            snap.shard, snap.active_requests
        );
    }
    header(
        out,
        "switchyard_client_connections",
        "gauge",
        "Open client connections, per shard.",
    );
    for snap in snapshots {
        let _ = writeln!(
            out,
            "switchyard_client_connections{{shard=\"{}\"}} {}",
            snap.shard, snap.open_connections
        );
    }
    header(
        out,
        "switchyard_rejected_requests_total",
        "counter",
        "Requests rejected before routing (malformed, unauthorised, unknown model), by status.",
    );
    let mut merged: BTreeMap<u16, u64> = BTreeMap::new();
    for snap in snapshots {
        for (status, n) in &snap.bad_requests {
            *merged.entry(*status).or_default() += n;
        }
    }
    for (status, n) in merged {
        let _ = writeln!(
            out,
            "switchyard_rejected_requests_total{{status=\"{status}\"}} {n}"
        );
    }
}

/// A label value as the text format wants it: `\`, `"` and newline escaped.
/// Route, provider and model names come from the config and may hold any of them.
fn escape_label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    std::borrow::Cow::Owned(escaped)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let mut cumulative = 0;
    for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (sw (shard) 1) S 1 4242 4242 0 -1 4194560 2000 0 0 0 250 50 0 0 20 0 5 0 12345 100000000 3000 18446744073709551615";
    const STATM: &str = "25000 3000 800 100 0 5000 0\n";
    const BOOT: &str = "cpu  1 2 3\nbtime 1764633600\nprocesses 9\n";

    #[test]
    fn process_stats_from_proc_text() {
        let stats = parse_process(STAT, STATM, BOOT, 100, 4096, 17).unwrap();
        assert_eq!(
            stats,
            ProcessStats {
                resident_bytes: 3000 * 4096,
                open_fds: 17,
                cpu_seconds: 3.0,
                start_time_seconds: 1_764_633_600.0 + 123.45,
            }
        );
        assert_eq!(parse_process("garbage", STATM, BOOT, 100, 4096, 1), None);
        assert_eq!(parse_process(STAT, STATM, "cpu 1\n", 100, 4096, 1), None);
    }

    #[test]
    fn this_process_has_stats() {
        let stats = ProcessStats::read().expect("procfs on Linux");
        assert!(stats.resident_bytes > 0 && stats.open_fds > 0, "{stats:?}");
    }
}
