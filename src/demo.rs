//! `switchyard demo`: two embedded mock providers, the gateway on config/demo.yaml,
//! a steady trickle of client requests, and a scripted outage — shown live.
//!
//! The script: healthy → primary answers 503 (breaker opens, traffic moves to the
//! fallback) → primary heals (half-open probe, traffic returns) → 429 storm with
//! `Retry-After` (a sideline, not a trip) → heal → brownout slower than the
//! first-byte timeout → heal. Phases are placed at fractions of the length, which
//! is long enough by default for each recovery to show; the gateway's own log goes
//! to a file so it never breaks the table, and a summary ends the run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use loadtest::client::{chat_body, Client};
use loadtest::mock::{self, Fault, MockConfig, MockHandle};

use crate::config;
use crate::gateway::{Gateway, Overrides};

/// The demo's config, compiled in so the demo runs from any directory.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.yaml");

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo config: {0}")]
    Config(#[from] config::ConfigErrors),
    #[error("mock provider: {0}")]
    Mock(std::io::Error),
    #[error(transparent)]
    Gateway(#[from] crate::control::GatewayError),
}

struct Phase {
    at: f64,
    title: &'static str,
    fault: Fault,
}

fn script() -> Vec<Phase> {
    vec![
        Phase {
            at: 0.0,
            title: "healthy: the primary serves everything",
            fault: Fault::None,
        },
        Phase {
            at: 0.1,
            title: "OUTAGE: primary answers 503 to every request",
            fault: Fault::Status {
                status: 503,
                rate: 1.0,
                retry_after: None,
                body: None,
                times: None,
            },
        },
        Phase {
            at: 0.25,
            title: "primary healed: half-open probe, then traffic returns",
            fault: Fault::None,
        },
        Phase {
            at: 0.45,
            title: "RATE-LIMIT STORM: primary answers 429 with Retry-After: 2",
            fault: Fault::Status {
                status: 429,
                rate: 1.0,
                retry_after: Some(2),
                body: None,
                times: None,
            },
        },
        Phase {
            at: 0.55,
            title: "storm over",
            fault: Fault::None,
        },
        Phase {
            at: 0.7,
            title: "BROWNOUT: primary takes 3 s (first-byte timeout is 2 s)",
            fault: Fault::Latency {
                base: Duration::from_secs(3),
                jitter: Duration::ZERO,
            },
        },
        Phase {
            at: 0.8,
            title: "brownout over: back to normal",
            fault: Fault::None,
        },
    ]
}

/// One finished demo request.
struct Sample {
    target: String,
    status: u16,
    latency: Duration,
    stream: bool,
    /// Attempts the gateway made (more than one: a failure it absorbed).
    attempts: u32,
}

pub fn run(length: Duration, rate: u32) -> Result<(), DemoError> {
    let primary = start_mock("primary")?;
    let fallback = start_mock("fallback")?;
    let mut config = config::load_str(DEMO_CONFIG, "config/demo.yaml", &|name| {
        std::env::var(name).ok()
    })?;
    point_at(&mut config, "primary", primary.addr());
    point_at(&mut config, "fallback", fallback.addr());
    if std::net::TcpListener::bind(config.listen).is_err() {
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    }
    if let Some(admin) = config.admin.as_mut() {
        if std::net::TcpListener::bind(admin.listen).is_err() {
            admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        }
    }
    crate::log::set_format(config.log.format);
    let log_path = log_to_file();
    let gateway = Gateway::start(config, None, &Overrides::default())?;
    banner(&gateway, rate, log_path.as_deref());
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Sample>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let clients = start_clients(gateway.addr(), rate, stop.clone(), tx, in_flight.clone());
    let mut totals = Totals::default();
    show(&gateway, &primary, length, &rx, &mut totals, &in_flight);
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        let _ = client.join();
    }
    totals.print();
    gateway.shutdown();
    primary.shutdown();
    fallback.shutdown();
    println!("\ndemo finished. Run it against your own providers: switchyard run --config config/switchyard.example.yaml");
    Ok(())
}

fn start_mock(name: &str) -> Result<MockHandle, DemoError> {
    mock::start(MockConfig {
        name: name.to_string(),
        stream_chunks: 6,
        chunk_delay: Duration::from_millis(5),
        ..MockConfig::default()
    })
    .map_err(DemoError::Mock)
}

fn point_at(config: &mut config::Config, provider: &str, addr: SocketAddr) {
    if let Some(p) = config.providers.iter_mut().find(|p| p.name == provider) {
        p.base_url.host = addr.ip().to_string();
        p.base_url.port = addr.port();
    }
}

