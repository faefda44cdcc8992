//! Fleet-wide provider health: a control-plane thread that publishes this
//! node's breaker trips and closes to Redis and sidelines the targets other
//! nodes tripped, so a dead provider is avoided by every node once one node
//! has learnt it (and probed by that node only: one probe per fleet).
//!
//! No shard is touched: the thread reads each target's `SharedBreaker`
//! (atomics) and writes only its sideline. Every `sync_interval` it
//! - compares each breaker's open deadline with the one it last published: a
//!   new deadline (a trip, or a re-open after a failed probe) is written to a
//!   key per target (`SET … PX`, kept a margin past the cooldown, so a node
//!   that starts or reconnects later learns it) and `PUBLISH`ed as
//!   `{node, target, open_until_unix_ms}`; a close deletes the key and
//!   publishes `{node, target, closed: true}`;
//! - reads every target's key (one `MGET`): another node's trip sidelines the
//!   target here until its deadline plus a margin; a key gone (closed there,
//!   or expired) lifts that sideline at once. What was applied from others is
//!   a sideline, never a trip, so it is never published again (no echo).
//!
//! - holds or watches the probe lease of each local trip near its half-open
//!   (one probe per fleet for a target several nodes tripped: a node that
//!   finds another holding it sidelines its own breaker until the lease runs
//!   out, and closes its trip when the holder's probe closes the target);
//! - publishes local `Retry-After` sidelines (their own key and message) and
//!   applies other nodes' until their deadline, never re-publishing what it
//!   applied;
//! - touches this node's presence and counts the fleet's live nodes.
//!
//! The published messages are applied as they come by [`super::subscriber`];
//! the keys are the source of truth and the resync: a node that starts or
//! reconnects learns the current trips from them, and a message missed in an
//! outage cannot leave a sideline behind. Redis down or hung costs a tick the
//! link's deadlines, then nothing (the link answers `Down` at once); the node
//! runs on node-local health meanwhile, said once per outage and once on
//! recovery, when its own open trips are written again (a restarted Redis has
//! lost them).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::config::ClusterConfig;
use crate::control::Control;
use crate::health::SharedBreaker;
use crate::log::Level;
use crate::route::Table;

use super::link::{LinkConfig, LinkState, RedisLink, UrlError};
use super::unix_ms;

/// Why the fleet-health thread did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cluster.redis: {0}")]
    Url(#[from] UrlError),
    #[error("cannot spawn the cluster-health thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// A sideline taken from another node's trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSideline {
    /// The node that tripped the target.
    pub node: String,
    /// Its breaker's open deadline (unix ms).
    pub open_until_unix_ms: u64,
    /// The sideline as set here (the deadline plus the margin), for lifting.
    lift: Instant,
}

/// What `/admin/cluster` and `/metrics` show; written by the thread only.
#[derive(Debug, Clone)]
pub struct FleetStatus {
    pub node_id: String,
    pub channel: String,
    pub link: LinkState,
    pub last_publish: Option<SystemTime>,
    /// The last read of the fleet's keys (the tick's MGET).
    pub last_sync: Option<SystemTime>,
    /// The last message another node published, as the subscriber got it.
    pub last_message: Option<SystemTime>,
    /// Other nodes, by id: when a message of theirs was last seen.
    pub peers: BTreeMap<String, SystemTime>,
    /// Targets sidelined here by another node's trip, by label.
    pub sidelined: BTreeMap<String, FleetSideline>,
    /// Whether this node's own open trips are all in Redis.
    pub in_sync: bool,
    /// The fleet's live nodes (this one included, once touched), with their
    /// last touch (unix ms), as last read.
    pub nodes: Vec<(String, u64)>,
    /// Targets whose probe lease this node holds: its shards probe them.
    pub probing: std::collections::BTreeSet<String>,
    /// Targets tripped here whose probe this node leaves to the lease's holder.
    pub deferred: BTreeMap<String, Deferral>,
    /// Targets paused here at another node's provider's `Retry-After`.
    pub shared_sidelines: BTreeMap<String, SharedSideline>,
}

/// A local trip whose probe is left to the node holding the target's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    /// The lease's holder, whose close closes this node's trip too.
    pub holder: String,
    /// When the lease runs out (PTTL as read); gone before it, it was released.
    expires: Instant,
    pub until_unix_ms: u64,
    /// The sideline set here for it, for lifting.
    lift: Instant,
}

/// Another node's `Retry-After` sideline, applied here until its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSideline {
    pub node: String,
    pub until_unix_ms: u64,
    lift: Instant,
}

/// The thread's status and counters, shared with the admin listener.
#[derive(Debug)]
pub struct FleetView {
    status: Mutex<FleetStatus>,
    pub published: AtomicU64,
    pub applied: AtomicU64,
    /// Serialises [`apply`] between the tick and the subscriber.
    applying: Mutex<()>,
    /// Live nodes as last counted (at least 1: this one).
    live_nodes: std::sync::atomic::AtomicUsize,
    /// When the view was made: the sync lag before any sync.
    created: SystemTime,
}

