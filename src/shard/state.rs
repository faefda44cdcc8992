//! What one shard owns: its routing generation (the table with this shard's pools,
//! target health, route counters, balancers and retry budgets, addressed by the
//! table's own indices), its inbox and its counters. Plain owned data behind
//! `RefCell`s and `Rc`s; never shared with another thread.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::messages::{Inbox, ShardMsg};
use crate::health::{RetryBudget, TargetHealth, TargetSummary};
use crate::limits::gate::ShardLeases;
use crate::metrics::{RouteCounters, ShardSnapshot, TargetCounters, TargetSnapshot};
use crate::request_id::RequestId;
use crate::route::{Balancer, Table};
use crate::upstream::stream::TlsConnector;
use crate::upstream::{tls, Endpoint, Pool};

/// Health summaries older than this are ignored when they arrive.
const STALE_SUMMARY: Duration = Duration::from_millis(500);

/// A target's state on this shard: its health and its counters. One per target
/// label, handed whole from one generation to the next, so a request routed with
/// an older table records into the same cell as one routed with the new table.
#[derive(Debug)]
pub struct TargetCell {
    pub health: RefCell<TargetHealth>,
    pub counters: RefCell<TargetCounters>,
}

/// A route's state on this shard. Counters and each target's retry budget are
/// handed on by route name (and target label); the balancer starts afresh when
/// the route's targets change.
#[derive(Debug)]
pub struct RouteCell {
    pub counters: Rc<RefCell<RouteCounters>>,
    pub balancer: RefCell<Balancer>,
    /// The retry budget of each (route, target), by target index.
    pub budgets: Vec<Rc<RefCell<RetryBudget>>>,
    /// The route's hedge budget (`hedge.budget_ratio` of its requests); carried
    /// by route name like the counters. Unused when the route does not hedge.
    pub hedge_budget: Rc<RefCell<RetryBudget>>,
}

/// One generation of what this shard routes with: the table and, by the table's
/// indices, this shard's pool per provider, cell per target slot and cell per
/// route. A request holds the generation it started with, so nothing on the
/// request path maps an index to another table's by name; a reload builds the
/// next generation once, handing over what still exists.
pub struct Routing {
    pub table: Arc<Table>,
    pub pools: Vec<Pool>,
    pub targets: Vec<Rc<TargetCell>>,
    pub routes: Vec<RouteCell>,
    /// This shard's leases on the generation's limits.
    pub leases: ShardLeases,
}

pub struct Shard {
    pub id: usize,
    pub shard_count: usize,
    routing: RefCell<Rc<Routing>>,
    tls: TlsConnector,
    /// Requests refused before routing, by status.
    pub bad_requests: RefCell<BTreeMap<u16, u64>>,
    rejections: RefCell<crate::log::RejectSampler>,
    pub inbox: Inbox,
    pub peers: Vec<Inbox>,
    /// Set once SIGTERM arrived: finish what is in flight, accept nothing new.
    pub draining: Cell<Option<Instant>>,
    /// Requests being served right now (from head parsed to response written).
    pub active_requests: Cell<usize>,
    pub open_connections: Cell<usize>,
    request_seq: Cell<u64>,
    id_prefix: u32,
    /// A request started since the housekeeping last looked.
    requests_seen: Cell<bool>,
    /// The housekeeping, while it sleeps and a request would give it work.
    on_request: Cell<Option<Waker>>,
}

/// What draining the inbox found that the housekeeping acts on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Asked to stop, with this grace.
    pub shutdown: Option<Duration>,
    /// A peer's health summary arrived.
    pub heard_peers: bool,
}

impl Shard {
    pub fn new(id: usize, table: Arc<Table>, inbox: Inbox, peers: Vec<Inbox>) -> Rc<Shard> {
        let shard_count = peers.len();
        let tls = tls::connector();
        let routing = Routing::build(table, &tls, None, (shard_count, id));
        Rc::new(Shard {
            id,
            shard_count,
            routing: RefCell::new(Rc::new(routing)),
            tls,
            bad_requests: RefCell::new(BTreeMap::new()),
            rejections: RefCell::default(),
            inbox,
            peers,
            draining: Cell::new(None),
            active_requests: Cell::new(0),
            open_connections: Cell::new(0),
            request_seq: Cell::new(0),
            id_prefix: fastrand::u32(..),
            requests_seen: Cell::new(false),
            on_request: Cell::new(None),
        })
    }

    /// The generation new requests route with; a request keeps it to the end.
    pub fn routing(&self) -> Rc<Routing> {
        self.routing.borrow().clone()
    }

    /// The table new requests route with.
    pub fn table(&self) -> Arc<Table> {
        self.routing.borrow().table.clone()
    }

    /// Swaps in a new table between requests: the next generation takes over the
    /// pools, target cells and route counters that still exist.
    pub fn install_table(&self, table: Arc<Table>) {
        let old = self.routing();
        if old.table.generation >= table.generation {
            return;
        }
        let next = Routing::build(table, &self.tls, Some(&old), (self.shard_count, self.id));
        *self.routing.borrow_mut() = Rc::new(next);
    }

