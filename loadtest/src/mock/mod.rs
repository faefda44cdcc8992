//! A mock LLM provider that speaks the OpenAI, Anthropic, Gemini, Bedrock and Azure
//! OpenAI dialects (chosen by request path) and can inject every provider failure
//! at runtime, fast enough never to be the bottleneck of a load test.
//!
//! [`start`] binds `threads` listeners on one port (SO_REUSEPORT), each served by
//! its own monoio runtime on a dedicated thread, and returns a [`MockHandle`] once
//! they accept connections. Endpoints:
//!
//! - `POST /v1/chat/completions` (also `/chat/completions`): a deterministic answer,
//!   whole or streamed as SSE (`"stream": true`, usage chunk with
//!   `stream_options.include_usage`), by the rules below.
//! - `POST /v1/embeddings`, `GET /v1/models`.
//! - Anthropic Messages: `POST {prefix}/v1/messages` (`max_tokens` required; a
//!   `tool_use` answer when asked to "use a tool" or forced by `tool_choice`), see
//!   [`Dialect::Anthropic`].
//! - Gemini: `POST {prefix}/models/{model}:generateContent`,
//!   `:streamGenerateContent` (`?alt=sse` for SSE), `:embedContent`,
//!   `:batchEmbedContents`.
//! - Bedrock Converse: `POST {prefix}/model/{modelId}/converse` and
//!   `/converse-stream` (AWS event-stream frames).
//! - Azure OpenAI: `POST {prefix}/openai/deployments/{deployment}/chat/completions
//!   ?api-version=...` (`api-key` header required; "filtered" in the last user
//!   message triggers the content filter).
//! - OpenAI Responses API: `POST /v1/responses` (also `/responses`, and for Azure
//!   any path ending in `/openai/v1/responses`, `api-key` required, model from the
//!   body): the `response` object or its typed event stream, a `function_call`
//!   item when a tool call is forced; `previous_response_id` must name a stored
//!   (`store` not false) response this mock process issued, among its last 4096
//!   (400 `previous_response_not_found` otherwise). See `responses.rs`.
//! - Legacy completions: `POST /v1/completions` (also `/completions`, Azure
//!   `{prefix}/openai/deployments/{deployment}/completions?api-version=...`), see
//!   `completions.rs`.
//! - Anthropic `POST {prefix}/v1/messages/count_tokens`: `{"input_tokens":N}`.
//!
//! Every provider answer (whole, error or stream head) carries rate-limit and
//! request-id headers: `x-ratelimit-*` and `x-request-id: req_mock_{n}`, or on
//! Anthropic paths `anthropic-ratelimit-*` and `request-id: req_mock_{n}` (`n` the
//! request's sequence number; see `wire.rs`).
//!
//! Every dialect sends the same words and follows the same continuation rules, and
//! every fault applies to every dialect, shaped as that provider sends it: status
//! faults use the dialect's error body (see `dialect.rs`), stream faults its events
//! (see `stream.rs` and [`Dialect::after_words`]).
//! - `POST /_mock/fault` with a [`Fault`] in JSON (`{"mode":"status","status":503}`),
//!   `GET /_mock/fault`, `POST /_mock/continuation` with a [`Continuation`] in JSON
//!   (`{"mode":"prefill_only"}`), `GET /_mock/continuation`, `GET /_mock/stats`
//!   ([`MockStats`] as JSON), `GET /_mock/last_request` (`{"method","path",
//!   "headers":[[name,value],..],"body","body_len"}`, body lossy UTF-8 cut at
//!   64 KiB; 404 before the first request), `GET /_mock/requests` (the last 32 in
//!   that form, oldest first). Control routes are never faulted, counted or
//!   recorded.
//!
//! The answer is `"Hello from {name}: w0 w1 ... w{n-1} "` (`n` = `stream_chunks`, at
//! least 1); streamed, each word is one chunk and the greeting rides in the first.
//! When the last message is an `assistant` prefill, the mock continues it: words up
//! to the highest `w{i}` in the prefill are skipped, no greeting is sent, so prefix +
//! continuation == the full answer. How an instruction to continue is answered, and
//! how less friendly models answer either style, is the [`Continuation`] mode (see
//! `answer.rs`). A request with `tools` whose `tool_choice` forces a call is
//! answered with one function call (see `tool.rs`).
//!
//! `Refuse` closes the listeners, so a refusing mock cannot be healed through its
//! own port: heal it in-process with [`MockHandle::set_fault`], through the optional
//! control listener ([`MockConfig::control`], which serves only `/_mock/` and is
//! never refused), or by restarting it. A `refuse` sent to `/_mock/fault` is
//! answered before the listeners close.

