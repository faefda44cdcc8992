//! Recording outcomes: one `Recorder` per thread collects histograms, counts and the
//! per-second series; recorders merge into the final `LoadReport`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::report::{LoadReport, Percentiles, SecondStats, StreamCounts};
use super::schedule::{Timeline, LATE_START};
use super::{LoadError, LoadSpec};

/// Largest recordable latency (one hour); larger values saturate.
const MAX_US: u64 = 3_600_000_000;

/// How a 2xx stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamVerdict {
    pub completed: bool,
    pub continued: bool,
    /// Whether the text is an expected full answer (`None`: not verified).
    pub verified: Option<bool>,
    /// SSE events received (`[DONE]` included).
    pub events: u64,
}

/// What happened to one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// HTTP status, 0 when no response head arrived.
    pub status: u16,
    pub ok: bool,
    /// Whether the latency counts (a response head arrived, or the request timed out).
    pub measured: bool,
    pub intended: Instant,
    pub sent: Instant,
    pub done: Instant,
    pub first_token: Option<Instant>,
    pub stream: Option<StreamVerdict>,
    pub target: Option<String>,
    /// `x-switchyard-attempts`, when the answer carried it.
    pub attempts: Option<u32>,
}

/// The counts and histograms of one second.
#[derive(Debug, Clone)]
struct Second {
    ok: u64,
    errors: u64,
    retried: u64,
    sent: u64,
    sent_ok: u64,
    sent_retried: u64,
    latency: Histogram<u64>,
}

/// Everything recorded so far by one thread (or merged from several).
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    timeline: Timeline,
    requests: u64,
    ok: u64,
    late_starts: u64,
    unsent: u64,
    statuses: HashMap<u16, u64>,
    targets: HashMap<String, u64>,
    attempts: HashMap<u32, u64>,
    streams: StreamCounts,
    latency: Histogram<u64>,
    ttft: Histogram<u64>,
    series: Vec<Second>,
    last_done: Option<Instant>,
    /// Task clock of the recording thread(s) over the measured time, ns.
    cpu_ns: Option<u64>,
}

impl Recorder {
    pub(crate) fn new(timeline: Timeline) -> Result<Self, LoadError> {
        let latency = Histogram::new_with_bounds(1, MAX_US, 3)
            .map_err(|e| LoadError::Histogram(format!("{e:?}")))?;
        Ok(Recorder {
            timeline,
            requests: 0,
            ok: 0,
            late_starts: 0,
            unsent: 0,
            statuses: HashMap::new(),
            targets: HashMap::new(),
            attempts: HashMap::new(),
            streams: StreamCounts::default(),
            ttft: Histogram::new_from(&latency),
            latency,
            series: Vec::new(),
            last_done: None,
            cpu_ns: Some(0),
        })
    }

    pub(crate) fn record(&mut self, o: &Outcome) {
        self.requests += 1;
        self.ok += u64::from(o.ok);
        self.late_starts += u64::from(o.sent.saturating_duration_since(o.intended) > LATE_START);
        *self.statuses.entry(o.status).or_default() += 1;
        if let Some(target) = &o.target {
            *self.targets.entry(target.clone()).or_default() += 1;
        }
        if let Some(n) = o.attempts {
            *self.attempts.entry(n).or_default() += 1;
        }
        if let Some(v) = o.stream {
            self.streams.completed += u64::from(v.completed);
            self.streams.errored += u64::from(!v.completed);
            self.streams.continued += u64::from(v.continued);
            let right = v.verified == Some(true);
            let wrong = v.verified == Some(false);
            self.streams.bad_success += u64::from(v.completed && wrong);
            self.streams.continued_full += u64::from(v.completed && v.continued && right);
            if v.completed {
                self.streams.add_events(v.events);
            }
        }
        if let Some(t) = o.first_token {
            self.ttft
                .saturating_record(micros(t.saturating_duration_since(o.intended)));
        }
        self.last_done = self.last_done.max(Some(o.done));
        self.record_second(o);
    }

    fn record_second(&mut self, o: &Outcome) {
        let retried = u64::from(o.attempts.is_some_and(|n| n > 1));
        let at = |t: Instant| {
            let index = t
                .saturating_duration_since(self.timeline.warm_end)
                .as_secs();
            usize::try_from(index).unwrap_or(usize::MAX)
        };
        let (by_intent, by_done) = (at(o.intended), at(o.done));
        let second = self.second(by_intent);
        second.sent += 1;
        second.sent_ok += u64::from(o.ok);
        second.sent_retried += retried;
        let second = self.second(by_done);
        second.ok += u64::from(o.ok);
        second.errors += u64::from(!o.ok);
        second.retried += retried;
        if o.measured {
            let us = micros(o.done.saturating_duration_since(o.intended));
            second.latency.saturating_record(us);
            self.latency.saturating_record(us);
        }
    }