    /// Counts a request refused before routing, and logs it (sampled per status).
    pub fn record_bad_request(&self, error: &crate::http::ApiError) {
        *self
            .bad_requests
            .borrow_mut()
            .entry(error.status)
            .or_default() += 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let Some(suppressed) = self.rejections.borrow_mut().admit(error.status, now) else {
            return;
        };
        crate::event!(
            crate::log::Level::Info,
            "request rejected",
            status = error.status,
            code = error.code,
            reason = error.message,
            shard = self.id,
            suppressed = suppressed
        );
    }

    /// A request id unique across shards and restarts in practice.
    pub fn next_request_id(&self) -> RequestId {
        let seq = self.request_seq.get().wrapping_add(1);
        self.request_seq.set(seq);
        RequestId::generated(self.id_prefix, (self.id & 0xff) as u8, seq)
    }

    /// Applies every message waiting in the inbox: what it asked for is done, and
    /// what the housekeeping has to know is returned.
    pub fn drain_inbox(&self, now: Instant) -> Drained {
        let mut drained = Drained::default();
        while let Some(msg) = self.inbox.pop() {
            match msg {
                ShardMsg::Table(table) => self.install_table(table),
                ShardMsg::Health {
                    from,
                    generation,
                    at,
                    summaries,
                } => {
                    drained.heard_peers = true;
                    self.merge_health(from, generation, at, &summaries, now);
                }
                ShardMsg::Shutdown { grace } => drained.shutdown = Some(grace),
                ShardMsg::Snapshot(reply) => {
                    let _ = reply.try_send(self.snapshot(now));
                }
            }
        }
        drained
    }

    /// A request started: the housekeeping, if it listens for that, wakes.
    pub fn note_request(&self) {
        self.requests_seen.set(true);
        if let Some(housekeeping) = self.on_request.take() {
            housekeeping.wake();
        }
    }

    /// Whether a request started since the last call.
    pub fn take_requests_seen(&self) -> bool {
        self.requests_seen.replace(false)
    }

    /// Ready when a request started since [`Shard::take_requests_seen`]; else the
    /// next one wakes `cx` (once).
    pub fn poll_request_seen(&self, cx: &Context<'_>) -> Poll<()> {
        if self.requests_seen.get() {
            return Poll::Ready(());
        }
        self.on_request.set(Some(cx.waker().clone()));
        Poll::Pending
    }

    /// Stops waking the housekeeping for requests.
    pub fn stop_listening_for_requests(&self) {
        self.on_request.set(None);
    }

    fn merge_health(
        &self,
        from: usize,
        generation: u64,
        at: Instant,
        summaries: &[TargetSummary],
        now: Instant,
    ) {
        let routing = self.routing();
        if generation != routing.table.generation
            || now.saturating_duration_since(at) > STALE_SUMMARY
        {
            return;
        }
        for (cell, summary) in routing.targets.iter().zip(summaries) {
            cell.health.borrow_mut().merge_peer(from, now, *summary);
        }
    }

    /// Sends this shard's health summary to every peer, unless it is a summary
    /// of nothing and the last one (`told_volume`) was too: peers forget a
    /// summary soon after it stops coming. Returns whether this one told of any
    /// request.
    pub fn publish_health(&self, now: Instant, told_volume: bool) -> bool {
        if self.peers.len() < 2 {
            return false;
        }
        let routing = self.routing();
        let summaries: Arc<[TargetSummary]> = routing
            .targets
            .iter()
            .map(|cell| cell.health.borrow().summary(now))
            .collect();
        let has_volume = summaries.iter().any(|s| s.requests > 0 || s.failures > 0);
        if !has_volume && !told_volume {
            return false;
        }
        let generation = routing.table.generation;
        for (index, peer) in self.peers.iter().enumerate() {
            if index == self.id {
                continue;
            }
            // A full inbox drops this summary; the next one follows within a tick.
            let _ = peer.post(ShardMsg::Health {
                from: self.id,
                generation,
                at: now,
                summaries: summaries.clone(),
            });
        }
        has_volume
    }

    /// Closes idle upstream sockets past their idle timeout.
    pub fn evict_idle(&self, now: Instant) {
        for pool in &self.routing().pools {
            pool.evict_idle(now);
        }
    }

    /// Everything this shard reports to the admin API, as of `now`.
    pub fn snapshot(&self, now: Instant) -> ShardSnapshot {
        let routing = self.routing();
        let table = &routing.table;
        let targets = table
            .slots
            .iter()
            .zip(&routing.targets)
            .zip(&table.prefill)
            .enumerate()
            .map(|(index, ((slot, cell), prefill))| {
                let h = cell.health.borrow();
                let pool = routing.pools.get(slot.provider);
                TargetSnapshot {
                    label: slot.label.to_string(),
                    counters: cell.counters.borrow().clone(),
                    at_quota: routing.leases.at_quota(index, slot.provider, now),
                    breaker: h.state(now),
                    retry_in: h.retry_after(now),
                    window_requests: h.totals(now).requests,
                    window_failures: h.totals(now).failures,
                    ewma_ttfb_us: h.ewma_us(now),
                    ttft_p95: h.ttft_quantile(now, 0.95),
                    first_token_auto: h.first_token_auto(now),
                    in_flight: h.in_flight(),
                    pool_open: pool.map_or(0, Pool::open_count),
                    pool_idle: pool.map_or(0, Pool::idle_count),
                    prefill: prefill.get(),
                }
            })
            .collect();
        let routes = table
            .config
            .routes
            .iter()
            .zip(&routing.routes)
            .map(|(route, cell)| (route.name.clone(), cell.counters.borrow().clone()))
            .collect();
        ShardSnapshot {
            shard: self.id,
            generation: table.generation,
            routes,
            targets,
            bad_requests: self.bad_requests.borrow().clone(),
            active_requests: self.active_requests.get(),
            open_connections: self.open_connections.get(),
        }
    }
}