impl FleetView {
    pub fn status(&self) -> FleetStatus {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut FleetStatus)) {
        match self.status.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// How many nodes the fleet has, this one included, as last counted
    /// (1 until the first count, and the last count while Redis is down).
    pub fn live_nodes(&self) -> usize {
        self.live_nodes.load(Ordering::Relaxed).max(1)
    }

    /// Seconds since the last successful read of the fleet's keys.
    fn sync_lag(&self, s: &FleetStatus) -> f64 {
        let since = s.last_sync.unwrap_or(self.created);
        SystemTime::now()
            .duration_since(since)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    /// `/admin/cluster`'s lists beyond v1's: nodes, probe leases, shared sidelines.
    fn fleet_json(s: &FleetStatus) -> serde_json::Value {
        let nodes: Vec<_> = s
            .nodes
            .iter()
            .map(|(id, seen)| {
                serde_json::json!({"node": id, "last_seen_unix_ms": seen, "self": *id == s.node_id})
            })
            .collect();
        let deferred: Vec<_> = s
            .deferred
            .iter()
            .map(|(target, d)| {
                serde_json::json!({"target": target, "to": d.holder, "until_unix_ms": d.until_unix_ms})
            })
            .collect();
        let shared: Vec<_> = s
            .shared_sidelines
            .iter()
            .map(|(target, side)| {
                serde_json::json!({"target": target, "by": side.node,
                    "sidelined_until_unix_ms": side.until_unix_ms})
            })
            .collect();
        serde_json::json!({"nodes": nodes, "probing": s.probing, "deferred": deferred,
            "shared_sidelines": shared})
    }

    /// `/admin/cluster`'s body.
    pub fn json(&self) -> serde_json::Value {
        let s = self.status();
        let unix = |t: Option<SystemTime>| t.map(unix_ms);
        let peers: Vec<_> = s
            .peers
            .iter()
            .map(|(id, seen)| serde_json::json!({"node": id, "last_seen_unix_ms": unix_ms(*seen)}))
            .collect();
        let sidelined: Vec<_> = s
            .sidelined
            .iter()
            .map(|(target, side)| {
                serde_json::json!({"target": target, "by": side.node,
                    "open_until_unix_ms": side.open_until_unix_ms})
            })
            .collect();
        let mut body = serde_json::json!({
            "node_id": s.node_id,
            "channel": s.channel,
            "redis": {
                "up": s.link.up,
                "connected": s.link.connected,
                "last_ok_unix_ms": unix(s.link.last_ok),
                "last_error": s.link.last_error,
                "consecutive_failures": s.link.consecutive_failures,
                "reconnects": s.link.reconnects,
                "connect_attempts": s.link.connect_attempts,
            },
            "health": if s.link.up { "fleet" } else { "node_local" },
            "in_sync": s.in_sync,
            "last_publish_unix_ms": unix(s.last_publish),
            "last_sync_unix_ms": unix(s.last_sync),
            "last_message_unix_ms": unix(s.last_message),
            "messages_published": self.published.load(Ordering::Relaxed),
            "messages_applied": self.applied.load(Ordering::Relaxed),
            "peers": peers,
            "sidelined": sidelined,
        });
        if let (Some(body), serde_json::Value::Object(more)) =
            (body.as_object_mut(), Self::fleet_json(&s))
        {
            body.extend(more);
        }
        body
    }

    /// The cluster series of `/metrics`.
    pub fn prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let status = self.status();
        let up = u8::from(status.link.up);
        let _ = write!(
            out,
            "# HELP switchyard_cluster_redis_up Whether the cluster's Redis link is up (0: node-local health).\n\
             # TYPE switchyard_cluster_redis_up gauge\nswitchyard_cluster_redis_up {up}\n\
             # HELP switchyard_cluster_messages_published_total Breaker trips and closes this node published.\n\
             # TYPE switchyard_cluster_messages_published_total counter\n\
             switchyard_cluster_messages_published_total {}\n\
             # HELP switchyard_cluster_messages_applied_total Other nodes' trips and closes applied here.\n\
             # TYPE switchyard_cluster_messages_applied_total counter\n\
             switchyard_cluster_messages_applied_total {}\n",
            self.published.load(Ordering::Relaxed),
            self.applied.load(Ordering::Relaxed),
        );
        let _ = write!(
            out,
            "# HELP switchyard_cluster_nodes Live nodes of the fleet, this one included.\n\
             # TYPE switchyard_cluster_nodes gauge\nswitchyard_cluster_nodes {}\n\
             # HELP switchyard_cluster_sync_lag_seconds Time since the fleet's keys were last read.\n\
             # TYPE switchyard_cluster_sync_lag_seconds gauge\nswitchyard_cluster_sync_lag_seconds {:.3}\n",
            self.live_nodes(),
            self.sync_lag(&status),
        );
    }
}

/// A trip or close as stored in a target's key and published.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub node: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_until_unix_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
    /// A `Retry-After` sideline (its own key), not a trip: until this unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidelined_until_unix_ms: Option<u64>,
}

/// The running thread; [`FleetHealth::stop`] ends it.
pub struct FleetHealth {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
    subscriber: super::subscriber::Subscriber,
}

