//! The suite's report directory: `report.md` (one table row per criterion, then
//! details per scenario), `report.json` (everything measured) and `NAME.svg`.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::chart;
use super::metrics::{Outcome, Verdict};
use super::runner::{Placement, ScenarioRun};
use super::SuiteError;

/// One scenario's result: measured and judged, or why it could not run.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioOutcome {
    pub name: String,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the scenario was skipped (a fleet scenario without redis-server); a
    /// skip neither passes nor fails anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The criteria: these decide the suite's verdict.
    pub verdicts: Vec<Verdict>,
    /// DESIGN.md budgets: reported, never part of the verdict.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<ScenarioRun>,
}

impl ScenarioOutcome {
    pub fn passed(&self) -> bool {
        self.status() == SuiteStatus::Pass
    }

    /// FAIL if any criterion failed; else a harness error if the scenario could
    /// not run or a criterion could not be measured; else PASS.
    pub fn status(&self) -> SuiteStatus {
        if self.verdicts.iter().any(|v| v.outcome == Outcome::Fail) {
            SuiteStatus::Fail
        } else if self.error.is_some()
            || self
                .verdicts
                .iter()
                .any(|v| v.outcome == Outcome::NotMeasured)
        {
            SuiteStatus::HarnessError
        } else {
            SuiteStatus::Pass
        }
    }
}

/// What a run of the suite (or one scenario) comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuiteStatus {
    /// Every criterion was measured and passed.
    Pass,
    /// Nothing failed, but something could not be judged: a scenario that could
    /// not run, or a criterion the run could not measure. Rerun; if it persists
    /// the harness (or the scenario's timeline) needs fixing.
    HarnessError,
    /// A criterion was measured and failed: the gateway misbehaved.
    Fail,
}

impl SuiteStatus {
    /// The `suite` binary's exit status (2 is taken by "could not start").
    pub fn exit_code(self) -> u8 {
        match self {
            SuiteStatus::Pass => 0,
            SuiteStatus::Fail => 1,
            SuiteStatus::HarnessError => 3,
        }
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
        self.status() == SuiteStatus::Pass
    }

    /// The worst scenario status: any FAIL beats a harness error, which beats PASS.
    pub fn status(&self) -> SuiteStatus {
        self.scenarios
            .iter()
            .map(ScenarioOutcome::status)
            .max()
            .unwrap_or(SuiteStatus::Pass)
    }

    /// One line: how many criteria passed, failed, could not be measured; how
    /// many scenarios could not run; how the budgets came out.
    pub fn summary(&self) -> String {
        let count = |budgets: bool, o: Outcome| {
            self.scenarios
                .iter()
                .flat_map(|s| if budgets { &s.budgets } else { &s.verdicts })
                .filter(|v| v.outcome == o)
                .count()
        };
        let (criteria, budgets) = (false, true);
        let errors = self.scenarios.iter().filter(|s| s.error.is_some()).count();
        format!(
            "{}: criteria {} PASS, {} FAIL, {} NOT MEASURED; {} scenario(s) could not run; \
             budgets (informational) {} met, {} missed, {} not measured",
            match self.status() {
                SuiteStatus::Pass => "PASS",
                SuiteStatus::Fail => "FAIL",
                SuiteStatus::HarnessError => "HARNESS ERROR",
            },
            count(criteria, Outcome::Pass),
            count(criteria, Outcome::Fail),
            count(criteria, Outcome::NotMeasured),
            errors,
            count(budgets, Outcome::Pass),
            count(budgets, Outcome::Fail),
            count(budgets, Outcome::NotMeasured),
        )
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
        if let Some(why) = &s.skipped {
            let _ = writeln!(md, "| {} | (run) | {} | - | SKIPPED |", s.name, cell(why));
            continue;
        }
        if s.verdicts.is_empty() {
            let _ = writeln!(md, "| {} | (none) | - | - | - |", s.name);
        }
        for v in &s.verdicts {
            let verdict = match v.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "**FAIL**",
                Outcome::NotMeasured => "**NOT MEASURED**",
            };
            row(&mut md, &s.name, v, verdict);
        }
    }
    md
}

