//! What one shard owns: its routing table, upstream pools, health view, balancer
//! state and counters. Plain owned data behind `RefCell`s; never shared.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::messages::{Inbox, ShardMsg};
use crate::health::{TargetHealth, TargetSummary};
use crate::metrics::Metrics;
use crate::route::{Balancer, Table};
use crate::upstream::stream::TlsConnector;
use crate::upstream::{tls, Endpoint, Pool};

/// Health summaries older than this are ignored when they arrive.
const STALE_SUMMARY: Duration = Duration::from_millis(500);

pub struct Shard {
    pub id: usize,
    pub shard_count: usize,
    table: RefCell<Arc<Table>>,
    pools: RefCell<Vec<Pool>>,
    health: RefCell<Vec<TargetHealth>>,
    balancers: RefCell<Vec<Balancer>>,
    tls: TlsConnector,
    pub metrics: RefCell<Metrics>,
    pub inbox: Inbox,
    pub peers: Vec<Inbox>,
    /// Set once SIGTERM arrived: finish what is in flight, accept nothing new.
    pub draining: Cell<Option<Instant>>,
    /// Requests being served right now (from head parsed to response written).
    pub active_requests: Cell<usize>,
    pub open_connections: Cell<usize>,
    request_seq: Cell<u64>,
    id_prefix: u32,
}

impl Shard {
    pub fn new(id: usize, table: Arc<Table>, inbox: Inbox, peers: Vec<Inbox>) -> Rc<Shard> {
        let shard_count = peers.len();
        let tls = tls::connector();
        let pools = build_pools(&table, &tls, &[], None);
        let health = build_health(&table, shard_count, id, Vec::new(), None);
        let balancers = table
            .config
            .routes
            .iter()
            .map(|r| Balancer::new(r.targets.len()))
            .collect();
        let metrics = Metrics::new(&table);
        Rc::new(Shard {
            id,
            shard_count,
            table: RefCell::new(table),
            pools: RefCell::new(pools),
            health: RefCell::new(health),
            balancers: RefCell::new(balancers),
            tls,
            metrics: RefCell::new(metrics),
            inbox,
            peers,
            draining: Cell::new(None),
            active_requests: Cell::new(0),
            open_connections: Cell::new(0),
            request_seq: Cell::new(0),
            id_prefix: fastrand::u32(..),
        })
    }

    /// The table new requests route with; a request keeps its copy to the end.
    pub fn table(&self) -> Arc<Table> {
        self.table.borrow().clone()
    }

    /// Swaps in a new table between requests. Pools and health carry over for
    /// providers and targets that still exist.
    pub fn install_table(&self, table: Arc<Table>) {
        let old = self.table();
        if old.generation >= table.generation {
            return;
        }
        let old_pools = std::mem::take(&mut *self.pools.borrow_mut());
        *self.pools.borrow_mut() = build_pools(&table, &self.tls, &old_pools, Some(&old));
        let old_health = std::mem::take(&mut *self.health.borrow_mut());
        *self.health.borrow_mut() =
            build_health(&table, self.shard_count, self.id, old_health, Some(&old));
        *self.balancers.borrow_mut() = table
            .config
            .routes
            .iter()
            .map(|r| Balancer::new(r.targets.len()))
            .collect();
        self.metrics.borrow_mut().reshape(&table);
        *self.table.borrow_mut() = table;
    }

    /// The pool for provider `index` of `table` (which may be older than ours).
    pub fn pool(&self, table: &Table, index: usize) -> Option<Pool> {
        let current = self.table.borrow();
        if current.generation == table.generation {
            return self.pools.borrow().get(index).cloned();
        }
        let name = &table.providers.get(index)?.prepared.name;
        let position = current
            .providers
            .iter()
            .position(|p| &p.prepared.name == name)?;
        self.pools.borrow().get(position).cloned()
    }

    /// Runs `f` on the health of `slot` of `table`, mapping slots across a reload.
    pub fn with_health<R>(
        &self,
        table: &Table,
        slot: usize,
        f: impl FnOnce(&mut TargetHealth) -> R,
    ) -> Option<R> {
        let current = self.table.borrow();
        let index = if current.generation == table.generation {
            slot
        } else {
            let label = &table.slots.get(slot)?.label;
            current.slots.iter().position(|s| &s.label == label)?
        };
        self.health.borrow_mut().get_mut(index).map(f)
    }

    /// Runs `f` with the health of every slot (for target selection).
    pub fn with_all_health<R>(&self, f: impl FnOnce(&mut [TargetHealth]) -> R) -> R {
        f(&mut self.health.borrow_mut())
    }

    pub fn with_balancer<R>(&self, route: usize, f: impl FnOnce(&mut Balancer) -> R) -> Option<R> {
        self.balancers.borrow_mut().get_mut(route).map(f)
    }

    /// A request id unique across shards and restarts in practice.
    pub fn next_request_id(&self) -> String {
        let seq = self.request_seq.get().wrapping_add(1);
        self.request_seq.set(seq);
        format!("{:08x}{:02x}{:012x}", self.id_prefix, self.id & 0xff, seq)
    }

