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
//! The published messages are applied as they come by [`super::subscriber`];
//! the keys are the source of truth and the resync: a node that starts or
//! reconnects learns the current trips from them, and a message missed in an
//! outage cannot leave a sideline behind. Redis down or hung costs a tick the
//! link's deadlines, then nothing (the link answers `Down` at once); the node
//! runs on node-local health meanwhile, said once per outage and once on
//! recovery, when its own open trips are written again (a restarted Redis has
//! lost them).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::ClusterConfig;
use crate::control::Control;
use crate::health::SharedBreaker;
use crate::log::Level;
use crate::route::Table;

use super::link::{LinkConfig, LinkState, RedisLink, UrlError};

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
}

/// The thread's status and counters, shared with the admin listener.
#[derive(Debug)]
pub struct FleetView {
    status: Mutex<FleetStatus>,
    pub published: AtomicU64,
    pub applied: AtomicU64,
    /// Serialises [`apply`] between the tick and the subscriber.
    applying: Mutex<()>,
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
        serde_json::json!({
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
        })
    }

    /// The cluster series of `/metrics`.
    pub fn prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let up = u8::from(self.status().link.up);
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
            }),
            published: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            applying: Mutex::new(()),
        })
    }

    pub fn start(
        config: &ClusterConfig,
        control: Arc<Control>,
        view: Arc<FleetView>,
    ) -> Result<FleetHealth, StartError> {
        let link = RedisLink::new(&config.redis, LinkConfig::default())?;
        let sub_link = RedisLink::new(&config.redis, LinkConfig::default())?;
        let prefix = format!("switchyard:{}:health", link.url().db);
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

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The thread's state.
struct Sync {
    node: String,
    margin: Duration,
    link: RedisLink,
    prefix: String,
    /// Per target label: the open deadline (unix ms) last written to Redis.
    published: HashMap<String, u64>,
    view: Arc<FleetView>,
    was_up: bool,
    /// The link's reconnect count when last looked at.
    reconnects: u64,
}

impl Sync {
    fn tick(&mut self, table: &Table) {
        self.forget(table);
        let in_sync = self.publish_local(table);
        self.apply_remote(table);
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
        let live: std::collections::HashSet<&str> =
            table.slots.iter().map(|s| s.label.as_str()).collect();
        self.published
            .retain(|label, _| live.contains(label.as_str()));
        self.view.update(|s| {
            s.sidelined
                .retain(|label, side| live.contains(label.as_str()) && side.lift > now)
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
            let Some(label) = table.slots.get(slot).map(|s| s.label.clone()) else {
                continue;
            };
            let open = breaker.open_until().map(|until| {
                let ahead = until.saturating_duration_since(now);
                (unix_ms(wall + ahead), ahead)
            });
            let done = match (open, self.published.get(&label).copied()) {
                (Some((until, _)), Some(seen)) if until == seen => true,
                (Some((until, ahead)), _) => self.publish_trip(&label, until, ahead),
                (None, Some(_)) => self.publish_close(&label),
                (None, None) => true,
            };
            all &= done;
        }
        all
    }

    fn publish_trip(&mut self, label: &str, until: u64, ahead: Duration) -> bool {
        let msg = Message {
            node: self.node.clone(),
            target: label.to_string(),
            open_until_unix_ms: Some(until),
            closed: false,
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
        self.published.insert(label.to_string(), until);
        true
    }

    fn publish_close(&mut self, label: &str) -> bool {
        let msg = Message {
            node: self.node.clone(),
            target: label.to_string(),
            open_until_unix_ms: None,
            closed: true,
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
        let labels: Vec<String> = table.slots.iter().map(|s| s.label.clone()).collect();
        if labels.is_empty() {
            return;
        }
        let mut mget = redis::cmd("MGET");
        for label in &labels {
            mget.arg(self.key(label));
        }
        let Ok(value) = self.link.call(&mget) else {
            return;
        };
        let values: Vec<Option<String>> = redis::from_redis_value(&value).unwrap_or_default();
        let (now, wall) = (Instant::now(), SystemTime::now());
        self.view.update(|s| s.last_sync = Some(wall));
        for (slot, (label, raw)) in labels.iter().zip(values).enumerate() {
            let Some(breaker) = table.breakers.get(slot) else {
                continue;
            };
            let msg = raw
                .and_then(|r| serde_json::from_str::<Message>(&r).ok())
                .filter(|m| m.node != self.node && !m.closed);
            apply(&self.view, self.margin, label, breaker, msg, now, wall);
        }
    }

    /// Says once per outage that health is node-local, and once when Redis is
    /// back, when every local trip is written again.
    /// Marks every published trip unwritten (0 is no deadline), so the next
    /// tick writes it again, or deletes its key if it closed meanwhile.
    fn republish_all(&mut self) {
        for until in self.published.values_mut() {
            *until = 0;
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
    fn margin_is_bounded() {
        assert_eq!(margin(Duration::from_millis(50)), Duration::from_secs(1));
        assert_eq!(margin(Duration::from_millis(500)), Duration::from_secs(5));
        assert_eq!(margin(Duration::from_secs(60)), Duration::from_secs(10));
    }
}
