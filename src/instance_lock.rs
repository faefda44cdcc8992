//! One gateway per listen address: an exclusive `flock` on a file named by the
//! address, held for the life of the process. Listeners use SO_REUSEPORT (one
//! per shard), so without it a second instance on the same port would bind
//! quietly and take a share of the traffic. `--takeover` starts beside a holder
//! on purpose (a zero-downtime upgrade) and takes the lock once the holder exits.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another switchyard (pid {pid}) is already serving {listen} (it holds {path}); \
         stop it first, or pass --takeover to start beside it for an upgrade \
         (then SIGTERM the old one, which drains)",
        pid = .pid.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
        path = .path.display()
    )]
    Held {
        listen: SocketAddr,
        path: PathBuf,
        pid: Option<u32>,
    },
    #[error("cannot open the instance lock {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Where the lock file lives: the configured state directory, else the
/// service's runtime directory (systemd `RuntimeDirectory=`), else
/// `$XDG_RUNTIME_DIR`, else /tmp. Pure over its inputs.
pub fn lock_dir(
    state_dir: Option<&Path>,
    runtime_directory: Option<&str>,
    xdg_runtime_dir: Option<&str>,
) -> PathBuf {
    let env_dir = |v: Option<&str>| {
        v.and_then(|v| v.split(':').next())
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    state_dir
        .map(Path::to_path_buf)
        .or_else(|| env_dir(runtime_directory))
        .or_else(|| env_dir(xdg_runtime_dir))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// The lock file's name for a listen address: `switchyard-127.0.0.1-8080.lock`.
pub fn lock_name(listen: SocketAddr) -> String {
    let ip: String = listen
        .ip()
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("switchyard-{ip}-{}.lock", listen.port())
}

/// Takes the lock for `listen` in `dir`, or says which pid holds it.
pub fn acquire(dir: &Path, listen: SocketAddr) -> Result<InstanceLock, LockError> {
    let path = dir.join(lock_name(listen));
    let mut file = open(&path)?;
    if !try_flock(&file) {
        return Err(LockError::Held {
            listen,
            pid: read_pid(&mut file),
            path,
        });
    }
    write_pid(&mut file);
    Ok(InstanceLock { _file: file })
}

/// Like [`acquire`], but when another instance holds the lock, starts anyway
/// and takes it on a background thread as soon as that instance exits.
/// Returns the holder's pid, if one was found.
pub fn acquire_or_wait(dir: &Path, listen: SocketAddr) -> Result<Option<u32>, LockError> {
    match acquire(dir, listen) {
        Ok(lock) => {
            // Held for the life of the process.
            std::mem::forget(lock);
            Ok(None)
        }
        Err(LockError::Held { path, pid, .. }) => {
            let mut file = open(&path)?;
            // A control-plane thread, never a shard: it blocks in flock(2).
            let spawned = std::thread::Builder::new()
                .name("instance-lock".into())
                .spawn(move || {
                    // SAFETY: flock on a descriptor this closure owns.
                    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                        write_pid(&mut file);
                        std::mem::forget(file);
                    }
                });
            drop(spawned);
            Ok(pid)
        }
        Err(other) => Err(other),
    }
}

fn open(path: &Path) -> Result<File, LockError> {
    let fail = |source| LockError::Open {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(fail)
}

fn try_flock(file: &File) -> bool {
    // SAFETY: flock on a descriptor `file` owns; it does not touch memory.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// The holder's pid as it wrote it; `None` when unreadable (a holder that
/// has not written yet, or another program's file).
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Best effort: the pid only makes the refusal message clearer.
fn write_pid(file: &mut File) {
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = writeln!(file, "{}", std::process::id());
    let _ = file.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_dir_prefers_state_then_runtime_then_xdg_then_tmp() {
        let state = Path::new("/var/lib/sy");
        type Case<'a> = (Option<&'a Path>, Option<&'a str>, Option<&'a str>, &'a str);
        let table: [Case; 5] = [
            (
                Some(state),
                Some("/run/sy"),
                Some("/run/user/1"),
                "/var/lib/sy",
            ),
            (
                None,
                Some("/run/sy:/run/other"),
                Some("/run/user/1"),
                "/run/sy",
            ),
            (None, None, Some("/run/user/1"), "/run/user/1"),
            (None, Some(""), Some(""), "/tmp"),
            (None, None, None, "/tmp"),
        ];
        for (state, runtime, xdg, expected) in table {
            assert_eq!(lock_dir(state, runtime, xdg), PathBuf::from(expected));
        }
    }

    #[test]
    fn lock_names_are_per_address() {
        assert_eq!(
            lock_name("127.0.0.1:8080".parse().unwrap()),
            "switchyard-127.0.0.1-8080.lock"
        );
        assert_eq!(
            lock_name("[::1]:9000".parse().unwrap()),
            "switchyard-__1-9000.lock"
        );
    }

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("sy-lock-{}", std::process::id()));
        let listen: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let first = acquire(&dir, listen).expect("first lock");
        // flock locks belong to the open file description: a second open in
        // the same process conflicts just as another process would.
        match acquire(&dir, listen) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        assert!(acquire(&dir, listen).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
