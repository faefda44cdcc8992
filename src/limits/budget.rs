//! Spend per key against its budget: a gateway-wide [`SpendBook`] of atomic
//! counters (no lock on the request path), each counting micro-dollars in the
//! key's current budget period, with the UTC calendar that says when a period
//! starts.
//!
//! Each key's counter is one `AtomicU64` holding its period kind, the period it
//! counts and what was spent in it, so a charge that crosses a boundary starts the
//! new period at zero in the same compare-and-swap that adds to it: nothing is
//! lost or double-reset, whichever shard gets there first. Counters are shared by
//! key name between config generations ([`SpendBook::carry`]), so a shard still on
//! the old table charges the same counter as one on the new.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{BudgetPeriod, ClientKey};

/// What a key has spent in its current period, against its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStatus {
    pub spent_micros: u64,
    /// `None`: the key has no budget (spend is counted, never refused).
    pub limit_micros: Option<u64>,
    /// When the period ends and spend starts again at 0; `None` for `total`.
    pub resets_at: Option<SystemTime>,
    /// Spent at least the limit: the key's requests are refused until `resets_at`.
    pub exhausted: bool,
}

/// One key's spend in its current period (see [`SpendBook::reading`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendReading<'a> {
    pub name: &'a str,
    pub period: BudgetPeriod,
    /// The period's number (see [`period_index`]).
    pub index: u64,
    pub spent: u64,
    /// Whether the key has a budget (else spend is only counted).
    pub budget: bool,
}

/// One key's spend as persisted and restored (see `limits::state`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpendEntry {
    pub key: String,
    /// `1d`, `7d`, `30d` or `total`.
    pub period: String,
    /// When the counted period started, in Unix seconds (UTC).
    pub period_start: u64,
    pub spent_micros: u64,
}

/// Spend of every configured key, by key index (`Config::keys` order).
#[derive(Debug)]
pub struct SpendBook {
    keys: Vec<KeySpend>,
}

#[derive(Debug)]
struct KeySpend {
    name: String,
    period: BudgetPeriod,
    limit: Option<u64>,
    cell: Arc<AtomicU64>,
}

impl SpendBook {
    /// A book for `keys`, every key at zero in the period holding `now`.
    pub fn new(keys: &[ClientKey], now: SystemTime) -> SpendBook {
        let keys = keys
            .iter()
            .map(|key| {
                // Without a budget, spend is month-to-date: a budget added later
                // then counts this month's spend, not the key's whole history.
                let period = key.budget.map_or(BudgetPeriod::Month, |b| b.period);
                let word = Word::fresh(period, now);
                KeySpend {
                    name: key.name.clone(),
                    period,
                    limit: key.budget.map(|b| b.limit_micros),
                    cell: Arc::new(AtomicU64::new(word.encode())),
                }
            })
            .collect();
        SpendBook { keys }
    }

    /// Adds `micros` to key `key` (an index into `Config::keys`; others are
    /// ignored) in the period holding `now`.
    pub fn charge(&self, key: usize, micros: u64, now: SystemTime) {
        if let Some(entry) = self.keys.get(key) {
            update(&entry.cell, now, |spent| spent.saturating_add(micros));
        }
    }

    /// Takes back `micros` charged in the current period (an estimate charged
    /// before the request that the real usage corrects); never below 0.
    pub fn refund(&self, key: usize, micros: u64, now: SystemTime) {
        if let Some(entry) = self.keys.get(key) {
            update(&entry.cell, now, |spent| spent.saturating_sub(micros));
        }
    }

    /// Key `key`'s spend, limit and reset time at `now`; `None` for no such key.
    pub fn status(&self, key: usize, now: SystemTime) -> Option<BudgetStatus> {
        let entry = self.keys.get(key)?;
        let word = Word::decode(entry.cell.load(Ordering::Acquire)).at(now);
        let spent = word.spent;
        Some(BudgetStatus {
            spent_micros: spent,
            limit_micros: entry.limit,
            resets_at: period_start(word.period, word.index + 1)
                .filter(|_| word.period != BudgetPeriod::Total),
            exhausted: entry.limit.is_some_and(|limit| spent >= limit),
        })
    }

