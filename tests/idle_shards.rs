//! An idle gateway's shards sleep: with nothing to do a shard wakes about once
//! a second (its idle round), where a fixed 25 ms tick woke it forty times a
//! second, each wake-up a context switch in front of the next request (issue
//! 18). Counted from the kernel's own per-thread context-switch counters.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{chain_yaml, chat, gateway, mock};

/// Voluntary context switches of this process's `shard-*` threads, by thread id.
fn shard_wakeups() -> BTreeMap<u32, u64> {
    let mut wakeups = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return wakeups;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.starts_with("shard-") {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok());
        let tid = task.file_name().to_string_lossy().parse().ok();
        if let (Some(tid), Some(switches)) = (tid, switches) {
            wakeups.insert(tid, switches);
        }
    }
    wakeups
}

/// The most wake-ups any shard thread (present both times) had over `idle`.
fn most_wakeups_over(idle: Duration) -> u64 {
    let before = shard_wakeups();
    std::thread::sleep(idle);
    let after = shard_wakeups();
    before
        .iter()
        .filter_map(|(tid, start)| Some(after.get(tid)? - start))
        .max()
        .expect("shard threads are visible in /proc/self/task")
}

#[test]
fn idle_shards_wake_about_once_a_second_not_forty_times() {
    let provider = mock("p");
    // One shard, then two that share health (a 1 s window, so their summaries
    // run out soon after the traffic); each idles for 3 s after its requests.
    for (shards, health) in [(1, ""), (2, "health: { window: 1s }\n")] {
        let yaml = chain_yaml(&[("p", &provider)], "", health)
            .replace("shards: 1\n", &format!("shards: {shards}\n"));
        let gw = gateway(&yaml);
        for _ in 0..20 {
            assert_eq!(chat(gw.addr()).status, 200);
        }
        // The window's last summaries go out and are heard, then nothing is news.
        std::thread::sleep(Duration::from_millis(2_500));
        let wakeups = most_wakeups_over(Duration::from_secs(3));
        // Three idle rounds and the odd timer; a 25 ms tick is 120.
        assert!(
            wakeups <= 30,
            "{shards} shard(s): {wakeups} wake-ups in 3 s idle"
        );
        // The sleeping gateway still answers at once, and stops when asked.
        assert_eq!(chat(gw.addr()).status, 200);
        gw.shutdown();
    }
}
