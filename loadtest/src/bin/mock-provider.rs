//! Runs one OpenAI-compatible mock provider with fault injection until killed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use loadtest::mock::{self, Continuation, Fault, MockConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An OpenAI-compatible mock LLM provider; faults switch at runtime through
/// `POST /_mock/fault`.
#[derive(Parser, Debug)]
#[command(name = "mock-provider", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9101")]
    listen: SocketAddr,
    /// Name shown in answers and the x-mock-provider header.
    #[arg(long, default_value = "primary")]
    name: String,
    /// Runtime threads sharing the port (SO_REUSEPORT).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Content chunks (words) per answer.
    #[arg(long, default_value_t = 8)]
    chunks: usize,
    /// Delay between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Delay before every response head, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Initial fault as JSON, e.g. '{"mode":"status","status":503,"rate":0.5}'.
    #[arg(long, default_value = r#"{"mode":"none"}"#)]
    fault: String,
    /// How continuations are answered, as JSON, e.g. '{"mode":"reject_prefill"}'.
    #[arg(long, default_value = r#"{"mode":"honest"}"#)]
    continuation: String,
    /// Extra listener serving only /_mock/ routes, never refused (heals `refuse`).
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Pin thread i to core N + i.
    #[arg(long)]
    pin_core: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let fault = match Fault::from_json(args.fault.as_bytes()) {
        Ok(fault) => fault,
        Err(e) => {
            eprintln!("mock-provider: --fault: {e}");
            return ExitCode::from(2);
        }
    };
    let continuation = match Continuation::from_json(args.continuation.as_bytes()) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("mock-provider: --continuation: {e}");
            return ExitCode::from(2);
        }
    };
    let config = MockConfig {
        name: args.name.clone(),
        listen: args.listen,
        threads: args.threads,
        stream_chunks: args.chunks,
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        latency: Duration::from_millis(args.latency_ms),
        fault,
        continuation,
        control: args.control,
        pin_core: args.pin_core,
    };
    let handle = match mock::start(config) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("mock-provider: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("mock-provider {} listening on {}", args.name, handle.addr());
    let driver = if monoio::utils::detect_uring() {
        "io_uring"
    } else {
        "epoll (legacy)"
    };
    eprintln!(
        "mock-provider {}: {} thread(s) on {driver}",
        args.name,
        args.threads.max(1)
    );
    if let Some(control) = handle.control_addr() {
        println!("mock-provider {} control on {control}", args.name);
    }
    loop {
        std::thread::park();
    }
}