/// Sends the gateway's log (stderr) to a file for the demo's length, so log lines
/// never break the table; `None` (the log stays on stderr) if no file opens.
fn log_to_file() -> Option<std::path::PathBuf> {
    use std::os::fd::AsRawFd;
    let path = std::env::temp_dir().join("switchyard-demo.log");
    let file = std::fs::File::create(&path).ok()?;
    // SAFETY: dup2 onto fd 2 with a file we own; no memory is involved, and the
    // duplicate outlives `file`, which is closed on return.
    let rc = unsafe { libc::dup2(file.as_raw_fd(), 2) };
    (rc == 2).then_some(path)
}

fn banner(gateway: &Gateway, rate: u32, log: Option<&std::path::Path>) {
    println!(
        "switchyard demo — gateway on http://{} (admin: {})",
        gateway.addr(),
        gateway
            .admin_addr()
            .map_or("off".into(), |a| format!("http://{a}/admin/targets"))
    );
    println!("route `demo`: primary (priority 0) → fallback (priority 1); {rate} req/s, half of them streamed");
    println!("try it yourself meanwhile: curl -s http://{}/v1/chat/completions -d '{{\"model\":\"demo\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'", gateway.addr());
    if let Some(log) = log {
        println!(
            "the gateway's log: {} (tail -f it in another terminal)",
            log.display()
        );
    }
    println!(
        "\n{:>5}  {:>6}  {:>7}  {:>7}  {:>8}  {:>6}  {:>8}  {:>9}  {:>7}  primary's breaker",
        "t",
        "done/s",
        "waiting",
        "primary",
        "fallback",
        "errors",
        "absorbed",
        "p50 plain",
        "p50 sse"
    );
}

fn start_clients(
    addr: SocketAddr,
    rate: u32,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<Sample>,
    in_flight: Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<()>> {
    // Many clients, each at a slow pace, so a slow answer (brownout) holds back
    // one of them, not the rate.
    let workers = rate.clamp(1, 16);
    let interval = Duration::from_secs_f64(f64::from(workers) / f64::from(rate.max(1)));
    (0..workers)
        .map(|i| {
            let stop = stop.clone();
            let tx = tx.clone();
            let in_flight = in_flight.clone();
            std::thread::spawn(move || {
                std::thread::sleep(interval.mul_f64(f64::from(i) / f64::from(workers)));
                let mut client = None;
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    n += 1;
                    let stream = (n + u64::from(i)).is_multiple_of(2);
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    let sample = one_request(addr, &mut client, stream, started);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    if tx.send(sample).is_err() {
                        return;
                    }
                    std::thread::sleep(interval.saturating_sub(started.elapsed()));
                }
            })
        })
        .collect()
}

fn one_request(
    addr: SocketAddr,
    client: &mut Option<Client>,
    stream: bool,
    started: Instant,
) -> Sample {
    if client.is_none() {
        *client = Client::connect(addr).ok();
    }
    let result = client
        .as_mut()
        .map(|c| c.chat(&chat_body("demo", stream), &[]));
    match result {
        Some(Ok(response)) => Sample {
            target: response
                .header("x-switchyard-target")
                .unwrap_or("-")
                .split('/')
                .next()
                .unwrap_or("-")
                .to_string(),
            status: response.status,
            latency: started.elapsed(),
            stream,
            attempts: response
                .header("x-switchyard-attempts")
                .and_then(|a| a.parse().ok())
                .unwrap_or(1),
        },
        _ => {
            *client = None;
            Sample {
                target: "-".into(),
                status: 0,
                latency: started.elapsed(),
                stream,
                attempts: 0,
            }
        }
    }
}

/// What the whole run saw, for the closing summary.
#[derive(Default)]
struct Totals {
    requests: u64,
    client_errors: u64,
    /// Answered 200 after a failed attempt, or by the fallback.
    absorbed: u64,
    /// When a healing phase began, and how long until the primary served again.
    healed_at: Option<u64>,
    recoveries: Vec<(u64, u64)>,
}

impl Totals {
    fn add(&mut self, second: u64, samples: &[Sample]) {
        self.requests += samples.len() as u64;
        self.client_errors += samples.iter().filter(|s| s.status != 200).count() as u64;
        self.absorbed += samples.iter().filter(|s| absorbed(s)).count() as u64;
        let primary_served = samples
            .iter()
            .any(|s| s.status == 200 && s.target == "primary");
        if let (Some(at), true) = (self.healed_at, primary_served) {
            self.recoveries.push((at, second.saturating_sub(at)));
            self.healed_at = None;
        }
    }

