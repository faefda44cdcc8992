//! An idle gateway sleeps: with nothing to do a shard wakes about once a second
//! (its idle round), where a fixed 25 ms tick woke it forty times a second,
//! each wake-up a context switch in front of the next request (issue 18), and
//! the admin listener waits in accept instead of polling it every 20 ms.
//! Counted from the kernel's own per-thread context-switch counters.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{chain_yaml, chat, gateway, mock};

/// Voluntary context switches of this process's threads named `name` or
/// `name-*`, by thread id.
fn wakeups(name: &str) -> BTreeMap<u32, u64> {
    let mut wakeups = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return wakeups;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let comm = comm.trim_end();
        let named = comm == name || comm.strip_prefix(name).is_some_and(|r| r.starts_with('-'));
        if !named {
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

/// The most wake-ups any thread named `name` (present both times) had over `idle`.
fn most_wakeups_over(name: &str, idle: Duration) -> u64 {
    let before = wakeups(name);
    std::thread::sleep(idle);
    let after = wakeups(name);
    before
        .iter()
        .filter_map(|(tid, start)| Some(after.get(tid)? - start))
        .max()
        .unwrap_or_else(|| panic!("{name} threads are visible in /proc/self/task"))
}

#[test]
fn an_idle_gateway_wakes_about_once_a_second_not_forty_times() {
    let provider = mock("p");
    // One shard with an admin listener, then two that share health (a 1 s
    // window, so their summaries run out soon after the traffic); each idles
    // for 3 s after its requests.
    let admin = "admin: { listen: 127.0.0.1:0 }\n";
    for (shards, extra) in [(1, admin), (2, "health: { window: 1s }\n")] {
        let yaml = chain_yaml(&[("p", &provider)], "", extra)
            .replace("shards: 1\n", &format!("shards: {shards}\n"));
        let gw = gateway(&yaml);
        for _ in 0..20 {
            assert_eq!(chat(gw.addr()).status, 200);
        }
        // The window's last summaries go out and are heard, then nothing is news.
        std::thread::sleep(Duration::from_millis(2_500));
        let idle = Duration::from_secs(3);
        let (shard, admin) = if extra == admin {
            // Both watched over the same 3 s.
            let counting = std::thread::spawn(move || most_wakeups_over("admin", idle));
            let shard = most_wakeups_over("shard", idle);
            (shard, counting.join().expect("admin count"))
        } else {
            (most_wakeups_over("shard", idle), 0)
        };
        // Three idle rounds and the odd timer; a 25 ms tick is 120.
        assert!(
            shard <= 30,
            "{shards} shard(s): {shard} wake-ups in 3 s idle"
        );
        // None at all; polling accept every 20 ms is 150.
        assert!(admin <= 5, "admin: {admin} wake-ups in 3 s idle");
        // The sleeping gateway still answers at once, and stops when asked.
        assert_eq!(chat(gw.addr()).status, 200);
        gw.shutdown();
    }
}
