//! The fleet scenario (`cluster:`): N gateway nodes on loopback, run once sharing a
//! real `redis-server` (`cluster: { redis, node_id, sync_interval }`) and once
//! independent (no `cluster:`), under the same round-robin load, so what sharing
//! buys is a same-run ratio: provider calls to a dead primary fleet-wide (health)
//! and admitted requests per rate window fleet-wide (limits).
//!
//! Without a `redis-server` the scenario is skipped with the reason, unless
//! `SWITCHYARD_REQUIRE_REDIS` is set: then every criterion fails, so CI never
//! passes by skipping.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::gateway::{free_port, render_config, GatewayProcess};
use super::metrics::Measure;
use super::mocks::MockSet;
use super::runner::{load_spec, Context};
use super::scenario::{Dur, Metric, Scenario, Traffic};
use super::SuiteError;
use crate::loadgen::{self, LoadReport};

/// How long a started redis-server has to answer PING.
const REDIS_READY_WITHIN: Duration = Duration::from_secs(10);
/// Most nodes a fleet may have (each is a child process on the gateway core).
pub const MAX_NODES: usize = 8;

/// The `cluster:` block of a scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    #[serde(default = "three")]
    pub nodes: usize,
    #[serde(default = "twenty_ms")]
    pub sync_interval: Dur,
    /// The mock that is down for the whole run (its request count is the
    /// calls-to-dead-primary figure).
    pub dead_mock: String,
    /// Phase A: load on a route whose primary is `dead_mock`.
    pub health: Traffic,
    /// Phase B: load over a key with an `rpm`, well above it.
    pub limit: Traffic,
    /// The gateway template's `rate_window` (whole seconds), and the key's rpm:
    /// the limit per window the fleet must keep.
    pub window: Dur,
    pub limit_per_window: u64,
    /// `--smoke` durations of the two phases.
    pub smoke_health: Dur,
    pub smoke_limit: Dur,
}

fn three() -> usize {
    3
}

fn twenty_ms() -> Dur {
    Dur(Duration::from_millis(20))
}

impl ClusterSpec {
    pub fn validate(&self, mocks: &[String]) -> Result<(), String> {
        if !(2..=MAX_NODES).contains(&self.nodes) {
            return Err(format!("cluster.nodes must be 2..={MAX_NODES}"));
        }
        if !mocks.contains(&self.dead_mock) {
            return Err(format!(
                "cluster.dead_mock: unknown mock '{}'",
                self.dead_mock
            ));
        }
        let w = self.window.0;
        if w.is_zero() || w.subsec_nanos() != 0 {
            return Err("cluster.window must be a whole number of seconds".into());
        }
        for (what, t, smoke) in [
            ("health", &self.health, self.smoke_health),
            ("limit", &self.limit, self.smoke_limit),
        ] {
            if t.rate.is_none() {
                return Err(format!("cluster.{what}.rate needs a rate (open loop)"));
            }
            if what == "limit" && (t.duration.0 < w * 2 || smoke.0 < w * 2) {
                return Err("cluster.limit durations must cover at least 2 windows".into());
            }
            if t.duration.0.is_zero() || smoke.0.is_zero() {
                return Err(format!("cluster.{what} durations must be positive"));
            }
        }
        Ok(())
    }

    /// The `--smoke` form: the short durations, same rates.
    pub fn smoke(&mut self) {
        self.health.duration = self.smoke_health;
        self.limit.duration = self.smoke_limit;
        self.health.warmup = Dur(self.health.warmup.0.min(Duration::from_millis(300)));
        self.limit.warmup = Dur(self.limit.warmup.0.min(Duration::from_millis(300)));
    }
}

/// Both fleets, or why the scenario was skipped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterRun {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Set when redis-server is missing and `SWITCHYARD_REQUIRE_REDIS` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_missing: Option<String>,
    pub window_s: u64,
    pub limit_per_window: u64,
    pub clustered: Option<FleetRun>,
    pub independent: Option<FleetRun>,
}

