//! End-to-end smoke run of the scenario suite: every scenario, shortened to a few
//! seconds, against the debug `switchyard` binary (built if missing). Asserts the
//! plumbing (report written, verdicts computed), never performance.

use std::path::PathBuf;

use loadtest::suite::{self, SuiteOptions};

#[test]
fn smoke_suite_runs_end_to_end_and_writes_the_report() {
    let out = std::env::temp_dir().join(format!("switchyard-suite-smoke-{}", std::process::id()));
    let options = SuiteOptions {
        smoke: true,
        out: out.clone(),
        ..SuiteOptions::default()
    };
    let report = suite::run(&options).expect("suite runs");
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md written");
    assert!(out.join("report.json").is_file());
    for name in ["baseline", "primary-outage"] {
        let outcome = report
            .scenarios
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} ran"));
        assert!(outcome.error.is_none(), "{name}: {:?}", outcome.error);
        assert!(!outcome.verdicts.is_empty(), "{name} has verdicts");
        assert!(
            outcome
                .verdicts
                .iter()
                .all(|v| v.measured.is_some() || v.metric == "recovery_s"),
            "{name}: {:?}",
            outcome.verdicts
        );
        assert!(out.join(format!("{name}.svg")).is_file());
        let rows = md.lines().filter(|l| l.starts_with(&format!("| {name} |")));
        assert!(
            rows.clone().count() >= 2
                && rows
                    .clone()
                    .all(|l| l.contains("PASS") || l.contains("FAIL")),
            "{md}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn scenario_files_in_the_repo_are_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let all = suite::scenario::load_dir(&dir).expect("scenario files parse");
    assert!(all.len() >= 8, "{} scenarios", all.len());
}
