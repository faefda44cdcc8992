//! End-to-end smoke run of the scenario suite: every scenario, shortened, against
//! the debug `switchyard` binary (built if missing). Every criterion is a count or
//! a same-run ratio with a bound loose enough for a busy 2-core machine, so the
//! verdict itself is asserted: every scenario runs, every criterion is measured,
//! and every one passes. The absolute DESIGN budgets are reported, not asserted.

use std::path::PathBuf;

use loadtest::suite::metrics::Outcome;
use loadtest::suite::{self, SuiteOptions, SuiteStatus};

/// The smoke scenarios use 100 ms timeouts against a debug gateway: a machine busy
/// enough to slow it past them (seen with a CPU hog plus two compiles on 2 cores)
/// makes the gateway itself fail over, which no verdict can tell from a defect. So
/// a run that does not pass is run once more, and the second one must pass: a real
/// defect fails both. Every run must still be complete (no scenario error, nothing
/// left unmeasured).
#[test]
fn smoke_suite_runs_end_to_end_and_passes() {
    let first = smoke_run("a");
    if first.passed {
        return;
    }
    eprintln!(
        "first smoke run did not pass, running once more:\n{}",
        first.summary
    );
    let second = smoke_run("b");
    assert!(second.passed, "{}\n{}", second.summary, second.md);
}

struct SmokeRun {
    passed: bool,
    summary: String,
    md: String,
}

fn smoke_run(tag: &str) -> SmokeRun {
    let out = std::env::temp_dir().join(format!(
        "switchyard-suite-smoke-{}-{tag}",
        std::process::id()
    ));
    let options = SuiteOptions {
        smoke: true,
        out: out.clone(),
        ..SuiteOptions::default()
    };
    let report = suite::run(&options).expect("suite runs");
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md written");
    assert!(out.join("report.json").is_file());
    assert!(report.scenarios.len() >= 8, "{md}");
    let mut problems = Vec::new();
    for outcome in &report.scenarios {
        let name = &outcome.name;
        if let Some(error) = &outcome.error {
            problems.push(format!("{name} could not run: {error:?}"));
        }
        // A fleet scenario without redis-server is skipped (never in CI: there
        // SWITCHYARD_REQUIRE_REDIS turns the skip into failures).
        if let Some(why) = &outcome.skipped {
            eprintln!("{name} SKIPPED: {why}");
            continue;
        }
        assert!(!outcome.verdicts.is_empty(), "{name} has criteria");
        for v in outcome
            .verdicts
            .iter()
            .filter(|v| v.outcome == Outcome::NotMeasured)
        {
            problems.push(format!("{name}: not measured: {v:?}"));
        }
        assert!(out.join(format!("{name}.svg")).is_file());
        let rows = md
            .lines()
            .filter(|l| l.starts_with(&format!("| {name} |")))
            .count();
        assert!(rows >= outcome.verdicts.len(), "{md}");
    }
    let _ = std::fs::remove_dir_all(&out);
    SmokeRun {
        passed: problems.is_empty() && report.status() == SuiteStatus::Pass,
        summary: format!("{}\n{}", report.summary(), problems.join("\n")),
        md,
    }
}

#[test]
fn scenario_files_in_the_repo_are_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let all = suite::scenario::load_dir(&dir).expect("scenario files parse");
    assert!(all.len() >= 8, "{} scenarios", all.len());
}
