//! The fleet's health messages as they are published: a thread holding its
//! own Redis connection in SUBSCRIBE mode on the health channel, applying
//! other nodes' trips and closes the moment they arrive (the health thread's
//! per-tick read of the keys stays the source of truth and the resync).
//!
//! The connection reads with a timeout of one `sync_interval`, so the thread
//! sees a stop within one; a connection that fails is dropped and made again
//! after the link's backoff (a restarted Redis is resubscribed). A hung Redis
//! only makes reads time out, like a quiet channel: nothing waits on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::control::Control;

use super::health::{apply, apply_sideline, fleet_closed, FleetView, Message};
use super::link::RedisLink;

/// What the subscriber needs from the cluster config.
pub struct Setup {
    pub link: RedisLink,
    pub channel: String,
    pub node: String,
    pub margin: Duration,
    pub read_timeout: Duration,
}

pub struct Subscriber {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Subscriber {
    pub fn start(
        setup: Setup,
        control: Arc<Control>,
        view: Arc<FleetView>,
    ) -> std::io::Result<Subscriber> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cluster-subscribe".into())
            .spawn(move || run(setup, &control, &view, &flag))?;
        Ok(Subscriber { stop, thread })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

fn run(mut setup: Setup, control: &Control, view: &FleetView, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut conn) = setup.link.dedicated() else {
            // Inside the link's backoff (or the connect failed): wait a read's
            // worth, then ask again; the link spaces the real connects.
            std::thread::sleep(setup.read_timeout);
            continue;
        };
        let mut pubsub = conn.as_pubsub();
        // Subscribed under the link's call deadline; then reads wake every
        // `read_timeout` to look at `stop`.
        let subscribed = pubsub
            .subscribe(&setup.channel)
            .and_then(|()| pubsub.set_read_timeout(Some(setup.read_timeout)));
        if let Err(err) = subscribed {
            setup.link.lost(&err);
            continue;
        }
        setup.link.confirmed();
        while !stop.load(Ordering::SeqCst) {
            match pubsub.get_message() {
                Ok(msg) => on_message(&setup, control, view, msg.get_payload_bytes()),
                Err(err) if err.is_timeout() => {}
                Err(err) => {
                    setup.link.lost(&err);
                    break;
                }
            }
        }
    }
}

/// Another node's trip, close or `Retry-After` sideline, applied to the
/// current table's breaker of that target (a close also closes a trip whose
/// probe this node deferred to that node); this node's own messages and
/// unknown targets are ignored.
fn on_message(setup: &Setup, control: &Control, view: &FleetView, payload: &[u8]) {
    let Ok(msg) = serde_json::from_slice::<Message>(payload) else {
        return;
    };
    if msg.node == setup.node {
        return;
    }
    view.update(|s| s.last_message = Some(SystemTime::now()));
    let table = control.current();
    let Some(slot) = table.slots.iter().position(|s| *s.label == *msg.target) else {
        return;
    };
    let Some(breaker) = table.breakers.get(slot) else {
        return;
    };
    let label = msg.target.clone();
    let (now, wall) = (Instant::now(), SystemTime::now());
    if msg.sidelined_until_unix_ms.is_some() {
        apply_sideline(view, &label, breaker, msg, now, wall);
        return;
    }
    if msg.closed {
        fleet_closed(view, &label, breaker, &msg.node);
    }
    let trip = (!msg.closed).then_some(msg);
    apply(view, setup.margin, &label, breaker, trip, now, wall);
}
