//! The limits in force for one config generation: each key's rpm, tpm and
//! concurrency, and each provider's and target's quota, as gateway-wide
//! [`Ledger`]s (shared by every shard, carried across reloads by name) with each
//! shard's [`Lease`]s on them ([`ShardLeases`]).
//!
//! Requests are charged one unit of rpm and an estimate of their tokens up front;
//! the estimate is corrected by the usage providers report once it is known
//! ([`Charge::settle`]), so a window's token count is what was really used.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lease::{batch_for, Lease, Ledger, Windows};
use crate::config::{Config, Quota};

/// The process-wide epoch windows count from, and its wall-clock time (unix
/// ms): every generation counts the same windows, so a reload never restarts
/// one. A node's own limits count from its first generation. A fleet's count
/// from the start of the hour on the wall clock, so every node starts its
/// windows at the same moments (to within the clocks' skew) whenever it
/// started, for any window that divides an hour.
fn epoch(fleet: bool) -> (Instant, u64) {
    use std::sync::OnceLock;
    static NODE: OnceLock<(Instant, u64)> = OnceLock::new();
    static FLEET: OnceLock<(Instant, u64)> = OnceLock::new();
    let cell = if fleet { &FLEET } else { &NODE };
    *cell.get_or_init(|| {
        let (now, wall) = (Instant::now(), std::time::SystemTime::now());
        let unix_ms = wall
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let into_hour = if fleet { unix_ms % 3_600_000 } else { 0 };
        match now.checked_sub(Duration::from_millis(into_hour)) {
            Some(start) => (start, unix_ms - into_hour),
            None => (now, unix_ms),
        }
    })
}

/// One limited subject's gateway-wide counts: requests and tokens per window.
#[derive(Debug, Default)]
pub struct Limiter {
    pub rpm: Option<Ledger>,
    pub tpm: Option<Ledger>,
}

impl Limiter {
    /// `fleet`: the limit is the fleet's, this node granting what the
    /// cluster's limits thread leased for it.
    fn new(quota: Quota, fleet: bool) -> Limiter {
        let ledger = if fleet { Ledger::fleet } else { Ledger::new };
        Limiter {
            rpm: quota.rpm.map(ledger),
            tpm: quota.tpm.map(ledger),
        }
    }

    /// Every ledger with its kind (`rpm`, `tpm`).
    pub fn ledgers(&self) -> impl Iterator<Item = (&'static str, &Ledger)> {
        [("rpm", &self.rpm), ("tpm", &self.tpm)]
            .into_iter()
            .filter_map(|(kind, ledger)| Some((kind, ledger.as_ref()?)))
    }

    fn quota(&self) -> Quota {
        Quota {
            rpm: self.rpm.as_ref().map(Ledger::limit),
            tpm: self.tpm.as_ref().map(Ledger::limit),
        }
    }

    pub fn is_limited(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }
}

/// A key's gateway-wide state: its limiter, requests in flight, and what it used.
#[derive(Debug)]
pub struct KeyState {
    pub limiter: Limiter,
    pub max_concurrency: Option<u32>,
    pub in_flight: AtomicU32,
    /// Cluster mode: the requests in flight the fleet allows this node
    /// (`u32::MAX` outside it), set by the cluster's limits thread.
    pub fleet_concurrency: AtomicU32,
    /// Cluster mode with `on_redis_down: closed` while Redis is unreachable:
    /// the key's limits cannot be enforced fleet-wide, so it is refused.
    pub fleet_closed: AtomicBool,
    pub stats: KeyStats,
}

impl Default for KeyState {
    fn default() -> KeyState {
        KeyState {
            limiter: Limiter::default(),
            max_concurrency: None,
            in_flight: AtomicU32::new(0),
            fleet_concurrency: AtomicU32::new(u32::MAX),
            fleet_closed: AtomicBool::new(false),
            stats: KeyStats::default(),
        }
    }
}

impl KeyState {
    /// Whether anything limits the key (what `on_redis_down: closed` refuses).
    pub fn is_limited(&self, budget: bool) -> bool {
        self.limiter.is_limited() || self.max_concurrency.is_some() || budget
    }
}

/// What a key did, for `/admin/keys` and metrics.
#[derive(Debug, Default)]
pub struct KeyStats {
    pub requests: AtomicU64,
    pub limited: AtomicU64,
    pub tokens_in: AtomicU64,
    pub tokens_out: AtomicU64,
}

/// Every limit of one generation, shared by the shards.
#[derive(Debug)]
pub struct Limits {
    pub windows: Windows,
    /// Cluster mode: every ledger is a node's share of a fleet-wide count.
    pub fleet: bool,
    pub keys: Vec<Arc<KeyState>>,
    /// Each provider's quota (shared by its targets), by provider index.
    pub providers: Vec<Arc<Limiter>>,
    /// Each target slot's own quota, by slot.
    pub slots: Vec<Arc<Limiter>>,
}

