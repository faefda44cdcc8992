//! Capacity leased from one gateway-wide count per window: how every shard
//! enforces a shared limit (a key's rpm, a target's tpm) with no lock on the
//! request path.
//!
//! A [`Ledger`] holds, in one atomic word, the window it counts and the units
//! granted in it; it never grants more than the limit in a window. A shard's
//! [`Lease`] takes a batch of units from the ledger when it runs out and spends it
//! locally, so most requests touch no shared memory at all. Nothing is ever
//! admitted past the limit by leasing: the cost of batching is the other way, up
//! to `batch` units per shard left unused when a window ends. Usage that turns out
//! larger than its estimate is charged afterwards with [`Ledger::force`] (counted,
//! never refused), so a token limit can be passed by what was underestimated.
//!
//! Windows are fixed and aligned for the whole gateway ([`Windows`]): window `k`
//! covers `[epoch + k·length, epoch + (k+1)·length)`.
//!
//! In cluster mode a ledger is a node's share of a fleet-wide count: it also
//! holds an [`Allowance`] per window, what the fleet's Redis granted this node
//! (written by the cluster's limits thread only), and grants no further than it.
//! The allowance is leased ahead of need, so a request never waits on Redis.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Fixed windows of `length` from `epoch`, shared by every ledger of a gateway.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    epoch: Instant,
    /// The epoch's wall-clock time (unix ms), which names windows fleet-wide.
    epoch_unix_ms: u64,
    length: Duration,
}

impl Windows {
    pub fn new(epoch: Instant, length: Duration) -> Windows {
        Windows::at(epoch, 0, length)
    }

    /// Windows from `epoch`, which was `epoch_unix_ms` on the wall clock.
    pub fn at(epoch: Instant, epoch_unix_ms: u64, length: Duration) -> Windows {
        Windows {
            epoch,
            epoch_unix_ms,
            length: length.max(Duration::from_millis(1)),
        }
    }

    /// When window `index` starts on the wall clock (unix ms): its name in the
    /// fleet, the same on every node whose epoch is a whole number of windows
    /// away (gate aligns epochs to the hour; cluster mode needs windows that
    /// divide it).
    pub fn start_unix_ms(&self, index: u32) -> u64 {
        self.epoch_unix_ms + self.length.as_millis() as u64 * u64::from(index)
    }

    pub fn length(&self) -> Duration {
        self.length
    }

    /// The index of the window `now` falls in (0 before the epoch).
    pub fn index(&self, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.epoch);
        (elapsed.as_nanos() / self.length.as_nanos()) as u32
    }

    /// When window `index` ends (the next one starts).
    pub fn end(&self, index: u32) -> Instant {
        self.epoch + self.length * index.saturating_add(1)
    }
}

/// The gateway-wide count of one limit: units granted in the current window, and
/// that window, packed in one word (window in the high 32 bits).
#[derive(Debug)]
pub struct Ledger {
    limit: u64,
    state: AtomicU64,
    /// Cluster mode: the node's allowance per window (grants stop there).
    allowance: Option<Allowance>,
}

/// What the fleet allows this node in a window, for the current window and the
/// next (leased before it starts), by window parity; each slot packs
/// (window, units) like a ledger's state. One writer: the limits thread.
#[derive(Debug, Default)]
pub struct Allowance {
    slots: [AtomicU64; 2],
}

impl Allowance {
    /// Units allowed in `window` (0 when nothing was set for it).
    pub fn get(&self, window: u32) -> u64 {
        match unpack(self.slots[(window % 2) as usize].load(Ordering::Acquire)) {
            (w, units) if w == window => units,
            _ => 0,
        }
    }

    /// Allows `units` in `window` (replacing what was allowed).
    pub fn set(&self, window: u32, units: u64) {
        self.slots[(window % 2) as usize].store(pack(window, units), Ordering::Release);
    }
}

const UNITS: u64 = u32::MAX as u64;

fn pack(window: u32, granted: u64) -> u64 {
    (u64::from(window) << 32) | granted.min(UNITS)
}

fn unpack(state: u64) -> (u32, u64) {
    ((state >> 32) as u32, state & UNITS)
}

impl Ledger {
    /// A ledger for `limit` units per window (at most `u32::MAX`).
    pub fn new(limit: u64) -> Ledger {
        Ledger {
            limit: limit.min(UNITS),
            state: AtomicU64::new(pack(0, 0)),
            allowance: None,
        }
    }