mod answer;
mod anthropic;
mod azure;
mod bedrock;
mod completions;
mod conn;
mod control;
mod dialect;
mod encode;
mod eventstream;
mod fault;
mod gemini;
mod openai;
mod plan;
mod request;
mod responses;
mod server;
mod state;
mod stream;
mod tool;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use answer::Continuation;
pub use completions::after_words as completions_after_words;
pub use dialect::Dialect;
pub use fault::{Fault, FaultError};
pub use responses::after_words as responses_after_words;

use server::{Place, ThreadSpec};
use state::{Settings, Shared};

/// How long `start` and `set_fault` wait for the threads to follow.
const SETTLE: Duration = Duration::from_secs(5);

/// How to run a mock provider.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Appears in answers ("Hello from {name}: ...") and the `x-mock-provider` header.
    pub name: String,
    /// Where to listen; port 0 picks a free port (see [`MockHandle::addr`]).
    pub listen: SocketAddr,
    /// Runtime threads, each with its own listener on the same port.
    pub threads: usize,
    /// Content chunks (words) per answer; 0 is treated as 1.
    pub stream_chunks: usize,
    /// Delay between streamed events.
    pub chunk_delay: Duration,
    /// Delay before every response head.
    pub latency: Duration,
    /// The fault in force at start.
    pub fault: Fault,
    /// How continuations are answered at start (see [`MockHandle::set_continuation`]).
    pub continuation: Continuation,
    /// An extra listener serving only `/_mock/` routes, never faulted or refused.
    pub control: Option<SocketAddr>,
    /// Pin thread `i` to core `pin_core + i`.
    pub pin_core: Option<usize>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            name: String::from("mock"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: 1,
            stream_chunks: 8,
            chunk_delay: Duration::ZERO,
            latency: Duration::ZERO,
            fault: Fault::None,
            continuation: Continuation::Honest,
            control: None,
            pin_core: None,
        }
    }
}

/// Counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockStats {
    /// Provider connections accepted.
    pub connections: u64,
    /// Provider requests read in full (control requests excluded).
    pub requests: u64,
    /// Streamed answers started.
    pub streams: u64,
    /// Requests or streams a fault changed.
    pub faults_injected: u64,
}

/// The last provider request the mock read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target: path and query.
    pub path: String,
    /// The dialect its path selected; `None` for unknown paths.
    pub dialect: Option<Dialect>,
    /// Header names lower-cased, in request order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked (from [`MockHandle::requests`]: at most the first
    /// 64 KiB).
    pub body: Vec<u8>,
    /// The body's full length in bytes.
    pub body_len: usize,
}

impl RecordedRequest {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running mock. Clones share it; dropping a handle does not stop it, [`shutdown`](Self::shutdown) does.
#[derive(Clone)]
pub struct MockHandle {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    control: Option<SocketAddr>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl MockHandle {
    /// The provider address (with the actual port).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://ADDR/v1`, the base URL a gateway config uses.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.inner.addr)
    }

    /// The control listener's address, when configured.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.inner.control
    }

