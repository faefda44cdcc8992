use super::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("switchyard-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entry(key: &str, spent: u64) -> SpendEntry {
    SpendEntry {
        key: key.into(),
        period: "30d".into(),
        period_start: 1_764_547_200,
        spent_micros: spent,
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_764_657_000)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_missing_dir_is_created_private_and_round_trips() {
    let temp = TempDir::new("round-trip");
    let dir = temp.0.join("nested/state");
    let store = Store::at(&dir).unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    assert!(store.load(now()).unwrap().entries.is_empty());
    let entries = vec![entry("a", 12), entry("b", 0), entry("c", u64::MAX >> 20)];
    store.save(entries.clone(), now()).unwrap();
    let loaded = store.load(now()).unwrap();
    assert_eq!(loaded.entries, entries);
    assert_eq!(loaded.moved_aside, None);
    // Only the file itself is left: no temp file, no probe.
    assert_eq!(listing(&dir), [SPEND_FILE]);
    let text = std::fs::read_to_string(store.path()).unwrap();
    let state: SpendState = serde_json::from_str(&text).unwrap();
    assert_eq!((state.version, state.saved_at), (VERSION, 1_764_657_000));
}

#[test]
fn readers_never_see_a_partial_file_while_it_is_rewritten() {
    let temp = TempDir::new("atomic");
    let store = Store::at(&temp.0).unwrap();
    store.save(vec![entry("seed", 1)], now()).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let reads = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0u32;
            while !done.load(std::sync::atomic::Ordering::Acquire) && reads < 100_000 {
                let bytes = std::fs::read(store.path()).expect("the file is always there");
                let state = parse(&bytes).expect("the file is always whole");
                assert!(!state.keys.is_empty());
                reads += 1;
            }
            reads
        });
        for round in 0..200u64 {
            // Big enough that a non-atomic write would be seen half done.
            let entries = (0..200)
                .map(|i| entry(&format!("key-{i}"), round))
                .collect();
            store.save(entries, now()).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        reader.join().unwrap()
    });
    assert!(reads > 0);
    assert_eq!(store.load(now()).unwrap().entries.len(), 200);
    assert_eq!(listing(&temp.0), [SPEND_FILE]);
}

#[test]
fn a_corrupt_file_is_moved_aside_not_overwritten() {
    let temp = TempDir::new("corrupt");
    let store = Store::at(&temp.0).unwrap();
    for (bad, why) in [
        (&b"{\"version\": 1, \"keys\": [tru"[..], "not a spend file"),
        (
            &b"{\"version\": 9, \"saved_at\": 0, \"keys\": []}"[..],
            "version 9",
        ),
    ] {
        std::fs::write(store.path(), bad).unwrap();
        let loaded = store.load(now()).unwrap();
        assert!(loaded.entries.is_empty());
        let aside = loaded.moved_aside.expect("moved aside");
        assert_eq!(
            aside,
            temp.0.join(format!("{SPEND_FILE}.corrupt-1764657000"))
        );
        assert_eq!(std::fs::read(&aside).unwrap(), bad, "{why}");
        assert!(!store.path().exists());
        std::fs::remove_file(&aside).unwrap();
    }
    let error = parse(b"[]").unwrap_err();
    assert!(error.contains("not a spend file"), "{error}");
}

#[test]
fn an_unusable_dir_is_an_error_only_when_configured() {
    let temp = TempDir::new("unusable");
    std::fs::create_dir_all(&temp.0).unwrap();
    // A file where the directory should be: cannot be created, whoever we are.
    let blocked = temp.0.join("file");
    std::fs::write(&blocked, b"x").unwrap();
    let config = |configured| StateConfig {
        dir: blocked.join("state"),
        configured,
        flush: Duration::from_secs(5),
    };
    let error = Store::open(&config(true)).unwrap_err();
    assert!(matches!(error, StateError::Create { .. }), "{error}");
    assert!(error.to_string().contains("file/state"), "{error}");
    assert!(Store::open(&config(false)).unwrap().is_none());
    let ok = StateConfig {
        dir: temp.0.join("ok"),
        configured: true,
        flush: Duration::from_secs(5),
    };
    assert!(Store::open(&ok).unwrap().is_some());
}
