//! `loadgen`: command-line front end of the open-loop load generator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use loadtest::loadgen::{self, parse_duration, LoadReport, LoadSpec};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Open-loop (coordinated-omission-free) HTTP load against an OpenAI-style endpoint.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Args {
    /// Server address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    target: SocketAddr,
    /// Total requests per second; omit for max throughput (closed loop, service time).
    #[arg(long)]
    rate: Option<f64>,
    /// Measured duration (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unrecorded warmup before the measurement.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Keep-alive connections over all threads.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Load threads, each with its own runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Request SSE streams and account them.
    #[arg(long)]
    stream: bool,
    /// Model name in the request body.
    #[arg(long, default_value = "demo")]
    model: String,
    /// API key sent as a bearer token.
    #[arg(long)]
    key: Option<String>,
    /// Request path.
    #[arg(long, default_value = "/v1/chat/completions")]
    path: String,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Cores to pin the threads to, comma separated.
    #[arg(long, value_delimiter = ',')]
    pin: Vec<usize>,
    /// Also write the JSON report to this file ("-" for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Args {
    fn spec(&self) -> LoadSpec {
        LoadSpec {
            target: self.target,
            path: self.path.clone(),
            model: self.model.clone(),
            api_key: self.key.clone(),
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            connections: self.connections,
            threads: self.threads,
            stream: self.stream,
            timeout: self.timeout,
            pin_cores: self.pin.clone(),
            expected_answers: Vec::new(),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let report = match loadgen::run(&args.spec()) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json.as_deref().is_some_and(|p| p.as_os_str() == "-") {
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    match args.json.as_deref().map(|path| write_json(&report, path)) {
        Some(Err(e)) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn write_json(report: &LoadReport, path: &std::path::Path) -> Result<(), String> {
    let text =
        serde_json::to_string_pretty(report).map_err(|e| format!("cannot encode report: {e}"))?;
    if path.as_os_str() == "-" {
        println!("{text}");
        return Ok(());
    }
    std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn cli_parses_the_documented_example() {
        let args = Args::try_parse_from([
            "loadgen",
            "--target",
            "127.0.0.1:8080",
            "--rate",
            "1000",
            "--duration",
            "10s",
            "--warmup",
            "1s",
            "--connections",
            "32",
            "--threads",
            "1",
            "--stream",
            "--model",
            "demo",
            "--key",
            "K",
            "--json",
            "out.json",
        ])
        .unwrap();
        let spec = args.spec();
        assert_eq!(
            (spec.rate, spec.connections, spec.stream),
            (Some(1000.0), 32, true)
        );
        assert_eq!(spec.api_key.as_deref(), Some("K"));
    }
}