impl Routing {
    /// The generation for `table`, taking over from `old` what still exists.
    /// `(shards, me)`: how many shards there are and which one this is.
    fn build(
        table: Arc<Table>,
        tls: &TlsConnector,
        old: Option<&Routing>,
        (shards, me): (usize, usize),
    ) -> Routing {
        let pools = build_pools(&table, tls, old);
        let targets = build_targets(&table, old, shards, me);
        let routes = build_routes(&table, old);
        let leases = ShardLeases::new(table.limits.clone(), shards);
        Routing {
            table,
            pools,
            targets,
            routes,
            leases,
        }
    }
}

fn build_pools(table: &Table, tls: &TlsConnector, old: Option<&Routing>) -> Vec<Pool> {
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
            let reusable =
                old.and_then(|old| {
                    let position =
                        old.table.config.providers.iter().position(|p| {
                            p.name == provider.name && p.base_url == provider.base_url
                        })?;
                    old.pools.get(position).cloned()
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

/// One cell per slot: the old generation's cell of the same label (reconfigured),
/// else a new one judged by the table's shared breaker for the slot.
fn build_targets(
    table: &Table,
    old: Option<&Routing>,
    shards: usize,
    me: usize,
) -> Vec<Rc<TargetCell>> {
    let cfg = &table.config.health;
    table
        .slots
        .iter()
        .zip(&table.breakers)
        .map(|(slot, breaker)| {
            let carried = old.and_then(|old| {
                let position = old.table.slots.iter().position(|s| s.label == slot.label)?;
                old.targets.get(position).cloned()
            });
            match carried {
                // The table carried the slot's breaker by the same label, so the
                // carried health already points at it.
                Some(cell) => {
                    cell.health.borrow_mut().reconfigure(cfg);
                    cell
                }
                None => Rc::new(TargetCell {
                    health: RefCell::new(TargetHealth::new(cfg, breaker.clone(), shards, me)),
                    counters: RefCell::new(TargetCounters::default()),
                }),
            }
        })
        .collect()
}

/// The route's hedge budget: the previous generation's (new limits), or a new one.
fn hedge_budget(route: &crate::config::Route, old: Option<&RouteCell>) -> Rc<RefCell<RetryBudget>> {
    let (ratio, floor) = route
        .hedge
        .map_or((0.0, 0), |h| (h.budget_ratio, h.budget_min_per_sec));
    match old {
        Some(old) => {
            old.hedge_budget.borrow_mut().set_limits(ratio, floor);
            old.hedge_budget.clone()
        }
        None => Rc::new(RefCell::new(RetryBudget::new(ratio, floor))),
    }
}

/// One cell per route, by name: counters handed on; each target's retry budget
/// handed on when the same route keeps a target of the same label (with the
/// resolved policy's limits), else new.
fn build_routes(table: &Table, old: Option<&Routing>) -> Vec<RouteCell> {
    table
        .config
        .routes
        .iter()
        .zip(&table.routes)
        .map(|(route, resolved)| {
            let previous = old.and_then(|old| {
                let index = old
                    .table
                    .config
                    .routes
                    .iter()
                    .position(|r| r.name == route.name)?;
                Some((old, index))
            });
            let counters = previous.map_or_else(Rc::default, |(old, index)| {
                old.routes[index].counters.clone()
            });
            let budgets = resolved
                .targets
                .iter()
                .map(|target| {
                    let label = &table.slots[target.slot].label;
                    let (ratio, floor) =
                        (target.retry.budget_ratio, target.retry.budget_min_per_sec);
                    let carried = previous.and_then(|(old, index)| {
                        let targets = &old.table.routes[index].targets;
                        let t = targets
                            .iter()
                            .position(|t| &old.table.slots[t.slot].label == label)?;
                        old.routes[index].budgets.get(t).cloned()
                    });
                    match carried {
                        Some(budget) => {
                            budget.borrow_mut().set_limits(ratio, floor);
                            budget
                        }
                        None => Rc::new(RefCell::new(RetryBudget::new(ratio, floor))),
                    }
                })
                .collect();
            RouteCell {
                counters,
                balancer: RefCell::new(Balancer::new(route.targets.len())),
                budgets,
                hedge_budget: hedge_budget(route, previous.map(|(old, i)| &old.routes[i])),
            }
        })
        .collect()
}