    /// Key `key`'s spend as the fleet's spend thread reads it: its name, the
    /// period it counts (kind and number) and what was spent in it at `now`.
    pub fn reading(&self, key: usize, now: SystemTime) -> Option<SpendReading<'_>> {
        let entry = self.keys.get(key)?;
        let word = Word::decode(entry.cell.load(Ordering::Acquire)).at(now);
        Some(SpendReading {
            name: &entry.name,
            period: word.period,
            index: word.index,
            spent: word.spent,
            budget: entry.limit.is_some(),
        })
    }

    /// Adds `delta` micro-dollars (negative: takes off) to key `key`'s spend if
    /// it still counts period `index` at `now` (never across a boundary: the
    /// fleet's total for one period must not land in the next); returns
    /// whether it did.
    pub fn adjust(&self, key: usize, index: u64, delta: i64, now: SystemTime) -> bool {
        let Some(entry) = self.keys.get(key) else {
            return false;
        };
        let mut current = entry.cell.load(Ordering::Acquire);
        loop {
            let word = Word::decode(current).at(now);
            if word.index != index {
                return false;
            }
            let spent = word.spent.saturating_add_signed(delta).min(SPENT_MASK);
            let next = Word { spent, ..word };
            match entry.cell.compare_exchange_weak(
                current,
                next.encode(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// The index of the key named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.keys.iter().position(|k| k.name == name)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Takes over the counters of `old`'s keys that still exist (by name), so a
    /// reload keeps their spend; a changed limit keeps it too. A key whose period
    /// changed keeps what it spent in the old period (if that is still running)
    /// until the new period's next boundary.
    pub fn carry(&mut self, old: &SpendBook, now: SystemTime) {
        for entry in &mut self.keys {
            let Some(before) = old.keys.iter().find(|k| k.name == entry.name) else {
                continue;
            };
            entry.cell = before.cell.clone();
            let period = entry.period;
            let mut current = entry.cell.load(Ordering::Acquire);
            loop {
                let word = Word::decode(current).at(now);
                if word.period == period {
                    break;
                }
                let moved = Word {
                    spent: word.spent,
                    ..Word::fresh(period, now)
                };
                match entry.cell.compare_exchange_weak(
                    current,
                    moved.encode(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(seen) => current = seen,
                }
            }
        }
    }

    /// Every key's spend at `now`, for the state file.
    pub fn entries(&self, now: SystemTime) -> Vec<SpendEntry> {
        self.keys
            .iter()
            .map(|entry| {
                let word = Word::decode(entry.cell.load(Ordering::Acquire)).at(now);
                SpendEntry {
                    key: entry.name.clone(),
                    period: word.period.as_str().to_string(),
                    period_start: period_start(word.period, word.index).map_or(0, unix_secs),
                    spent_micros: word.spent,
                }
            })
            .collect()
    }

    /// Sets the spend of configured keys from a state file's `entries`: an entry
    /// whose period has ended since counts nothing; one saved under another
    /// period kind carries like [`SpendBook::carry`]. Returns how many keys took
    /// a saved spend; entries of keys no longer configured are dropped.
    pub fn restore(&self, entries: &[SpendEntry], now: SystemTime) -> usize {
        let mut restored = 0;
        for saved in entries {
            let Some(entry) = self.keys.iter().find(|k| k.name == saved.key) else {
                continue;
            };
            let Some(word) = restored_word(saved, entry.period, now) else {
                continue;
            };
            entry.cell.store(word.encode(), Ordering::Release);
            restored += 1;
        }
        restored
    }
}

/// The word a saved entry restores to under `period`, or `None` when it counts
/// nothing any more (its period ended, or it names no period).
fn restored_word(saved: &SpendEntry, period: BudgetPeriod, now: SystemTime) -> Option<Word> {
    let saved_period = BudgetPeriod::parse(&saved.period)?;
    let started = UNIX_EPOCH + Duration::from_secs(saved.period_start);
    let saved_index = period_index(saved_period, started);
    let current = period_index(saved_period, now);
    // A period in the future (the clock went back) still counts: never reset early.
    if saved_index < current {
        return None;
    }
    let word = if saved_period == period {
        Word {
            period,
            index: saved_index,
            spent: 0,
        }
    } else {
        Word::fresh(period, now)
    };
    Some(Word {
        spent: saved.spent_micros.min(SPENT_MASK),
        ..word
    })
}

/// Applies `change` to the spend in `cell` for the period holding `now` (a new
/// period starts from 0), in one compare-and-swap loop.
fn update(cell: &AtomicU64, now: SystemTime, change: impl Fn(u64) -> u64) {
    let mut current = cell.load(Ordering::Relaxed);
    loop {
        let word = Word::decode(current).at(now);
        let next = Word {
            spent: change(word.spent).min(SPENT_MASK),
            ..word
        };
        match cell.compare_exchange_weak(
            current,
            next.encode(),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

/// Bits of a counter: period kind (2) | period number mod 2¹⁸ (18) | spent (44).
const TAG_BITS: u32 = 18;
const SPENT_BITS: u32 = 44;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const SPENT_MASK: u64 = (1 << SPENT_BITS) - 1;

/// One decoded counter. `index` is the full period number once [`Word::at`]
/// placed it against a time (the word keeps only its low 18 bits: 717 years of
/// days, so neighbouring periods never alias).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word {
    period: BudgetPeriod,
    index: u64,
    spent: u64,
}

impl Word {
    fn fresh(period: BudgetPeriod, now: SystemTime) -> Word {
        Word {
            period,
            index: period_index(period, now),
            spent: 0,
        }
    }

    fn encode(self) -> u64 {
        let kind = match self.period {
            BudgetPeriod::Day => 0,
            BudgetPeriod::Week => 1,
            BudgetPeriod::Month => 2,
            BudgetPeriod::Total => 3,
        };
        (kind << (TAG_BITS + SPENT_BITS)) | ((self.index & TAG_MASK) << SPENT_BITS) | self.spent
    }

    /// The word as stored: `index` holds only the tag until [`Word::at`].
    fn decode(bits: u64) -> Word {
        let period = match bits >> (TAG_BITS + SPENT_BITS) {
            0 => BudgetPeriod::Day,
            1 => BudgetPeriod::Week,
            2 => BudgetPeriod::Month,
            _ => BudgetPeriod::Total,
        };
        Word {
            period,
            index: (bits >> SPENT_BITS) & TAG_MASK,
            spent: bits & SPENT_MASK,
        }
    }

    /// The word as it counts at `now`: an earlier period reads as the current one
    /// at 0; a later one (the clock went back) keeps its spend.
    fn at(self, now: SystemTime) -> Word {
        let current = period_index(self.period, now);
        let behind = current.wrapping_sub(self.index) & TAG_MASK;
        if behind == 0 {
            return Word {
                index: current,
                ..self
            };
        }
        if behind < (1 << (TAG_BITS - 1)) {
            return Word::fresh(self.period, now);
        }
        let ahead = self.index.wrapping_sub(current) & TAG_MASK;
        Word {
            index: current + ahead,
            ..self
        }
    }
}

const DAY: u64 = 86_400;

/// The number of the `period` holding `at`: days, Monday-weeks or calendar months
/// since 1970 (UTC); always 0 for `total`. Times before 1970 count as 1970.
pub fn period_index(period: BudgetPeriod, at: SystemTime) -> u64 {
    let days = unix_secs(at) / DAY;
    match period {
        BudgetPeriod::Day => days,
        // 1970-01-01 was a Thursday: week 0 began on Monday 1969-12-29.
        BudgetPeriod::Week => (days + 3) / 7,
        BudgetPeriod::Month => {
            let (year, month, _) = civil_from_days(days as i64);
            (year - 1970) as u64 * 12 + u64::from(month - 1)
        }
        BudgetPeriod::Total => 0,
    }
}

/// When period number `index` of `period` starts; `None` for `total` (it has no
/// boundary).
pub fn period_start(period: BudgetPeriod, index: u64) -> Option<SystemTime> {
    let days = match period {
        BudgetPeriod::Day => index as i64,
        BudgetPeriod::Week => (index as i64) * 7 - 3,
        BudgetPeriod::Month => {
            let year = 1970 + (index / 12) as i64;
            days_from_civil(year, (index % 12) as u32 + 1, 1)
        }
        BudgetPeriod::Total => return None,
    };
    Some(UNIX_EPOCH + Duration::from_secs(days.max(0) as u64 * DAY))
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

use crate::log::civil_from_days;

/// Days since 1970-01-01 of a civil date (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
