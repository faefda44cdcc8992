//! The `switchyard` command: run the gateway, check a config, or watch the demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use switchyard::config::{self, DriverChoice};
use switchyard::gateway::{Gateway, Overrides};
use switchyard::log::Level;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often the control plane re-resolves provider host names.
const DNS_REFRESH: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A thread-per-core LLM gateway that keeps applications answering when model providers fail.",
    long_about = "switchyard sits between applications and LLM providers. It retries what is worth retrying, \
falls back across providers, opens circuit breakers on failing targets and keeps streams alive — \
with microseconds of overhead per request.\n\nStart with `switchyard demo` to watch a scripted outage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. SIGHUP reloads the config; SIGTERM/SIGINT drain and stop.
    Run {
        /// Path to the YAML config (see config/switchyard.example.yaml).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Number of shards (threads pinned to cores); overrides `shards:`.
        #[arg(long, value_name = "N")]
        shards: Option<usize>,
        /// Force the I/O driver: auto, io_uring or legacy; overrides `driver:`.
        #[arg(long, value_name = "DRIVER")]
        driver: Option<String>,
    },
    /// Validate a config file: prints every mistake with file:line and exits non-zero.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the built-in demo: two mock providers, the gateway, steady traffic and a
    /// scripted outage with live failover.
    Demo {
        /// Demo length in seconds.
        #[arg(long, default_value_t = 75)]
        seconds: u64,
        /// Requests per second the demo client sends.
        #[arg(long, default_value_t = 20)]
        rate: u32,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { config } => check(&config),
        Command::Run {
            config,
            shards,
            driver,
        } => run(&config, shards, driver.as_deref()),
        Command::Demo { seconds, rate } => {
            match switchyard::demo::run(Duration::from_secs(seconds), rate) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load_file(path) {
        Ok(config) => {
            println!(
                "{}: OK ({} providers, {} routes)",
                path.display(),
                config.providers.len(),
                config.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} mistake(s) in {}", errors.0.len(), path.display());
            ExitCode::FAILURE
        }
    }
}

fn parse_driver(name: &str) -> Option<DriverChoice> {
    match name {
        "auto" => Some(DriverChoice::Auto),
        "io_uring" | "io-uring" | "uring" => Some(DriverChoice::IoUring),
        "legacy" | "epoll" => Some(DriverChoice::Legacy),
        _ => None,
    }
}

fn run(path: &std::path::Path, shards: Option<usize>, driver: Option<&str>) -> ExitCode {
    let mut config = match config::load_file(path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(name) = driver {
        let Some(choice) = parse_driver(name) else {
            eprintln!("--driver: unknown driver `{name}`; expected auto, io_uring or legacy");
            return ExitCode::FAILURE;
        };
        config.driver = choice;
    }
    if shards == Some(0) {
        eprintln!("--shards must be at least 1");
        return ExitCode::FAILURE;
    }
    switchyard::log::set_format(config.log.format);
    let signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = match Gateway::start(config, Some(path.to_path_buf()), &Overrides { shards }) {
        Ok(gateway) => gateway,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return ExitCode::FAILURE;
        }
    };
    switchyard::systemd::notify_ready();
    control_loop(&gateway, signals);
    switchyard::systemd::notify_stopping();
    gateway.shutdown();
    ExitCode::SUCCESS
}

/// Waits for signals, reloading on SIGHUP, until SIGTERM/SIGINT.
fn control_loop(gateway: &Gateway, mut signals: signal_hook::iterator::Signals) {
    let mut last_dns = std::time::Instant::now();
    loop {
        for signal in signals.pending() {
            match signal {
                SIGHUP => match gateway.control.reload_file() {
                    Ok(_) => {}
                    Err(e) => switchyard::event!(
                        Level::Error,
                        "reload rejected; the running config stays",
                        error = e
                    ),
                },
                _ => return,
            }
        }
        switchyard::systemd::notify_watchdog();
        if last_dns.elapsed() >= DNS_REFRESH {
            gateway.control.refresh_dns();
            last_dns = std::time::Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