    fn second(&mut self, index: usize) -> &mut Second {
        // A completion far past the end (a clock jump) is folded into the last second
        // the run can reach, so the series stays bounded.
        let limit = self.max_seconds();
        let index = index.min(limit);
        while self.series.len() <= index {
            self.series.push(Second {
                ok: 0,
                errors: 0,
                retried: 0,
                sent: 0,
                sent_ok: 0,
                sent_retried: 0,
                latency: Histogram::new_from(&self.latency),
            });
        }
        &mut self.series[index]
    }

    fn max_seconds(&self) -> usize {
        let span = self.timeline.hard_stop - self.timeline.warm_end + Duration::from_secs(60);
        usize::try_from(span.as_secs()).unwrap_or(usize::MAX)
    }

    /// Requests that were due but never sent: errors with status 0.
    pub(crate) fn add_unsent(&mut self, n: u64) {
        if n > 0 {
            self.requests += n;
            self.unsent += n;
            *self.statuses.entry(0).or_default() += n;
        }
    }

    /// Sets this thread's task clock over the measured time: `start` read at
    /// the end of warmup, `end` after its last request.
    pub(crate) fn set_cpu(&mut self, start: Option<u64>, end: Option<u64>) {
        self.cpu_ns = start.zip(end).map(|(a, b)| b.saturating_sub(a));
    }

    pub(crate) fn merge(&mut self, other: Recorder) -> Result<(), LoadError> {
        let hist_err = |e| LoadError::Histogram(format!("{e:?}"));
        self.requests += other.requests;
        self.ok += other.ok;
        self.late_starts += other.late_starts;
        self.unsent += other.unsent;
        merge_counts(&mut self.statuses, other.statuses);
        merge_counts(&mut self.targets, other.targets);
        merge_counts(&mut self.attempts, other.attempts);
        self.streams.merge(&other.streams);
        self.cpu_ns = self.cpu_ns.zip(other.cpu_ns).map(|(a, b)| a + b);
        self.latency.add(&other.latency).map_err(hist_err)?;
        self.ttft.add(&other.ttft).map_err(hist_err)?;
        for (index, theirs) in other.series.into_iter().enumerate() {
            let mine = self.second(index);
            mine.ok += theirs.ok;
            mine.errors += theirs.errors;
            mine.retried += theirs.retried;
            mine.sent += theirs.sent;
            mine.sent_ok += theirs.sent_ok;
            mine.sent_retried += theirs.sent_retried;
            mine.latency.add(&theirs.latency).map_err(hist_err)?;
        }
        self.last_done = self.last_done.max(other.last_done);
        Ok(())
    }

    pub(crate) fn into_report(self, spec: &LoadSpec) -> LoadReport {
        let finish = self
            .last_done
            .map_or(self.timeline.end, |d| d.max(self.timeline.end));
        let elapsed_s = (finish - self.timeline.warm_end).as_secs_f64();
        LoadReport {
            open_loop: spec.rate.is_some(),
            requests: self.requests,
            ok: self.ok,
            errors: self.requests - self.ok,
            statuses: self.statuses.into_iter().collect(),
            targets: self.targets.into_iter().collect::<BTreeMap<_, _>>(),
            attempts: self.attempts.into_iter().collect(),
            late_starts: self.late_starts,
            unsent: self.unsent,
            elapsed_s,
            throughput: if elapsed_s > 0.0 {
                self.ok as f64 / elapsed_s
            } else {
                0.0
            },
            latency_us: Percentiles::of(&self.latency),
            ttft_us: spec.stream.then(|| Percentiles::of(&self.ttft)),
            streams: spec.stream.then_some(self.streams),
            series: series_stats(&self.series),
            cpu_ns: self.cpu_ns,
        }
    }
}

fn series_stats(series: &[Second]) -> Vec<SecondStats> {
    series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = Percentiles::of(&s.latency);
            SecondStats {
                second: u32::try_from(i).unwrap_or(u32::MAX),
                ok: s.ok,
                errors: s.errors,
                retried: s.retried,
                sent: s.sent,
                sent_ok: s.sent_ok,
                sent_retried: s.sent_retried,
                p50_us: p.p50,
                p99_us: p.p99,
            }
        })
        .collect()
}