impl Limits {
    /// The limits of `config`; `slot_quotas` is each target slot's quota (from
    /// the first target entry that gives one).
    pub fn build(config: &Config, slot_quotas: &[Quota]) -> Limits {
        let fleet = config.cluster.is_some();
        let keys = config
            .keys
            .iter()
            .map(|key| {
                Arc::new(KeyState {
                    limiter: Limiter::new(key.limits, fleet),
                    max_concurrency: key.max_concurrency,
                    ..KeyState::default()
                })
            })
            .collect();
        let (epoch, epoch_unix_ms) = epoch(fleet);
        Limits {
            windows: Windows::at(epoch, epoch_unix_ms, config.rate_window),
            fleet,
            keys,
            providers: config
                .providers
                .iter()
                .map(|p| Arc::new(Limiter::new(p.quota, fleet)))
                .collect(),
            slots: slot_quotas
                .iter()
                .map(|q| Arc::new(Limiter::new(*q, fleet)))
                .collect(),
        }
    }

    /// Takes over the counts of `old`'s keys, providers and slots that still
    /// exist with the same limits (matched by `same`), so a reload neither
    /// refills a spent window nor forgets what a key used.
    pub fn carry(&mut self, old: &Limits, names: &Names<'_>) {
        // A ledger counts either the node or the fleet: switching cluster mode
        // on or off starts every count afresh.
        if self.fleet != old.fleet {
            return;
        }
        carry_each(
            &mut self.keys,
            &old.keys,
            names.keys,
            |k| k.limiter.quota(),
            |new, old| new.max_concurrency == old.max_concurrency,
        );
        carry_each(
            &mut self.providers,
            &old.providers,
            names.providers,
            Limiter::quota,
            |_, _| true,
        );
        carry_each(
            &mut self.slots,
            &old.slots,
            names.slots,
            Limiter::quota,
            |_, _| true,
        );
    }
}

/// The names (new generation, old generation) subjects are matched by on reload.
pub struct Names<'a> {
    pub keys: (&'a [&'a str], &'a [&'a str]),
    pub providers: (&'a [&'a str], &'a [&'a str]),
    pub slots: (&'a [&'a str], &'a [&'a str]),
}

fn carry_each<T>(
    new: &mut [Arc<T>],
    old: &[Arc<T>],
    (new_names, old_names): (&[&str], &[&str]),
    quota: impl Fn(&T) -> Quota,
    also: impl Fn(&T, &T) -> bool,
) {
    for (index, name) in new_names.iter().enumerate() {
        let Some(position) = old_names.iter().position(|n| n == name) else {
            continue;
        };
        let (Some(fresh), Some(kept)) = (new.get(index), old.get(position)) else {
            continue;
        };
        if quota(fresh) == quota(kept) && also(fresh, kept) {
            new[index] = kept.clone();
        }
    }
}

/// A shard's leases on one subject's ledgers.
#[derive(Debug, Default, Clone, Copy)]
struct SubjectLeases {
    rpm: Lease,
    tpm: Lease,
}

/// One shard's leases on every ledger of a generation.
#[derive(Debug)]
pub struct ShardLeases {
    limits: Arc<Limits>,
    shards: usize,
    keys: Vec<RefCell<SubjectLeases>>,
    providers: Vec<RefCell<SubjectLeases>>,
    slots: Vec<RefCell<SubjectLeases>>,
}

/// Which subject a charge is against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Key(usize),
    Provider(usize),
    Slot(usize),
}

/// Why a subject refused a request: which limit, how large, and when its window
/// frees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub kind: LimitKind,
    pub limit: u64,
    pub reset: Duration,
    pub until: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
    Concurrency,
}

/// Units charged against one subject in one window: corrected once the real
/// usage is known, and given back when the request was not made after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    subject: Subject,
    window: u32,
    requests: u64,
    tokens: u64,
}

/// Where a subject's limits stand, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    /// (limit, remaining) of requests and of tokens, when limited.
    pub requests: Option<(u64, u64)>,
    pub tokens: Option<(u64, u64)>,
    /// Until the window frees.
    pub reset: Duration,
}

impl ShardLeases {
    pub fn new(limits: Arc<Limits>, shards: usize) -> ShardLeases {
        let leases = |n: usize| (0..n).map(|_| RefCell::default()).collect();
        ShardLeases {
            keys: leases(limits.keys.len()),
            providers: leases(limits.providers.len()),
            slots: leases(limits.slots.len()),
            limits,
            shards: shards.max(1),
        }
    }

    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    fn subject(&self, subject: Subject) -> Option<(&Limiter, &RefCell<SubjectLeases>)> {
        match subject {
            Subject::Key(i) => Some((&self.limits.keys.get(i)?.limiter, self.keys.get(i)?)),
            Subject::Provider(i) => Some((self.limits.providers.get(i)?, self.providers.get(i)?)),
            Subject::Slot(i) => Some((self.limits.slots.get(i)?, self.slots.get(i)?)),
        }
    }

