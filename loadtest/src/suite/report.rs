//! The suite's report directory: `report.md` (one table row per criterion, then
//! details per scenario), `report.json` (everything measured) and `NAME.svg`.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::chart;
use super::metrics::Verdict;
use super::runner::{Placement, ScenarioRun};
use super::SuiteError;

/// One scenario's result: measured and judged, or why it could not run.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioOutcome {
    pub name: String,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub verdicts: Vec<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<ScenarioRun>,
}

impl ScenarioOutcome {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.verdicts.iter().all(|v| v.pass)
    }
}

/// The whole suite run.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub mode: &'static str,
    pub started_unix: u64,
    pub cores: usize,
    pub placement: Placement,
    pub gateway_bin: String,
    pub scenarios: Vec<ScenarioOutcome>,
}

impl SuiteReport {
    pub fn passed(&self) -> bool {
        self.scenarios.iter().all(ScenarioOutcome::passed)
    }
}

/// Writes report.md, report.json and one SVG per measured scenario into `dir`.
pub fn write(report: &SuiteReport, dir: &Path) -> Result<(), SuiteError> {
    let io = |what: String| move |source| SuiteError::Io { what, source };
    std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    for s in &report.scenarios {
        if let Some(run) = &s.run {
            let path = dir.join(format!("{}.svg", s.name));
            std::fs::write(&path, chart::render(run))
                .map_err(io(format!("cannot write {}", path.display())))?;
        }
    }
    let json = serde_json::to_string_pretty(report).map_err(|e| SuiteError::Io {
        what: "cannot encode report.json".into(),
        source: std::io::Error::other(e),
    })?;
    let path = dir.join("report.json");
    std::fs::write(&path, json + "\n").map_err(io(format!("cannot write {}", path.display())))?;
    let path = dir.join("report.md");
    std::fs::write(&path, markdown(report))
        .map_err(io(format!("cannot write {}", path.display())))?;
    Ok(())
}

/// The criteria table as markdown (also printed at the end of a run).
pub fn table(report: &SuiteReport) -> String {
    let mut md = String::from(
        "| scenario | criterion | measured | bound | verdict |\n|---|---|---|---|---|\n",
    );
    for s in &report.scenarios {
        if let Some(e) = &s.error {
            let first = e.lines().next().unwrap_or("");
            let _ = writeln!(
                md,
                "| {} | (run) | {} | - | **ERROR** |",
                s.name,
                cell(first)
            );
            continue;
        }
        if s.verdicts.is_empty() {
            let _ = writeln!(md, "| {} | (none) | - | - | - |", s.name);
        }
        for v in &s.verdicts {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                s.name,
                v.metric,
                v.measured.map_or("not measured".to_string(), number),
                v.bound,
                if v.pass { "PASS" } else { "**FAIL**" }
            );
        }
    }
    md
}

fn markdown(report: &SuiteReport) -> String {
    let mut md = String::from("# switchyard loadtest suite\n\n");
    let _ = writeln!(
        md,
        "Mode **{}**, started at unix time {}, {} usable core(s); gateway core {}, load + mocks core {}; gateway binary `{}`.\n",
        report.mode,
        report.started_unix,
        report.cores,
        report.placement.gateway.map_or("unpinned".into(), |c| c.to_string()),
        report.placement.load.map_or("unpinned".into(), |c| c.to_string()),
        report.gateway_bin
    );
    let passed = report.scenarios.iter().filter(|s| s.passed()).count();
    let _ = writeln!(
        md,
        "**{passed} of {} scenarios passed.**\n",
        report.scenarios.len()
    );
    md.push_str(&table(report));
    for s in &report.scenarios {
        let _ = writeln!(md, "\n## {}\n", s.name);
        if let Some(e) = &s.error {
            let _ = writeln!(md, "Could not run:\n\n```\n{e}\n```");
            continue;
        }
        let Some(run) = &s.run else { continue };
        if !run.description.is_empty() {
            let _ = writeln!(md, "{}\n", run.description);
        }
        let _ = writeln!(
            md,
            "Gateway CPUs: {}. Scenario file: `{}`.\n",
            run.gateway_cpus, s.file
        );
        if run.phases.is_empty() {
            summary(&mut md, "run", &run.load);
        } else {
            md.push_str(
                "| phase | mode | ok/s | p50 µs | p99 µs | errors |\n|---|---|---|---|---|---|\n",
            );
            for (name, r) in &run.phases {
                let _ = writeln!(
                    md,
                    "| {name} | {} | {:.0} | {} | {} | {} |",
                    if r.open_loop {
                        "fixed rate"
                    } else {
                        "max (closed loop)"
                    },
                    r.throughput,
                    r.latency_us.p50,
                    r.latency_us.p99,
                    r.errors
                );
            }
            md.push('\n');
        }
        if let Some(p) = &run.timeline.probe {
            let _ = writeln!(
                md,
                "Probe at {:.1} s: {} requests, statuses {:?}, {} with 503 + retry-after, latency p50 {} µs p99 {} µs max {} µs.\n",
                p.at_s, p.requests, p.statuses, p.with_retry_after, p.p50_us, p.p99_us, p.max_us
            );
        }
        for step in &run.timeline.applied {
            let _ = writeln!(md, "- {:.2} s: {} → `{}`", step.at_s, step.mock, step.fault);
        }
        let _ = writeln!(md, "\n![{0}]({0}.svg)", s.name);
    }
    md
}

fn summary(md: &mut String, label: &str, r: &crate::loadgen::LoadReport) {
    let _ = writeln!(
        md,
        "{label}: {} requests, {} ok, {} errors, {:.0} ok/s; latency p50 {} µs, p99 {} µs, max {} µs; statuses {:?}; targets {:?}.",
        r.requests, r.ok, r.errors, r.throughput, r.latency_us.p50, r.latency_us.p99, r.latency_us.max, r.statuses, r.targets
    );
    if let Some(s) = r.streams {
        let _ = writeln!(
            md,
            "Streams: {} completed, {} errored, {} continued on another target.",
            s.completed, s.errored, s.continued
        );
    }
    md.push('\n');
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
