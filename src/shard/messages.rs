//! Everything that crosses between threads: the messages a shard's inbox carries.
//!
//! Each shard owns a bounded lock-free queue (`crossbeam_queue::ArrayQueue`) that its
//! housekeeping drains. Nothing else is shared: the control plane and peer shards
//! talk to a shard only by pushing one of these. A control message wakes a sleeping
//! shard at once; a peer's health summary waits for the shard's next round (peers
//! send one every tick while they have news, and waking every shard for each would
//! cost more than the summaries are worth).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

use crate::health::TargetSummary;
use crate::metrics::ShardSnapshot;
use crate::route::Table;

/// Slots in each shard's inbox.
pub const INBOX_CAPACITY: usize = 1024;

pub enum ShardMsg {
    /// Switch to a new routing table between requests.
    Table(Arc<Table>),
    /// A peer's view of target health, one summary per slot of `generation`.
    Health {
        from: usize,
        generation: u64,
        at: Instant,
        summaries: Arc<[TargetSummary]>,
    },
    /// Stop accepting; finish in-flight requests within `grace`.
    Shutdown { grace: Duration },
    /// Reply with this shard's counters and health view (for the admin API).
    Snapshot(SyncSender<ShardSnapshot>),
}

/// One shard's inbox: the queue, and the waker of the shard's housekeeping.
pub struct Mailbox {
    queue: ArrayQueue<ShardMsg>,
    /// A control message was delivered since the housekeeping last looked.
    control_waiting: AtomicBool,
    housekeeping: AtomicWaker,
}

pub type Inbox = Arc<Mailbox>;

pub fn inbox() -> Inbox {
    Arc::new(Mailbox {
        queue: ArrayQueue::new(INBOX_CAPACITY),
        control_waiting: AtomicBool::new(false),
        housekeeping: AtomicWaker::new(),
    })
}

impl Mailbox {
    /// Queues `msg` for the shard's next round without waking it; gives it back
    /// when the inbox is full.
    pub fn post(&self, msg: ShardMsg) -> Result<(), ShardMsg> {
        self.queue.push(msg)
    }

    pub fn pop(&self) -> Option<ShardMsg> {
        self.queue.pop()
    }

    /// Ready when a control message was delivered since the last ready;
    /// otherwise the next [`deliver`] wakes `cx`. Peers' summaries never make it
    /// ready: they wait for the round.
    pub fn poll_control(&self, cx: &Context<'_>) -> Poll<()> {
        // Registered before looking, so a delivery in between still wakes.
        self.housekeeping.register(cx.waker());
        if self.control_waiting.swap(false, Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn wake(&self) {
        self.control_waiting.store(true, Ordering::Release);
        self.housekeeping.wake();
    }
}

/// Delivers a control message and wakes the shard, waiting briefly while the
/// inbox is full. Control messages are never dropped; health summaries may be
/// (the next one follows).
pub fn deliver(inbox: &Inbox, msg: ShardMsg) {
    let mut msg = msg;
    for _ in 0..2_000 {
        let posted = inbox.post(msg);
        // Woken either way: a full inbox is drained by the round this starts.
        inbox.wake();
        match posted {
            Ok(()) => return,
            Err(back) => msg = back,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    crate::event!(
        crate::log::Level::Error,
        "shard inbox full; control message dropped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn shutdown() -> ShardMsg {
        ShardMsg::Shutdown {
            grace: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_control_message_wakes_the_housekeeping_and_a_summary_does_not() {
        let inbox = inbox();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let cx = Context::from_waker(&waker);
        assert!(inbox.poll_control(&cx).is_pending());
        let summary = ShardMsg::Health {
            from: 1,
            generation: 1,
            at: Instant::now(),
            summaries: Arc::from(Vec::new()),
        };
        assert!(inbox.post(summary).is_ok());
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        assert!(inbox.poll_control(&cx).is_pending(), "a summary waits");
        deliver(&inbox, shutdown());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(inbox.poll_control(&cx).is_ready());
        assert!(
            inbox.poll_control(&cx).is_pending(),
            "ready once per delivery"
        );
        assert_eq!(std::iter::from_fn(|| inbox.pop()).count(), 2);
    }

    #[test]
    fn a_delivery_before_the_housekeeping_looks_is_not_lost() {
        let inbox = inbox();
        deliver(&inbox, shutdown());
        let waker = Waker::from(Arc::new(CountingWaker::default()));
        assert!(inbox.poll_control(&Context::from_waker(&waker)).is_ready());
    }
}