    /// Charges one request and `tokens` (an estimate) against `subject` now, or
    /// says which limit refuses it (nothing stays charged then). `Ok(None)`: the
    /// subject has no limit.
    pub fn charge(
        &self,
        subject: Subject,
        tokens: u64,
        now: Instant,
    ) -> Result<Option<Charge>, Refusal> {
        let Some((limiter, leases)) = self.subject(subject) else {
            return Ok(None);
        };
        if !limiter.is_limited() {
            return Ok(None);
        }
        let windows = &self.limits.windows;
        let window = windows.index(now);
        let until = windows.end(window);
        let refusal = |kind, limit| Refusal {
            kind,
            limit,
            reset: until.saturating_duration_since(now),
            until,
        };
        // A request larger than the whole token limit could never pass: it is
        // charged the limit (it still needs a window with room).
        let tokens = limiter
            .tpm
            .as_ref()
            .map_or(0, |tpm| tokens.clamp(1, tpm.limit()));
        let mut leases = leases.borrow_mut();
        if let Some(rpm) = &limiter.rpm {
            let batch = batch_for(rpm.cap(window), self.shards);
            if !leases.rpm.take(rpm, window, 1, batch) {
                return Err(refusal(LimitKind::Requests, rpm.limit()));
            }
        }
        if let Some(tpm) = &limiter.tpm {
            let batch = batch_for(tpm.cap(window), self.shards);
            if !leases.tpm.take(tpm, window, tokens, batch) {
                if limiter.rpm.is_some() {
                    leases.rpm.give_back(window, 1);
                }
                return Err(refusal(LimitKind::Tokens, tpm.limit()));
            }
        }
        Ok(Some(Charge {
            subject,
            window,
            requests: u64::from(limiter.rpm.is_some()),
            tokens,
        }))
    }

    /// Corrects `charge` by the tokens really used: more is counted (never
    /// refused), less is given back to this shard's lease while the window lasts.
    pub fn settle(&self, charge: Charge, used_tokens: u64) {
        let Some((limiter, leases)) = self.subject(charge.subject) else {
            return;
        };
        let Some(tpm) = &limiter.tpm else { return };
        let mut leases = leases.borrow_mut();
        match used_tokens.cmp(&charge.tokens) {
            std::cmp::Ordering::Greater => {
                tpm.force(charge.window, used_tokens - charge.tokens);
                if tpm.used(charge.window) >= tpm.limit() {
                    leases.tpm.forfeit();
                }
            }
            std::cmp::Ordering::Less => leases
                .tpm
                .give_back(charge.window, charge.tokens - used_tokens),
            std::cmp::Ordering::Equal => {}
        }
    }

    /// Gives a whole charge back (the request was not sent after all).
    pub fn refund(&self, charge: Charge) {
        let Some((limiter, leases)) = self.subject(charge.subject) else {
            return;
        };
        let mut leases = leases.borrow_mut();
        if limiter.rpm.is_some() {
            leases.rpm.give_back(charge.window, charge.requests);
        }
        if limiter.tpm.is_some() {
            leases.tpm.give_back(charge.window, charge.tokens);
        }
    }

    /// Where `subject`'s limits stand now (gateway-wide: units leased by other
    /// shards and not yet spent count as used).
    pub fn standing(&self, subject: Subject, now: Instant) -> Standing {
        let Some((limiter, _)) = self.subject(subject) else {
            return Standing::default();
        };
        let windows = &self.limits.windows;
        let window = windows.index(now);
        let left = |ledger: &Ledger| {
            (
                ledger.limit(),
                ledger.limit().saturating_sub(ledger.used(window)),
            )
        };
        Standing {
            requests: limiter.rpm.as_ref().map(left),
            tokens: limiter.tpm.as_ref().map(left),
            reset: windows.end(window).saturating_duration_since(now),
        }
    }
}

impl ShardLeases {
    /// Whether slot `slot` (or its provider `provider`) has no quota left now.
    pub fn at_quota(&self, slot: usize, provider: usize, now: Instant) -> bool {
        [Subject::Slot(slot), Subject::Provider(provider)]
            .into_iter()
            .any(|subject| {
                let standing = self.standing(subject, now);
                [standing.requests, standing.tokens]
                    .into_iter()
                    .flatten()
                    .any(|(_, remaining)| remaining == 0)
            })
    }
}

/// A request of a key counted as in flight until dropped.
#[derive(Debug)]
pub struct InFlight {
    key: Arc<KeyState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.key.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts one more request of `key` in flight, unless its `max_concurrency` is
/// reached (exact across shards: one atomic).
pub fn enter(key: &Arc<KeyState>) -> Result<InFlight, u32> {
    let previous = key.in_flight.fetch_add(1, Ordering::AcqRel);
    let guard = InFlight { key: key.clone() };
    let here = key.fleet_concurrency.load(Ordering::Acquire);
    match key.max_concurrency {
        Some(max) if previous >= max.min(here) => Err(max),
        _ => Ok(guard),
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
