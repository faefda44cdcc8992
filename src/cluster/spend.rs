//! Fleet-wide spend: a control-plane thread that keeps each key's spend in
//! Redis, so a key's budget holds for the fleet, and brings every node's spend
//! book to the fleet's total.
//!
//! Each node's `SpendBook` holds the fleet's total as it last knew it plus its
//! own charges since. Every interval, for each key, the thread sends Redis its
//! charges since the last sync (the book's value less the total it then set),
//! one script per key on `switchyard:{db}:spend:{key}:{period}:{number}`: the
//! script adds them and returns the fleet's total, which the book then takes
//! (keeping charges made meanwhile). Budgets are enforced on the request path
//! from the book, so the fleet can pass a budget by what it spends in one
//! interval and what is in flight.
//!
//! The book is also what `state_dir` keeps, so each node holds a recent copy of
//! the fleet's totals: a Redis restarted without persistence finds a key
//! missing, and the first node to sync seeds it with the total it knew before
//! adding its own charges: reseeded, not reset. Redis down: charges pile up in
//! the book and are sent when it is back; nothing is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{BudgetPeriod, ClusterConfig};
use crate::control::Control;
use crate::limits::budget::{period_start, SpendBook};

use super::link::{LinkConfig, RedisLink, UrlError};

/// What `/admin/cluster` shows of the spend thread.
#[derive(Debug, Default)]
pub struct SpendView {
    pub syncs: AtomicU64,
    last_sync: Mutex<Option<SystemTime>>,
    /// Charges not yet in Redis (micro-dollars), all keys together.
    pub pending_micros: AtomicU64,
}

impl SpendView {
    pub fn json(&self) -> serde_json::Value {
        let last = self
            .last_sync
            .lock()
            .map_or(None, |t| *t)
            .map(super::unix_ms);
        serde_json::json!({
            "syncs": self.syncs.load(Ordering::Relaxed),
            "last_sync_unix_ms": last,
            "pending_micros": self.pending_micros.load(Ordering::Relaxed),
        })
    }

    pub fn prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "# HELP switchyard_cluster_spend_syncs_total Spend syncs with Redis (one per key per interval).\n\
             # TYPE switchyard_cluster_spend_syncs_total counter\nswitchyard_cluster_spend_syncs_total {}\n\
             # HELP switchyard_cluster_spend_pending_micros Spend charged here and not yet in Redis (micro-dollars).\n\
             # TYPE switchyard_cluster_spend_pending_micros gauge\nswitchyard_cluster_spend_pending_micros {}\n",
            self.syncs.load(Ordering::Relaxed),
            self.pending_micros.load(Ordering::Relaxed),
        );
    }
}

/// Why the spend thread did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cluster.redis: {0}")]
    Url(#[from] UrlError),
    #[error("cannot spawn the cluster-spend thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// The running thread; [`FleetSpend::stop`] ends it after a last sync.
pub struct FleetSpend {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// Spend is synced at the cluster's interval, but no more than 5 times a
/// second: one script per key each time.
fn interval(sync_interval: Duration) -> Duration {
    sync_interval.max(Duration::from_millis(200))
}

impl FleetSpend {
    /// Reads the book's current totals as already the fleet's (what state_dir
    /// restored, or 0): call before any shard serves, so no charge is missed.
    pub fn prepare(config: &ClusterConfig, book: &SpendBook) -> Result<SpendSync, UrlError> {
        let link = RedisLink::new(&config.redis, LinkConfig::default())?;
        let now = SystemTime::now();
        let synced = (0..book.len())
            .filter_map(|key| book.reading(key, now))
            .map(|r| (r.name.to_string(), (r.index, r.spent)))
            .collect();
        Ok(SpendSync {
            prefix: format!("switchyard:{}:spend", link.url().db),
            link,
            synced,
            view: Arc::new(SpendView::default()),
        })
    }

    pub fn start(
        mut sync: SpendSync,
        interval_of: Duration,
        control: Arc<Control>,
    ) -> Result<FleetSpend, StartError> {
        let (stop, stopped) = mpsc::channel();
        let every = interval(interval_of);
        let thread = std::thread::Builder::new()
            .name("cluster-spend".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    sync.tick(&control.spend.book());
                }
                // The drain's last charges.
                sync.tick(&control.spend.book());
            })?;
        Ok(FleetSpend { stop, thread })
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// The thread's state: per key name, the period and the total it last set.
pub struct SpendSync {
    prefix: String,
    link: RedisLink,
    synced: HashMap<String, (u64, u64)>,
    view: Arc<SpendView>,
}

impl SpendSync {
    pub fn view(&self) -> Arc<SpendView> {
        self.view.clone()
    }

    fn tick(&mut self, book: &SpendBook) {
        let started = Instant::now();
        let mut pending = 0u64;
        for key in 0..book.len() {
            pending += self.sync_key(book, key).unwrap_or_else(|p| p);
            // A slow Redis costs a bounded tick, never a pile-up of them.
            if started.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        self.view.pending_micros.store(pending, Ordering::Relaxed);
    }

    /// Syncs one key; `Ok(0)` when its charges are in Redis, `Err(pending)`
    /// with what is not.
    fn sync_key(&mut self, book: &SpendBook, key: usize) -> Result<u64, u64> {
        let now = SystemTime::now();
        let Some(reading) = book.reading(key, now) else {
            return Ok(0);
        };
        // A key first seen after the start (added by a reload) started at 0.
        let base = match self.synced.get(reading.name) {
            Some((index, total)) if *index == reading.index => *total,
            _ => 0,
        };
        let delta = reading.spent as i64 - base as i64;
        let redis_key = format!(
            "{}:{}:{}:{}",
            self.prefix,
            reading.name,
            reading.period.as_str(),
            reading.index
        );
        let expires = expiry(reading.period, reading.index);
        let total = match self.link.spend(&redis_key, base, delta, expires) {
            Ok(total) => total,
            Err(_) => return Err(delta.unsigned_abs()),
        };
        book.adjust(key, reading.index, total as i64 - reading.spent as i64, now);
        self.synced
            .insert(reading.name.to_string(), (reading.index, total));
        self.view.syncs.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.view.last_sync.lock() {
            *last = Some(now);
        }
        Ok(0)
    }
}

/// When a period's key may go (unix ms): a day after the period ends; never
/// (0) for a total budget.
fn expiry(period: BudgetPeriod, index: u64) -> u64 {
    if period == BudgetPeriod::Total {
        return 0;
    }
    period_start(period, index + 1).map_or(0, |end| super::unix_ms(end) + 86_400_000)
}
