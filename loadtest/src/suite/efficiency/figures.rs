//! The efficiency scenario's figures: the slices each side ran, the table's
//! rows (CPU per request from the cheapest slice, req/s from the fastest, added
//! latency from the lowest percentiles), the values its criteria and budgets
//! name, and the markdown of the table.

use std::fmt::Write;

use serde::Serialize;

use super::Workload;
use crate::loadgen::LoadReport;
use crate::suite::metrics::Measure;
use crate::suite::scenario::Metric;

/// One slice of one side: counts, latency and the task clocks over it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Slice {
    pub open_loop: bool,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub throughput: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Streams: SSE events on completed streams, and the fewest and most of one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_min: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_max: Option<u64>,
    /// The proxy's (gateway's or HAProxy's) task clock, ns; `None` direct or unreadable.
    pub proxy_cpu_ns: Option<u64>,
    /// The workload's mocks' threads, ns.
    pub mock_cpu_ns: Option<u64>,
    /// The load generator's threads, ns.
    pub load_cpu_ns: Option<u64>,
    /// Requests the dead mock received (failover).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_calls: Option<u64>,
}

impl Slice {
    /// What the CPU figures are divided by: ok answers, or events for streams.
    fn units(&self) -> u64 {
        self.events.unwrap_or(self.ok)
    }

    /// `ns` per unit, in µs.
    fn per_unit(&self, ns: Option<u64>) -> Option<f64> {
        let units = self.units();
        ns.filter(|_| units > 0)
            .map(|ns| ns as f64 / 1000.0 / units as f64)
    }
}

/// Every slice of one side (direct, gateway or HAProxy) of one workload.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SideRun {
    /// Closed loop, in the order run.
    pub closed: Vec<Slice>,
    /// Open loop at the latency rate, in the order run.
    pub latency: Vec<Slice>,
}

impl SideRun {
    /// The closed-loop slice with the highest throughput (noise only takes it).
    fn fastest(&self) -> Option<&Slice> {
        self.closed
            .iter()
            .max_by(|a, b| a.throughput.total_cmp(&b.throughput))
    }

    /// The closed-loop slice with the least CPU per unit — the proxy's, or
    /// direct the mock's and load generator's together: noise (a neighbour's
    /// cache traffic, wakeups that serve one request each) only adds to it. The
    /// row's three CPU figures come from this one slice, so they fit together.
    fn cheapest(&self) -> Option<&Slice> {
        let cost = |s: &Slice| {
            s.per_unit(s.proxy_cpu_ns).or_else(|| {
                let load = s.mock_cpu_ns.zip(s.load_cpu_ns).map(|(m, l)| m + l);
                s.per_unit(load)
            })
        };
        self.closed
            .iter()
            .filter_map(|s| cost(s).map(|c| (s, c)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s)
    }

    /// The proxy's least CPU per unit over the latency slices: at a low rate
    /// each request also pays for the proxy waking up (from idle, for the
    /// request and the provider's answer, and for any periodic work of its own),
    /// which the closed loop spreads over many.
    fn cpu_at_rate(&self) -> Option<f64> {
        self.latency
            .iter()
            .filter_map(|s| s.per_unit(s.proxy_cpu_ns))
            .min_by(f64::total_cmp)
    }

    /// Lowest p50 and lowest p99 over the latency slices (noise only adds latency).
    fn latency(&self) -> Option<(u64, u64)> {
        let p50 = self.latency.iter().map(|s| s.p50_us).min()?;
        let p99 = self.latency.iter().map(|s| s.p99_us).min()?;
        Some((p50, p99))
    }

    fn errors(&self) -> u64 {
        self.closed
            .iter()
            .chain(&self.latency)
            .map(|s| s.errors)
            .sum()
    }
}

/// One workload both ways.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadRun {
    pub name: Workload,
    /// `request` or `event`: what the CPU figures are per.
    pub per: &'static str,
    pub direct: SideRun,
    pub gateway: SideRun,
    /// HAProxy in front of the same mock (pass-through and streaming), when run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub haproxy: Option<SideRun>,
}

