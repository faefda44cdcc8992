//! `switchyard demo` as an operator runs it: the real binary, a short run. The
//! table is on stdout with no log line inside it (the log goes to a file), the
//! outage moves traffic to the fallback with no error seen by clients, and the
//! run ends with its summary.

use std::process::Command;
use std::time::Duration;

#[test]
fn the_demo_shows_failover_and_ends_with_a_summary() {
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["demo", "--seconds", "14", "--rate", "20"])
        .output()
        .expect("the demo runs");
    assert!(started.elapsed() < Duration::from_secs(60), "the demo ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("done/s"), "{stdout}");
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with("ts=") || l.contains("level=")),
        "log lines inside the table:\n{stdout}"
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|t| t.ends_with('s') && t[..t.len() - 1].parse::<u32>().is_ok())
        })
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.len() >= 10, "{stdout}");
    // Columns: t, done/s, waiting, primary, fallback, errors, ...
    let fallback: u32 = rows
        .iter()
        .filter_map(|r| r.get(4)?.parse::<u32>().ok())
        .sum();
    let errors: u32 = rows
        .iter()
        .filter_map(|r| r.get(5)?.parse::<u32>().ok())
        .sum();
    assert!(
        fallback > 0,
        "the outage moved traffic to the fallback:\n{stdout}"
    );
    assert_eq!(errors, 0, "{stdout}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    assert!(summary.contains(" 0 errors seen by clients"), "{summary}");
}
