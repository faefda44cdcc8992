//! The gateway's spend at run time, on the control plane: the live [`SpendBook`]
//! and [`Prices`] of the current config generation, the state file they are
//! restored from at start, and the flusher thread that writes them every
//! `state_flush` (and once more at shutdown, after the drain). Never on a shard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::budget::{SpendBook, SpendEntry};
use super::prices::{Cost, Prices, TokenUsage};
use super::state::{StateError, Store};
use crate::config::Config;
use crate::log::Level;

/// The current generation's prices and spend book.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub prices: Arc<Prices>,
    pub book: Arc<SpendBook>,
}

impl Ledger {
    /// Charges key `key` (an index into `Config::keys`; `None` on an open
    /// gateway) what `usage` on (provider, model) costs, and returns the cost;
    /// `None` when the model has no price (a warning is logged once per provider
    /// and model when some prices are configured, and nothing is charged).
    pub fn charge(
        &self,
        key: Option<usize>,
        provider: usize,
        model: &str,
        usage: &TokenUsage,
        now: SystemTime,
    ) -> Option<Cost> {
        let Some(cost) = self.prices.cost(provider, model, usage) else {
            if !self.prices.is_empty() && self.prices.unpriced_once(provider, model) {
                crate::event!(
                    Level::Warn,
                    "no price for this model; its tokens are counted, not charged",
                    provider = provider,
                    model = model
                );
            }
            return None;
        };
        if let Some(key) = key {
            self.book.charge(key, cost.micros, now);
        }
        Some(cost)
    }
}

/// Owner of the live ledger and of its state file.
#[derive(Debug)]
pub struct SpendKeeper {
    current: Mutex<Ledger>,
    /// `None`: spend is kept in memory only (see [`Store::open`]).
    store: Option<Store>,
    /// `state_flush` in nanoseconds (a reload may change it).
    flush_nanos: AtomicU64,
    /// What the last write held, so an idle gateway does not rewrite the file.
    written: Mutex<Vec<SpendEntry>>,
}

impl SpendKeeper {
    /// Opens `config.state` (creating the directory), restores the saved spend of
    /// keys still configured and builds the first ledger.
    pub fn start(config: &Config, now: SystemTime) -> Result<SpendKeeper, StateError> {
        let store = Store::open(&config.state)?;
        let book = SpendBook::new(&config.keys, now);
        let mut written = Vec::new();
        if let Some(store) = &store {
            let loaded = store.load(now)?;
            let restored = book.restore(&loaded.entries, now);
            crate::event!(
                Level::Info,
                "spend restored",
                path = store.path().display(),
                keys = restored
            );
            written = loaded.entries;
        }
        Ok(SpendKeeper {
            current: Mutex::new(Ledger {
                prices: Arc::new(Prices::build(config)),
                book: Arc::new(book),
            }),
            store,
            flush_nanos: AtomicU64::new(nanos(config.state.flush)),
            written: Mutex::new(written),
        })
    }

    /// The live ledger (what the current table's shards charge).
    pub fn ledger(&self) -> Ledger {
        match self.current.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The live spend book.
    pub fn book(&self) -> Arc<SpendBook> {
        self.ledger().book
    }

    /// Builds the ledger of a new config generation: prices anew, the spend book
    /// carried by key name from the current one. Becomes the current ledger.
    pub fn install(&self, config: &Config, now: SystemTime) -> Ledger {
        let mut current = match self.current.lock() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut book = SpendBook::new(&config.keys, now);
        book.carry(&current.book, now);
        *current = Ledger {
            prices: Arc::new(Prices::build(config)),
            book: Arc::new(book),
        };
        self.flush_nanos
            .store(nanos(config.state.flush), Ordering::Relaxed);
        current.clone()
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_nanos(self.flush_nanos.load(Ordering::Relaxed))
    }

    /// Writes the current spend when it changed since the last write; `Ok(false)`
    /// when there was nothing to write (or no store).
    pub fn flush(&self, now: SystemTime) -> Result<bool, StateError> {
        let Some(store) = &self.store else {
            return Ok(false);
        };
        let entries = self.book().entries(now);
        let mut written = match self.written.lock() {
            Ok(written) => written,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *written == entries {
            return Ok(false);
        }
        store.save(entries.clone(), now)?;
        *written = entries;
        Ok(true)
    }

    /// [`SpendKeeper::flush`], with a failure logged (the next one retries).
    pub fn flush_logged(&self, now: SystemTime) {
        if let Err(error) = self.flush(now) {
            crate::event!(Level::Error, "cannot write spend state", error = error);
        }
    }
}

fn nanos(interval: Duration) -> u64 {
    u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX)
}

/// The thread that flushes a [`SpendKeeper`] every `state_flush`.
pub struct Flusher {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Flusher {
    /// Starts flushing `keeper`; `None` when it has no store (nothing to write).
    pub fn start(keeper: Arc<SpendKeeper>) -> Option<Flusher> {
        keeper.store()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("spend-flush".into())
            .spawn(move || loop {
                match stopped.recv_timeout(keeper.flush_interval()) {
                    Err(RecvTimeoutError::Timeout) => keeper.flush_logged(SystemTime::now()),
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            });
        match thread {
            Ok(thread) => Some(Flusher { stop, thread }),
            Err(error) => {
                crate::event!(
                    Level::Error,
                    "cannot start the spend flusher; spend is written only at shutdown",
                    error = error
                );
                None
            }
        }
    }

    /// Stops the thread (the caller writes the final state itself).
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_charges_priced_usage_and_skips_unpriced() {
        let yaml = "keys:\n  - { name: a, key: k1, budget: { usd: 1, period: total } }\nproviders:\n  p: {kind: openai-compatible, base_url: \"http://127.0.0.1:1\"}\nroutes:\n  - {name: r, targets: [{provider: p, model: m}]}\nprices:\n  p/m: {input: 2, output: 8}\n";
        let config = match crate::config::load_str(yaml, "t.yaml", &|_| None) {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        };
        let now = SystemTime::now();
        let ledger = Ledger {
            prices: Arc::new(Prices::build(&config)),
            book: Arc::new(SpendBook::new(&config.keys, now)),
        };
        let usage = TokenUsage {
            input: 1_000,
            output: 500,
            cached_input: 0,
        };
        // 1000 × 2 µ$ + 500 × 8 µ$.
        assert_eq!(
            ledger.charge(Some(0), 0, "m", &usage, now),
            Some(Cost { micros: 6_000 })
        );
        assert_eq!(
            ledger.charge(None, 0, "m", &usage, now),
            Some(Cost { micros: 6_000 })
        );
        assert_eq!(ledger.charge(Some(0), 0, "other", &usage, now), None);
        assert_eq!(ledger.book.status(0, now).unwrap().spent_micros, 6_000);
        assert!(!ledger.prices.unpriced_once(0, "other"), "warned already");
    }
}