impl FleetHealth {
    /// The view for the admin listener (before [`FleetHealth::start`]).
    pub fn view(config: &ClusterConfig) -> Arc<FleetView> {
        Arc::new(FleetView {
            status: Mutex::new(FleetStatus {
                node_id: config.node_id.clone(),
                channel: String::new(),
                link: LinkState {
                    up: true,
                    connected: false,
                    last_ok: None,
                    last_error: None,
                    consecutive_failures: 0,
                    reconnects: 0,
                    connect_attempts: 0,
                },
                last_publish: None,
                last_sync: None,
                last_message: None,
                peers: BTreeMap::new(),
                sidelined: BTreeMap::new(),
                in_sync: false,
                nodes: Vec::new(),
                probing: std::collections::BTreeSet::new(),
                deferred: BTreeMap::new(),
                shared_sidelines: BTreeMap::new(),
            }),
            published: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            applying: Mutex::new(()),
            live_nodes: std::sync::atomic::AtomicUsize::new(1),
            created: SystemTime::now(),
        })
    }

    pub fn start(
        config: &ClusterConfig,
        control: Arc<Control>,
        view: Arc<FleetView>,
    ) -> Result<FleetHealth, StartError> {
        let link = RedisLink::new(&config.redis, LinkConfig::default())?;
        let sub_link = RedisLink::new(&config.redis, LinkConfig::default())?;
        let db = link.url().db;
        let prefix = format!("switchyard:{db}:health");
        view.update(|s| s.channel = prefix.clone());
        let subscriber = super::subscriber::Subscriber::start(
            super::subscriber::Setup {
                link: sub_link,
                channel: prefix.clone(),
                node: config.node_id.clone(),
                margin: margin(config.sync_interval),
                // Wakes to see a stop within 200 ms whatever the interval.
                read_timeout: config
                    .sync_interval
                    .clamp(Duration::from_millis(10), Duration::from_millis(200)),
            },
            control.clone(),
            view.clone(),
        )?;
        let mut sync = Sync {
            node: config.node_id.clone(),
            margin: margin(config.sync_interval),
            link,
            prefix,
            published: HashMap::new(),
            view,
            was_up: true,
            reconnects: 0,
            sync_interval: config.sync_interval,
            holding: HashSet::new(),
            sidelines_published: HashMap::new(),
            presence_key: super::presence::key(db),
        };
        let (stop, stopped) = mpsc::channel();
        let interval = config.sync_interval;
        let spawned = std::thread::Builder::new()
            .name("cluster-health".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    sync.tick(&control.current());
                }
            });
        let thread = match spawned {
            Ok(thread) => thread,
            Err(e) => {
                subscriber.stop();
                return Err(e.into());
            }
        };
        Ok(FleetHealth {
            stop,
            thread,
            subscriber,
        })
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
        self.subscriber.stop();
    }
}

