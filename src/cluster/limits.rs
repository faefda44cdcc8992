//! Fleet-wide limits: a control-plane thread that leases each limit's
//! capacity from Redis ahead of need, so every node's shards admit from a
//! node-local allowance and no request waits on a Redis round trip, while the
//! fleet together never admits past a limit.
//!
//! In cluster mode every rpm/tpm ledger (a key's, a provider's, a target's) is
//! a node's share of one count per window in Redis, named by the window's
//! wall-clock start (`switchyard:{db}:limit:{kind}:{subject}:{start_ms}`;
//! windows count from the hour on every node). Every tick the thread, for each
//! ledger:
//! - counts in Redis what this node used past what it was granted (tokens
//!   over their estimate, or what it admitted on its own while Redis was
//!   gone), so the fleet's count is what was really used;
//! - leases another batch when the node's allowance runs low (the Lua script
//!   grants only what the window's count leaves), and ahead of each window
//!   the first batch of the next, so a window never starts empty-handed.
//!
//! A key's `max_concurrency` is held the same way: each node holds slots of
//! the fleet's cap in one hash, a little more than it has in flight, and a
//! node silent for a while loses them.
//!
//! Leasing never admits past a limit; what it costs is the other way: what
//! nodes leased and did not use when a window ends (at most two batches per
//! node). Redis down (the link answers at once once its breaker is open):
//! with `on_redis_down: local` each node allows itself its share of every
//! limit (the limit over the nodes last seen) and keeps serving; with
//! `closed` keys with any limit or budget are refused until it is back. On
//! recovery the node's own use is counted in Redis before it leases again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{ClusterConfig, OnRedisDown};
use crate::control::Control;
use crate::limits::gate::{KeyState, Limits};
use crate::limits::lease::{Ledger, Windows};
use crate::log::Level;
use crate::route::Table;

use super::link::{LinkConfig, RedisLink, UrlError};
use super::presence;
use super::unix_ms;

/// How the node enforces fleet limits right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Leasing from Redis.
    Fleet,
    /// Redis unreachable: each node its share of every limit.
    Local,
    /// Redis unreachable: limited keys refused.
    Closed,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Fleet => "fleet",
            Mode::Local => "node_local",
            Mode::Closed => "closed",
        }
    }
}

/// What `/admin/cluster` and `/metrics` show of the limits thread.
#[derive(Debug)]
pub struct LimitsView {
    status: Mutex<LimitsStatus>,
    pub lease_calls: AtomicU64,
    pub units_leased: AtomicU64,
    pub units_counted: AtomicU64,
}

#[derive(Debug, Clone)]
struct LimitsStatus {
    mode: Mode,
    nodes: usize,
    ledgers: usize,
    last_lease: Option<SystemTime>,
    /// Concurrency slots this node holds, by key.
    held: BTreeMap<String, u32>,
}

impl LimitsView {
    pub fn new() -> Arc<LimitsView> {
        Arc::new(LimitsView {
            status: Mutex::new(LimitsStatus {
                mode: Mode::Fleet,
                nodes: 1,
                ledgers: 0,
                last_lease: None,
                held: BTreeMap::new(),
            }),
            lease_calls: AtomicU64::new(0),
            units_leased: AtomicU64::new(0),
            units_counted: AtomicU64::new(0),
        })
    }

    fn status(&self) -> LimitsStatus {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut LimitsStatus)) {
        match self.status.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn mode(&self) -> Mode {
        self.status().mode
    }

    /// `/admin/cluster`'s `limits` object.
    pub fn json(&self) -> serde_json::Value {
        let s = self.status();
        serde_json::json!({
            "mode": s.mode.as_str(),
            "nodes": s.nodes,
            "ledgers": s.ledgers,
            "lease_calls": self.lease_calls.load(Ordering::Relaxed),
            "units_leased": self.units_leased.load(Ordering::Relaxed),
            "units_counted_after_use": self.units_counted.load(Ordering::Relaxed),
            "last_lease_unix_ms": s.last_lease.map(unix_ms),
            "concurrency_held": s.held,
        })
    }

    /// The fleet-limit series of `/metrics`.
    pub fn prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let fleet = u8::from(self.mode() == Mode::Fleet);
        let _ = write!(
            out,
            "# HELP switchyard_cluster_limits_fleet Whether limits are enforced fleet-wide (0: node-local shares or closed, Redis unreachable).\n\
             # TYPE switchyard_cluster_limits_fleet gauge\nswitchyard_cluster_limits_fleet {fleet}\n\
             # HELP switchyard_cluster_lease_calls_total Lease requests this node made to Redis.\n\
             # TYPE switchyard_cluster_lease_calls_total counter\nswitchyard_cluster_lease_calls_total {}\n\
             # HELP switchyard_cluster_lease_units_total Units (requests, tokens) Redis leased to this node.\n\
             # TYPE switchyard_cluster_lease_units_total counter\nswitchyard_cluster_lease_units_total {}\n",
            self.lease_calls.load(Ordering::Relaxed),
            self.units_leased.load(Ordering::Relaxed),
        );
    }
}