fn merge_counts<K: std::hash::Hash + Eq>(into: &mut HashMap<K, u64>, from: HashMap<K, u64>) {
    for (k, n) in from {
        *into.entry(k).or_default() += n;
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline() -> Timeline {
        let start = Instant::now();
        let warm_end = start;
        let end = start + Duration::from_secs(3);
        Timeline {
            start,
            warm_end,
            end,
            hard_stop: end + Duration::from_secs(1),
        }
    }

    fn outcome(tl: &Timeline, at_ms: u64, latency_ms: u64, status: u16) -> Outcome {
        let intended = tl.warm_end + Duration::from_millis(at_ms);
        Outcome {
            status,
            ok: status == 200,
            measured: status != 0,
            intended,
            sent: intended,
            done: intended + Duration::from_millis(latency_ms),
            first_token: None,
            stream: None,
            target: Some("mock".into()),
            attempts: Some(if status == 503 { 2 } else { 1 }),
        }
    }

    #[test]
    fn merges_counts_histograms_and_series() {
        let tl = timeline();
        let mut a = Recorder::new(tl).unwrap();
        let mut b = Recorder::new(tl).unwrap();
        a.record(&outcome(&tl, 100, 10, 200));
        b.record(&outcome(&tl, 1500, 30, 503));
        b.record(&outcome(&tl, 1600, 30, 0));
        b.add_unsent(2);
        a.merge(b).unwrap();
        let spec = LoadSpec::new("127.0.0.1:1".parse().unwrap());
        let r = a.into_report(&spec);
        assert_eq!((r.requests, r.ok, r.errors, r.unsent), (5, 1, 4, 2));
        assert_eq!(r.statuses, BTreeMap::from([(0, 3), (200, 1), (503, 1)]));
        assert_eq!(r.targets["mock"], 3);
        assert_eq!(r.attempts, BTreeMap::from([(1, 2), (2, 1)]));
        assert_eq!(r.series.len(), 2);
        assert_eq!((r.series[0].ok, r.series[1].errors), (1, 2));
        assert_eq!((r.series[0].retried, r.series[1].retried), (0, 1));
        assert!(
            (29_000..=31_000).contains(&r.latency_us.max),
            "{:?}",
            r.latency_us
        );
        assert!((2.9..3.1).contains(&r.elapsed_s));
    }

    #[test]
    fn series_counts_by_send_time_as_well_as_by_completion() {
        // The 900 ms answer to the request sent at 0.8 s completes in second 1,
        // but by send time it stays in second 0 beside nothing else.
        let tl = timeline();
        let mut c = Recorder::new(tl).unwrap();
        c.record(&outcome(&tl, 800, 900, 200));
        c.record(&outcome(&tl, 1500, 30, 503));
        let r = c.into_report(&LoadSpec::new("127.0.0.1:1".parse().unwrap()));
        let counts = |s: &SecondStats| (s.sent, s.sent_ok, s.sent_retried, s.ok, s.errors);
        assert_eq!(counts(&r.series[0]), (1, 1, 0, 0, 0));
        assert_eq!(counts(&r.series[1]), (1, 0, 1, 1, 1));
    }

    #[test]
    fn stream_texts_count_as_whole_continuations_or_bad_successes() {
        let tl = timeline();
        let mut r = Recorder::new(tl).unwrap();
        let stream = |completed, continued, verified| {
            let mut o = outcome(&tl, 0, 5, 200);
            o.stream = Some(StreamVerdict {
                completed,
                continued,
                verified,
                events: 3,
            });
            o
        };
        r.record(&stream(true, true, Some(true))); // continued, whole
        r.record(&stream(true, false, Some(true))); // never cut
        r.record(&stream(true, true, Some(false))); // duplicated text, [DONE]
        r.record(&stream(false, true, Some(false))); // clean error: not a success
        r.record(&stream(true, true, None)); // not verified
        let mut spec = LoadSpec::new("127.0.0.1:1".parse().unwrap());
        spec.stream = true;
        let s = r.into_report(&spec).streams.unwrap();
        assert_eq!((s.completed, s.errored, s.continued), (4, 1, 4));
        assert_eq!((s.continued_full, s.bad_success), (1, 1));
        assert_eq!(
            (s.events, s.events_min, s.events_max),
            (12, Some(3), Some(3))
        );
    }

    #[test]
    fn late_starts_count_sends_over_a_millisecond_late() {
        let tl = timeline();
        let mut r = Recorder::new(tl).unwrap();
        let mut o = outcome(&tl, 0, 5, 200);
        o.sent = o.intended + Duration::from_millis(3);
        r.record(&o);
        r.record(&outcome(&tl, 10, 5, 200));
        assert_eq!(r.late_starts, 1);
    }
}
