//! Per-shard counters and histograms, and their Prometheus rendering.
//!
//! Each shard counts into plain owned fields (no atomics, no locks on the request
//! path). The admin thread asks every shard for a [`ShardSnapshot`] over its inbox,
//! merges them and renders the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::health::{BreakerState, TargetHealth};
use crate::outcome::{FailureClass, Outcome};
use crate::route::Table;
use crate::upstream::Pool;

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
}

/// One shard's counters, shaped like its current table.
#[derive(Debug, Default)]
pub struct Metrics {
    pub routes: Vec<RouteCounters>,
    pub targets: Vec<TargetCounters>,
    pub bad_requests: BTreeMap<u16, u64>,
    route_names: Vec<String>,
    target_labels: Vec<String>,
    /// Generation of the table the counters are shaped like: a request routed
    /// with that table indexes directly, an older one maps by name.
    generation: u64,
}

impl Metrics {
    pub fn new(table: &Table) -> Metrics {
        let mut metrics = Metrics::default();
        metrics.reshape(table);
        metrics
    }

    /// Re-keys counters after a reload: routes and targets keep their counts by name.
    pub fn reshape(&mut self, table: &Table) {
        let route_names: Vec<String> = table.config.routes.iter().map(|r| r.name.clone()).collect();
        let labels: Vec<String> = table.slots.iter().map(|s| s.label.clone()).collect();
        self.routes = carry(
            &self.route_names,
            std::mem::take(&mut self.routes),
            &route_names,
        );
        self.targets = carry(
            &self.target_labels,
            std::mem::take(&mut self.targets),
            &labels,
        );
        self.route_names = route_names;
        self.target_labels = labels;
        self.generation = table.generation;
    }

    pub fn route(&mut self, generation_table: &Table, route: usize) -> Option<&mut RouteCounters> {
        if generation_table.generation == self.generation {
            return self.routes.get_mut(route);
        }
        let name = &generation_table.config.routes.get(route)?.name;
        let index = self.route_names.iter().position(|n| n == name)?;
        self.routes.get_mut(index)
    }

    pub fn target(&mut self, generation_table: &Table, slot: usize) -> Option<&mut TargetCounters> {
        if generation_table.generation == self.generation {
            return self.targets.get_mut(slot);
        }
        let label = &generation_table.slots.get(slot)?.label;
        let index = self.target_labels.iter().position(|l| l == label)?;
        self.targets.get_mut(index)
    }

    pub fn record_attempt(&mut self, table: &Table, slot: usize, outcome: Outcome) {
        if let Some(t) = self.target(table, slot) {
            match outcome {
                Outcome::Success => t.successes += 1,
                Outcome::Failure(class) => t.failures[class.index()] += 1,
            }
        }
    }

    pub fn record_bad_request(&mut self, status: u16) {
        *self.bad_requests.entry(status).or_default() += 1;
    }

    #[allow(clippy::too_many_arguments)]
    pub fn snapshot(
        &self,
        shard: usize,
        table: &Table,
        health: &[TargetHealth],
        pools: &[Pool],
        now: Instant,
        active_requests: usize,
        open_connections: usize,
    ) -> ShardSnapshot {
        let targets = table
            .slots
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let h = health.get(i);
                let pool = pools.get(slot.provider);
                TargetSnapshot {
                    label: slot.label.clone(),
                    counters: self.targets.get(i).cloned().unwrap_or_default(),
                    breaker: h.map_or(BreakerState::Closed, |h| h.state(now)),
                    retry_in: h.and_then(|h| h.retry_after(now)),
                    window_requests: h.map_or(0, |h| h.totals(now).requests),
                    window_failures: h.map_or(0, |h| h.totals(now).failures),
                    ewma_ttfb_us: h.map_or(0.0, |h| h.ewma_us(now)),
                    in_flight: h.map_or(0, |h| h.in_flight()),
                    pool_open: pool.map_or(0, |p| p.open_count()),
                    pool_idle: pool.map_or(0, |p| p.idle_count()),
                }
            })
            .collect();
        ShardSnapshot {
            shard,
            generation: table.generation,
            routes: self
                .route_names
                .iter()
                .cloned()
                .zip(self.routes.iter().cloned())
                .collect(),
            targets,
            bad_requests: self.bad_requests.clone(),
            active_requests,
            open_connections,
        }
    }
}

fn carry<T: Default>(old_names: &[String], mut old: Vec<T>, new_names: &[String]) -> Vec<T> {
    new_names
        .iter()
        .map(|name| {
            old_names
                .iter()
                .position(|n| n == name)
                .and_then(|i| old.get_mut(i).map(std::mem::take))
                .unwrap_or_default()
        })
        .collect()
}

/// A target as one shard sees it right now.
#[derive(Debug, Clone)]
pub struct TargetSnapshot {
    pub label: String,
    pub counters: TargetCounters,
    pub breaker: BreakerState,
    pub retry_in: Option<Duration>,
    pub window_requests: u32,
    pub window_failures: u32,
    pub ewma_ttfb_us: f64,
    pub in_flight: u32,
    pub pool_open: usize,
    pub pool_idle: usize,
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
    out
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
    let simple: [RouteCounter; 3] = [
        (
            "switchyard_retries_total",
            "Retries of the same target.",
            |c| c.retries,
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
            for class in FailureClass::ALL {
                let n = t.counters.failures[class.index()];
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
    let gauges: [TargetGauge; 7] = [
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