    /// Switches the fault for every following request. When it starts or ends
    /// `Refuse`, returns only after every thread closed or re-opened its listener.
    pub fn set_fault(&self, fault: Fault) {
        let (generation, toggles) = self.inner.shared.set_fault(fault);
        if toggles {
            self.inner.shared.wait_applied(generation, SETTLE);
        }
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        Fault::clone(&self.inner.shared.fault().1)
    }

    /// Switches how continuations are answered, for every following request (the
    /// same as `POST /_mock/continuation`).
    pub fn set_continuation(&self, mode: Continuation) {
        self.inner.shared.set_continuation(mode);
    }

    /// The continuation mode in force.
    pub fn continuation(&self) -> Continuation {
        self.inner.shared.continuation()
    }

    pub fn stats(&self) -> MockStats {
        self.inner.shared.stats()
    }

    /// The OS thread ids of the mock's runtime threads (each noted as it
    /// started, so all of them once [`start`] returned): their task clocks in
    /// `/proc/self/task/<tid>/schedstat` are the mock's CPU time.
    pub fn thread_ids(&self) -> Vec<u32> {
        self.inner.shared.thread_ids()
    }

    /// The last provider request, body whole (control requests excluded).
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.inner.shared.last_request()
    }

    /// The last 32 provider requests, oldest first, each body cut at 64 KiB (the
    /// same as `GET /_mock/requests`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.shared.recent_requests()
    }

    /// Stops every thread and joins them; open connections are closed. Takes at
    /// most a few hundred milliseconds; later calls do nothing.
    pub fn shutdown(&self) {
        self.inner.shared.shutdown.store(true, Ordering::Release);
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHandle")
            .field("name", &self.inner.shared.settings.name)
            .field("addr", &self.inner.addr)
            .finish()
    }
}

/// Starts a mock; returns once every thread accepts connections.
pub fn start(config: MockConfig) -> io::Result<MockHandle> {
    let threads = config.threads.max(1);
    let reuse_port = threads > 1;
    let first = server::bind(config.listen, reuse_port)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..threads {
        listeners.push(server::bind(addr, true)?);
    }
    let mut control = config
        .control
        .map(|at| server::bind(at, false))
        .transpose()?;
    let control_addr = control
        .as_ref()
        .map(std::net::TcpListener::local_addr)
        .transpose()?;
    let shared = Arc::new(Shared::new(
        settings(&config),
        config.fault,
        config.continuation,
        threads,
    ));
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(threads);
    for (index, listener) in listeners.into_iter().enumerate() {
        let spec = ThreadSpec {
            place: Place {
                index,
                addr,
                reuse_port,
            },
            listener,
            control: control.take(),
            pin_core: config.pin_core,
        };
        match server::spawn(Arc::clone(&shared), spec, ready_tx.clone()) {
            Ok(handle) => handles.push(handle),
            Err(e) => return Err(abort(&shared, handles, e)),
        }
    }
    for _ in 0..threads {
        let ready = ready_rx
            .recv_timeout(SETTLE)
            .map_err(|_| io::Error::other("mock thread did not start"));
        if let Err(e) = ready.and_then(|r| r) {
            return Err(abort(&shared, handles, e));
        }
    }
    shared.wait_applied(shared.generation(), SETTLE);
    let inner = Inner {
        shared,
        addr,
        control: control_addr,
        threads: Mutex::new(handles),
    };
    Ok(MockHandle {
        inner: Arc::new(inner),
    })
}

fn settings(config: &MockConfig) -> Settings {
    Settings {
        name: config.name.clone(),
        stream_chunks: config.stream_chunks.max(1),
        chunk_delay: config.chunk_delay,
        latency: config.latency,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

/// Stops the threads already started and passes `error` on.
fn abort(shared: &Shared, handles: Vec<JoinHandle<()>>, error: io::Error) -> io::Error {
    shared.shutdown.store(true, Ordering::Release);
    for handle in handles {
        let _ = handle.join();
    }
    error
}