    /// A node's ledger of a fleet-wide limit: it grants only what its
    /// allowance for the window holds (nothing until the fleet allows some).
    pub fn fleet(limit: u64) -> Ledger {
        Ledger {
            allowance: Some(Allowance::default()),
            ..Ledger::new(limit)
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The fleet's allowance, in cluster mode.
    pub fn allowance(&self) -> Option<&Allowance> {
        self.allowance.as_ref()
    }

    /// The most this ledger grants in `window`: the limit, or in cluster mode
    /// the node's allowance (which shards size their batches by, so that one
    /// shard does not take a small allowance whole).
    pub fn cap(&self, window: u32) -> u64 {
        match &self.allowance {
            None => self.limit,
            Some(allowance) => allowance.get(window).min(self.limit),
        }
    }

    /// Units granted (or charged) in `window` so far.
    pub fn used(&self, window: u32) -> u64 {
        match unpack(self.state.load(Ordering::Acquire)) {
            (w, granted) if w == window => granted,
            _ => 0,
        }
    }

    /// Grants up to `want` units in `window`, as many as the limit leaves; returns
    /// how many (0: the window's capacity is spent). A window later than the
    /// ledger's starts it afresh; an earlier one (a shard that read the clock
    /// before another rolled the window) is granted nothing.
    pub fn grant(&self, window: u32, want: u64) -> u64 {
        let cap = self.cap(window);
        self.update(window, |granted| {
            let given = want.min(cap.saturating_sub(granted));
            (granted + given, given)
        })
    }

    /// Counts `units` in `window` whatever the limit (usage that came in over its
    /// estimate): later requests see it.
    pub fn force(&self, window: u32, units: u64) {
        self.update(window, |granted| (granted.saturating_add(units), 0));
    }

    /// Takes back `units` granted in `window` and not used; nothing once the
    /// window has passed (its capacity is gone anyway).
    pub fn refund(&self, window: u32, units: u64) {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let (w, granted) = unpack(current);
            if w != window {
                return;
            }
            let next = pack(w, granted.saturating_sub(units));
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Applies `change` (granted → (new granted, result)) to `window`'s count.
    fn update(&self, window: u32, change: impl Fn(u64) -> (u64, u64)) -> u64 {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let (w, granted) = unpack(current);
            let granted = match w {
                w if w == window => granted,
                w if w < window => 0,
                _ => return 0,
            };
            let (after, result) = change(granted);
            match self.state.compare_exchange_weak(
                current,
                pack(window, after),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return result,
                Err(seen) => current = seen,
            }
        }
    }
}

/// One shard's lease on a ledger: units it may spend in `window` without asking.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lease {
    window: u32,
    left: u64,
}

impl Lease {
    /// Spends `units` in `window`, leasing at least `batch` more from `ledger`
    /// when the lease runs short. `false`: the window's capacity is spent; what
    /// was leased on the way stays for smaller requests.
    pub fn take(&mut self, ledger: &Ledger, window: u32, units: u64, batch: u64) -> bool {
        if self.window != window {
            *self = Lease { window, left: 0 };
        }
        if self.left < units {
            let want = (units - self.left).max(batch);
            self.left += ledger.grant(window, want);
        }
        if self.left < units {
            return false;
        }
        self.left -= units;
        true
    }

    /// Gives `units` taken in `window` back to this lease (an estimate that was
    /// too high); nothing once the window has passed.
    pub fn give_back(&mut self, window: u32, units: u64) {
        if self.window == window {
            self.left = self.left.saturating_add(units);
        }
    }

    /// Drops what is left of the lease (its window's capacity was overspent by
    /// usage charged after the fact: nothing more should pass on it).
    pub fn forfeit(&mut self) {
        self.left = 0;
    }

