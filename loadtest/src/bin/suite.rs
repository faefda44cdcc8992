//! `suite`: runs the outage scenarios against a real switchyard process and writes
//! loadtest/report/ (report.md, report.json, one SVG per scenario).
//!
//! `cargo run --release -p loadtest --bin suite -- [--smoke] [--only NAME,...]`
//! Exit status: 0 every criterion measured and passed; 1 a criterion failed;
//! 2 the suite could not start (bad scenario file, no gateway binary); 3 nothing
//! failed but something could not be judged (a scenario could not run, or a
//! criterion was NOT MEASURED — the reason is in its row).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use loadtest::suite::{self, scenario, SuiteOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The switchyard outage scenario suite.
#[derive(Debug, Parser)]
#[command(name = "suite", version)]
struct Args {
    /// Shorten every scenario to a few seconds at low rates (checks the plumbing, not performance).
    #[arg(long)]
    smoke: bool,
    /// Run only these scenarios (comma separated or repeated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The switchyard binary (default: target/<profile>/switchyard, built if missing).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Directory of scenario YAML files.
    #[arg(long)]
    scenarios: Option<PathBuf>,
    /// Report directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let defaults = SuiteOptions::default();
    let options = SuiteOptions {
        smoke: args.smoke,
        only: args.only,
        gateway_bin: args.gateway_bin,
        scenarios: args.scenarios.unwrap_or(defaults.scenarios),
        out: args.out.unwrap_or(defaults.out),
    };
    if args.list {
        return match scenario::load_dir(&options.scenarios) {
            Ok(all) => {
                for (file, s) in all {
                    println!("{:<22} {}", s.name, file.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("suite: {e}");
                ExitCode::from(2)
            }
        };
    }
    match suite::run(&options) {
        Ok(report) => {
            println!("{}", suite::report::table(&report));
            let budgets = suite::report::budget_table(&report);
            if !budgets.is_empty() {
                println!("DESIGN budgets (informational, not part of the verdict):\n\n{budgets}");
            }
            println!("{}", report.summary());
            println!("report: {}", options.out.join("report.md").display());
            ExitCode::from(report.status().exit_code())
        }
        Err(e) => {
            eprintln!("suite: {e}");
            ExitCode::from(2)
        }
    }
}
