//! Spend kept across restarts: `state_dir/spend.json`, written atomically (a temp
//! file in the same directory, fsync, rename) by the control plane every
//! `state_flush` and at shutdown, and read at start.
//!
//! A file that cannot be read or understood is never silently replaced: it is
//! reported and moved aside (`spend.json.corrupt-<unix time>`), and only then does
//! the gateway start from zero. A crash loses at most one `state_flush` of spend.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::budget::SpendEntry;
use crate::config::StateConfig;
use crate::log::Level;

/// The state file's name inside `state_dir`.
pub const SPEND_FILE: &str = "spend.json";

/// The file format this build writes (and the newest it reads).
pub const VERSION: u32 = 1;

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpendState {
    pub version: u32,
    /// When it was written, Unix seconds.
    pub saved_at: u64,
    pub keys: Vec<SpendEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state_dir `{}`: cannot create it: {source}", dir.display())]
    Create {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("state_dir `{}` is not writable: {source}", dir.display())]
    NotWritable {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is unreadable ({reason}) and could not be moved aside: {source}", path.display())]
    MoveAside {
        path: PathBuf,
        reason: String,
        source: std::io::Error,
    },
}

/// A writable state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// What [`Store::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub entries: Vec<SpendEntry>,
    /// Where an unreadable file was moved (it was reported as an error).
    pub moved_aside: Option<PathBuf>,
}

impl Store {
    /// The store `config` names: its directory created (0700) when missing and
    /// checked writable. When `state_dir` was not configured and the default
    /// cannot be used (a normal user, a test, `switchyard demo`), warns once and
    /// returns `None`: spend is kept in memory only. A configured directory that
    /// cannot be used is an error.
    pub fn open(config: &StateConfig) -> Result<Option<Store>, StateError> {
        match Store::at(&config.dir) {
            Ok(store) => Ok(Some(store)),
            Err(error) if !config.configured => {
                crate::event!(
                    Level::Warn,
                    "spend is kept in memory only (set state_dir to keep it across restarts)",
                    error = error
                );
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// The store at `dir`, created (0700) when missing and checked writable.
    pub fn at(dir: &Path) -> Result<Store, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StateError::Create {
                dir: dir.to_path_buf(),
                source,
            })?;
        let probe = dir.join(format!(".probe-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|source| StateError::NotWritable {
                dir: dir.to_path_buf(),
                source,
            })?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `state_dir/spend.json`.
    pub fn path(&self) -> PathBuf {
        self.dir.join(SPEND_FILE)
    }

    /// Reads the saved spend: none when there is no file yet; a file that cannot
    /// be read or parsed is logged as an error and moved aside (an error only when
    /// even that fails, so it is never overwritten unseen).
    pub fn load(&self, now: SystemTime) -> Result<Loaded, StateError> {
        let path = self.path();
        let reason = match std::fs::read(&path) {
            Ok(bytes) => match parse(&bytes) {
                Ok(state) => {
                    return Ok(Loaded {
                        entries: state.keys,
                        moved_aside: None,
                    })
                }
                Err(reason) => reason,
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Loaded::default())
            }
            Err(error) => format!("cannot read it: {error}"),
        };
        let aside = self
            .dir
            .join(format!("{SPEND_FILE}.corrupt-{}", unix_secs(now)));
        if let Err(source) = std::fs::rename(&path, &aside) {
            return Err(StateError::MoveAside {
                path,
                reason,
                source,
            });
        }
        crate::event!(
            Level::Error,
            "spend state file unreadable; moved aside, spend starts from zero",
            path = path.display(),
            moved_to = aside.display(),
            reason = reason
        );
        Ok(Loaded {
            entries: Vec::new(),
            moved_aside: Some(aside),
        })
    }

    /// Writes `entries` atomically: a temp file in the same directory, fsynced,
    /// renamed over `spend.json`, then the directory fsynced so the rename lasts.
    pub fn save(&self, entries: Vec<SpendEntry>, now: SystemTime) -> Result<(), StateError> {
        let state = SpendState {
            version: VERSION,
            saved_at: unix_secs(now),
            keys: entries,
        };
        let path = self.path();
        // Unique per write: two gateways in one process (tests) never share one.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".{SPEND_FILE}.tmp-{}-{write}", std::process::id()));
        let written = write_synced(&temp, &state).and_then(|()| std::fs::rename(&temp, &path));
        if let Err(source) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(StateError::Write { path, source });
        }
        // Without this a power cut can lose the rename (the data is already safe).
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

fn write_synced(path: &Path, state: &SpendState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let mut file = std::fs::File::create(path)?;
    file.write_all(&bytes)?;
    file.sync_all()
}

fn parse(bytes: &[u8]) -> Result<SpendState, String> {
    let state: SpendState =
        serde_json::from_slice(bytes).map_err(|e| format!("not a spend file: {e}"))?;
    if state.version == 0 || state.version > VERSION {
        return Err(format!(
            "version {} (this build reads version {VERSION})",
            state.version
        ));
    }
    Ok(state)
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
