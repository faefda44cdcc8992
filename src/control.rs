//! The control plane's shared state: the live table and its generation, the
//! shards' inboxes, and what changes them off the request path (reloads, DNS
//! refresh, health snapshots). The gateway and the admin thread both hold it.
//!
//! Shards never share state with it: every change reaches them as a message
//! (a new `Arc<Table>`, a shutdown, a snapshot request) in their inboxes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::config::{self, Config, ConfigErrors};
use crate::launch::StartError;
use crate::limits::spend::SpendKeeper;
use crate::log::Level;
use crate::metrics::ShardSnapshot;
use crate::route::table::resolve_host;
use crate::route::Table;
use crate::shard::{self, ShardMsg};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("no config file to reload (the gateway was started from an in-memory config)")]
    NoSource,
    #[error("`{0}` changed; it takes effect only after a restart")]
    NeedsRestart(&'static str),
    #[error(transparent)]
    State(#[from] crate::limits::state::StateError),
}

/// State the control plane shares with the admin thread (never with shards).
pub struct Control {
    pub(crate) table: Mutex<Arc<Table>>,
    pub(crate) generation: AtomicU64,
    pub(crate) source: Option<PathBuf>,
    pub(crate) inboxes: Vec<shard::Inbox>,
    pub addr: SocketAddr,
    pub drivers: Vec<&'static str>,
    /// Prices and spend of the current generation, and their state file.
    pub spend: Arc<SpendKeeper>,
    /// Cluster mode's status (`/admin/cluster`); `None` without `cluster:`.
    pub cluster: Option<Arc<crate::cluster::health::FleetView>>,
    /// Cluster mode's fleet limits (`/admin/cluster`'s `limits`).
    pub fleet_limits: Option<Arc<crate::cluster::limits::LimitsView>>,
    /// Cluster mode's fleet spend (`/admin/cluster`'s `spend`).
    pub fleet_spend: Option<Arc<crate::cluster::spend::SpendView>>,
}

impl Control {
    pub fn current(&self) -> Arc<Table> {
        self.table
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Re-reads the config file; a bad file keeps the running config.
    pub fn reload_file(&self) -> Result<u64, GatewayError> {
        let path = self.source.as_ref().ok_or(GatewayError::NoSource)?;
        let config = config::load_file(path)?;
        self.install(config)
    }

    /// Validates and installs `config` on every shard (between requests).
    pub fn install(&self, config: Config) -> Result<u64, GatewayError> {
        let current = self.current();
        if config.listen != current.config.listen {
            return Err(GatewayError::NeedsRestart("listen"));
        }
        // The admin listener is bound once; its token is read per request (so it
        // rotates on reload), but adding, removing or moving it needs a restart.
        let admin_listen = |c: &Config| c.admin.as_ref().map(|a| a.listen);
        if admin_listen(&config) != admin_listen(&current.config) {
            return Err(GatewayError::NeedsRestart("admin.listen"));
        }
        for (key, changed) in [
            ("shards", config.shards != current.config.shards),
            ("driver", config.driver != current.config.driver),
            ("state_dir", config.state.dir != current.config.state.dir),
            (
                "cluster",
                cluster_key(&config) != cluster_key(&current.config),
            ),
        ] {
            if changed {
                crate::event!(
                    Level::Warn,
                    "config key changed; it takes effect only after a restart",
                    key = key
                );
            }
        }
        crate::log::configure(&config.log);
        // Spend carried by key name (keys_file reloads with the config); the
        // ledger's Arcs are what the new table's shards charge.
        let ledger = self.spend.install(&config, std::time::SystemTime::now());
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let mut table = Table::build(Arc::new(config), generation, &resolve_host);
        table.carry_breakers(&current);
        table.spend = ledger;
        self.publish(Arc::new(table));
        self.await_shards(generation);
        crate::event!(Level::Info, "config reloaded", generation = generation);
        Ok(generation)
    }

    /// Waits (bounded by [`Control::snapshots`]) until every shard routes with
    /// `generation`, so a reload that is acknowledged or logged is in force:
    /// a revoked key is refused, and an added one admitted, by the next request.
    /// A shard drains its inbox in order, so its snapshot answer comes after
    /// it installed the table published just before.
    fn await_shards(&self, generation: u64) {
        let snapshots = self.snapshots();
        let behind = self.inboxes.len()
            - snapshots
                .iter()
                .filter(|s| s.generation >= generation)
                .count();
        if behind > 0 {
            crate::event!(
                Level::Warn,
                "shards not yet on the reloaded config",
                generation = generation,
                behind = behind
            );
        }
    }

    /// Re-resolves provider hosts; shards get a new table only when addresses moved.
    pub fn refresh_dns(&self) {
        let current = self.current();
        let mut fresh = Table::build(current.config.clone(), current.generation, &resolve_host);
        fresh.carry_breakers(&current);
        if fresh.same_addresses(&current) {
            return;
        }
        // Taken only now, like a reload's: the two never share a generation.
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        fresh.generation = generation;
        if !self.publish_over(Arc::new(fresh), Some(current.generation)) {
            return;
        }
        crate::event!(
            Level::Info,
            "provider addresses changed",
            generation = generation
        );
    }

    fn publish(&self, table: Arc<Table>) {
        self.publish_over(table, None);
    }

    /// Makes `table` current and sends it to every shard, under the table lock so
    /// shards receive generations in the order they were published. With
    /// `expected`, only while the current table is still that generation (a DNS
    /// refresh built from it must not undo a reload published meanwhile);
    /// returns whether it was published.
    fn publish_over(&self, table: Arc<Table>, expected: Option<u64>) -> bool {
        let mut current = match self.table.lock() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        if expected.is_some_and(|generation| current.generation != generation) {
            return false;
        }
        *current = table.clone();
        for inbox in &self.inboxes {
            shard::deliver(inbox, ShardMsg::Table(table.clone()));
        }
        true
    }

    /// Asks every shard for its counters and health view (the delivery wakes it).
    pub fn snapshots(&self) -> Vec<ShardSnapshot> {
        let (tx, rx) = mpsc::sync_channel(self.inboxes.len());
        for inbox in &self.inboxes {
            shard::deliver(inbox, ShardMsg::Snapshot(tx.clone()));
        }
        drop(tx);
        let mut snapshots: Vec<ShardSnapshot> = Vec::with_capacity(self.inboxes.len());
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while snapshots.len() < self.inboxes.len() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(snapshot) => snapshots.push(snapshot),
                Err(_) => break,
            }
        }
        snapshots.sort_by_key(|s| s.shard);
        snapshots
    }

    /// Number of shards that answered a snapshot request: all of them when ready.
    pub fn shards_serving(&self) -> usize {
        self.snapshots().len()
    }

    pub fn shard_count(&self) -> usize {
        self.inboxes.len()
    }
}

/// What of `cluster:` a reload cannot change (the thread keeps its link).
fn cluster_key(config: &Config) -> Option<(String, String, Duration)> {
    config
        .cluster
        .as_ref()
        .map(|c| (c.redis.clone(), c.node_id.clone(), c.sync_interval))
}