/// One row of the table: a workload through the gateway (or HAProxy) against
/// the same workload direct.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub workload: String,
    pub per: &'static str,
    /// Why the row has no figures (HAProxy not installed or not started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_measured: Option<String>,
    pub proxy_cpu_us: Option<f64>,
    /// The proxy's CPU-µs per unit at the latency rate (see `SideRun::cpu_at_rate`).
    pub proxy_cpu_at_rate_us: Option<f64>,
    pub mock_cpu_us: Option<f64>,
    pub direct_mock_cpu_us: Option<f64>,
    pub load_cpu_us: Option<f64>,
    pub direct_load_cpu_us: Option<f64>,
    pub proxy_rps: Option<f64>,
    pub direct_rps: Option<f64>,
    pub ratio: Option<f64>,
    pub added_p50_us: Option<f64>,
    pub added_p99_us: Option<f64>,
    /// Client errors over every slice through the proxy, and direct.
    pub errors: u64,
    pub direct_errors: u64,
    /// Pass-through, streaming and their HAProxy rows: the gateway's CPU ÷ HAProxy's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_vs_haproxy_cpu: Option<f64>,
    /// Pass-through and streaming: the gateway's p99 ÷ HAProxy's at the latency
    /// rate (lowest of each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_vs_haproxy_p99: Option<f64>,
    /// Pass-through and streaming: the gateway's CPU at the latency rate ÷
    /// HAProxy's (the wake-up cost a closed loop hides).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_vs_haproxy_cpu_at_rate: Option<f64>,
    /// Failover: most calls the dead mock got in one slice through the gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_calls_max: Option<u64>,
    /// Streaming: events per stream direct, and through the gateway (min..max).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_per_stream: Option<String>,
}

/// Everything the scenario measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EfficiencyRun {
    pub workloads: Vec<WorkloadRun>,
    /// Why HAProxy did not run beside the workloads that have a reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub haproxy_missing: Option<String>,
    /// The config of each HAProxy that ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub haproxy_configs: Vec<String>,
    /// The table, row by row (each workload, HAProxy's row after those it proxies).
    pub rows: Vec<Row>,
    /// The first workload's best latency slice direct and through the gateway,
    /// for the chart.
    #[serde(skip)]
    pub chart: Option<(LoadReport, LoadReport)>,
}

impl EfficiencyRun {
    fn workload(&self, w: Workload) -> Option<&WorkloadRun> {
        self.workloads.iter().find(|r| r.name == w)
    }

    fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.workload == name)
    }
}

/// The table rows: each workload through the gateway against direct, HAProxy's
/// row right after each workload it proxies too.
pub(super) fn rows(run: &EfficiencyRun) -> Vec<Row> {
    let mut rows = Vec::new();
    for w in &run.workloads {
        let mut row = row_of(w.name.name(), w.per, &w.gateway, &w.direct);
        if w.name == Workload::Failover {
            row.dead_calls_max = w
                .gateway
                .closed
                .iter()
                .chain(&w.gateway.latency)
                .filter_map(|s| s.dead_calls)
                .max();
        }
        if w.name == Workload::Streaming {
            row.events_per_stream = Some(format!(
                "{} direct, {} through the gateway",
                events_range(&w.direct),
                events_range(&w.gateway)
            ));
        }
        if !w.name.has_reference() {
            rows.push(row);
            continue;
        }
        let mut reference = reference_row(run, w);
        let ratio = row
            .proxy_cpu_us
            .zip(reference.proxy_cpu_us)
            .filter(|(_, h)| *h > 0.0)
            .map(|(g, h)| g / h);
        row.gateway_vs_haproxy_cpu = ratio;
        reference.gateway_vs_haproxy_cpu = ratio;
        let p99 = |side: Option<&SideRun>| side.and_then(SideRun::latency).map(|(_, p99)| p99);
        let p99_ratio = p99(Some(&w.gateway))
            .zip(p99(w.haproxy.as_ref()))
            .filter(|(_, h)| *h > 0)
            .map(|(g, h)| g as f64 / h as f64);
        row.gateway_vs_haproxy_p99 = p99_ratio;
        row.gateway_vs_haproxy_cpu_at_rate = row
            .proxy_cpu_at_rate_us
            .zip(reference.proxy_cpu_at_rate_us)
            .filter(|(_, h)| *h > 0.0)
            .map(|(g, h)| g / h);
        rows.push(row);
        rows.push(reference);
    }
    rows
}

