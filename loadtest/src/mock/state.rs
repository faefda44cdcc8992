//! State shared by all threads of one mock: the current fault (published through a
//! generation counter so each request pays one atomic load), the continuation mode
//! (one atomic byte), counters, the recorded requests (the last one whole, a short
//! ring of recent ones), the Responses API ids it issued, and the shutdown flag.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Continuation, Fault, MockStats, RecordedRequest};

/// Settings every thread reads but never changes.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub name: String,
    pub stream_chunks: usize,
    pub chunk_delay: Duration,
    pub latency: Duration,
    pub created: u64,
}

/// The cross-thread state of one mock.
pub(crate) struct Shared {
    pub settings: Settings,
    fault: Mutex<Arc<Fault>>,
    generation: AtomicU64,
    /// The continuation mode, as [`Continuation::index`].
    continuation: AtomicU8,
    pub shutdown: AtomicBool,
    applied: Vec<AtomicU64>,
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub streams: AtomicU64,
    pub faults_injected: AtomicU64,
    /// `Status` injections since the fault was last set (for `times`).
    status_hits: AtomicU64,
    /// One lock for both records, so a request pays one lock as before.
    recorded: Mutex<Recorded>,
    responses: Mutex<IssuedIds>,
    /// Random per process: response ids name it, so a mock accepts only its own.
    pub tag: u32,
    /// The OS thread id of each runtime thread, as it started (for task clocks).
    thread_ids: Mutex<Vec<u32>>,
}

/// How many recent requests `GET /_mock/requests` shows.
pub(crate) const RING: usize = 32;
/// The body bytes kept per request in the ring (the last request is kept whole).
pub(crate) const RING_BODY: usize = 64 * 1024;
/// How many issued Responses API ids the mock remembers for `previous_response_id`.
pub(crate) const REMEMBERED: usize = 4096;

/// What the mock keeps of the requests it read.
#[derive(Default)]
struct Recorded {
    /// The last request, body whole.
    last: Option<RawRequest>,
    /// The last [`RING`] requests, oldest first, bodies cut at [`RING_BODY`].
    ring: VecDeque<RawRequest>,
}

/// The raw bytes of a request, parsed only when someone asks for it.
#[derive(Default)]
struct RawRequest {
    head: Vec<u8>,
    body: Vec<u8>,
    /// The body's full length (the ring keeps only a prefix).
    body_len: usize,
}

impl RawRequest {
    fn fill(&mut self, head: &[u8], body: &[u8], cap: usize) {
        self.head.clear();
        self.head.extend_from_slice(head);
        self.body.clear();
        self.body.extend_from_slice(&body[..body.len().min(cap)]);
        self.body_len = body.len();
    }

    fn parse(&self) -> Option<RecordedRequest> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(&self.head).ok()?;
        let (method, path) = (req.method?, req.path?);
        Some(RecordedRequest {
            method: method.to_string(),
            path: path.to_string(),
            dialect: super::request::route(method, path).dialect(),
            headers: req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            body: self.body.clone(),
            body_len: self.body_len,
        })
    }
}

/// The Responses API ids (their sequence numbers) issued, the newest
/// [`REMEMBERED`] of them.
#[derive(Default)]
struct IssuedIds {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Shared {
    pub(crate) fn new(
        settings: Settings,
        fault: Fault,
        continuation: Continuation,
        threads: usize,
    ) -> Self {
        Shared {
            settings,
            fault: Mutex::new(Arc::new(fault)),
            generation: AtomicU64::new(1),
            continuation: AtomicU8::new(continuation.index()),
            shutdown: AtomicBool::new(false),
            applied: (0..threads).map(|_| AtomicU64::new(0)).collect(),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            streams: AtomicU64::new(0),
            faults_injected: AtomicU64::new(0),
            status_hits: AtomicU64::new(0),
            recorded: Mutex::new(Recorded {
                last: None,
                ring: VecDeque::with_capacity(RING),
            }),
            responses: Mutex::new(IssuedIds::default()),
            tag: fastrand::u32(0x1000_0000..=u32::MAX),
            thread_ids: Mutex::new(Vec::with_capacity(threads)),
        }
    }

