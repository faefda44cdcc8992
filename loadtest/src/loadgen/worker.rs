//! One load thread: a pinned monoio runtime whose connection tasks take requests from
//! the thread's schedule, send them, and record what happened.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::time::timeout;

use super::record::{Outcome, Recorder, StreamVerdict};
use super::response::{Conn, ExchangeError, Response};
use super::schedule::{wait_until, Schedule, Slot, Timeline};
use super::{LoadError, LoadSpec};

/// Closed loop only: pause after a request that got no response, so a dead target
/// is not hammered in a hot connect loop.
const ERROR_PAUSE: Duration = Duration::from_millis(1);

/// What one thread is asked to do.
#[derive(Debug)]
pub(crate) struct ThreadPlan {
    pub index: usize,
    connections: usize,
    spec: Arc<LoadSpec>,
    request: Arc<Vec<u8>>,
    timeline: Timeline,
}

impl ThreadPlan {
    pub(crate) fn new(
        spec: &Arc<LoadSpec>,
        request: &Arc<Vec<u8>>,
        timeline: Timeline,
        index: usize,
    ) -> Self {
        let (share, extra) = (
            spec.connections / spec.threads,
            spec.connections % spec.threads,
        );
        ThreadPlan {
            index,
            connections: share + usize::from(index < extra),
            spec: Arc::clone(spec),
            request: Arc::clone(request),
            timeline,
        }
    }
}

/// State shared by the connection tasks of one thread.
struct Shared {
    spec: Arc<LoadSpec>,
    request: Rc<Vec<u8>>,
    timeline: Timeline,
    schedule: Schedule,
    recorder: RefCell<Recorder>,
}

/// Runs one thread's share of the load to the end and returns its recording.
pub(crate) fn run_thread(plan: ThreadPlan) -> Result<Recorder, LoadError> {
    pin(&plan)?;
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .map_err(|source| LoadError::Runtime {
            thread: plan.index,
            source,
        })?;
    let recorder = Recorder::new(plan.timeline)?;
    Ok(runtime.block_on(drive(plan, recorder)))
}

fn pin(plan: &ThreadPlan) -> Result<(), LoadError> {
    let cores = &plan.spec.pin_cores;
    if cores.is_empty() {
        return Ok(());
    }
    let core = cores[plan.index % cores.len()];
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        Err(LoadError::Pin {
            thread: plan.index,
            core,
        })
    }
}

async fn drive(plan: ThreadPlan, recorder: Recorder) -> Recorder {
    let spec = plan.spec;
    let shared = Rc::new(Shared {
        schedule: Schedule::new(plan.timeline, spec.rate, plan.index, spec.threads),
        request: Rc::new(plan.request.as_ref().clone()),
        timeline: plan.timeline,
        recorder: RefCell::new(recorder),
        spec,
    });
    // The thread's task clock at the end of warmup, read by a task of its own
    // so the connections need not watch the time.
    let warm_end = plan.timeline.warm_end;
    let cpu_start = monoio::spawn(async move {
        wait_until(warm_end).await;
        crate::taskclock::thread_self_ns()
    });
    let tasks: Vec<_> = (0..plan.connections)
        .map(|_| monoio::spawn(connection_loop(Rc::clone(&shared))))
        .collect();
    for task in tasks {
        task.await;
    }
    let start = cpu_start.await;
    let mut recorder = shared.recorder.borrow().clone();
    recorder.set_cpu(start, crate::taskclock::thread_self_ns());
    recorder.add_unsent(shared.schedule.unsent_in_window());
    recorder
}

/// One keep-alive connection: claim the next request, wait for its intended time,
/// send it, record it; reconnect after any failure.
async fn connection_loop(shared: Rc<Shared>) {
    let mut conn = timeout(shared.spec.timeout, Conn::connect(shared.spec.target))
        .await
        .ok()
        .and_then(Result::ok);
    while let Some(slot) = shared.schedule.claim(Instant::now()) {
        let (intended, scheduled) = match slot {
            Slot::At(t) => {
                wait_until(t).await;
                (t, true)
            }
            Slot::Now => (Instant::now(), false),
        };
        let mut outcome = attempt(&shared, &mut conn, intended).await;
        // A closed loop sends when it is ready: its intended time is its send
        // time (a preemption between the two clock reads is not a late start).
        if !scheduled {
            outcome.intended = outcome.sent;
        }
        let unreachable = outcome.status == 0;
        if shared.timeline.measures(intended) {
            shared.recorder.borrow_mut().record(&outcome);
        }
        if unreachable && !shared.schedule.open_loop() {
            monoio::time::sleep(ERROR_PAUSE).await;
        }
    }
}

/// Sends one request (connecting first if needed) under the per-request timeout.
async fn attempt(shared: &Shared, conn: &mut Option<Conn>, intended: Instant) -> Outcome {
    let sent = Instant::now();
    let (response, timed_out) = match timeout(shared.spec.timeout, exchange(shared, conn)).await {
        Ok(Ok(response)) => (Some(response), false),
        Ok(Err(_)) => (None, false),
        Err(_) => (None, true),
    };
    let done = Instant::now();
    if !response.as_ref().is_some_and(|r| r.reusable) {
        *conn = None;
    }
    match response {
        Some(r) => from_response(r, &shared.spec, intended, sent, done),
        None => failure(intended, sent, done, timed_out),
    }
}

async fn exchange(shared: &Shared, conn: &mut Option<Conn>) -> Result<Response, ExchangeError> {
    let c = match conn.take() {
        Some(c) => conn.insert(c),
        None => conn.insert(Conn::connect(shared.spec.target).await?),
    };
    c.exchange(Rc::clone(&shared.request), shared.spec.stream)
        .await
}

fn from_response(
    r: Response,
    spec: &LoadSpec,
    intended: Instant,
    sent: Instant,
    done: Instant,
) -> Outcome {
    let stream = spec.stream;
    let success = (200..300).contains(&r.status);
    let expected = &spec.expected_answers;
    let verdict = r.sse.as_ref().map(|t| StreamVerdict {
        completed: r.complete && t.done && !t.error,
        continued: t.continued || r.continued,
        verified: (!expected.is_empty()).then(|| !t.text_overflow && expected.contains(&t.text)),
        events: t.events,
    });
    Outcome {
        status: r.status,
        ok: success && r.complete && (!stream || verdict.is_some_and(|v| v.completed)),
        measured: true,
        intended,
        sent,
        done,
        first_token: r.sse.and_then(|t| t.first_token),
        stream: verdict,
        target: r.target,
        attempts: r.attempts,
    }
}

fn failure(intended: Instant, sent: Instant, done: Instant, timed_out: bool) -> Outcome {
    Outcome {
        status: 0,
        ok: false,
        measured: timed_out,
        intended,
        sent,
        done,
        first_token: None,
        stream: None,
        target: None,
        attempts: None,
    }
}