/// The batch a node leases at a time for `limit` across `nodes`: what one
/// node leaves unused at a window's end stays within about 1/8 of the limit
/// fleet-wide.
pub fn batch(limit: u64, nodes: usize) -> u64 {
    (limit / (8 * nodes.max(1) as u64)).max(1)
}

/// A node's share of `limit` while Redis is unreachable.
pub fn share(limit: u64, nodes: usize) -> u64 {
    limit.div_ceil(nodes.max(1) as u64)
}

/// How much more to lease for a window: nothing while the allowance left
/// (`allowed − used`) covers a batch, else a batch or twice what the node used
/// since the last tick, whichever is more; nothing once Redis said the window
/// is spent.
pub fn top_up(allowed: u64, used: u64, batch: u64, recent: u64, spent: bool) -> u64 {
    if spent || allowed.saturating_sub(used) >= batch {
        return 0;
    }
    batch.max(recent.saturating_mul(2))
}

/// The slots to hold of a fleet-wide concurrency cap: what is in flight plus
/// headroom, within the cap.
pub fn slots_wanted(in_flight: u32, cap: u32, nodes: usize) -> u32 {
    let headroom = (cap / (4 * nodes.max(1) as u32)).max(1);
    in_flight.saturating_add(headroom).min(cap)
}

/// Whether the slots held should be asked again: too few for the wish, more
/// than a headroom beyond it (give back), or the hold is due its refresh.
pub fn should_ask(held: u32, wanted: u32, cap: u32, nodes: usize, due: bool) -> bool {
    let headroom = (cap / (4 * nodes.max(1) as u32)).max(1);
    due || wanted > held || held > wanted.saturating_add(headroom)
}

/// Deadlines shorter than the health thread's: a hung Redis must cost a node
/// little of its allowance before the link's breaker opens and the node runs
/// on its shares (three failed calls); a healthy Redis answers in well under
/// a millisecond.
fn link_config() -> LinkConfig {
    LinkConfig {
        connect_timeout: Duration::from_millis(200),
        io_timeout: Duration::from_millis(50),
        ..LinkConfig::default()
    }
}

