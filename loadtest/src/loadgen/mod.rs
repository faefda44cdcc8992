//! Open-loop load generation: requests leave at fixed *intended* times and every
//! latency is measured from the time the request should have been sent, so a server
//! stall shows up in every request it delayed (coordinated-omission-free).
//!
//! `run` spawns one pinned thread per [`LoadSpec::threads`], each with its own monoio
//! runtime and keep-alive connections, then merges their recordings into one
//! [`LoadReport`]. Without a rate it runs closed loop (back-to-back per connection)
//! and the latencies are service times, which the report marks with `open_loop: false`.

mod chunked;
mod record;
mod report;
mod request;
mod response;
mod schedule;
mod sse;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use report::{LoadReport, Percentiles, SecondStats, StreamCounts};

use record::Recorder;
use schedule::Timeline;
use worker::ThreadPlan;

/// Time between `run` being called and the first intended send: lets every thread
/// build its runtime and open its connections before the clock starts.
const START_DELAY: Duration = Duration::from_millis(30);

/// What to send, where, how fast and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// Address of the server under test (gateway or mock).
    pub target: SocketAddr,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// `model` field of every request body.
    pub model: String,
    /// Sent as `authorization: Bearer {key}` when present.
    pub api_key: Option<String>,
    /// Total requests per second over all threads; `None` = max throughput (closed loop).
    pub rate: Option<f64>,
    /// Measured time, after the warmup.
    pub duration: Duration,
    /// Time run first and not recorded.
    pub warmup: Duration,
    /// Keep-alive connections over all threads (at least one per thread).
    pub connections: usize,
    /// Threads, each with its own runtime, connections and `rate / threads`.
    pub threads: usize,
    /// Ask for SSE streams and account them (TTFT, completed/errored/continued).
    pub stream: bool,
    /// Per request, connect included; a timeout counts as status 0 and the
    /// connection is replaced.
    pub timeout: Duration,
    /// Cores to pin the threads to (thread i → `pin_cores[i % len]`); empty = no pinning.
    pub pin_cores: Vec<usize>,
    /// Streaming: the full answer texts a completed stream may carry (the
    /// concatenated `choices[0].delta.content`); a completed stream whose text is
    /// none of them counts as a bad success. Empty = texts are not verified.
    pub expected_answers: Vec<String>,
}

impl LoadSpec {
    /// A one-thread, 16-connection, 10 s open-loop run at 1000 req/s against `target`.
    pub fn new(target: SocketAddr) -> Self {
        LoadSpec {
            target,
            path: "/v1/chat/completions".to_string(),
            model: "demo".to_string(),
            api_key: None,
            rate: Some(1000.0),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            connections: 16,
            threads: 1,
            stream: false,
            timeout: Duration::from_secs(30),
            pin_cores: Vec::new(),
            expected_answers: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        let invalid = |why| Err(LoadError::InvalidSpec(why));
        if self.threads == 0 {
            return invalid("threads must be at least 1");
        }
        if self.connections < self.threads {
            return invalid("connections must be at least one per thread");
        }
        if self.duration.is_zero() {
            return invalid("duration must be positive");
        }
        if self.timeout.is_zero() {
            return invalid("timeout must be positive");
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return invalid("rate must be a positive number of requests per second");
        }
        if !self.path.starts_with('/') || self.path.contains(char::is_whitespace) {
            return invalid("path must start with '/' and contain no whitespace");
        }
        Ok(())
    }
}

/// Why a load run could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load spec: {0}")]
    InvalidSpec(&'static str),
    #[error("cannot spawn load thread {thread}: {source}")]
    Spawn { thread: usize, source: io::Error },
    #[error("cannot build the runtime of load thread {thread}: {source}")]
    Runtime { thread: usize, source: io::Error },
    #[error("cannot pin load thread {thread} to core {core}")]
    Pin { thread: usize, core: usize },
    #[error("load thread {0} panicked")]
    ThreadPanicked(usize),
    #[error("histogram error: {0}")]
    Histogram(String),
}

/// Runs the load described by `spec` and blocks until every thread is done.
pub fn run(spec: &LoadSpec) -> Result<LoadReport, LoadError> {
    spec.validate()?;
    let spec = Arc::new(spec.clone());
    let request = Arc::new(request::build(&spec));
    let timeline = Timeline::new(&spec, Instant::now() + START_DELAY);
    let mut handles = Vec::with_capacity(spec.threads);
    for index in 0..spec.threads {
        let plan = ThreadPlan::new(&spec, &request, timeline, index);
        handles.push(spawn(plan)?);
    }
    let mut total = Recorder::new(timeline)?;
    for (index, handle) in handles.into_iter().enumerate() {
        let recorded = handle
            .join()
            .map_err(|_| LoadError::ThreadPanicked(index))??;
        total.merge(recorded)?;
    }
    Ok(total.into_report(&spec))
}

fn spawn(plan: ThreadPlan) -> Result<JoinHandle<Result<Recorder, LoadError>>, LoadError> {
    let thread = plan.index;
    std::thread::Builder::new()
        .name(format!("loadgen-{thread}"))
        .spawn(move || worker::run_thread(plan))
        .map_err(|source| LoadError::Spawn { thread, source })
}

/// Parses a duration written `250ms`, `10s`, `1.5s`, `2m` or a bare number of
/// seconds, into seconds (as the CLI and scenario files write them).
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration '{text}' (e.g. 250ms, 5s, 2m)"))?;
    match unit.trim() {
        "ms" => Ok(number / 1000.0),
        "" | "s" => Ok(number),
        "m" => Ok(number * 60.0),
        _ => Err(format!(
            "unknown unit in duration '{text}' (use ms, s or m)"
        )),
    }
}

/// [`parse_seconds`] as a `Duration`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let seconds = parse_seconds(text)?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("invalid duration '{}'", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_nonsense() {
        let base = LoadSpec::new("127.0.0.1:1".parse().unwrap());
        assert!(base.validate().is_ok());
        let cases: [fn(&mut LoadSpec); 5] = [
            |s| s.threads = 0,
            |s| s.connections = 0,
            |s| s.rate = Some(0.0),
            |s| s.rate = Some(f64::NAN),
            |s| s.path = "v1".into(),
        ];
        for mutate in cases {
            let mut spec = base.clone();
            mutate(&mut spec);
            assert!(matches!(spec.validate(), Err(LoadError::InvalidSpec(_))));
        }
    }
}