/// How long past another node's deadline its trip holds here, and its key
/// lives: long enough for that node's probe to answer (which then closes or
/// re-opens it), short enough that a node gone mid-trip is not avoided long.
fn margin(sync_interval: Duration) -> Duration {
    (sync_interval * 10).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// The longest another node's trip is taken to last here.
const MAX_REMOTE_OPEN: Duration = Duration::from_secs(600);

/// The thread's state.
struct Sync {
    node: String,
    margin: Duration,
    link: RedisLink,
    prefix: String,
    /// Per target label: the breaker's open deadline last written to Redis
    /// (`None`: to write again). Compared as the breaker's own instant: a
    /// half-open breaker's deadline is past, and as unix ms "now" it would
    /// read as new every tick.
    published: HashMap<String, Option<Instant>>,
    view: Arc<FleetView>,
    was_up: bool,
    /// The link's reconnect count when last looked at.
    reconnects: u64,
    sync_interval: Duration,
    /// Targets whose probe lease this node holds.
    holding: HashSet<String>,
    /// Per target label: the local `Retry-After` sideline last published.
    sidelines_published: HashMap<String, Instant>,
    presence_key: String,
}

impl Sync {
    fn tick(&mut self, table: &Table) {
        self.forget(table);
        let in_sync = self.publish_local(table);
        self.probe_leases(table);
        self.publish_sidelines(table);
        self.apply_remote(table);
        self.presence();
        self.watch_link();
        let link = self.link.state().clone();
        self.view.update(|s| {
            s.link = link;
            s.in_sync = in_sync;
        });
    }

    /// Drops what no longer applies: targets a reload removed, and fleet
    /// sidelines that ran out on their own (Redis down, so no key was read).
    fn forget(&mut self, table: &Table) {
        let now = Instant::now();
        let live: std::collections::HashSet<&str> = table.slots.iter().map(|s| &*s.label).collect();
        self.published
            .retain(|label, _| live.contains(label.as_str()));
        self.sidelines_published
            .retain(|label, until| live.contains(label.as_str()) && *until > now);
        self.holding.retain(|label| live.contains(label.as_str()));
        self.view.update(|s| {
            s.sidelined
                .retain(|label, side| live.contains(label.as_str()) && side.lift > now);
            s.shared_sidelines
                .retain(|label, side| live.contains(label.as_str()) && side.lift > now);
            s.deferred.retain(|label, _| live.contains(label.as_str()));
        });
    }

    fn key(&self, label: &str) -> String {
        format!("{}:open:{label}", self.prefix)
    }

    /// Publishes every local trip and close not yet in Redis; returns whether
    /// all are (a failed write is retried next tick).
    fn publish_local(&mut self, table: &Table) -> bool {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut all = true;
        for (slot, breaker) in table.breakers.iter().enumerate() {
            let Some(label) = table.slots.get(slot).map(|s| s.label.to_string()) else {
                continue;
            };
            let done = match (breaker.open_until(), self.published.get(&label).copied()) {
                (Some(until), Some(Some(seen))) if until == seen => true,
                (Some(until), _) => {
                    let ahead = until.saturating_duration_since(now);
                    self.publish_trip(&label, (unix_ms(wall + ahead), until), ahead)
                }
                (None, Some(_)) => self.publish_close(&label),
                (None, None) => true,
            };
            all &= done;
        }
        all
    }

    fn publish_trip(&mut self, label: &str, at: (u64, Instant), ahead: Duration) -> bool {
        let (until, deadline) = at;
        let msg = Message {
            node: self.node.clone(),
            target: label.to_string(),
            open_until_unix_ms: Some(until),
            closed: false,
            sidelined_until_unix_ms: None,
        };
        let ttl = (ahead + self.margin).as_millis() as u64;
        let body = serde_json::to_string(&msg).unwrap_or_default();
        let key = self.key(label);
        let set = self.link.call(
            redis::cmd("SET")
                .arg(&key)
                .arg(&body)
                .arg("PX")
                .arg(ttl.max(1)),
        );
        if set.is_err() {
            return false;
        }
        self.announce(&body);
        crate::event!(
            Level::Info,
            "cluster: published a trip",
            target = label,
            open_until_unix_ms = until
        );
        self.published.insert(label.to_string(), Some(deadline));
        true
    }

    fn publish_close(&mut self, label: &str) -> bool {
        let msg = Message {
            node: self.node.clone(),
            target: label.to_string(),
            open_until_unix_ms: None,
            closed: true,
            sidelined_until_unix_ms: None,
        };
        let key = self.key(label);
        if self.link.call(redis::cmd("DEL").arg(&key)).is_err() {
            return false;
        }
        self.announce(&serde_json::to_string(&msg).unwrap_or_default());
        crate::event!(Level::Info, "cluster: published a close", target = label);
        self.published.remove(label);
        true
    }

    /// PUBLISH for whoever listens (the keys are what nodes apply); a failure
    /// here changes nothing, the key is written.
    fn announce(&mut self, body: &str) {
        let _ = self
            .link
            .call(redis::cmd("PUBLISH").arg(&self.prefix).arg(body));
        self.view.published.fetch_add(1, Ordering::Relaxed);
        self.view
            .update(|s| s.last_publish = Some(SystemTime::now()));
    }

    /// Reads every target's key and sidelines (or lifts) accordingly.
    fn apply_remote(&mut self, table: &Table) {
        let labels: Vec<String> = table.slots.iter().map(|s| s.label.to_string()).collect();
        if labels.is_empty() {
            return;
        }
        // Trips first, then `Retry-After` sidelines: one round trip for both.
        let mut mget = redis::cmd("MGET");
        for label in &labels {
            mget.arg(self.key(label));
        }
        for label in &labels {
            mget.arg(self.sideline_key(label));
        }
        let Ok(value) = self.link.call(&mget) else {
            return;
        };
        let values: Vec<Option<String>> = redis::from_redis_value(&value).unwrap_or_default();
        let (now, wall) = (Instant::now(), SystemTime::now());
        self.view.update(|s| s.last_sync = Some(wall));
        let parse = |raw: Option<String>| {
            raw.and_then(|r| serde_json::from_str::<Message>(&r).ok())
                .filter(|m| m.node != self.node)
        };
        let (trips, sidelines) = values.split_at(values.len().min(labels.len()));
        for (slot, (label, raw)) in labels.iter().zip(trips).enumerate() {
            let Some(breaker) = table.breakers.get(slot) else {
                continue;
            };
            let msg = parse(raw.clone()).filter(|m| !m.closed);
            apply(&self.view, self.margin, label, breaker, msg, now, wall);
        }
        for (slot, raw) in sidelines.iter().enumerate() {
            let (Some(breaker), Some(msg)) = (table.breakers.get(slot), parse(raw.clone())) else {
                continue;
            };
            apply_sideline(&self.view, &labels[slot], breaker, msg, now, wall);
        }
    }

    fn sideline_key(&self, label: &str) -> String {
        format!("{}:sideline:{label}", self.prefix)
    }

    fn lease_key(&self, label: &str) -> String {
        format!("{}:probe:{label}", self.prefix)
    }

    /// Marks this node live and counts the fleet's live nodes.
    fn presence(&mut self) {
        use super::presence;
        let now = SystemTime::now();
        let _ = presence::touch(&mut self.link, &self.presence_key, &self.node, now);
        let within = presence::live_for(self.sync_interval);
        let Ok(nodes) = presence::live(&mut self.link, &self.presence_key, within, now) else {
            return;
        };
        let me = nodes.iter().any(|(n, _)| *n == self.node);
        let count = nodes.len() + usize::from(!me);
        self.view.live_nodes.store(count.max(1), Ordering::Relaxed);
        self.view.update(|s| s.nodes = nodes);
    }

    /// Publishes every local `Retry-After` sideline not yet published: its
    /// own key (expiring at its end) and a message. What this node applied
    /// from others (fleet trips, `Retry-After`s, probe deferrals) is never
    /// published again: a sideline ending where an applied one ends is theirs.
    fn publish_sidelines(&mut self, table: &Table) {
        for (slot, breaker) in table.breakers.iter().enumerate() {
            let Some(label) = table.slots.get(slot).map(|s| s.label.to_string()) else {
                continue;
            };
            let now = Instant::now();
            let fresh = {
                let _one = self.view.applying.lock().unwrap_or_else(|p| p.into_inner());
                let until = breaker.sidelined_until(now);
                let s = self.view.status();
                until.filter(|u| {
                    !applied_here(&s, &label, *u) && self.sidelines_published.get(&label) != Some(u)
                })
            };
            if let Some(until) = fresh {
                self.publish_sideline(&label, until, now);
            }
        }
    }

    fn publish_sideline(&mut self, label: &str, until: Instant, now: Instant) {
        let ahead = until.saturating_duration_since(now);
        let unix_until = unix_ms(SystemTime::now() + ahead);
        let msg = Message {
            node: self.node.clone(),
            target: label.to_string(),
            open_until_unix_ms: None,
            closed: false,
            sidelined_until_unix_ms: Some(unix_until),
        };
        let body = serde_json::to_string(&msg).unwrap_or_default();
        let ttl = (ahead.as_millis() as u64).max(1);
        let key = self.sideline_key(label);
        let set = redis::cmd("SET")
            .arg(&key)
            .arg(&body)
            .arg("PX")
            .arg(ttl)
            .clone();
        if self.link.call(&set).is_err() {
            return;
        }
        self.announce(&body);
        crate::event!(
            Level::Info,
            "cluster: published a sideline",
            target = label,
            sidelined_until_unix_ms = unix_until
        );
        self.sidelines_published.insert(label.to_string(), until);
    }

    /// The probe lease of every locally tripped target, by [`lease_step`]:
    /// held (or won), this node's shards probe; held by another node, the
    /// local breaker is sidelined until the lease runs out, and closes when
    /// the holder's probe closes the target.
    fn probe_leases(&mut self, table: &Table) {
        let now = Instant::now();
        let status = self.view.status();
        for (slot, breaker) in table.breakers.iter().enumerate() {
            let Some(label) = table.slots.get(slot).map(|s| s.label.to_string()) else {
                continue;
            };
            let open = breaker.open_until();
            let deferral = status.deferred.get(&label);
            let step = lease_step(LeaseFacts {
                tripped: open.is_some(),
                near: open.is_some_and(|u| u <= now + self.sync_interval * 2),
                holding: self.holding.contains(&label),
                fleet_sidelined: status.sidelined.contains_key(&label),
                deferred_live: deferral.is_some_and(|d| d.expires > now + self.sync_interval),
            });
            match step {
                LeaseStep::Nothing if open.is_none() && deferral.is_some() => {
                    self.settle(&label, breaker, LeaseOutcome::Free);
                }
                LeaseStep::Nothing => {}
                LeaseStep::Release => self.release_lease(&label),
                LeaseStep::Contend | LeaseStep::Watch => {
                    let ahead = open.map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
                    let contend = step == LeaseStep::Contend;
                    let Some(reply) = self.lease(&label, ahead + self.margin, contend) else {
                        continue;
                    };
                    let expires = deferral.map(|d| d.expires);
                    let outcome = lease_outcome(
                        &self.node,
                        reply,
                        expires,
                        Instant::now(),
                        self.sync_interval,
                    );
                    self.settle(&label, breaker, outcome);
                }
            }
        }
    }

    /// One lease call: `contend` takes the lease if free; this node's own is
    /// refreshed for `ttl`. `None`: Redis did not answer (node-local probing).
    fn lease(&mut self, label: &str, ttl: Duration, contend: bool) -> Option<LeaseReply> {
        let ttl = ttl.min(MAX_REMOTE_OPEN).as_millis().max(1) as u64;
        let cmd = redis::cmd("EVAL")
            .arg(LEASE_SCRIPT)
            .arg(1)
            .arg(self.lease_key(label))
            .arg(&self.node)
            .arg(ttl)
            .arg(if contend { "1" } else { "0" })
            .clone();
        let value = self.link.call(&cmd).ok()?;
        let (holder, pttl): (String, i64) = redis::from_redis_value(&value).ok()?;
        // No expiry (-1, a stray key) counts as one lease's worth.
        let pttl = u64::try_from(pttl).unwrap_or(ttl);
        Some(LeaseReply {
            holder,
            pttl: Duration::from_millis(pttl).min(MAX_REMOTE_OPEN),
        })
    }

    /// Gives the lease back (only if still this node's): the probe ended.
    fn release_lease(&mut self, label: &str) {
        let cmd = redis::cmd("EVAL")
            .arg(RELEASE_SCRIPT)
            .arg(1)
            .arg(self.lease_key(label))
            .arg(&self.node)
            .clone();
        if self.link.call(&cmd).is_err() {
            return;
        }
        self.holding.remove(label);
        self.view.update(|s| {
            s.probing.remove(label);
        });
    }

    /// Acts on a lease call's outcome, under the view's `applying` lock (the
    /// subscriber may close the same deferral meanwhile).
    fn settle(&mut self, label: &str, breaker: &SharedBreaker, outcome: LeaseOutcome) {
        let now = Instant::now();
        let _one = self.view.applying.lock().unwrap_or_else(|p| p.into_inner());
        let held = self.view.status().deferred.get(label).cloned();
        match outcome {
            LeaseOutcome::Held => {
                if self.holding.insert(label.to_string()) {
                    crate::event!(
                        Level::Info,
                        "cluster: holds the probe lease",
                        target = label
                    );
                }
                let fleet = self.view.status().sidelined.get(label).cloned();
                for lift in held
                    .map(|d| d.lift)
                    .into_iter()
                    .chain(fleet.map(|f| f.lift))
                {
                    breaker.lift_sideline(lift);
                }
                self.view.update(|s| {
                    s.deferred.remove(label);
                    s.sidelined.remove(label);
                    s.probing.insert(label.to_string());
                });
            }
            LeaseOutcome::Defer { holder, until } => {
                self.holding.remove(label);
                defer(
                    &self.view,
                    label,
                    breaker,
                    holder,
                    held.is_none(),
                    now,
                    until,
                );
            }
            LeaseOutcome::ClosedByFleet => {
                if let Some(d) = held {
                    close_deferred(&self.view, label, breaker, &d, now);
                }
            }
            LeaseOutcome::Free => {
                if let Some(d) = held {
                    breaker.lift_sideline(d.lift);
                    self.view.update(|s| {
                        s.deferred.remove(label);
                    });
                }
            }
        }
    }

    /// Says once per outage that health is node-local, and once when Redis is
    /// back, when every local trip is written again.
    /// Marks every published trip unwritten, so the next tick writes it
    /// again, or deletes its key if it closed meanwhile.
    fn republish_all(&mut self) {
        for until in self.published.values_mut() {
            *until = None;
        }
    }

    fn watch_link(&mut self) {
        let state = self.link.state().clone();
        // A reconnect may be to a restarted Redis that lost the keys, even when
        // too short an outage to open the link's breaker: write them again.
        if state.reconnects != self.reconnects {
            self.reconnects = state.reconnects;
            self.republish_all();
        }
        if state.up == self.was_up {
            return;
        }
        self.was_up = state.up;
        if state.up {
            crate::event!(
                Level::Warn,
                "cluster: redis is back; provider health is fleet-wide again, resyncing",
                redis = self.link.url()
            );
            self.republish_all();
        } else {
            crate::event!(
                Level::Error,
                "cluster: REDIS UNREACHABLE; provider health is node-local until it returns",
                redis = self.link.url(),
                error = state.last_error.clone().unwrap_or_default()
            );
        }
    }
}

/// Takes the lease if free (`ARGV[3]` = 1), refreshes this node's own, and
/// answers the holder ("" for none) and its time left (ms).
const LEASE_SCRIPT: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then
  if ARGV[3] == '1' then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return {ARGV[1], tonumber(ARGV[2])}
  end
  return {'', 0}
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {cur, tonumber(ARGV[2])}
end
return {cur, redis.call('PTTL', KEYS[1])}
";

/// Deletes the lease only if it is still `ARGV[1]`'s.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A lease call's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeaseReply {
    /// The node holding the lease; empty when none does.
    holder: String,
    pttl: Duration,
}