/// HAProxy's row for workload `w`, or why it has no figures.
fn reference_row(run: &EfficiencyRun, w: &WorkloadRun) -> Row {
    let name = reference_name(w.name);
    match (&w.haproxy, &run.haproxy_missing) {
        (Some(h), _) => row_of(name, w.per, h, &w.direct),
        (None, why) => Row {
            workload: name.into(),
            per: w.per,
            not_measured: Some(why.clone().unwrap_or_else(|| "did not run".into())),
            ..Row::default()
        },
    }
}

/// The name of HAProxy's row beside workload `w`.
fn reference_name(w: Workload) -> &'static str {
    match w {
        Workload::Streaming => "haproxy_streaming",
        _ => "haproxy",
    }
}

fn row_of(name: &str, per: &'static str, proxied: &SideRun, direct: &SideRun) -> Row {
    let (p, d) = (proxied.cheapest(), direct.cheapest());
    let rps = |s: &SideRun| s.fastest().map(|s| s.throughput);
    let added = |pick: fn((u64, u64)) -> u64| {
        proxied
            .latency()
            .zip(direct.latency())
            .map(|(a, b)| pick(a) as f64 - pick(b) as f64)
    };
    Row {
        workload: name.to_string(),
        per,
        not_measured: None,
        proxy_cpu_us: p.and_then(|s| s.per_unit(s.proxy_cpu_ns)),
        proxy_cpu_at_rate_us: proxied.cpu_at_rate(),
        mock_cpu_us: p.and_then(|s| s.per_unit(s.mock_cpu_ns)),
        direct_mock_cpu_us: d.and_then(|s| s.per_unit(s.mock_cpu_ns)),
        load_cpu_us: p.and_then(|s| s.per_unit(s.load_cpu_ns)),
        direct_load_cpu_us: d.and_then(|s| s.per_unit(s.load_cpu_ns)),
        proxy_rps: rps(proxied),
        direct_rps: rps(direct),
        ratio: rps(proxied)
            .zip(rps(direct))
            .filter(|(_, d)| *d > 0.0)
            .map(|(p, d)| p / d),
        added_p50_us: added(|(p50, _)| p50),
        added_p99_us: added(|(_, p99)| p99),
        errors: proxied.errors(),
        direct_errors: direct.errors(),
        gateway_vs_haproxy_cpu: None,
        gateway_vs_haproxy_p99: None,
        gateway_vs_haproxy_cpu_at_rate: None,
        dead_calls_max: None,
        events_per_stream: None,
    }
}

/// `19` when every completed stream of the side carried 19 events, `18..19` when not.
fn events_range(side: &SideRun) -> String {
    let slices = side.closed.iter().chain(&side.latency);
    let min = slices.clone().filter_map(|s| s.events_min).min();
    let max = slices.filter_map(|s| s.events_max).max();
    match (min, max) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}..{b}"),
        _ => "-".to_string(),
    }
}

/// The value of an efficiency metric, or why there is none.
pub fn value(metric: Metric, run: Option<&EfficiencyRun>) -> Result<Measure, String> {
    let run = run.ok_or("the efficiency workloads did not run")?;
    let workload = |w: Workload| {
        run.workload(w)
            .ok_or_else(|| format!("the {} workload did not run", w.name()))
    };
    let cpu = |name: &str| {
        run.row(name)
            .and_then(|r| r.proxy_cpu_us)
            .ok_or_else(|| format!("no {name} slice through the gateway with a CPU reading"))
    };
    let v = match metric {
        Metric::EfficiencyClientErrors => run
            .workloads
            .iter()
            .map(|w| w.gateway.errors())
            .sum::<u64>() as f64,
        Metric::StreamEventsMismatch => return events_mismatch(workload(Workload::Streaming)?),
        Metric::DeadPrimaryCallsPerSlice => {
            let w = workload(Workload::Failover)?;
            w.gateway
                .closed
                .iter()
                .chain(&w.gateway.latency)
                .filter_map(|s| s.dead_calls)
                .max()
                .ok_or("no failover slice through the gateway")? as f64
        }
        Metric::CpuFiguresMissing => cpu_figures_missing(run) as f64,
        Metric::PassthroughCpuUs => cpu("passthrough")?,
        Metric::StreamingCpuUsPerEvent => cpu("streaming")?,
        Metric::TranslatedCpuUs => cpu("translated")?,
        Metric::FailoverCpuUs => cpu("failover")?,
        Metric::LimitCheckCpuUs => cpu("limit_check")?,
        Metric::GatewayHaproxyCpuRatio => haproxy_ratio(run, Workload::Passthrough, Compared::Cpu)?,
        Metric::StreamingHaproxyCpuRatio => haproxy_ratio(run, Workload::Streaming, Compared::Cpu)?,
        Metric::GatewayHaproxyP99Ratio => haproxy_ratio(run, Workload::Passthrough, Compared::P99)?,
        Metric::GatewayHaproxyCpuAtRateRatio => {
            haproxy_ratio(run, Workload::Passthrough, Compared::CpuAtRate)?
        }
        _ => return Err(format!("{} is not an efficiency metric", metric.name())),
    };
    Ok(Measure::Value(v))
}

