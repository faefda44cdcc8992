//! `switchyard demo`: two embedded mock providers, the gateway on config/demo.yaml,
//! a steady trickle of client requests, and a scripted outage — shown live.
//!
//! The script: healthy → primary answers 503 (breaker opens, traffic moves to the
//! fallback) → primary heals (half-open probe, traffic returns) → 429 storm with
//! `Retry-After` → heal → brownout slower than the first-byte timeout → heal.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
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
            at: 0.15,
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
            at: 0.35,
            title: "primary healed: half-open probe, then traffic returns",
            fault: Fault::None,
        },
        Phase {
            at: 0.5,
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
            at: 0.65,
            title: "storm over",
            fault: Fault::None,
        },
        Phase {
            at: 0.75,
            title: "BROWNOUT: primary takes 3 s (first-byte timeout is 2 s)",
            fault: Fault::Latency {
                base: Duration::from_secs(3),
                jitter: Duration::ZERO,
            },
        },
        Phase {
            at: 0.9,
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
    let gateway = Gateway::start(config, None, &Overrides::default())?;
    banner(&gateway, rate);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Sample>();
    let clients = start_clients(gateway.addr(), rate, stop.clone(), tx);
    show(&gateway, &primary, length, &rx);
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        let _ = client.join();
    }
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

fn banner(gateway: &Gateway, rate: u32) {
    println!(
        "switchyard demo — gateway on http://{} (admin: {})",
        gateway.addr(),
        gateway
            .admin_addr()
            .map_or("off".into(), |a| format!("http://{a}/admin/targets"))
    );
    println!("route `demo`: primary (priority 0) → fallback (priority 1); {rate} req/s, half of them streamed");
    println!("try it yourself meanwhile: curl -s http://{}/v1/chat/completions -d '{{\"model\":\"demo\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'\n", gateway.addr());
    println!(
        "{:>5}  {:>5}  {:>8}  {:>8}  {:>6}  {:>8}  {:>8}  breaker(primary)",
        "t", "req/s", "primary", "fallback", "errors", "p50 ms", "p99 ms"
    );
}

fn start_clients(
    addr: SocketAddr,
    rate: u32,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<Sample>,
) -> Vec<std::thread::JoinHandle<()>> {
    // Several clients so a slow answer (brownout) does not hold the others back.
    let workers = 4u32;
    let interval = Duration::from_secs_f64(f64::from(workers) / f64::from(rate.max(1)));
    (0..workers)
        .map(|i| {
            let stop = stop.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                std::thread::sleep(interval.mul_f64(f64::from(i) / f64::from(workers)));
                let mut client = None;
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    n += 1;
                    let sample = one_request(addr, &mut client, n.is_multiple_of(2), started);
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
        },
        _ => {
            *client = None;
            Sample {
                target: "-".into(),
                status: 0,
                latency: started.elapsed(),
            }
        }
    }
}

fn show(gateway: &Gateway, primary: &MockHandle, length: Duration, rx: &mpsc::Receiver<Sample>) {
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
        print_second(second, &samples, &breaker_line(gateway));
        second += 1;
    }
}

fn breaker_line(gateway: &Gateway) -> String {
    let snapshots = gateway.control.snapshots();
    let Some(target) = snapshots
        .first()
        .and_then(|s| s.targets.iter().find(|t| t.label.starts_with("primary/")))
    else {
        return "-".into();
    };
    let reason = target.breaker.reason().map_or("", |r| r.as_str());
    match (target.breaker.kind().as_str(), target.retry_in) {
        ("open", Some(wait)) => format!("open: {reason} (probe in {:.1}s)", wait.as_secs_f64()),
        // Paused at the provider's request: not a trip, no probe, just a wait.
        ("sidelined", Some(wait)) => {
            format!("sidelined: Retry-After ({:.1}s left)", wait.as_secs_f64())
        }
        (state, _) => state.to_string(),
    }
}

fn print_second(second: u64, samples: &[Sample], breaker: &str) {
    let mut by_target: BTreeMap<&str, usize> = BTreeMap::new();
    let mut errors = 0;
    let mut latencies: Vec<Duration> = Vec::with_capacity(samples.len());
    for s in samples {
        if s.status == 200 {
            *by_target.entry(s.target.as_str()).or_default() += 1;
        } else {
            errors += 1;
        }
        latencies.push(s.latency);
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{:>4}s  {:>5}  {:>8}  {:>8}  {:>6}  {:>8.1}  {:>8.1}  {breaker}",
        second,
        samples.len(),
        by_target.get("primary").copied().unwrap_or(0),
        by_target.get("fallback").copied().unwrap_or(0),
        errors,
        pct(0.5),
        pct(0.99),
    );
}