/// The budgets table as markdown, empty when no scenario has budgets.
pub fn budget_table(report: &SuiteReport) -> String {
    if report.scenarios.iter().all(|s| s.budgets.is_empty()) {
        return String::new();
    }
    let mut md =
        String::from("| scenario | budget | measured | bound | |\n|---|---|---|---|---|\n");
    for s in &report.scenarios {
        for v in &s.budgets {
            let verdict = match v.outcome {
                Outcome::Pass => "met",
                Outcome::Fail => "missed",
                Outcome::NotMeasured => "not measured",
            };
            row(&mut md, &s.name, v, verdict);
        }
    }
    md
}

fn row(md: &mut String, scenario: &str, v: &Verdict, verdict: &str) {
    let measured = match (v.measured, &v.reason, v.outcome) {
        (Some(m), _, _) => number(m),
        (None, Some(why), Outcome::NotMeasured) => format!("not measured: {}", cell(why)),
        (None, Some(why), _) => cell(why),
        (None, None, _) => "-".to_string(),
    };
    let _ = writeln!(
        md,
        "| {scenario} | {} | {measured} | {} | {verdict} |",
        v.metric, v.bound
    );
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
        "**{passed} of {} scenarios passed.** {}.\n",
        report.scenarios.len(),
        report.summary()
    );
    md.push_str(
        "Criteria are counts and same-run ratios and decide the verdict; NOT MEASURED \
         means the run could not produce the value (a harness problem, exit status 3), \
         not that the gateway failed.\n\n",
    );
    md.push_str(&table(report));
    let budgets = budget_table(report);
    if !budgets.is_empty() {
        md.push_str(
            "\nDESIGN.md budgets: absolute figures, meaningful only on a quiet machine; \
             reported, never part of the verdict.\n\n",
        );
        md.push_str(&budgets);
    }
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
        if let (Some(fault), Some(planned)) = (run.fault_start_s, run.planned_fault_start_s) {
            let _ = writeln!(
                md,
                "First fault applied at {fault:.2} s (planned {planned} s){}; breaker window starts {} s after it.\n",
                match (run.heal_s, run.planned_heal_s) {
                    (Some(h), Some(p)) => format!(", heal at {h:.2} s (planned {p} s)"),
                    (None, Some(p)) => format!(", heal (planned {p} s) never applied"),
                    _ => String::new(),
                },
                run.settle_s
            );
        }
        if let Some(c) = &run.cluster {
            cluster_fleets(&mut md, c);
        } else if let Some(e) = &run.efficiency {
            md.push_str(&super::efficiency::method(e));
            md.push('\n');
            md.push_str(&super::efficiency::table(e));
            md.push_str("\nEvery slice, in the order run:\n\n");
            md.push_str(&super::efficiency::slices(e));
            md.push('\n');
        } else if let Some(n) = &run.neighbour {
            neighbour_slices(&mut md, n);
        } else if run.phases.is_empty() {
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
            md.push_str("Slices, in the order run (the table shows the best one of each phase: lowest p50 at a fixed rate, highest ok/s closed loop; errors count over all of them):\n\n");
            for (phase, slices) in &run.slices {
                let list: Vec<String> = slices
                    .iter()
                    .map(|s| {
                        format!(
                            "{:.0} ok/s p50 {} µs ({} errors{})",
                            s.throughput,
                            s.p50_us,
                            s.errors,
                            if s.retried > 0 {
                                format!(", {} retried", s.retried)
                            } else {
                                String::new()
                            }
                        )
                    })
                    .collect();
                let _ = writeln!(md, "- {phase}: {}", list.join("; "));
            }
            md.push('\n');
        }
        if let Some(p) = &run.timeline.reference_probe {
            let _ = writeln!(
                md,
                "Reference probe at {:.2}–{:.2} s (before the fault): {} requests, statuses {:?}, latency p50 {} µs p99 {} µs, batch p50s {:?} µs.\n",
                p.at_s, p.last_at_s, p.requests, p.statuses, p.p50_us, p.p99_us, p.batch_p50_us
            );
        }
        if let Some(p) = &run.timeline.probe {
            let _ = writeln!(
                md,
                "Probe at {:.2}–{:.2} s: {} requests in {} batches, statuses {:?}, {} with 503 + retry-after, latency p50 {} µs p99 {} µs max {} µs, batch p50s {:?} µs.\n",
                p.at_s, p.last_at_s, p.requests, p.batch_p50_us.len(), p.statuses, p.with_retry_after, p.p50_us, p.p99_us, p.max_us, p.batch_p50_us
            );
        }
        for step in &run.timeline.applied {
            let _ = writeln!(md, "- {:.2} s: {} → `{}`", step.at_s, step.mock, step.fault);
        }
        let _ = writeln!(md, "\n![{0}]({0}.svg)", s.name);
    }
    md
}