/// The gateway's CPU or p99 ÷ HAProxy's on workload `w`.
fn haproxy_ratio(run: &EfficiencyRun, w: Workload, of: Compared) -> Result<f64, String> {
    if let Some(why) = &run.haproxy_missing {
        return Err(format!("haproxy: {why}"));
    }
    let (ratio, what) = match of {
        Compared::Cpu => (
            run.row(w.name()).and_then(|r| r.gateway_vs_haproxy_cpu),
            "CPU reading",
        ),
        Compared::P99 => (
            run.row(w.name()).and_then(|r| r.gateway_vs_haproxy_p99),
            "latency slice",
        ),
        Compared::CpuAtRate => (
            run.row(w.name())
                .and_then(|r| r.gateway_vs_haproxy_cpu_at_rate),
            "CPU reading at the latency rate",
        ),
    };
    ratio.ok_or_else(|| format!("no {what} of {} through both proxies", w.name()))
}

/// What a gateway ÷ HAProxy ratio compares.
#[derive(Clone, Copy)]
enum Compared {
    Cpu,
    P99,
    CpuAtRate,
}

/// |events through the gateway − completed streams × E| summed over the
/// gateway's slices, plus the spread (max − min events of one stream) of each:
/// 0 exactly when every completed stream carried the E events every direct
/// stream carried.
fn events_mismatch(w: &WorkloadRun) -> Result<Measure, String> {
    let direct = w.direct.closed.iter().chain(&w.direct.latency);
    let min = direct.clone().filter_map(|s| s.events_min).min();
    let max = direct.filter_map(|s| s.events_max).max();
    let expected = match (min, max) {
        (Some(a), Some(b)) if a == b => a,
        (Some(a), Some(b)) => {
            return Err(format!(
                "direct streams carried {a}..{b} events: the mock's count is not fixed"
            ))
        }
        _ => return Err("no direct stream completed".into()),
    };
    let mut mismatch = 0u64;
    let mut streams = 0u64;
    for s in w.gateway.closed.iter().chain(&w.gateway.latency) {
        let events = s.events.unwrap_or(0);
        mismatch += events.abs_diff(s.ok * expected);
        mismatch += s.events_max.unwrap_or(0) - s.events_min.unwrap_or(0);
        streams += s.ok;
    }
    if streams == 0 {
        return Err("no stream through the gateway completed".into());
    }
    Ok(Measure::Value(mismatch as f64))
}

/// CPU figures of the reported slices that are missing or zero: per workload
/// the gateway's, the mock's and the load generator's through the gateway, and
/// the mock's and load generator's direct. A broken /proc reading shows here.
fn cpu_figures_missing(run: &EfficiencyRun) -> usize {
    let zero = |v: Option<f64>| !v.is_some_and(|v| v > 0.0);
    run.workloads
        .iter()
        .filter_map(|w| run.row(w.name.name()))
        .map(|r| {
            [
                r.proxy_cpu_us,
                r.mock_cpu_us,
                r.load_cpu_us,
                r.direct_mock_cpu_us,
                r.direct_load_cpu_us,
            ]
            .into_iter()
            .filter(|v| zero(*v))
            .count()
        })
        .sum()
}