/// One fleet's two phases, summed over its nodes.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRun {
    /// `Cpus_allowed_list` of the first node (all are started alike).
    pub gateway_cpus: String,
    /// Requests the dead mock received during phase A (every node together).
    pub dead_calls: u64,
    pub health: FleetLoad,
    pub limit: FleetLoad,
    /// Phase B: answers ok per whole window (by intended send time), fleet-wide.
    pub admitted_per_window: Vec<u64>,
}

/// Counts of one phase over every node's load.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetLoad {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// Ok answers per second of intended send time.
    pub ok_per_s: Vec<u64>,
    pub per_node: Vec<u64>,
}

impl FleetLoad {
    fn add(&mut self, r: &LoadReport) {
        self.requests += r.requests;
        self.ok += r.ok;
        self.errors += r.errors;
        self.per_node.push(r.requests);
        for (status, n) in &r.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        for s in &r.series {
            let i = usize::try_from(s.second).unwrap_or(usize::MAX);
            if i >= self.ok_per_s.len() && i < 10_000 {
                self.ok_per_s.resize(i + 1, 0);
            }
            if let Some(slot) = self.ok_per_s.get_mut(i) {
                *slot += s.sent_ok;
            }
        }
    }
}

/// Sleeps until the wall clock is at a whole multiple of `window` (unix time).
fn sleep_to_window_start(window: std::time::Duration) {
    let window_ms = window.as_millis().max(1) as u64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let wait = window_ms - now_ms % window_ms;
    std::thread::sleep(std::time::Duration::from_millis(wait));
}

/// Ok answers per whole window of `window_s` seconds inside `duration_s`.
pub fn per_window(ok_per_s: &[u64], window_s: u64, duration_s: f64) -> Vec<u64> {
    let w = usize::try_from(window_s.max(1)).unwrap_or(1);
    let whole = (duration_s.max(0.0) as usize) / w;
    (0..whole)
        .map(|k| ok_per_s.iter().skip(k * w).take(w).sum())
        .collect()
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(v: &[u64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2] as f64),
        _ => Some((v[n / 2 - 1] + v[n / 2]) as f64 / 2.0),
    }
}

/// The value of a cluster metric, or why there is none.
pub fn value(metric: Metric, run: Option<&ClusterRun>) -> Result<Measure, String> {
    let run = run.ok_or("the fleets did not run")?;
    if let Some(why) = &run.required_missing {
        return Ok(Measure::Failed(why.clone()));
    }
    let (Some(c), Some(i)) = (&run.clustered, &run.independent) else {
        return Err("a fleet did not run".into());
    };
    let v = match metric {
        Metric::ClusterClientErrors => (c.health.errors + i.health.errors) as f64,
        Metric::ClusterDeadCallsRatio => {
            if i.dead_calls == 0 {
                return Err("the independent fleet made no call to the dead mock".into());
            }
            c.dead_calls as f64 / i.dead_calls as f64
        }
        Metric::ClusterAdmittedPerWindow => {
            median(&c.admitted_per_window).ok_or("no whole window in phase B")?
        }
        _ => return Err(format!("{} is not a cluster metric", metric.name())),
    };
    Ok(Measure::Value(v))
}

/// Runs both fleets of `sc` (its `cluster:` is `spec`).
pub fn run(sc: &Scenario, spec: &ClusterSpec, ctx: &Context) -> Result<ClusterRun, SuiteError> {
    let mut out = ClusterRun {
        window_s: spec.window.0.as_secs(),
        limit_per_window: spec.limit_per_window,
        ..ClusterRun::default()
    };
    let Some(binary) = redis_binary() else {
        let msg = "redis-server is not installed (apt-get install redis-server)";
        if std::env::var_os("SWITCHYARD_REQUIRE_REDIS").is_some() {
            out.required_missing = Some(format!("{msg}, and SWITCHYARD_REQUIRE_REDIS is set"));
        } else {
            out.skipped = Some(format!(
                "{msg}; set SWITCHYARD_REQUIRE_REDIS=1 to fail instead"
            ));
        }
        return Ok(out);
    };
    let redis = RedisProcess::start(&binary, ctx.logs, &sc.name)?;
    let mocks = MockSet::start(&sc.mocks, ctx.placement.load)?;
    out.clustered = Some(fleet(sc, spec, ctx, &mocks, Some(redis.addr))?);
    out.independent = Some(fleet(sc, spec, ctx, &mocks, None)?);
    Ok(out)
}

