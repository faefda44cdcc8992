//! The outage scenario suite: each YAML scenario in `loadtest/scenarios/` is run
//! against a real `switchyard` child process with in-process mock providers and
//! in-process open-loop load, its fault timeline applied through the mocks'
//! control endpoints, and its pass criteria judged PASS, FAIL or NOT MEASURED
//! into a report (`report.md`, `report.json`, one SVG chart per scenario).
//!
//! Layout: [`scenario`] (file schema and validation), [`gateway`] (child process),
//! [`mocks`], [`timeline`] (faults, probes, sampling, progress), [`runner`] (one
//! scenario), [`metrics`] (values and verdicts), [`report`] and [`chart`]; the
//! scenario kinds of their own: [`neighbour`], [`cluster`], [`efficiency`] (with
//! [`haproxy`] as its reference proxy).

pub mod chart;
pub mod cluster;
pub mod efficiency;
pub mod gateway;
pub mod haproxy;
pub mod metrics;
pub mod mocks;
pub mod neighbour;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod timeline;

use std::io;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::loadgen::LoadError;

pub use report::{ScenarioOutcome, SuiteReport, SuiteStatus};
pub use runner::Placement;

/// Why the suite (or one scenario) could not run.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{}: {problem}", file.display())]
    Scenario { file: PathBuf, problem: String },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("gateway: {0}")]
    Gateway(String),
    #[error("mock: {0}")]
    Mock(String),
    #[error("load: {0}")]
    Load(#[from] LoadError),
    #[error("no scenario named {0} (see --list)")]
    UnknownScenario(String),
}

/// How to run the suite.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Shorten every scenario to seconds at low rates.
    pub smoke: bool,
    /// Run only these scenarios (by name); empty = all.
    pub only: Vec<String>,
    /// The gateway binary; default: found or built next to this executable.
    pub gateway_bin: Option<PathBuf>,
    /// Where the scenario files are.
    pub scenarios: PathBuf,
    /// Where the report goes.
    pub out: PathBuf,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        SuiteOptions {
            smoke: false,
            only: Vec::new(),
            gateway_bin: None,
            scenarios: crate_dir.join("scenarios"),
            out: crate_dir.join("report"),
        }
    }
}

/// Loads the scenarios, runs the chosen ones in file-name order, writes the report
/// and returns it. A scenario that cannot run is reported as an error row; only
/// problems that stop the whole suite (bad scenario files, no gateway binary,
/// unwritable report) are returned as `Err`.
pub fn run(options: &SuiteOptions) -> Result<SuiteReport, SuiteError> {
    let all = scenario::load_dir(&options.scenarios)?;
    for name in &options.only {
        if !all.iter().any(|(_, s)| &s.name == name) {
            return Err(SuiteError::UnknownScenario(name.clone()));
        }
    }
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|(_, s)| options.only.is_empty() || options.only.contains(&s.name))
        .collect();
    let binary = gateway::resolve_binary(options.gateway_bin.as_deref())?;
    let logs = options.out.join("logs");
    std::fs::create_dir_all(&logs).map_err(|source| SuiteError::Io {
        what: format!("cannot create {}", logs.display()),
        source,
    })?;
    let placement = Placement::detect();
    let ctx = runner::Context {
        binary: &binary,
        logs: &logs,
        placement,
    };
    let mut report = SuiteReport {
        mode: if options.smoke { "smoke" } else { "full" },
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        cores: core_affinity::get_core_ids().map_or(1, |c| c.len()),
        placement,
        gateway_bin: binary.display().to_string(),
        scenarios: Vec::new(),
    };
    for (file, full) in chosen {
        let sc = if options.smoke {
            scenario::smoke(&full)
        } else {
            full
        };
        if let Some(e) = &sc.efficiency {
            eprintln!(
                "suite: {} ({} workloads, about {:.0} s: {} round(s) of {} s closed loop and {} s at {:.0} req/s per side)",
                sc.name,
                e.workloads.len(),
                efficiency::duration_s(e),
                e.timing.rounds,
                e.timing.slice.secs(),
                e.timing.latency_slice.secs(),
                e.timing.latency_rate
            );
        } else if let Some(c) = &sc.cluster {
            eprintln!(
                "suite: {} ({} nodes, clustered then independent: {} s health + {} s limits each)",
                sc.name,
                c.nodes,
                c.health.duration.secs(),
                c.limit.duration.secs()
            );
        } else {
            eprintln!(
                "suite: {} ({} s{})",
                sc.name,
                sc.traffic.duration.secs(),
                sc.traffic
                    .rate
                    .map_or(", closed loop".to_string(), |r| format!(" at {r:.0} req/s"))
            );
        }
        let outcome = match runner::run(&sc, &file, &ctx) {
            Ok(run) => ScenarioOutcome {
                name: sc.name.clone(),
                file: file.display().to_string(),
                error: None,
                skipped: run.cluster.as_ref().and_then(|c| c.skipped.clone()),
                verdicts: if run.cluster.as_ref().is_some_and(|c| c.skipped.is_some()) {
                    Vec::new()
                } else {
                    metrics::evaluate(&sc, &run)
                },
                budgets: metrics::evaluate_budgets(&sc, &run),
                run: Some(run),
            },
            Err(e) => ScenarioOutcome {
                name: sc.name.clone(),
                file: file.display().to_string(),
                error: Some(e.to_string()),
                skipped: None,
                verdicts: Vec::new(),
                budgets: Vec::new(),
                run: None,
            },
        };
        print_outcome(&outcome);
        report.scenarios.push(outcome);
    }
    report::write(&report, &options.out)?;
    Ok(report)
}

fn print_outcome(outcome: &ScenarioOutcome) {
    if let Some(e) = &outcome.error {
        eprintln!("  ERROR {e}");
        return;
    }
    if let Some(why) = &outcome.skipped {
        eprintln!("  SKIPPED {why}");
        return;
    }
    let line = |label: &str, v: &metrics::Verdict| {
        eprintln!(
            "  {label:<12} {:<26} measured {:>12} bound {}{}",
            v.metric,
            v.measured.map_or("-".to_string(), |m| format!("{m:.4}")),
            v.bound,
            v.reason
                .as_ref()
                .map_or(String::new(), |r| format!(" ({r})"))
        );
    };
    for v in &outcome.verdicts {
        let label = match v.outcome {
            metrics::Outcome::Pass => "PASS",
            metrics::Outcome::Fail => "FAIL",
            metrics::Outcome::NotMeasured => "NOT MEASURED",
        };
        line(label, v);
    }
    for v in &outcome.budgets {
        let label = match v.outcome {
            metrics::Outcome::Pass => "budget met",
            metrics::Outcome::Fail => "budget miss",
            metrics::Outcome::NotMeasured => "budget n/m",
        };
        line(label, v);
    }
    // The efficiency table is the scenario's result for a human: on stdout.
    if let Some(e) = outcome.run.as_ref().and_then(|r| r.efficiency.as_ref()) {
        println!("\n{}:\n\n{}", outcome.name, efficiency::table(e));
    }
}