/// The table as markdown (report.md, and stdout at the end of the scenario).
pub fn table(run: &EfficiencyRun) -> String {
    let mut md = String::from(
        "| workload | gateway CPU-µs/req | mock CPU-µs/req (via proxy / direct) | loadgen CPU-µs/req (via proxy / direct) | gateway req/s | direct req/s | ratio | added p50 µs | added p99 µs | gateway CPU ÷ haproxy CPU | errors (via proxy / direct) | notes |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &run.rows {
        let label = match (r.workload.as_str(), r.per) {
            ("haproxy", _) => "haproxy (reference, pass-through)".to_string(),
            ("haproxy_streaming", _) => "haproxy (reference, streaming, per SSE event)".to_string(),
            (name, "event") => format!("{name} (per SSE event)"),
            (name, _) => name.to_string(),
        };
        if let Some(why) = &r.not_measured {
            let _ = writeln!(
                md,
                "| {label} | NOT MEASURED: {} | - | - | - | - | - | - | - | - | - | - |",
                why.replace('|', "\\|")
            );
            continue;
        }
        let cpu = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let pair = |a: Option<f64>, b: Option<f64>| format!("{} / {}", cpu(a), cpu(b));
        let whole = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        let signed = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.0}"));
        let mut notes = Vec::new();
        if let Some(n) = r.dead_calls_max {
            notes.push(format!("dead primary: ≤ {n} call(s) per slice"));
        }
        if let Some(e) = &r.events_per_stream {
            notes.push(format!("events per stream: {e}"));
        }
        if let Some(v) = r.proxy_cpu_at_rate_us {
            notes.push(format!("CPU-µs at the latency rate: {v:.1}"));
        }
        if let Some(v) = r.gateway_vs_haproxy_cpu_at_rate {
            notes.push(format!("÷ haproxy's: {v:.2}"));
        }
        if let Some(v) = r.gateway_vs_haproxy_p99 {
            notes.push(format!("p99 ÷ haproxy p99: {v:.2}"));
        }
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
            cpu(r.proxy_cpu_us),
            pair(r.mock_cpu_us, r.direct_mock_cpu_us),
            pair(r.load_cpu_us, r.direct_load_cpu_us),
            whole(r.proxy_rps),
            whole(r.direct_rps),
            r.ratio.map_or("-".to_string(), |v| format!("{v:.2}")),
            signed(r.added_p50_us),
            signed(r.added_p99_us),
            r.gateway_vs_haproxy_cpu
                .map_or("-".to_string(), |v| format!("{v:.2}")),
            r.errors,
            r.direct_errors,
            if notes.is_empty() {
                "-".to_string()
            } else {
                notes.join("; ")
            }
        );
    }
    md.push_str(
        "\nOn the haproxy rows the gateway columns are HAProxy's (one thread on the gateway's core, \
         in front of the same mock as the row above); \"via proxy\" is through the row's proxy.\n",
    );
    md
}

/// A line on how the table was measured (for report.md).
pub fn method(run: &EfficiencyRun) -> String {
    let first = run.workloads.first();
    let closed = first.map_or(0, |w| w.gateway.closed.len());
    let open = first.map_or(0, |w| w.gateway.latency.len());
    format!(
        "CPU-µs per request (per SSE event for streaming) = task clock delta (`/proc/<pid>/task/*/schedstat` \
         of the proxy; `/proc/self/task/<tid>/schedstat` of this process's mock and load threads) over the \
         measured part of a closed-loop slice ÷ ok answers (events) in it, from the slice where the proxy's \
         (direct: the mock's and load generator's) is lowest; req/s from the slice with the highest; \
         {closed} closed-loop and {open} open-loop slice(s) per side, sides alternating. Added p50/p99: lowest \
         p50 and lowest p99 over the open-loop slices through the proxy minus the same direct.{}\n",
        if run.haproxy_configs.is_empty() {
            String::new()
        } else {
            format!(" HAProxy configs: `{}`.", run.haproxy_configs.join("`, `"))
        }
    )
}