/// Why the limits thread did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cluster.redis: {0}")]
    Url(#[from] UrlError),
    #[error("cannot spawn the cluster-limits thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// The running thread; [`FleetLimits::stop`] ends it.
pub struct FleetLimits {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// How often the thread looks at the ledgers: often enough that a busy node
/// tops up before it runs dry (no Redis call when nothing needs one).
fn tick_interval(sync_interval: Duration) -> Duration {
    (sync_interval / 4).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

impl FleetLimits {
    /// The thread's state, having made its first tick on `table`: call before
    /// any shard serves, so a node's first requests find their allowance
    /// leased (or, Redis unreachable, their share) rather than nothing.
    pub fn prepare(
        config: &ClusterConfig,
        view: Arc<LimitsView>,
        table: &Table,
    ) -> Result<LimitsSync, StartError> {
        let link = RedisLink::new(&config.redis, link_config())?;
        let db = link.url().db;
        let mut sync = Sync {
            node: config.node_id.clone(),
            prefix: format!("switchyard:{db}:limit"),
            presence: presence::key(db),
            live_for: presence::live_for(config.sync_interval),
            // Far longer than a hung Redis can hold a tick (a reconnect and a
            // call timing out, about 250 ms), so the next window's allowance
            // is set before it starts even then.
            lead: Duration::from_secs(1),
            link,
            ledgers: HashMap::new(),
            slots: HashMap::new(),
            nodes: 1,
            nodes_read: None,
            was: Mode::Fleet,
            view,
        };
        sync.tick(table);
        Ok(LimitsSync {
            sync,
            interval: tick_interval(config.sync_interval),
        })
    }

    pub fn start(prepared: LimitsSync, control: Arc<Control>) -> Result<FleetLimits, StartError> {
        let LimitsSync { mut sync, interval } = prepared;
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cluster-limits".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    sync.tick(&control.current());
                }
            })?;
        Ok(FleetLimits { stop, thread })
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// The limits thread before it runs (see [`FleetLimits::prepare`]).
pub struct LimitsSync {
    sync: Sync,
    interval: Duration,
}

/// What the thread knows of one ledger's current window.
#[derive(Debug, Default)]
struct Leased {
    window: u32,
    /// Units counted in Redis for this node in `window` (leased, or counted
    /// after use).
    counted: u64,
    /// What the ledger had used at the last tick.
    used: u64,
    /// Redis granted less than asked: the window is spent fleet-wide.
    spent: bool,
    /// Units already leased for the next window.
    next: Option<(u32, u64)>,
}

impl Leased {
    /// Moves to `window`, taking what was leased ahead for it.
    fn roll(&mut self, window: u32) {
        if self.window == window {
            return;
        }
        let ahead = self.next.take().filter(|(w, _)| *w == window);
        *self = Leased {
            window,
            counted: ahead.map_or(0, |(_, units)| units),
            ..Leased::default()
        };
    }
}

/// Concurrency slots held for one key.
#[derive(Debug, Default)]
struct Held {
    slots: u32,
    asked: Option<Instant>,
}

struct Sync {
    node: String,
    prefix: String,
    presence: String,
    live_for: Duration,
    /// How long before a window's end the next one's first batch is leased.
    lead: Duration,
    link: RedisLink,
    ledgers: HashMap<String, Leased>,
    slots: HashMap<String, Held>,
    nodes: usize,
    nodes_read: Option<Instant>,
    was: Mode,
    view: Arc<LimitsView>,
}

impl Sync {
    fn tick(&mut self, table: &Table) {
        let limits = &table.limits;
        if !limits.fleet {
            return;
        }
        let Some(cluster) = &table.config.cluster else {
            return;
        };
        let now = Instant::now();
        self.count_nodes(now);
        let mut seen = std::collections::HashSet::new();
        for (name, ledger) in subjects(table) {
            self.ledger(&name, ledger, &limits.windows, now);
            seen.insert(name);
        }
        // What a reload removed.
        self.ledgers.retain(|name, _| seen.contains(name));
        self.slots
            .retain(|name, _| table.config.keys.iter().any(|k| &k.name == name));
        for (key, state) in table.config.keys.iter().zip(&limits.keys) {
            self.concurrency(&key.name, state, now);
        }
        let mode = match (self.link.state().up, cluster.on_redis_down) {
            (true, _) => Mode::Fleet,
            (false, OnRedisDown::Local) => Mode::Local,
            (false, OnRedisDown::Closed) => Mode::Closed,
        };
        close_keys(table, limits, mode == Mode::Closed);
        self.report(mode, seen.len());
    }

    /// Touches this node's presence and counts the live nodes, twice a second.
    fn count_nodes(&mut self, now: Instant) {
        if self
            .nodes_read
            .is_some_and(|at| now.duration_since(at) < Duration::from_millis(500))
        {
            return;
        }
        self.nodes_read = Some(now);
        let wall = SystemTime::now();
        if presence::touch(&mut self.link, &self.presence, &self.node, wall).is_err() {
            return;
        }
        if let Ok(live) = presence::live(&mut self.link, &self.presence, self.live_for, wall) {
            self.nodes = live.len().max(1);
        }
    }

    /// One ledger's tick: count what was used past the allowance, lease more
    /// when it runs low, and lease ahead of the next window.
    fn ledger(&mut self, name: &str, ledger: &Ledger, windows: &Windows, now: Instant) {
        let Some(allowance) = ledger.allowance() else {
            return;
        };
        let window = windows.index(now);
        let limit = ledger.limit();
        let batch = batch(limit, self.nodes);
        let mut leased = self.ledgers.remove(name).unwrap_or_default();
        leased.roll(window);
        let used = ledger.used(window);
        let recent = used.saturating_sub(leased.used);
        leased.used = used;
        let key = format!("{}:{name}:{}", self.prefix, windows.start_unix_ms(window));
        let expires = windows.start_unix_ms(window + 2);
        let fleet = self.count_use(&key, &mut leased, used, expires).is_ok()
            && self.lease(&key, &mut leased, limit, batch, recent, expires);
        let allowed = if fleet {
            leased.counted
        } else {
            leased.counted.max(share(limit, self.nodes))
        };
        allowance.set(window, allowed);
        if windows.end(window).saturating_duration_since(now) <= self.lead {
            let want = batch.max(recent.saturating_mul(2)).min(limit);
            let units = self.lease_next(name, &mut leased, windows, limit, want, fleet);
            allowance.set(window + 1, units);
        }
        self.ledgers.insert(name.to_string(), leased);
    }

    /// Counts in Redis what the node used past what Redis knows of.
    fn count_use(
        &mut self,
        key: &str,
        leased: &mut Leased,
        used: u64,
        expires: u64,
    ) -> Result<(), super::link::LinkError> {
        if used <= leased.counted {
            return Ok(());
        }
        self.link.force(key, used - leased.counted, expires)?;
        self.view
            .units_counted
            .fetch_add(used - leased.counted, Ordering::Relaxed);
        leased.counted = used;
        Ok(())
    }

    /// Leases a top-up if the allowance runs low; `false`: Redis did not answer.
    fn lease(
        &mut self,
        key: &str,
        leased: &mut Leased,
        limit: u64,
        batch: u64,
        recent: u64,
        expires: u64,
    ) -> bool {
        let want = top_up(leased.counted, leased.used, batch, recent, leased.spent);
        if want == 0 {
            return true;
        }
        match self.link.eval_lease(key, want, limit, expires) {
            Ok(granted) => {
                self.granted(granted);
                leased.counted += granted;
                leased.spent = granted < want;
                true
            }
            Err(_) => false,
        }
    }

    /// The allowance for the window after `leased`'s: its first batch, leased
    /// once; the node's share while Redis is unreachable (not remembered, so
    /// Redis is asked again next tick).
    fn lease_next(
        &mut self,
        name: &str,
        leased: &mut Leased,
        windows: &Windows,
        limit: u64,
        want: u64,
        fleet: bool,
    ) -> u64 {
        let next = leased.window + 1;
        if let Some((_, units)) = leased.next.filter(|(w, _)| *w == next) {
            return units;
        }
        let key = format!("{}:{name}:{}", self.prefix, windows.start_unix_ms(next));
        let expires = windows.start_unix_ms(next + 2);
        let leased_ahead = match fleet {
            true => self.link.eval_lease(&key, want, limit, expires).ok(),
            false => None,
        };
        let Some(units) = leased_ahead else {
            return share(limit, self.nodes);
        };
        self.granted(units);
        leased.next = Some((next, units));
        units
    }

    fn granted(&self, units: u64) {
        self.view.lease_calls.fetch_add(1, Ordering::Relaxed);
        self.view.units_leased.fetch_add(units, Ordering::Relaxed);
        self.view.update(|s| s.last_lease = Some(SystemTime::now()));
    }

    /// Holds slots of a key's fleet-wide `max_concurrency`; its share while
    /// Redis is unreachable.
    fn concurrency(&mut self, name: &str, state: &KeyState, now: Instant) {
        let Some(cap) = state.max_concurrency else {
            return;
        };
        let in_flight = state.in_flight.load(Ordering::Acquire).min(cap);
        let wanted = slots_wanted(in_flight, cap, self.nodes);
        let held = self.slots.entry(name.to_string()).or_default();
        let due = held
            .asked
            .is_none_or(|at| now.duration_since(at) >= self.live_for / 3);
        if !should_ask(held.slots, wanted, cap, self.nodes, due) {
            return;
        }
        let key = format!("{}:concurrency:{name}", self.prefix);
        let answer = self
            .link
            .hold_concurrency(&key, &self.node, wanted, cap, self.live_for);
        let held = self.slots.entry(name.to_string()).or_default();
        held.asked = Some(now);
        let slots = match answer {
            Ok(slots) => slots,
            Err(_) => share(u64::from(cap), self.nodes) as u32,
        };
        held.slots = slots;
        state.fleet_concurrency.store(slots, Ordering::Release);
    }

    /// Publishes the mode (said once per change) and counts.
    fn report(&mut self, mode: Mode, ledgers: usize) {
        if mode != self.was {
            self.was = mode;
            match mode {
                Mode::Fleet => crate::event!(
                    Level::Warn,
                    "cluster: redis is back; limits are fleet-wide again",
                    redis = self.link.url()
                ),
                _ => crate::event!(
                    Level::Error,
                    "cluster: REDIS UNREACHABLE; limits are enforced per node",
                    redis = self.link.url(),
                    on_redis_down = mode.as_str(),
                    nodes = self.nodes
                ),
            }
        }
        let held = self
            .slots
            .iter()
            .map(|(name, held)| (name.clone(), held.slots))
            .collect();
        let nodes = self.nodes;
        self.view.update(|s| {
            s.mode = mode;
            s.nodes = nodes;
            s.ledgers = ledgers;
            s.held = held;
        });
    }
}

/// Sets or lifts `closed` on every key with a limit or budget.
fn close_keys(table: &Table, limits: &Limits, closed: bool) {
    for (key, state) in table.config.keys.iter().zip(&limits.keys) {
        let limited = state.is_limited(key.budget.is_some());
        state
            .fleet_closed
            .store(closed && limited, Ordering::Release);
    }
}

/// Every fleet ledger of `table`, named for Redis: `rpm:key:NAME`,
/// `tpm:provider:NAME`, `rpm:target:PROVIDER/MODEL`.
fn subjects(table: &Table) -> impl Iterator<Item = (String, &Ledger)> {
    let limits = &table.limits;
    let keys = table
        .config
        .keys
        .iter()
        .zip(&limits.keys)
        .map(|(k, s)| ("key", k.name.as_str(), &s.limiter));
    let providers = table
        .config
        .providers
        .iter()
        .zip(&limits.providers)
        .map(|(p, l)| ("provider", p.name.as_str(), &**l));
    let slots = table
        .slots
        .iter()
        .zip(&limits.slots)
        .map(|(s, l)| ("target", &*s.label, &**l));
    keys.chain(providers)
        .chain(slots)
        .flat_map(|(what, name, limiter)| {
            limiter
                .ledgers()
                .map(move |(kind, ledger)| (format!("{kind}:{what}:{name}"), ledger))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_shares() {
        assert_eq!(batch(60, 3), 2);
        assert_eq!(batch(10, 3), 1);
        assert_eq!(batch(100_000, 4), 3125);
        assert_eq!(share(60, 3), 20);
        assert_eq!(share(10, 3), 4);
        assert_eq!(share(10, 0), 10);
    }

    #[test]
    fn top_ups() {
        // (allowed, used, batch, recent, spent) → want
        let table = [
            ((10, 0, 2, 0, false), 0),
            ((10, 8, 2, 0, false), 0),
            ((10, 9, 2, 0, false), 2),
            ((10, 9, 2, 5, false), 10),
            ((0, 0, 2, 0, false), 2),
            ((10, 12, 2, 0, false), 2),
            ((10, 9, 2, 5, true), 0),
        ];
        for ((allowed, used, batch, recent, spent), want) in table {
            assert_eq!(
                top_up(allowed, used, batch, recent, spent),
                want,
                "{allowed} {used} {batch} {recent} {spent}"
            );
        }
    }

    #[test]
    fn concurrency_slots() {
        assert_eq!(slots_wanted(0, 12, 3), 1);
        assert_eq!(slots_wanted(5, 12, 3), 6);
        assert_eq!(slots_wanted(12, 12, 3), 12);
        assert_eq!(slots_wanted(3, 40, 2), 8);
        // (held, wanted, cap, nodes, due) → ask
        assert!(should_ask(1, 2, 12, 3, false), "too few");
        assert!(!should_ask(3, 2, 12, 3, false), "within a headroom");
        assert!(should_ask(4, 2, 12, 3, false), "give back");
        assert!(should_ask(2, 2, 12, 3, true), "refresh");
    }

    #[test]
    fn a_roll_takes_what_was_leased_ahead() {
        let mut leased = Leased {
            window: 3,
            counted: 7,
            used: 7,
            spent: true,
            next: Some((4, 5)),
        };
        leased.roll(4);
        assert_eq!((leased.window, leased.counted, leased.spent), (4, 5, false));
        leased.next = Some((5, 2));
        leased.roll(7);
        assert_eq!(
            (leased.window, leased.counted),
            (7, 0),
            "a stale lead is dropped"
        );
    }
}