/// Starts the nodes (sharing `redis` when given), runs phase A then phase B.
fn fleet(
    sc: &Scenario,
    spec: &ClusterSpec,
    ctx: &Context,
    mocks: &MockSet,
    redis: Option<SocketAddr>,
) -> Result<FleetRun, SuiteError> {
    let mode = if redis.is_some() {
        "clustered"
    } else {
        "independent"
    };
    let mut nodes = Vec::with_capacity(spec.nodes);
    for n in 1..=spec.nodes {
        let addr = free_port()?;
        let config = node_config(sc, spec, mocks, addr, redis, n)?;
        nodes.push(GatewayProcess::start(
            ctx.binary,
            &config,
            addr,
            ctx.logs,
            &format!("{}.{mode}.n{n}", sc.name),
            ctx.placement.gateway,
            &sc.traffic.model,
        )?);
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|g| g.addr).collect();
    let dead = mocks.get(&spec.dead_mock)?;
    eprintln!("  {mode}: phase A (health), {} nodes", addrs.len());
    let before = dead.requests();
    let health = round_robin(&spec.health, &addrs, ctx)?;
    let dead_calls = dead.requests().saturating_sub(before);
    eprintln!("  {mode}: phase B (limits)");
    // The gateway's windows start on the wall clock (every node's at the same
    // moments); so do the counted ones, so each counted window is one of theirs.
    sleep_to_window_start(spec.window.0);
    let limit = round_robin(&spec.limit, &addrs, ctx)?;
    let admitted_per_window = per_window(
        &limit.ok_per_s,
        spec.window.0.as_secs(),
        spec.limit.duration.secs(),
    );
    eprintln!(
        "  {mode}: dead-mock calls {dead_calls}, health errors {}, admitted per window {admitted_per_window:?}",
        health.errors
    );
    let gateway_cpus = nodes.first().map_or_else(String::new, |g| g.cpus.clone());
    drop(nodes);
    Ok(FleetRun {
        gateway_cpus,
        dead_calls,
        health,
        limit,
        admitted_per_window,
    })
}

/// The gateway config of node `n`: the template, plus `cluster:` when `redis`.
fn node_config(
    sc: &Scenario,
    spec: &ClusterSpec,
    mocks: &MockSet,
    addr: SocketAddr,
    redis: Option<SocketAddr>,
    n: usize,
) -> Result<String, SuiteError> {
    let invalid = |problem: String| SuiteError::Scenario {
        file: PathBuf::from(format!("{}.yaml", sc.name)),
        problem,
    };
    let text = render_config(&sc.gateway, &mocks.urls(), addr).map_err(invalid)?;
    let Some(redis) = redis else { return Ok(text) };
    let mut doc: serde_yaml::Mapping =
        serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let mut cluster = serde_yaml::Mapping::new();
    cluster.insert("redis".into(), format!("redis://{redis}/0").into());
    cluster.insert("node_id".into(), format!("n{n}").into());
    let sync_ms = spec.sync_interval.0.as_millis().to_string() + "ms";
    cluster.insert("sync_interval".into(), sync_ms.into());
    doc.insert("cluster".into(), cluster.into());
    serde_yaml::to_string(&doc).map_err(|e| invalid(e.to_string()))
}

/// `t` spread over `addrs`: one open-loop stream per node at `rate / nodes`,
/// started together, so request `i` of the fleet goes to node `i % nodes`
/// (interleaved in time, not by a shared counter).
fn round_robin(t: &Traffic, addrs: &[SocketAddr], ctx: &Context) -> Result<FleetLoad, SuiteError> {
    let nodes = addrs.len().max(1) as f64;
    let reports: Vec<Result<LoadReport, SuiteError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = addrs
            .iter()
            .map(|addr| {
                let mut spec = load_spec(t, *addr, ctx.placement.load);
                spec.rate = t.rate.map(|r| r / nodes);
                spec.connections = (t.connections / addrs.len()).max(1);
                scope.spawn(move || loadgen::run(&spec).map_err(SuiteError::from))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(SuiteError::Gateway("a load thread panicked".into())))
            })
            .collect()
    });
    let mut fleet = FleetLoad::default();
    for r in reports {
        fleet.add(&r?);
    }
    Ok(fleet)
}

