//! How many shards `shards: auto` means: the CPUs this process may really use.
//!
//! Two limits apply on Linux: the scheduler affinity mask (taskset, cpusets) and the
//! cgroup v2 CPU quota (`cpu.max`, as set by containers and systemd's CPUQuota).
//! A quota of 1.5 CPUs on an 8-CPU mask gives 2 shards: rounding up keeps the
//! quota usable, the kernel's throttling keeps it honest.

use std::path::{Path, PathBuf};

/// The decision and why, for the start-up log.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuBudget {
    /// Core ids the process may run on, in order (shard i pins to cores[i % len]).
    pub cores: Vec<usize>,
    /// CPUs granted by the cgroup quota, if one is set.
    pub quota: Option<f64>,
    /// Shards `auto` resolves to.
    pub shards: usize,
}

/// Reads the affinity mask and the cgroup quota of this process.
pub fn detect() -> CpuBudget {
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let quota = cgroup_quota(Path::new("/proc/self/cgroup"), Path::new("/sys/fs/cgroup"));
    budget(cores, quota)
}

/// Combines an affinity mask and an optional quota into a shard count.
pub fn budget(cores: Vec<usize>, quota: Option<f64>) -> CpuBudget {
    let allowed = cores.len().max(1);
    let by_quota = quota.map_or(allowed, |q| (q.ceil() as usize).max(1));
    CpuBudget {
        shards: allowed.min(by_quota),
        cores,
        quota,
    }
}

/// Parses a cgroup v2 `cpu.max` line: `"max 100000"` → None, `"150000 100000"` → 1.5.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?;
    let period: f64 = fields.next()?.parse().ok()?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    let quota: f64 = quota.parse().ok()?;
    (quota > 0.0).then_some(quota / period)
}

/// The cgroup v2 path of this process from `/proc/self/cgroup` (`0::/some/path`).
pub fn parse_cgroup_path(text: &str) -> Option<&str> {
    text.lines().find_map(|line| line.strip_prefix("0::"))
}

/// The smallest quota on the way from this process's cgroup up to the root.
pub fn cgroup_quota(proc_cgroup: &Path, cgroup_root: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(proc_cgroup).ok()?;
    let relative = parse_cgroup_path(&text)?.trim_start_matches('/');
    let mut dir: PathBuf = cgroup_root.join(relative);
    let mut smallest: Option<f64> = None;
    for _ in 0..64 {
        if let Some(q) = std::fs::read_to_string(dir.join("cpu.max"))
            .ok()
            .as_deref()
            .and_then(parse_cpu_max)
        {
            smallest = Some(smallest.map_or(q, |s: f64| s.min(q)));
        }
        if dir == cgroup_root || !dir.pop() || !dir.starts_with(cgroup_root) {
            break;
        }
    }
    smallest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_lines() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("50000 100000"), Some(0.5));
        assert_eq!(parse_cpu_max("garbage"), None);
        assert_eq!(parse_cpu_max(""), None);
    }

    #[test]
    fn quota_rounds_up_and_mask_caps() {
        assert_eq!(budget(vec![0, 1, 2, 3], Some(1.5)).shards, 2);
        assert_eq!(budget(vec![0, 1], Some(8.0)).shards, 2);
        assert_eq!(budget(vec![0, 1, 2], None).shards, 3);
        assert_eq!(budget(vec![5], Some(0.25)).shards, 1);
        assert_eq!(budget(vec![], None).shards, 1);
    }

    #[test]
    fn cgroup_path_line() {
        assert_eq!(
            parse_cgroup_path("0::/system.slice/switchyard.service\n"),
            Some("/system.slice/switchyard.service")
        );
        assert_eq!(parse_cgroup_path("1:cpu:/x\n"), None);
    }

    #[test]
    fn nested_quota_takes_the_smallest() {
        let root = std::env::temp_dir().join(format!("switchyard-cgroup-{}", std::process::id()));
        let leaf = root.join("system.slice/switchyard.service");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.join("system.slice/cpu.max"), "300000 100000\n").unwrap();
        std::fs::write(leaf.join("cpu.max"), "max 100000\n").unwrap();
        let proc_file = root.join("proc-cgroup");
        std::fs::write(&proc_file, "0::/system.slice/switchyard.service\n").unwrap();
        assert_eq!(cgroup_quota(&proc_file, &root), Some(3.0));
        std::fs::write(leaf.join("cpu.max"), "150000 100000\n").unwrap();
        assert_eq!(cgroup_quota(&proc_file, &root), Some(1.5));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
