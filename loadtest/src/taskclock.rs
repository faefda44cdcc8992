//! Task clocks: how long threads have run on a CPU, from the kernel's own
//! accounting (`/proc/.../schedstat`, first field, nanoseconds on CPU). A thread
//! that waits for its core while another process runs there does not advance its
//! clock, so CPU time per request is a figure a busy machine moves far less than
//! throughput or latency.

use std::path::Path;

/// Most tasks read from one process (a gateway has a handful of threads).
const MAX_TASKS: usize = 4096;

/// The calling thread's time on CPU, in nanoseconds.
pub fn thread_self_ns() -> Option<u64> {
    read_ns(Path::new("/proc/thread-self/schedstat"))
}

/// The calling thread's id (its TID, as `/proc/self/task/<tid>` names it).
pub fn thread_self_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Every thread of process `pid` together, in nanoseconds on CPU (threads that
/// exited are gone from the sum; the processes measured keep theirs for life).
pub fn process_ns(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for entry in dir.take(MAX_TASKS) {
        let path = entry.ok()?.path().join("schedstat");
        total = total.saturating_add(read_ns(&path)?);
    }
    Some(total)
}

/// The threads `tids` of this process together, in nanoseconds on CPU; `None`
/// when one of them cannot be read (it exited, or /proc is not there).
pub fn threads_ns(tids: &[u32]) -> Option<u64> {
    tids.iter().take(MAX_TASKS).try_fold(0u64, |sum, tid| {
        let ns = read_ns(Path::new(&format!("/proc/self/task/{tid}/schedstat")))?;
        Some(sum.saturating_add(ns))
    })
}

fn read_ns(path: &Path) -> Option<u64> {
    parse_schedstat(&std::fs::read_to_string(path).ok()?)
}

/// The first field of a schedstat line: `"<ns on cpu> <ns waiting> <slices>"`.
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn parses_the_first_field_only() {
        assert_eq!(
            parse_schedstat("332596135 57586450 144\n"),
            Some(332_596_135)
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn a_busy_thread_advances_its_own_clock_and_shows_in_the_process() {
        let before = thread_self_ns().expect("schedstat readable");
        let tid = thread_self_id().expect("thread-self link");
        let until = Instant::now() + Duration::from_millis(30);
        let mut spins = 0u64;
        while Instant::now() < until && spins < u64::MAX {
            spins = std::hint::black_box(spins + 1);
        }
        let after = thread_self_ns().expect("schedstat readable");
        assert!(after - before >= 5_000_000, "{before} → {after}");
        let mine = threads_ns(&[tid]).expect("own task readable");
        assert!(mine >= after);
        assert!(process_ns(std::process::id()).expect("own process") >= mine);
        assert_eq!(threads_ns(&[u32::MAX]), None);
    }
}