/// A neighbour scenario's slices, in the order run: the main stream's figures,
/// each extra stream's admitted and refused counts, the mocks' requests.
fn cluster_fleets(md: &mut String, c: &super::cluster::ClusterRun) {
    if let Some(why) = c.skipped.as_ref().or(c.required_missing.as_ref()) {
        let _ = writeln!(md, "Skipped: {why}.\n");
        return;
    }
    md.push_str("| fleet | phase A requests | errors | dead-primary calls | phase B ok / 429 | admitted per window (limit {}) |\n|---|---|---|---|---|---|\n".replace("{}", &c.limit_per_window.to_string()).as_str());
    for (name, f) in [("clustered", &c.clustered), ("independent", &c.independent)] {
        let Some(f) = f else { continue };
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} / {} | {:?} |",
            f.health.requests,
            f.health.errors,
            f.dead_calls,
            f.limit.ok,
            f.limit.statuses.get(&429).copied().unwrap_or(0),
            f.admitted_per_window
        );
    }
    if let (Some(a), Some(b)) = (&c.clustered, &c.independent) {
        if b.dead_calls > 0 {
            let _ = writeln!(
                md,
                "\nDead-primary calls clustered ÷ independent: {:.2} (each independent node learns the failure itself: ≈ 1/{} expected).",
                a.dead_calls as f64 / b.dead_calls as f64,
                a.health.per_node.len()
            );
        }
    }
    md.push('\n');
}

fn neighbour_slices(md: &mut String, n: &super::neighbour::NeighbourRun) {
    let _ = writeln!(
        md,
        "Slices of {:.1} s, quiet (main traffic alone) and loaded (with the extra streams) alternating; the ratio takes the lowest p99 of each side.\n",
        n.slice_s
    );
    md.push_str("| slice | main ok | main errors | main p50 µs | main p99 µs | extra streams (ok / 429 / other) | mock requests | upstream excess |\n|---|---|---|---|---|---|---|---|\n");
    for s in &n.slices {
        let extra: Vec<String> = s
            .extra
            .iter()
            .map(|(name, r)| {
                let refused = r.statuses.get(&429).copied().unwrap_or(0);
                format!("{name}: {} / {refused} / {}", r.ok, r.errors - refused)
            })
            .collect();
        let _ = writeln!(
            md,
            "| {} {} | {} | {} | {} | {} | {} | {} | {} |",
            if s.loaded { "loaded" } else { "quiet" },
            s.round + 1,
            s.main.ok,
            s.main.errors,
            s.main.latency_us.p50,
            s.main.latency_us.p99,
            if extra.is_empty() {
                "-".into()
            } else {
                extra.join("; ")
            },
            s.mock_requests,
            super::neighbour::upstream_excess(s)
        );
    }
    let per_s = super::neighbour::admitted_per_second(n);
    let _ = writeln!(
        md,
        "\nExtra streams' admitted requests per whole second inside the loaded slices (by intended send time): {per_s:?}.\n"
    );
}

