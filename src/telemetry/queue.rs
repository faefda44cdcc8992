//! The one bounded hand-off from shards to the exporter: a lock-free array
//! queue. A push never waits or allocates beyond the span itself; when the
//! exporter falls behind (a collector down or slow) spans are dropped and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crossbeam_queue::ArrayQueue;

use super::SpanRecord;

/// Spans held for the exporter at most (about 2 s of 2 k spans/s with headroom).
pub const CAPACITY: usize = 8192;

static QUEUE: OnceLock<ArrayQueue<SpanRecord>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static EXPORTED: AtomicU64 = AtomicU64::new(0);
static FAILED_BATCHES: AtomicU64 = AtomicU64::new(0);

fn queue() -> &'static ArrayQueue<SpanRecord> {
    QUEUE.get_or_init(|| ArrayQueue::new(CAPACITY))
}

/// Hands a finished span to the exporter, or counts it dropped when full.
pub fn push(span: SpanRecord) {
    if queue().push(span).is_err() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Up to `max` spans, oldest first.
pub fn drain(max: usize) -> Vec<SpanRecord> {
    let queue = queue();
    let mut out = Vec::with_capacity(max.min(queue.len()));
    while out.len() < max {
        match queue.pop() {
            Some(span) => out.push(span),
            None => break,
        }
    }
    out
}

pub fn len() -> usize {
    queue().len()
}

/// Spans a batch that failed to export took with it count as dropped too.
pub(crate) fn count_failed_batch(spans: usize) {
    FAILED_BATCHES.fetch_add(1, Ordering::Relaxed);
    DROPPED.fetch_add(spans as u64, Ordering::Relaxed);
}

pub(crate) fn count_exported(spans: usize) {
    EXPORTED.fetch_add(spans as u64, Ordering::Relaxed);
}

/// (dropped, exported, failed batches) since start, for `/metrics`.
pub fn counts() -> (u64, u64, u64) {
    (
        DROPPED.load(Ordering::Relaxed),
        EXPORTED.load(Ordering::Relaxed),
        FAILED_BATCHES.load(Ordering::Relaxed),
    )
}
