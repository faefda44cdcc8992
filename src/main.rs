//! The `switchyard` command: run the gateway, check a config, or watch the demo.

mod instance_lock;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
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
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SWITCHYARD_COMMIT"), ")"),
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
        #[arg(short, long, value_name = "FILE", env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
        /// Number of shards (threads pinned to cores); overrides `shards:`.
        #[arg(long, value_name = "N")]
        shards: Option<usize>,
        /// Force the I/O driver: auto, io_uring or legacy; overrides `driver:`.
        #[arg(long, value_name = "DRIVER")]
        driver: Option<String>,
        /// Start even though another instance serves the same listen address (a
        /// zero-downtime upgrade: start the new one, then SIGTERM the old, which drains).
        #[arg(long)]
        takeover: bool,
    },
    /// Validate a config file: prints every mistake with file:line and exits non-zero;
    /// warns (exit 0) about placeholder secrets and `$VAR` written without braces.
    Check {
        /// The config to check (or --config FILE, or SWITCHYARD_CONFIG).
        #[arg(value_name = "FILE", conflicts_with = "config")]
        file: Option<PathBuf>,
        #[arg(short, long, value_name = "FILE", env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `switchyard man > /usr/local/share/man/man1/switchyard.1`.
    Man,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { file, config } => match file.or(config) {
            Some(path) => check(&path),
            None => {
                eprintln!("switchyard check: no config given: pass FILE, --config FILE or set SWITCHYARD_CONFIG");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            config,
            shards,
            driver,
            takeover,
        } => run(&config, shards, driver.as_deref(), takeover),
        Command::Demo { seconds, rate } => {
            match switchyard::demo::run(Duration::from_secs(seconds), rate) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "switchyard",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchyard man: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let result = config::load_file(path);
    for warning in config::lint_file(path, &|name| std::env::var(name).ok()) {
        eprintln!("warning: {warning}");
    }
    match result {
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

fn run(path: &Path, shards: Option<usize>, driver: Option<&str>, takeover: bool) -> ExitCode {
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
    if let Err(e) = lock_instance(&config, takeover) {
        eprintln!("switchyard: {e}");
        return ExitCode::FAILURE;
    }
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

/// Refuses a second instance on the same listen address (see [`instance_lock`]);
/// port 0 (any free port) never collides, so it takes no lock.
fn lock_instance(config: &config::Config, takeover: bool) -> Result<(), instance_lock::LockError> {
    if config.listen.port() == 0 {
        return Ok(());
    }
    let dir = instance_lock::lock_dir(
        config
            .state
            .configured
            .then_some(config.state.dir.as_path()),
        std::env::var("RUNTIME_DIRECTORY").ok().as_deref(),
        std::env::var("XDG_RUNTIME_DIR").ok().as_deref(),
    );
    if !takeover {
        // Held for the life of the process.
        std::mem::forget(instance_lock::acquire(&dir, config.listen)?);
        return Ok(());
    }
    if let Some(pid) = instance_lock::acquire_or_wait(&dir, config.listen)? {
        switchyard::event!(
            Level::Info,
            "--takeover: starting beside the running instance; SIGTERM it to finish the upgrade",
            pid = pid
        );
    }
    Ok(())
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
