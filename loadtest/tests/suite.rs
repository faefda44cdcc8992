//! End-to-end smoke run of the scenario suite: every scenario, shortened, against
//! the debug `switchyard` binary (built if missing). Every criterion is a count or
//! a same-run ratio with a bound loose enough for a busy 2-core machine, so the
//! verdict itself is asserted: every scenario runs, every criterion is measured,
//! and every one passes. The absolute DESIGN budgets are reported, not asserted.

use std::path::PathBuf;

use loadtest::suite::metrics::Outcome;
use loadtest::suite::{self, SuiteOptions, SuiteStatus};

#[test]
fn smoke_suite_runs_end_to_end_and_passes() {
    let out = std::env::temp_dir().join(format!("switchyard-suite-smoke-{}", std::process::id()));
    let options = SuiteOptions {
        smoke: true,
        out: out.clone(),
        ..SuiteOptions::default()
    };
    let report = suite::run(&options).expect("suite runs");
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md written");
    assert!(out.join("report.json").is_file());
    assert!(report.scenarios.len() >= 8, "{md}");
    for outcome in &report.scenarios {
        let name = &outcome.name;
        assert!(outcome.error.is_none(), "{name}: {:?}", outcome.error);
        assert!(!outcome.verdicts.is_empty(), "{name} has criteria");
        for v in &outcome.verdicts {
            assert_ne!(v.outcome, Outcome::NotMeasured, "{name}: {v:?}\n{md}");
        }
        assert!(out.join(format!("{name}.svg")).is_file());
        let rows = md
            .lines()
            .filter(|l| l.starts_with(&format!("| {name} |")))
            .count();
        assert!(rows >= outcome.verdicts.len(), "{md}");
    }
    assert_eq!(
        report.status(),
        SuiteStatus::Pass,
        "{}\n{md}",
        report.summary()
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn scenario_files_in_the_repo_are_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let all = suite::scenario::load_dir(&dir).expect("scenario files parse");
    assert!(all.len() >= 8, "{} scenarios", all.len());
}