/// Every slice, side by side, for report.md.
pub fn slices(run: &EfficiencyRun) -> String {
    let mut md = String::from(
        "| workload | side | mode | ok/s (per slice) | proxy / mock / loadgen CPU-µs per unit (per slice) | p50 / p99 µs (per slice) |\n|---|---|---|---|---|---|\n",
    );
    let mut sides: Vec<(&str, &str, &SideRun)> = Vec::new();
    for w in &run.workloads {
        sides.push((w.name.name(), "direct", &w.direct));
        sides.push((w.name.name(), "gateway", &w.gateway));
        if let Some(h) = &w.haproxy {
            sides.push((w.name.name(), "haproxy", h));
        }
    }
    let cpu = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    for (name, side, run) in sides {
        for (mode, slices) in [("closed", &run.closed), ("latency", &run.latency)] {
            let rps: Vec<String> = slices
                .iter()
                .map(|s| format!("{:.0}", s.throughput))
                .collect();
            let clocks: Vec<String> = slices
                .iter()
                .map(|s| {
                    format!(
                        "{} / {} / {}",
                        cpu(s.per_unit(s.proxy_cpu_ns)),
                        cpu(s.per_unit(s.mock_cpu_ns)),
                        cpu(s.per_unit(s.load_cpu_ns))
                    )
                })
                .collect();
            let lat: Vec<String> = slices
                .iter()
                .map(|s| format!("{} / {}", s.p50_us, s.p99_us))
                .collect();
            let _ = writeln!(
                md,
                "| {name} | {side} | {mode} | {} | {} | {} |",
                rps.join("; "),
                clocks.join("; "),
                lat.join("; ")
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A closed-loop slice of `ok` answers at `rps` with the three clocks in µs total.
    fn closed(ok: u64, rps: f64, proxy_us: u64, mock_us: u64, load_us: u64) -> Slice {
        Slice {
            requests: ok,
            ok,
            throughput: rps,
            proxy_cpu_ns: (proxy_us > 0).then_some(proxy_us * 1000),
            mock_cpu_ns: Some(mock_us * 1000),
            load_cpu_ns: Some(load_us * 1000),
            ..Slice::default()
        }
    }

    fn latency(p50_us: u64, p99_us: u64) -> Slice {
        Slice {
            open_loop: true,
            requests: 100,
            ok: 100,
            throughput: 100.0,
            p50_us,
            p99_us,
            ..Slice::default()
        }
    }

    /// `slice` with the proxy's task clock at `proxy_us` in all.
    fn costing(mut slice: Slice, proxy_us: u64) -> Slice {
        slice.proxy_cpu_ns = Some(proxy_us * 1000);
        slice
    }

    fn side(closed: Vec<Slice>, latency: Vec<Slice>) -> SideRun {
        SideRun { closed, latency }
    }

    fn streams(mut s: Slice, per_stream: u64) -> Slice {
        s.events = Some(s.ok * per_stream);
        s.events_min = Some(per_stream);
        s.events_max = Some(per_stream);
        s
    }

    /// Pass-through (gateway 25 µs/req in its best slice), streaming (19 events per
    /// stream both ways) and failover (one probe reached the dead primary).
    fn clean() -> EfficiencyRun {
        let mut dead = closed(1000, 1000.0, 30_000, 5000, 5000);
        dead.dead_calls = Some(1);
        let mut run = EfficiencyRun {
            workloads: vec![
                WorkloadRun {
                    name: Workload::Passthrough,
                    per: "request",
                    direct: side(
                        vec![closed(4000, 4000.0, 0, 20_000, 20_000)],
                        vec![latency(300, 900)],
                    ),
                    gateway: side(
                        // The slower slice is the more expensive one; the best counts.
                        vec![
                            closed(1000, 1000.0, 40_000, 8000, 8000),
                            closed(2000, 2000.0, 50_000, 12_000, 11_000),
                            // Fastest, but a neighbour's cache traffic made it dearer.
                            closed(2100, 2100.0, 63_000, 13_000, 12_000),
                        ],
                        // 100 requests each: 120 and 90 µs per request.
                        vec![
                            costing(latency(420, 1300), 12_000),
                            costing(latency(380, 1500), 9_000),
                        ],
                    ),
                    haproxy: Some(side(
                        vec![closed(3000, 3000.0, 60_000, 15_000, 15_000)],
                        vec![costing(latency(350, 1000), 6_000)],
                    )),
                },
                WorkloadRun {
                    name: Workload::Streaming,
                    per: "event",
                    direct: side(
                        vec![streams(closed(100, 100.0, 0, 2000, 2000), 19)],
                        vec![streams(latency(900, 1500), 19)],
                    ),
                    gateway: side(
                        vec![streams(closed(50, 50.0, 9500, 1900, 1900), 19)],
                        vec![streams(latency(1000, 1800), 19)],
                    ),
                    // 4 µs per event: the gateway costs 2.5 × HAProxy's CPU.
                    haproxy: Some(side(
                        vec![streams(closed(100, 100.0, 7600, 1900, 1900), 19)],
                        vec![streams(latency(950, 1600), 19)],
                    )),
                },
                WorkloadRun {
                    name: Workload::Failover,
                    per: "request",
                    direct: side(vec![closed(3000, 3000.0, 0, 9000, 9000)], Vec::new()),
                    gateway: side(vec![dead], vec![latency(500, 900)]),
                    haproxy: None,
                },
            ],
            ..EfficiencyRun::default()
        };
        run.rows = rows(&run);
        run
    }

    fn measured(metric: Metric, run: &EfficiencyRun) -> Result<f64, String> {
        match value(metric, Some(run))? {
            Measure::Value(v) => Ok(v),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn rows_take_the_best_slice_and_the_lowest_latencies() {
        let run = clean();
        let names: Vec<&str> = run.rows.iter().map(|r| r.workload.as_str()).collect();
        assert_eq!(
            names,
            [
                "passthrough",
                "haproxy",
                "streaming",
                "haproxy_streaming",
                "failover"
            ]
        );
        let p = &run.rows[0];
        assert_eq!(p.proxy_cpu_us, Some(25.0));
        assert_eq!(
            (p.mock_cpu_us, p.direct_mock_cpu_us),
            (Some(6.0), Some(5.0))
        );
        assert_eq!(
            (p.load_cpu_us, p.direct_load_cpu_us),
            (Some(5.5), Some(5.0))
        );
        assert_eq!(
            (p.proxy_rps, p.direct_rps, p.ratio),
            (Some(2100.0), Some(4000.0), Some(0.525))
        );
        assert_eq!((p.added_p50_us, p.added_p99_us), (Some(80.0), Some(400.0)));
        // HAProxy: 20 µs/req, so the gateway costs 1.25 × its CPU.
        assert_eq!(run.rows[1].proxy_cpu_us, Some(20.0));
        assert_eq!(p.gateway_vs_haproxy_cpu, Some(1.25));
        assert_eq!(p.gateway_vs_haproxy_p99, Some(1.3), "1300 µs ÷ 1000 µs");
        assert_eq!(
            p.proxy_cpu_at_rate_us,
            Some(90.0),
            "the cheaper latency slice"
        );
        assert_eq!(p.gateway_vs_haproxy_cpu_at_rate, Some(1.5), "90 µs ÷ 60 µs");
        assert_eq!(
            run.rows[2].proxy_cpu_us,
            Some(10.0),
            "per event: 9500 µs / 950"
        );
        assert_eq!(
            run.rows[2].events_per_stream.as_deref(),
            Some("19 direct, 19 through the gateway")
        );
        assert_eq!(run.rows[3].proxy_cpu_us, Some(4.0));
        assert_eq!(run.rows[2].gateway_vs_haproxy_cpu, Some(2.5));
        assert_eq!(run.rows[4].dead_calls_max, Some(1));
        let md = table(&run);
        assert!(md.contains("| passthrough | 25.00 | 6.00 / 5.00 | 5.50 / 5.00 | 2100 | 4000 | 0.53 | +80 | +400 | 1.25 |"), "{md}");
        assert!(md.contains("| streaming (per SSE event) | 10.00 |"), "{md}");
        assert!(md.contains("p99 ÷ haproxy p99: 1.30"), "{md}");
        assert!(
            md.contains("CPU-µs at the latency rate: 90.0; ÷ haproxy's: 1.50"),
            "{md}"
        );
        assert!(
            md.contains("| haproxy (reference, streaming, per SSE event) | 4.00 |"),
            "{md}"
        );
    }

    #[test]
    fn criteria_and_budgets_from_a_clean_run() {
        let run = clean();
        let cases = [
            (Metric::EfficiencyClientErrors, 0.0),
            (Metric::StreamEventsMismatch, 0.0),
            (Metric::DeadPrimaryCallsPerSlice, 1.0),
            (Metric::CpuFiguresMissing, 0.0),
            (Metric::PassthroughCpuUs, 25.0),
            (Metric::StreamingCpuUsPerEvent, 10.0),
            (Metric::FailoverCpuUs, 30.0),
            (Metric::GatewayHaproxyCpuRatio, 1.25),
            (Metric::StreamingHaproxyCpuRatio, 2.5),
            (Metric::GatewayHaproxyP99Ratio, 1.3),
            (Metric::GatewayHaproxyCpuAtRateRatio, 1.5),
        ];
        for (metric, want) in cases {
            assert_eq!(measured(metric, &run), Ok(want), "{}", metric.name());
        }
        let e = measured(Metric::TranslatedCpuUs, &run).unwrap_err();
        assert!(e.contains("no translated slice"), "{e}");
    }

    #[test]
    fn broken_runs_show_in_the_counts() {
        type Break = fn(&mut EfficiencyRun);
        // (what broke, the change, the metric, its value or the start of the reason)
        let cases: [(&str, Break, Metric, Result<f64, &str>); 7] = [
            (
                "a client error in a latency slice through the gateway",
                |r| r.workloads[0].gateway.latency[1].errors = 2,
                Metric::EfficiencyClientErrors,
                Ok(2.0),
            ),
            (
                "one stream through the gateway lost an event",
                |r| {
                    let s = &mut r.workloads[1].gateway.closed[0];
                    s.events = Some(s.ok * 19 - 1);
                    s.events_min = Some(18);
                },
                Metric::StreamEventsMismatch,
                Ok(2.0),
            ),
            (
                "the mock's stream length is not fixed",
                |r| r.workloads[1].direct.latency[0].events_max = Some(20),
                Metric::StreamEventsMismatch,
                Err("direct streams carried 19..20 events"),
            ),
            (
                "no breaker: every failover request reached the dead primary",
                |r| r.workloads[2].gateway.closed[0].dead_calls = Some(1000),
                Metric::DeadPrimaryCallsPerSlice,
                Ok(1000.0),
            ),
            (
                "the gateway's task clock could not be read",
                |r| r.workloads[0].gateway.closed[1].proxy_cpu_ns = None,
                Metric::CpuFiguresMissing,
                Ok(1.0),
            ),
            (
                "the mock's task clocks read 0 direct",
                |r| r.workloads[2].direct.closed[0].mock_cpu_ns = Some(0),
                Metric::CpuFiguresMissing,
                Ok(1.0),
            ),
            (
                "haproxy is not installed",
                |r| {
                    r.workloads[0].haproxy = None;
                    r.workloads[1].haproxy = None;
                    r.haproxy_missing = Some("no haproxy binary".into());
                },
                Metric::GatewayHaproxyCpuRatio,
                Err("haproxy: no haproxy binary"),
            ),
        ];
        for (what, broken, metric, want) in cases {
            let mut run = clean();
            broken(&mut run);
            run.rows = rows(&run);
            match (measured(metric, &run), want) {
                (Ok(v), Ok(w)) => assert_eq!(v, w, "{what}"),
                (Err(e), Err(w)) => assert!(e.starts_with(w), "{what}: {e}"),
                (got, _) => panic!("{what}: {got:?}"),
            }
        }
        let mut run = clean();
        run.workloads[0].haproxy = None;
        run.workloads[1].haproxy = None;
        run.haproxy_missing = Some("no haproxy binary".into());
        run.rows = rows(&run);
        let md = table(&run);
        assert!(
            md.contains("| haproxy (reference, pass-through) | NOT MEASURED: no haproxy binary |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| haproxy (reference, streaming, per SSE event) | NOT MEASURED: no haproxy binary |"
            ),
            "{md}"
        );
        assert_eq!(run.rows[0].gateway_vs_haproxy_cpu, None);
    }
}