fn summary(md: &mut String, label: &str, r: &crate::loadgen::LoadReport) {
    let _ = writeln!(
        md,
        "{label}: {} requests, {} ok, {} errors, {:.0} ok/s; latency p50 {} µs, p99 {} µs, max {} µs; statuses {:?}; targets {:?}; upstream attempts per answer {:?}; {} sends more than 1 ms late.",
        r.requests, r.ok, r.errors, r.throughput, r.latency_us.p50, r.latency_us.p99, r.latency_us.max, r.statuses, r.targets, r.attempts, r.late_starts
    );
    if let Some(s) = r.streams {
        let _ = writeln!(
            md,
            "Streams: {} completed, {} errored, {} continued on another target ({} of them whole); {} completed with a text that is no mock's full answer.",
            s.completed, s.errored, s.continued, s.continued_full, s.bad_success
        );
        if let Some(t) = &r.ttft_us {
            let _ = writeln!(
                md,
                "Time to first content (from the intended send): p50 {} µs, p99 {} µs, max {} µs.",
                t.p50, t.p99, t.max
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::scenario::Bound;

    fn verdict(outcome: Outcome) -> Verdict {
        Verdict {
            metric: "error_rate",
            bound: Bound {
                min: None,
                max: Some(0.0),
            },
            measured: (outcome != Outcome::NotMeasured).then_some(0.0),
            outcome,
            reason: (outcome == Outcome::NotMeasured).then(|| "the run ended too soon".into()),
        }
    }

    fn scenario(error: bool, criteria: &[Outcome], budgets: &[Outcome]) -> ScenarioOutcome {
        ScenarioOutcome {
            name: "s".into(),
            file: "s.yaml".into(),
            error: error.then(|| "gateway: not ready".into()),
            skipped: None,
            verdicts: criteria.iter().copied().map(verdict).collect(),
            budgets: budgets.iter().copied().map(verdict).collect(),
            run: None,
        }
    }

    #[test]
    fn status_table_fail_beats_harness_error_beats_pass() {
        use Outcome::{Fail, NotMeasured, Pass};
        use SuiteStatus as S;
        let cases: [(bool, &[Outcome], &[Outcome], SuiteStatus); 7] = [
            (false, &[Pass, Pass], &[], S::Pass),
            // Budgets never change the verdict, missed or not measured.
            (false, &[Pass], &[Fail, NotMeasured], S::Pass),
            (false, &[Pass, NotMeasured], &[], S::HarnessError),
            (true, &[], &[], S::HarnessError),
            (false, &[Fail, Pass], &[], S::Fail),
            // A real failure is never hidden behind a measurement gap.
            (false, &[NotMeasured, Fail], &[], S::Fail),
            (false, &[], &[], S::Pass),
        ];
        for (i, (error, criteria, budgets, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                scenario(error, criteria, budgets).status(),
                want,
                "case {i}"
            );
        }
        let report = |scenarios| SuiteReport {
            mode: "smoke",
            started_unix: 0,
            cores: 2,
            placement: Placement::default(),
            gateway_bin: "switchyard".into(),
            scenarios,
        };
        let mixed = report(vec![
            scenario(false, &[Pass], &[]),
            scenario(true, &[], &[]),
            scenario(false, &[NotMeasured], &[Fail]),
        ]);
        assert_eq!(mixed.status(), S::HarnessError);
        assert_eq!(mixed.status().exit_code(), 3);
        let summary = mixed.summary();
        assert!(
            summary.starts_with(
                "HARNESS ERROR: criteria 1 PASS, 0 FAIL, 1 NOT MEASURED; 1 scenario(s)"
            ),
            "{summary}"
        );
        let md = table(&mixed);
        assert!(
            md.contains("| s | (run) | gateway: not ready | - | **ERROR** |"),
            "{md}"
        );
        assert!(
            md.contains("| s | error_rate | not measured: the run ended too soon | ≤ 0 | **NOT MEASURED** |"),
            "{md}"
        );
        assert!(budget_table(&mixed).contains("| missed |"));
        let failed = report(vec![
            scenario(false, &[Fail], &[]),
            scenario(true, &[], &[]),
        ]);
        assert_eq!(failed.status().exit_code(), 1);
        assert_eq!(report(Vec::new()).status().exit_code(), 0);
    }
}
