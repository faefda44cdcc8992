//! A shard's housekeeping: the rounds in which it applies its inbox, tells its
//! peers its health, closes idle upstream sockets and notices the end of a
//! drain, and when the next round is due. A shard with nothing periodic to do
//! sleeps [`IDLE_ROUND`] between rounds (a control message, or on a multi-shard
//! gateway its next request, wakes it sooner): an idle shard wakes once a second
//! where a fixed [`TICK`] woke it forty times, each wake-up a context switch in
//! front of the next request.

use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::stop::StopSignal;
use super::Shard;

/// How often a shard with news rounds: it tells and hears its peers' health at
/// this pace.
pub const TICK: Duration = Duration::from_millis(25);

/// How long a shard with nothing periodic to do sleeps between rounds.
pub const IDLE_ROUND: Duration = Duration::from_secs(1);

/// How often idle upstream sockets are looked at for eviction.
const EVICT_EVERY: Duration = Duration::from_secs(1);

/// How long after the drain deadline open streams get to send their final error.
const LAST_WORDS: Duration = Duration::from_millis(500);

/// What a round found that decides when the next one is due.
#[derive(Debug, Clone, Copy, Default)]
pub struct Round {
    pub draining: bool,
    /// Other shards share this one's health.
    pub has_peers: bool,
    /// A request started since the last round.
    pub requests_seen: bool,
    /// This round's summary told the peers of requests.
    pub told_volume: bool,
    /// A peer's summary arrived.
    pub heard_peers: bool,
}

/// When the next round is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// In [`TICK`]: health to tell or hear, or a drain to watch.
    Tick,
    /// In [`IDLE_ROUND`], or as soon as a request starts when `on_request`.
    Idle { on_request: bool },
}

impl Next {
    fn wait(self) -> Duration {
        match self {
            Next::Tick => TICK,
            Next::Idle { .. } => IDLE_ROUND,
        }
    }
}

/// A control message always wakes the shard early (its inbox sees to that).
/// Peers' news keeps the shard ticking; without peers, or once no shard has
/// news, it idles, listening for a request only when one would give it health
/// to tell.
pub fn next_round(round: Round) -> Next {
    let news = round.requests_seen || round.told_volume || round.heard_peers;
    if round.draining || (round.has_peers && news) {
        return Next::Tick;
    }
    Next::Idle {
        on_request: round.has_peers,
    }
}

/// Runs rounds until the shard has drained.
pub async fn run(shard: Rc<Shard>, stop: Rc<StopSignal>) {
    let mut told_volume = false;
    let mut evicted = Instant::now();
    loop {
        let now = Instant::now();
        let drained = shard.drain_inbox(now);
        if let Some(grace) = drained.shutdown {
            if shard.draining.get().is_none() {
                shard.draining.set(Some(now + grace));
                stop.stop();
            }
        }
        told_volume = shard.publish_health(now, told_volume);
        if now.saturating_duration_since(evicted) >= EVICT_EVERY {
            shard.evict_idle(now);
            evicted = now;
        }
        if drain_over(&shard, now) {
            return;
        }
        let next = next_round(Round {
            draining: shard.draining.get().is_some(),
            has_peers: shard.shard_count > 1,
            requests_seen: shard.take_requests_seen(),
            told_volume,
            heard_peers: drained.heard_peers,
        });
        wait(&shard, next).await;
    }
}

/// Past the grace, streams still open end with an error event on their next
/// read; they get a moment to get it out before the runtime stops.
fn drain_over(shard: &Shard, now: Instant) -> bool {
    shard
        .draining
        .get()
        .is_some_and(|until| shard.active_requests.get() == 0 || now >= until + LAST_WORDS)
}

async fn wait(shard: &Shard, next: Next) {
    let on_request = matches!(next, Next::Idle { on_request: true });
    let woken = poll_fn(|cx| {
        if shard.inbox.poll_control(cx).is_ready() {
            return Poll::Ready(());
        }
        if on_request {
            return shard.poll_request_seen(cx);
        }
        Poll::Pending
    });
    let _ = monoio::time::timeout(next.wait(), woken).await;
    shard.stop_listening_for_requests();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_round_by_what_the_round_found() {
        let quiet = Round::default();
        let peers = Round {
            has_peers: true,
            ..quiet
        };
        let table = [
            (quiet, Next::Idle { on_request: false }),
            (
                Round {
                    requests_seen: true,
                    ..quiet
                },
                Next::Idle { on_request: false },
            ),
            (
                Round {
                    draining: true,
                    ..quiet
                },
                Next::Tick,
            ),
            (peers, Next::Idle { on_request: true }),
            (
                Round {
                    requests_seen: true,
                    ..peers
                },
                Next::Tick,
            ),
            (
                Round {
                    told_volume: true,
                    ..peers
                },
                Next::Tick,
            ),
            (
                Round {
                    heard_peers: true,
                    ..peers
                },
                Next::Tick,
            ),
            (
                Round {
                    draining: true,
                    ..peers
                },
                Next::Tick,
            ),
        ];
        for (round, next) in table {
            assert_eq!(next_round(round), next, "{round:?}");
        }
    }
}