    fn print(&self) {
        let recoveries: Vec<String> = self
            .recoveries
            .iter()
            .map(|(at, took)| format!("{took} s after the heal at {at} s"))
            .collect();
        println!(
            "\nsummary: {} requests, {} errors seen by clients, {} failures absorbed by retries and failover; \
             the primary served again {}. Every outage above was invisible to the clients \
             except as latency.",
            self.requests,
            self.client_errors,
            self.absorbed,
            if recoveries.is_empty() {
                "— never within the run".to_string()
            } else {
                recoveries.join(", ")
            }
        );
    }
}

fn absorbed(sample: &Sample) -> bool {
    sample.status == 200 && (sample.attempts > 1 || sample.target == "fallback")
}

fn show(
    gateway: &Gateway,
    primary: &MockHandle,
    length: Duration,
    rx: &mpsc::Receiver<Sample>,
    totals: &mut Totals,
    in_flight: &AtomicUsize,
) {
    let phases = script();
    let mut next_phase = 0;
    let start = Instant::now();
    let mut second = 1;
    while start.elapsed() < length {
        let progress = start.elapsed().as_secs_f64() / length.as_secs_f64();
        while next_phase < phases.len() && progress >= phases[next_phase].at {
            let phase = &phases[next_phase];
            println!(
                "---- {:>4.1}s  {}",
                start.elapsed().as_secs_f64(),
                phase.title
            );
            primary.set_fault(phase.fault.clone());
            if matches!(phase.fault, Fault::None) && next_phase > 0 {
                totals.healed_at = Some(second - 1);
            }
            next_phase += 1;
        }
        let tick_end = start + Duration::from_secs(second);
        let mut samples = Vec::new();
        while let Ok(sample) = rx.recv_timeout(tick_end.saturating_duration_since(Instant::now())) {
            samples.push(sample);
            if Instant::now() >= tick_end {
                break;
            }
        }
        totals.add(second, &samples);
        let waiting = in_flight.load(Ordering::SeqCst);
        print_second(second, &samples, waiting, &breaker_line(gateway));
        second += 1;
    }
}

/// The primary's breaker as the gateway sees it now: a Retry-After sideline is
/// said as such (even over an open breaker), a half-open breaker as probing.
fn breaker_line(gateway: &Gateway) -> String {
    let table = gateway.control.current();
    let slot = table
        .slots
        .iter()
        .position(|s| s.label.starts_with("primary/"));
    let Some(breaker) = slot.and_then(|slot| table.breakers.get(slot)) else {
        return "-".into();
    };
    let now = Instant::now();
    let state = match breaker.open_until() {
        None => "closed".to_string(),
        Some(until) if until > now => {
            let reason = breaker.state(now).reason().map_or("", |r| r.as_str());
            let wait = (until - now).as_secs_f64();
            format!("open: {reason} (probe in {wait:.1}s)")
        }
        Some(_) => "half-open: probing".to_string(),
    };
    match breaker.sidelined_until(now) {
        Some(until) => {
            let left = (until - now).as_secs_f64();
            format!("sidelined by Retry-After ({left:.1}s left); breaker {state}")
        }
        None => state,
    }
}

/// One row: requests answered in the second (`done/s`), those still waiting
/// for their answer at its end, who served them, and the breaker.
fn print_second(second: u64, samples: &[Sample], waiting: usize, breaker: &str) {
    let mut by_target: BTreeMap<&str, usize> = BTreeMap::new();
    let mut errors = 0;
    for s in samples {
        if s.status == 200 {
            *by_target.entry(s.target.as_str()).or_default() += 1;
        } else {
            errors += 1;
        }
    }
    let p50 = |stream: bool| {
        let mut latencies: Vec<Duration> = samples
            .iter()
            .filter(|s| s.stream == stream)
            .map(|s| s.latency)
            .collect();
        latencies.sort();
        latencies
            .get(latencies.len() / 2)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{:>4}s  {:>6}  {:>7}  {:>7}  {:>8}  {:>6}  {:>8}  {:>9.1}  {:>7.1}  {breaker}",
        second,
        samples.len(),
        waiting,
        by_target.get("primary").copied().unwrap_or(0),
        by_target.get("fallback").copied().unwrap_or(0),
        errors,
        samples.iter().filter(|s| absorbed(s)).count(),
        p50(false),
        p50(true),
    );
}
