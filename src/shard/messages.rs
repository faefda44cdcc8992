//! Everything that crosses between threads: the messages a shard's inbox carries.
//!
//! Each shard owns a bounded lock-free queue (`crossbeam_queue::ArrayQueue`) that it
//! drains on its own timer. Nothing else is shared: the control plane and peer shards
//! talk to a shard only by pushing one of these.

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

pub type Inbox = Arc<ArrayQueue<ShardMsg>>;

pub fn inbox() -> Inbox {
    Arc::new(ArrayQueue::new(INBOX_CAPACITY))
}

/// Delivers a control message, waiting briefly while the inbox is full. Control
/// messages are never dropped; health summaries may be (the next one follows).
pub fn deliver(inbox: &Inbox, msg: ShardMsg) {
    let mut msg = msg;
    for _ in 0..2_000 {
        match inbox.push(msg) {
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