    /// Notes the calling runtime thread's id.
    pub(crate) fn add_thread_id(&self, tid: u32) {
        lock(&self.thread_ids).push(tid);
    }

    /// The runtime threads' ids noted so far.
    pub(crate) fn thread_ids(&self) -> Vec<u32> {
        lock(&self.thread_ids).clone()
    }

    /// The generation of the current fault; it changes on every `set_fault`.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current fault and its generation.
    pub(crate) fn fault(&self) -> (u64, Arc<Fault>) {
        let guard = lock(&self.fault);
        (self.generation(), Arc::clone(&guard))
    }

    /// Publishes a new fault; returns its generation and whether it changes
    /// whether the mock listens.
    pub(crate) fn set_fault(&self, fault: Fault) -> (u64, bool) {
        let mut guard = lock(&self.fault);
        let toggles = guard.refuses() != fault.refuses();
        *guard = Arc::new(fault);
        self.status_hits.store(0, Ordering::Release);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        (generation, toggles)
    }

    /// The continuation mode in force.
    pub(crate) fn continuation(&self) -> Continuation {
        Continuation::from_index(self.continuation.load(Ordering::Relaxed))
    }

    /// Switches the continuation mode for every following request.
    pub(crate) fn set_continuation(&self, mode: Continuation) {
        self.continuation.store(mode.index(), Ordering::Relaxed);
    }

    /// Thread `index` reports that its listener matches generation `generation`.
    pub(crate) fn mark_applied(&self, index: usize, generation: u64) {
        if let Some(slot) = self.applied.get(index) {
            slot.store(generation, Ordering::Release);
        }
    }

    /// Waits (bounded by `limit`) until every thread applied `generation`.
    pub(crate) fn wait_applied(&self, generation: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self
                .applied
                .iter()
                .all(|a| a.load(Ordering::Acquire) >= generation)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub(crate) fn stats(&self) -> MockStats {
        MockStats {
            connections: self.connections.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            streams: self.streams.load(Ordering::Relaxed),
            faults_injected: self.faults_injected.load(Ordering::Relaxed),
        }
    }

    /// Counts one provider request and keeps its bytes (reusing the buffers of
    /// the request it replaces); returns its sequence number.
    pub(crate) fn record(&self, head: &[u8], body: &[u8]) -> u64 {
        {
            let mut recorded = lock(&self.recorded);
            recorded
                .last
                .get_or_insert_with(RawRequest::default)
                .fill(head, body, usize::MAX);
            let ring = &mut recorded.ring;
            let mut slot = if ring.len() >= RING {
                ring.pop_front().unwrap_or_default()
            } else {
                RawRequest::default()
            };
            slot.fill(head, body, RING_BODY);
            ring.push_back(slot);
        }
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.recorded).last.as_ref()?.parse()
    }

    /// The recent requests, oldest first, bodies cut at [`RING_BODY`] bytes.
    pub(crate) fn recent_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.recorded)
            .ring
            .iter()
            .filter_map(RawRequest::parse)
            .collect()
    }

    /// Remembers that the response with sequence number `id` was issued.
    pub(crate) fn issue_response(&self, id: u64) {
        let mut issued = lock(&self.responses);
        if issued.order.len() >= REMEMBERED {
            if let Some(old) = issued.order.pop_front() {
                issued.set.remove(&old);
            }
        }
        if issued.set.insert(id) {
            issued.order.push_back(id);
        }
    }

    /// Whether the response with sequence number `id` was issued (and is still
    /// remembered).
    pub(crate) fn issued_response(&self, id: u64) -> bool {
        lock(&self.responses).set.contains(&id)
    }

    /// Takes one `Status` injection if `times` (the limit since the fault was set)
    /// allows it.
    pub(crate) fn take_status_hit(&self, times: Option<u64>) -> bool {
        match times {
            None => true,
            Some(limit) => self.status_hits.fetch_add(1, Ordering::AcqRel) < limit,
        }
    }

    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Locks ignoring poisoning: the guarded values stay valid after any panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