/// `/usr/bin/redis-server`, else `redis-server` on `PATH`.
pub fn redis_binary() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/redis-server");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
}

/// A redis-server on a free loopback port, no persistence; killed on drop.
struct RedisProcess {
    child: Child,
    addr: SocketAddr,
}

impl RedisProcess {
    fn start(binary: &Path, logs: &Path, name: &str) -> Result<RedisProcess, SuiteError> {
        let addr = free_port()?;
        let log = logs.join(format!("{name}.redis.log"));
        let io = |what: String| move |source| SuiteError::Io { what, source };
        let file =
            std::fs::File::create(&log).map_err(io(format!("cannot create {}", log.display())))?;
        let err = file
            .try_clone()
            .map_err(io(format!("cannot open {}", log.display())))?;
        let child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port", &addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(io(format!("cannot start {}", binary.display())))?;
        let server = RedisProcess { child, addr };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&self) -> Result<(), SuiteError> {
        let deadline = Instant::now() + REDIS_READY_WITHIN;
        while Instant::now() < deadline {
            if ping(self.addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(SuiteError::Gateway(format!(
            "redis-server at {} did not answer PING within {REDIS_READY_WITHIN:?}",
            self.addr
        )))
    }
}

fn ping(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.write_all(b"PING\r\n")?;
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf)?;
    if buf[..n].starts_with(b"+PONG") {
        Ok(())
    } else {
        Err(std::io::Error::other("no PONG"))
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_sum_whole_windows_only() {
        // (ok per second, window s, duration s, windows)
        let cases: [(&[u64], u64, f64, &[u64]); 4] = [
            (&[30, 0, 25, 5, 60], 2, 5.0, &[30, 30]),
            (&[1, 2, 3], 1, 3.0, &[1, 2, 3]),
            (&[10], 2, 4.0, &[10, 0]),
            (&[10, 10], 2, 1.5, &[]),
        ];
        for (per_s, w, d, want) in cases {
            assert_eq!(per_window(per_s, w, d), want, "{per_s:?} {w} {d}");
        }
    }

    fn fleet(dead_calls: u64, errors: u64, windows: &[u64]) -> FleetRun {
        FleetRun {
            gateway_cpus: String::new(),
            dead_calls,
            health: FleetLoad {
                errors,
                ..FleetLoad::default()
            },
            limit: FleetLoad::default(),
            admitted_per_window: windows.to_vec(),
        }
    }

    #[test]
    fn values_come_from_both_fleets() {
        let run = ClusterRun {
            clustered: Some(fleet(10, 0, &[60, 58, 61])),
            independent: Some(fleet(30, 1, &[180, 181, 179])),
            ..ClusterRun::default()
        };
        let v = |m| match value(m, Some(&run)) {
            Ok(Measure::Value(v)) => v,
            other => panic!("{m:?}: {other:?}"),
        };
        assert_eq!(v(Metric::ClusterClientErrors), 1.0);
        assert!((v(Metric::ClusterDeadCallsRatio) - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(v(Metric::ClusterAdmittedPerWindow), 60.0);
        // Redis required but missing: a failure, not a gap.
        let missing = ClusterRun {
            required_missing: Some("no redis-server".into()),
            ..ClusterRun::default()
        };
        assert!(matches!(
            value(Metric::ClusterClientErrors, Some(&missing)),
            Ok(Measure::Failed(_))
        ));
        let no_calls = ClusterRun {
            clustered: Some(fleet(0, 0, &[60])),
            independent: Some(fleet(0, 0, &[60])),
            ..ClusterRun::default()
        };
        assert!(value(Metric::ClusterDeadCallsRatio, Some(&no_calls)).is_err());
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[5, 1, 3]), Some(3.0));
        assert_eq!(median(&[60, 62]), Some(61.0));
        assert_eq!(median(&[]), None);
    }
}
