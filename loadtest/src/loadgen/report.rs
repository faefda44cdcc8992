//! The result of a load run: counts, latency percentiles and a per-second series,
//! serialisable to JSON and printable as a human summary.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Everything one run measured (warmup excluded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// True for a fixed arrival rate (latency from intended send time); false for
    /// max-throughput closed loop (latency is service time).
    pub open_loop: bool,
    /// Requests scheduled in the measured window (open loop) or sent in it (closed loop).
    pub requests: u64,
    /// 2xx with a complete body (and, streaming, a completed stream).
    pub ok: u64,
    /// `requests - ok`.
    pub errors: u64,
    /// HTTP status of each request; 0 = no response (connect error, reset, timeout, unsent).
    pub statuses: BTreeMap<u16, u64>,
    /// `x-switchyard-target` response header values.
    pub targets: BTreeMap<String, u64>,
    /// `x-switchyard-attempts` response header values (upstream attempts per
    /// answer) and how many answers carried each; absent = no such headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attempts: BTreeMap<u32, u64>,
    /// Open loop: requests sent more than 1 ms after their intended time.
    pub late_starts: u64,
    /// Open loop: requests still backlogged when the run gave up (counted as status 0).
    pub unsent: u64,
    /// Seconds from the end of warmup to the end of the run (or last completion).
    pub elapsed_s: f64,
    /// `ok / elapsed_s`.
    pub throughput: f64,
    /// Requests that got a response head or timed out, from intended send time.
    pub latency_us: Percentiles,
    /// Streaming: intended send time to first content token.
    pub ttft_us: Option<Percentiles>,
    /// Streaming: how the 2xx streams ended.
    pub streams: Option<StreamCounts>,
    /// One entry per second of completion time, relative to the end of warmup.
    pub series: Vec<SecondStats>,
    /// The load threads' own time on CPU (their task clocks) from the end of
    /// warmup until each finished its last request, in nanoseconds; `None` when
    /// a thread could not read its clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ns: Option<u64>,
}

/// Percentiles of a histogram in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// How 2xx streams ended. `continued` overlaps the other two: it counts streams
/// marked as continued by the gateway (`x_switchyard` event or header).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCounts {
    /// Saw `[DONE]` and no error event.
    pub completed: u64,
    /// Error event, cut connection, or no `[DONE]`.
    pub errored: u64,
    /// Marked as continued on another target.
    pub continued: u64,
    /// Completed, but the text is not one of `LoadSpec::expected_answers` (a
    /// duplicated, truncated or garbled answer passed off as a success); 0 when
    /// texts are not verified.
    #[serde(default)]
    pub bad_success: u64,
    /// Completed, marked as continued, and the text is exactly an expected full
    /// answer: a cut stream the client got whole; 0 when texts are not verified.
    #[serde(default)]
    pub continued_full: u64,
    /// SSE events the completed streams carried (`[DONE]` included).
    #[serde(default)]
    pub events: u64,
    /// The fewest and the most events of one completed stream (`None`: no
    /// stream completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_min: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_max: Option<u64>,
}

impl StreamCounts {
    /// Adds one completed stream of `events` events.
    pub(crate) fn add_events(&mut self, events: u64) {
        self.events += events;
        self.events_min = Some(self.events_min.map_or(events, |m| m.min(events)));
        self.events_max = Some(self.events_max.map_or(events, |m| m.max(events)));
    }

    /// Adds another recording's counts.
    pub(crate) fn merge(&mut self, other: &StreamCounts) {
        self.completed += other.completed;
        self.errored += other.errored;
        self.continued += other.continued;
        self.bad_success += other.bad_success;
        self.continued_full += other.continued_full;
        self.events += other.events;
        let pick = |a: Option<u64>, b: Option<u64>, f: fn(u64, u64) -> u64| match (a, b) {
            (Some(x), Some(y)) => Some(f(x, y)),
            (x, y) => x.or(y),
        };
        self.events_min = pick(self.events_min, other.events_min, u64::min);
        self.events_max = pick(self.events_max, other.events_max, u64::max);
    }
}

/// One second of the run: `ok`, `errors`, `retried` and the latencies bucketed
/// by completion time (what a chart of the run shows), `sent*` by intended send
/// time (what a stall cannot move: a request meant for second 3 stays in second 3
/// however late its answer is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondStats {
    pub second: u32,
    pub ok: u64,
    pub errors: u64,
    /// Answers that took more than one upstream attempt (`x-switchyard-attempts` > 1):
    /// each paid at least one failed call before it was served or refused.
    #[serde(default)]
    pub retried: u64,
    /// Requests whose intended send time falls in this second.
    #[serde(default)]
    pub sent: u64,
    /// Of those, answered ok.
    #[serde(default)]
    pub sent_ok: u64,
    /// Of those, answered after more than one upstream attempt.
    #[serde(default)]
    pub sent_retried: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.open_loop {
            "open loop, latency from intended send"
        } else {
            "closed loop, service time"
        };
        writeln!(f, "mode        {mode}")?;
        writeln!(
            f,
            "requests    {} ok, {} errors, {} total in {:.2} s",
            self.ok, self.errors, self.requests, self.elapsed_s
        )?;
        writeln!(f, "throughput  {:.1} ok/s", self.throughput)?;
        if self.open_loop {
            writeln!(
                f,
                "late starts {} (> 1 ms), unsent {}",
                self.late_starts, self.unsent
            )?;
        }
        writeln!(f, "latency     {}", self.latency_us)?;
        if let Some(ttft) = &self.ttft_us {
            writeln!(f, "ttft        {ttft}")?;
        }
        if let Some(s) = &self.streams {
            writeln!(
                f,
                "streams     {} completed, {} errored, {} continued ({} whole), {} bad successes",
                s.completed, s.errored, s.continued, s.continued_full, s.bad_success
            )?;
        }
        writeln!(f, "statuses    {}", join(&self.statuses))?;
        if !self.targets.is_empty() {
            writeln!(f, "targets     {}", join(&self.targets))?;
        }
        if !self.attempts.is_empty() {
            writeln!(f, "attempts    {}", join(&self.attempts))?;
        }
        Ok(())
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        write!(
            f,
            "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  mean {:.3} ms",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.p999),
            ms(self.max),
            self.mean / 1000.0
        )
    }
}

fn join<K: fmt::Display>(counts: &BTreeMap<K, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_empty_histogram_are_zero() {
        let h = Histogram::<u64>::new(3).unwrap();
        assert_eq!(Percentiles::of(&h), Percentiles::default());
    }

    #[test]
    fn percentiles_follow_the_data() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h);
        assert!((495..=505).contains(&p.p50), "{p:?}");
        assert!((985..=995).contains(&p.p99), "{p:?}");
        assert_eq!(p.max, 1000);
    }
}