    /// Returns what is left of the lease to `ledger` (a shard that stops serving
    /// the limit, e.g. on reload).
    pub fn release(&mut self, ledger: &Ledger) {
        ledger.refund(self.window, std::mem::take(&mut self.left));
    }
}

/// The batch a shard leases at a time for `limit` over `shards` shards: small
/// enough that the capacity left idle in other shards' leases stays within about
/// 1/8 of the limit, never less than one unit.
pub fn batch_for(limit: u64, shards: usize) -> u64 {
    (limit / (8 * shards.max(1) as u64)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_never_grants_past_its_limit_in_a_window() {
        let ledger = Ledger::new(10);
        assert_eq!(ledger.grant(0, 4), 4);
        assert_eq!(ledger.grant(0, 4), 4);
        assert_eq!(ledger.grant(0, 4), 2);
        assert_eq!(ledger.grant(0, 4), 0);
        assert_eq!(ledger.used(0), 10);
        // The next window starts afresh; a stale one gets nothing.
        assert_eq!(ledger.grant(1, 7), 7);
        assert_eq!(ledger.grant(0, 1), 0);
        assert_eq!(ledger.used(0), 0);
        assert_eq!(ledger.used(1), 7);
    }

    #[test]
    fn force_counts_past_the_limit_and_refund_gives_back_within_the_window() {
        let ledger = Ledger::new(10);
        assert_eq!(ledger.grant(3, 10), 10);
        ledger.force(3, 5);
        assert_eq!(ledger.used(3), 15);
        ledger.refund(3, 8);
        assert_eq!(ledger.used(3), 7);
        assert_eq!(ledger.grant(3, 5), 3);
        ledger.refund(2, 100);
        assert_eq!(ledger.used(3), 10, "a refund for a past window is void");
    }

    #[test]
    fn leases_spend_locally_and_ask_the_ledger_in_batches() {
        let ledger = Ledger::new(10);
        let mut lease = Lease::default();
        assert!(lease.take(&ledger, 0, 1, 4));
        assert_eq!(ledger.used(0), 4, "one batch leased");
        for _ in 0..3 {
            assert!(lease.take(&ledger, 0, 1, 4));
        }
        assert_eq!(ledger.used(0), 4, "spent locally");
        // A request larger than the batch leases what it needs.
        assert!(lease.take(&ledger, 0, 6, 4));
        assert_eq!(ledger.used(0), 10);
        assert!(!lease.take(&ledger, 0, 1, 4));
        lease.give_back(0, 2);
        assert!(lease.take(&ledger, 0, 2, 4));
        // A new window forgets the old lease.
        assert!(lease.take(&ledger, 1, 1, 4));
        assert_eq!(ledger.used(1), 4);
        lease.release(&ledger);
        assert_eq!(ledger.used(1), 1);
    }

    /// Many shards leasing at once admit exactly the limit, never more.
    #[test]
    fn concurrent_leases_admit_exactly_the_limit() {
        let ledger = std::sync::Arc::new(Ledger::new(1000));
        let admitted: u64 = (0..4)
            .map(|_| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    let mut lease = Lease::default();
                    (0..2000)
                        .filter(|_| lease.take(&ledger, 5, 1, batch_for(1000, 4)))
                        .count() as u64
                })
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(admitted, 1000);
    }

    #[test]
    fn a_fleet_ledger_grants_only_its_allowance_per_window() {
        let ledger = Ledger::fleet(100);
        assert_eq!(ledger.grant(4, 10), 0, "nothing allowed yet");
        let allowance = ledger.allowance().unwrap();
        allowance.set(4, 6);
        allowance.set(5, 3);
        assert_eq!(ledger.grant(4, 10), 6);
        assert_eq!(ledger.grant(4, 1), 0);
        allowance.set(4, 8);
        assert_eq!(
            ledger.grant(4, 10),
            2,
            "a larger allowance lets more through"
        );
        assert_eq!(
            ledger.grant(5, 10),
            3,
            "the next window's allowance was set ahead"
        );
        assert_eq!(allowance.get(6), 0);
        allowance.set(6, 200);
        assert_eq!(ledger.grant(6, 500), 100, "never past the limit");
        assert_eq!(allowance.get(4), 0, "slot reused by window 6");
    }

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let epoch = Instant::now();
        let windows = Windows::new(epoch, Duration::from_secs(60));
        assert_eq!(windows.index(epoch), 0);
        assert_eq!(windows.index(epoch + Duration::from_secs(59)), 0);
        assert_eq!(windows.index(epoch + Duration::from_secs(60)), 1);
        assert_eq!(windows.end(1), epoch + Duration::from_secs(120));
        assert_eq!(batch_for(60, 2), 3);
        assert_eq!(batch_for(5, 4), 1);
    }
}