    /// Applies every message waiting in the inbox. Returns a shutdown grace when
    /// asked to stop.
    pub fn drain_inbox(&self, now: Instant) -> Option<Duration> {
        let mut shutdown = None;
        while let Some(msg) = self.inbox.pop() {
            match msg {
                ShardMsg::Table(table) => self.install_table(table),
                ShardMsg::Health {
                    from,
                    generation,
                    at,
                    summaries,
                } => self.merge_health(from, generation, at, &summaries, now),
                ShardMsg::Shutdown { grace } => shutdown = Some(grace),
                ShardMsg::Snapshot(reply) => {
                    let _ = reply.try_send(self.snapshot(now));
                }
            }
        }
        shutdown
    }

    fn merge_health(
        &self,
        from: usize,
        generation: u64,
        at: Instant,
        summaries: &[TargetSummary],
        now: Instant,
    ) {
        if generation != self.table.borrow().generation
            || now.saturating_duration_since(at) > STALE_SUMMARY
        {
            return;
        }
        let mut health = self.health.borrow_mut();
        for (target, summary) in health.iter_mut().zip(summaries) {
            target.merge_peer(from, now, *summary);
        }
    }

    /// Sends this shard's health summary to every peer.
    pub fn publish_health(&self, now: Instant) {
        if self.peers.len() < 2 {
            return;
        }
        let summaries: Arc<[TargetSummary]> = self
            .health
            .borrow()
            .iter()
            .map(|h| h.summary(now))
            .collect();
        let generation = self.table.borrow().generation;
        for (index, peer) in self.peers.iter().enumerate() {
            if index == self.id {
                continue;
            }
            // A full inbox drops this summary; the next one follows within a tick.
            let _ = peer.push(ShardMsg::Health {
                from: self.id,
                generation,
                at: now,
                summaries: summaries.clone(),
            });
        }
    }

    /// Closes idle upstream sockets past their idle timeout.
    pub fn evict_idle(&self, now: Instant) {
        for pool in self.pools.borrow().iter() {
            pool.evict_idle(now);
        }
    }

    pub fn snapshot(&self, now: Instant) -> crate::metrics::ShardSnapshot {
        let table = self.table();
        let health = self.health.borrow();
        let pools = self.pools.borrow();
        self.metrics.borrow().snapshot(
            self.id,
            &table,
            &health,
            &pools,
            now,
            self.active_requests.get(),
            self.open_connections.get(),
        )
    }
}

fn build_pools(
    table: &Table,
    tls: &TlsConnector,
    old: &[Pool],
    old_table: Option<&Table>,
) -> Vec<Pool> {
    table
        .providers
        .iter()
        .zip(&table.config.providers)
        .map(|(entry, provider)| {
            let endpoint = Endpoint {
                addrs: entry.addrs.clone(),
                tls: entry
                    .tls_host
                    .as_deref()
                    .and_then(|host| match &provider.ca_file {
                        // Its own roots (parsed by the loader): a connector of its own.
                        Some(ca) => tls::target(&tls::connector_with(&ca.roots), host),
                        None => tls::target(tls, host),
                    }),
            };
            let reusable = old_table.and_then(|t| {
                let position = t
                    .config
                    .providers
                    .iter()
                    .position(|p| p.name == provider.name && p.base_url == provider.base_url)?;
                old.get(position).cloned()
            });
            match reusable {
                Some(pool) => {
                    pool.set_endpoint(endpoint);
                    pool
                }
                None => Pool::new(
                    endpoint,
                    provider.max_connections,
                    provider.pool_idle_timeout,
                ),
            }
        })
        .collect()
}

fn build_health(
    table: &Table,
    shards: usize,
    me: usize,
    old: Vec<TargetHealth>,
    old_table: Option<&Table>,
) -> Vec<TargetHealth> {
    let mut old: Vec<Option<TargetHealth>> = old.into_iter().map(Some).collect();
    table
        .slots
        .iter()
        .enumerate()
        .map(|(index, slot)| {
            let carried = old_table
                .and_then(|t| t.slots.iter().position(|s| s.label == slot.label))
                .and_then(|position| old.get_mut(position).and_then(Option::take));
            let (ratio, min_per_sec) = slot_budget(table, index);
            let breaker = table.breakers.get(index).cloned();
            match (carried, breaker) {
                // The table carried the slot's breaker by the same label, so the
                // carried health already points at it.
                (Some(mut health), _) => {
                    health.reconfigure(&table.config.health, ratio, min_per_sec);
                    health
                }
                (None, Some(breaker)) => TargetHealth::new(
                    &table.config.health,
                    (ratio, min_per_sec),
                    breaker,
                    shards,
                    me,
                ),
                // A table always has one breaker per slot; a stray one is closed.
                (None, None) => TargetHealth::new(
                    &table.config.health,
                    (ratio, min_per_sec),
                    Arc::new(crate::health::SharedBreaker::new(Instant::now())),
                    shards,
                    me,
                ),
            }
        })
        .collect()
}

/// The retry budget (ratio, floor per second) of the first route target that uses
/// `slot`; a slot is shared, so its budget follows its first use.
fn slot_budget(table: &Table, slot: usize) -> (f64, u32) {
    let policy = table
        .config
        .routes
        .iter()
        .zip(&table.route_slots)
        .find_map(|(route, slots)| {
            let t = slots.iter().position(|s| *s == slot)?;
            Some(
                route
                    .targets
                    .get(t)
                    .and_then(|t| t.retry.as_ref())
                    .unwrap_or(&route.retry)
                    .clone(),
            )
        })
        .unwrap_or_else(crate::config::default_retry);
    (policy.budget_ratio, policy.budget_min_per_sec)
}