/// What the tick knows of one target's probe lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeaseFacts {
    /// The local breaker is tripped (open or half-open).
    tripped: bool,
    /// Its cooldown ends within two ticks (or has ended).
    near: bool,
    /// This node holds the lease.
    holding: bool,
    /// Sidelined here by another node's trip: that node probes.
    fleet_sidelined: bool,
    /// Deferred to a holder whose lease has not run out.
    deferred_live: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseStep {
    Nothing,
    /// The local trip closed: give the lease back.
    Release,
    /// Take the lease if free, refresh it if held.
    Contend,
    /// Only read it: see the holder's release (its probe closed the target).
    Watch,
}

/// Which lease call a target needs this tick. A holder refreshes its lease
/// for as long as its trip lasts (its probes re-open it), so other nodes keep
/// deferring; a node already deferring or sidelined by a trip only watches,
/// so it never takes a lease it could not probe with.
fn lease_step(f: LeaseFacts) -> LeaseStep {
    match f {
        LeaseFacts {
            tripped: false,
            holding,
            ..
        } => {
            if holding {
                LeaseStep::Release
            } else {
                LeaseStep::Nothing
            }
        }
        LeaseFacts { holding: true, .. } => LeaseStep::Contend,
        LeaseFacts { near: false, .. } => LeaseStep::Nothing,
        LeaseFacts {
            deferred_live: true,
            ..
        }
        | LeaseFacts {
            fleet_sidelined: true,
            ..
        } => LeaseStep::Watch,
        _ => LeaseStep::Contend,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LeaseOutcome {
    /// This node holds it: its shards probe.
    Held,
    /// Another node holds it until `until`: no probe here meanwhile.
    Defer { holder: String, until: Instant },
    /// The lease deferred to was released before it ran out: its holder's
    /// probe closed the target.
    ClosedByFleet,
    /// No lease and nothing deferred to.
    Free,
}

/// What a lease reply means for this node (`deferred`: when the lease it
/// defers to runs out, if it does; `slack`: a tick, so a lease running out
/// is not taken for a release).
fn lease_outcome(
    me: &str,
    reply: LeaseReply,
    deferred: Option<Instant>,
    now: Instant,
    slack: Duration,
) -> LeaseOutcome {
    if reply.holder == me {
        return LeaseOutcome::Held;
    }
    if !reply.holder.is_empty() {
        return LeaseOutcome::Defer {
            holder: reply.holder,
            until: now + reply.pttl,
        };
    }
    match deferred {
        Some(expires) if now + slack < expires => LeaseOutcome::ClosedByFleet,
        _ => LeaseOutcome::Free,
    }
}

/// Sidelines `label` here until the lease of `holder` runs out (a local trip
/// only: a breaker closed meanwhile has nothing to defer). The caller holds
/// `view.applying`.
fn defer(
    view: &FleetView,
    label: &str,
    breaker: &SharedBreaker,
    holder: String,
    new: bool,
    now: Instant,
    until: Instant,
) {
    if !breaker.tripped() {
        return;
    }
    breaker.sideline(now, until);
    let Some(lift) = breaker.sidelined_until(now) else {
        return;
    };
    if new {
        crate::event!(
            Level::Info,
            "cluster: probe deferred to the lease holder",
            target = label,
            holder = holder
        );
    }
    let until_unix_ms = unix_ms(SystemTime::now() + until.saturating_duration_since(now));
    let d = Deferral {
        holder,
        expires: until,
        until_unix_ms,
        lift,
    };
    view.update(|s| {
        s.deferred.insert(label.to_string(), d);
    });
}

/// The holder's probe closed the target: this node's trip closes too, as
/// after a probe of its own. The caller holds `view.applying`.
fn close_deferred(
    view: &FleetView,
    label: &str,
    breaker: &SharedBreaker,
    d: &Deferral,
    now: Instant,
) {
    breaker.lift_sideline(d.lift);
    let closed = breaker.close_by_fleet(now).is_some();
    view.update(|s| {
        s.deferred.remove(label);
    });
    if closed {
        view.applied.fetch_add(1, Ordering::Relaxed);
        crate::event!(
            Level::Info,
            "cluster: closed by the fleet's probe",
            target = label,
            by = d.holder
        );
    }
}

/// A close published by `node`: if this node deferred `label`'s probe to
/// it, its own trip closes now (the tick's lease read is the fallback).
pub(crate) fn fleet_closed(view: &FleetView, label: &str, breaker: &SharedBreaker, node: &str) {
    let _one = view.applying.lock().unwrap_or_else(|p| p.into_inner());
    let held = view.status().deferred.get(label).cloned();
    if let Some(d) = held.filter(|d| d.holder == node) {
        close_deferred(view, label, breaker, &d, Instant::now());
    }
}

/// Whether a sideline ending at `until` is one this node applied from the
/// fleet (so it is not published again).
fn applied_here(s: &FleetStatus, label: &str, until: Instant) -> bool {
    s.sidelined.get(label).is_some_and(|x| x.lift == until)
        || s.deferred.get(label).is_some_and(|x| x.lift == until)
        || s.shared_sidelines
            .get(label)
            .is_some_and(|x| x.lift == until)
}

/// Applies another node's `Retry-After` sideline of `label` until its
/// deadline (the provider's instruction: no margin); it runs out on its own.
/// Called by the tick and by the subscriber, one at a time (`view.applying`).
pub(crate) fn apply_sideline(
    view: &FleetView,
    label: &str,
    breaker: &SharedBreaker,
    msg: Message,
    now: Instant,
    wall: SystemTime,
) {
    let Some(until) = msg.sidelined_until_unix_ms else {
        return;
    };
    let _one = view.applying.lock().unwrap_or_else(|p| p.into_inner());
    let held = view.status().shared_sidelines.get(label).cloned();
    if held.is_some_and(|h| h.node == msg.node && h.until_unix_ms == until) {
        return;
    }
    let ahead = Duration::from_millis(until.saturating_sub(unix_ms(wall))).min(MAX_REMOTE_OPEN);
    breaker.sideline(now, now + ahead);
    let Some(lift) = breaker.sidelined_until(now) else {
        return;
    };
    view.applied.fetch_add(1, Ordering::Relaxed);
    crate::event!(
        Level::Info,
        "cluster: target sidelined by the fleet's Retry-After",
        target = label,
        by = msg.node,
        sidelined_until_unix_ms = until
    );
    let side = SharedSideline {
        node: msg.node.clone(),
        until_unix_ms: until,
        lift,
    };
    view.update(|s| {
        s.peers.insert(msg.node, wall);
        s.shared_sidelines.insert(label.to_string(), side);
    });
}

/// Applies another node's trip (`Some`) or the absence of one (`None`: closed,
/// or the key gone) to `label`'s breaker: a sideline set, extended or lifted.
/// Called by the tick and by the subscriber, one at a time (`view.applying`).
pub(crate) fn apply(
    view: &FleetView,
    margin: Duration,
    label: &str,
    breaker: &SharedBreaker,
    msg: Option<Message>,
    now: Instant,
    wall: SystemTime,
) {
    let _one = view.applying.lock().unwrap_or_else(|p| p.into_inner());
    let held = view.status().sidelined.get(label).cloned();
    let Some(msg) = msg else {
        if let Some(side) = held {
            breaker.lift_sideline(side.lift);
            view.applied.fetch_add(1, Ordering::Relaxed);
            view.update(|s| {
                s.sidelined.remove(label);
            });
            crate::event!(
                Level::Info,
                "cluster: fleet sideline lifted",
                target = label,
                by = side.node
            );
        }
        return;
    };
    let until = msg.open_until_unix_ms.unwrap_or(0);
    view.update(|s| {
        s.peers.insert(msg.node.clone(), wall);
    });
    if held.is_some_and(|h| h.open_until_unix_ms == until && h.node == msg.node) {
        return;
    }
    // The probe lease's holder is the fleet's prober: another node's trip of
    // the same target must not stop its probes.
    if breaker.tripped() && view.status().probing.contains(label) {
        return;
    }
    // Capped: a skewed clock or a stray key must not hold a target off for
    // long while Redis is down (when no key read can lift it).
    let ahead = Duration::from_millis(until.saturating_sub(unix_ms(wall))).min(MAX_REMOTE_OPEN);
    breaker.sideline(now, now + ahead + margin);
    let Some(lift) = breaker.sidelined_until(now) else {
        return;
    };
    view.applied.fetch_add(1, Ordering::Relaxed);
    crate::event!(
        Level::Info,
        "cluster: target sidelined by the fleet",
        target = label,
        by = msg.node,
        open_until_unix_ms = until
    );
    let side = FleetSideline {
        node: msg.node,
        open_until_unix_ms: until,
        lift,
    };
    view.update(|s| {
        s.sidelined.insert(label.to_string(), side);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_stay_small() {
        let trip = Message {
            node: "a".into(),
            target: "p/m".into(),
            open_until_unix_ms: Some(42),
            closed: false,
            sidelined_until_unix_ms: None,
        };
        let text = serde_json::to_string(&trip).unwrap();
        assert_eq!(
            text,
            r#"{"node":"a","target":"p/m","open_until_unix_ms":42}"#
        );
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), trip);
        let close = Message {
            open_until_unix_ms: None,
            closed: true,
            ..trip
        };
        let text = serde_json::to_string(&close).unwrap();
        assert_eq!(text, r#"{"node":"a","target":"p/m","closed":true}"#);
    }

    #[test]
    fn lease_step_table() {
        use LeaseStep::*;
        let f = |tripped, near, holding, fleet_sidelined, deferred_live| LeaseFacts {
            tripped,
            near,
            holding,
            fleet_sidelined,
            deferred_live,
        };
        // (tripped, near, holding, fleet-sidelined, deferred) → step
        let cases = [
            (f(false, false, false, false, false), Nothing),
            (f(false, false, true, false, false), Release),
            (f(true, false, false, false, false), Nothing),
            (f(true, false, true, false, false), Contend),
            (f(true, true, false, false, false), Contend),
            (f(true, true, true, true, true), Contend),
            (f(true, true, false, true, false), Watch),
            (f(true, true, false, false, true), Watch),
            (f(true, false, false, true, true), Nothing),
        ];
        for (facts, want) in cases {
            assert_eq!(lease_step(facts), want, "{facts:?}");
        }
    }

    #[test]
    fn lease_outcome_table() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let reply = |holder: &str, pttl| LeaseReply {
            holder: holder.into(),
            pttl: ms(pttl),
        };
        let slack = ms(20);
        let cases = [
            (reply("me", 900), None, LeaseOutcome::Held),
            (reply("me", 900), Some(t0 + ms(500)), LeaseOutcome::Held),
            (
                reply("b", 700),
                None,
                LeaseOutcome::Defer {
                    holder: "b".into(),
                    until: t0 + ms(700),
                },
            ),
            // Gone well before it would run out: released, the probe closed it.
            (
                reply("", 0),
                Some(t0 + ms(500)),
                LeaseOutcome::ClosedByFleet,
            ),
            // Gone about when it ran out: expired (its holder may be gone).
            (reply("", 0), Some(t0 + ms(10)), LeaseOutcome::Free),
            (reply("", 0), None, LeaseOutcome::Free),
        ];
        for (r, deferred, want) in cases {
            let got = lease_outcome("me", r.clone(), deferred, t0, slack);
            assert_eq!(got, want, "{r:?} deferred {deferred:?}");
        }
    }

    #[test]
    fn a_sideline_message_round_trips() {
        let side = Message {
            node: "a".into(),
            target: "p/m".into(),
            open_until_unix_ms: None,
            closed: false,
            sidelined_until_unix_ms: Some(7),
        };
        let text = serde_json::to_string(&side).unwrap();
        assert_eq!(
            text,
            r#"{"node":"a","target":"p/m","sidelined_until_unix_ms":7}"#
        );
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), side);
    }

    #[test]
    fn margin_is_bounded() {
        assert_eq!(margin(Duration::from_millis(50)), Duration::from_secs(1));
        assert_eq!(margin(Duration::from_millis(500)), Duration::from_secs(5));
        assert_eq!(margin(Duration::from_secs(60)), Duration::from_secs(10));
    }
}
