//! The exporter thread: drains the span queue in batches (at most
//! [`MAX_BATCH`] spans, or whatever is there every [`INTERVAL`]) and POSTs each
//! as OTLP/HTTP protobuf over a plain HTTP/1.1 connection with deadlines on
//! connect, write and read. A collector that is down or slow costs only this
//! thread's time; the shards keep pushing until the queue is full.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{otlp, queue, AttrValue};
use crate::config::TelemetryConfig;
use crate::log::Level;

pub const MAX_BATCH: usize = 512;
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Connect, write and read deadline of one export.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a collector's answer read (its status line is all that matters).
const RESPONSE_CAP: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("collector answered `{0}`")]
    Status(String),
}

/// The running exporter; [`Exporter::stop`] flushes what is queued (bounded).
pub struct Exporter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    pub fn start(
        config: TelemetryConfig,
        resource: Vec<(&'static str, AttrValue)>,
    ) -> std::io::Result<Exporter> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-exporter".into())
            .spawn(move || run(&config, &resource, &flag))?;
        Ok(Exporter {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(config: &TelemetryConfig, resource: &[(&'static str, AttrValue)], stop: &AtomicBool) {
    let mut last = Instant::now();
    let mut warned = false;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let due = last.elapsed() >= INTERVAL || queue::len() >= MAX_BATCH || stopping;
        if due {
            last = Instant::now();
            // On stop: one last round, at most a few batches.
            let rounds = if stopping { 4 } else { 1 };
            for _ in 0..rounds {
                let batch = queue::drain(MAX_BATCH);
                if batch.is_empty() {
                    break;
                }
                let body = otlp::encode_request(resource, &batch);
                match post(config, &body) {
                    Ok(()) => queue::count_exported(batch.len()),
                    Err(e) => {
                        queue::count_failed_batch(batch.len());
                        if !warned {
                            warned = true;
                            crate::event!(
                                Level::Warn,
                                "trace export failed; spans dropped",
                                endpoint = config.endpoint.text,
                                error = e
                            );
                        }
                    }
                }
            }
        }
        if stopping {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One `POST` of `body`, answered 2xx within [`TIMEOUT`] per step.
pub fn post(config: &TelemetryConfig, body: &[u8]) -> Result<(), ExportError> {
    let endpoint = &config.endpoint;
    let addr = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| ExportError::Resolve(endpoint.host.clone()))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nhost: {}:{}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nconnection: close\r\n",
        endpoint.path,
        endpoint.host,
        endpoint.port,
        body.len()
    );
    for (name, value) in &config.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    while answer.len() < RESPONSE_CAP && !answer.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let status_line = String::from_utf8_lossy(&answer);
    let status_line = status_line.lines().next().unwrap_or("").to_string();
    match status_line.split(' ').nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        _ => Err(ExportError::Status(status_line)),
    }
}
