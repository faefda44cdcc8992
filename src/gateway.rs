//! A running gateway: turns a config into listening shards and the admin listener,
//! and stops them at shutdown. What changes while it runs (reloads, DNS refresh,
//! snapshots) goes through the [`Control`] it shares with the admin thread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::cluster::health::FleetHealth;
use crate::cluster::limits::{FleetLimits, LimitsSync, LimitsView};
use crate::cluster::spend::{FleetSpend, SpendSync};
use crate::config::{Config, ShardCount};
use crate::control::{Control, GatewayError};
use crate::launch::{self, ShardOptions, Shards};
use crate::limits::budget::SpendBook;
use crate::limits::spend::{Flusher, SpendKeeper};
use crate::log::Level;
use crate::route::table::resolve_host;
use crate::route::Table;
use crate::shard::{cpus, ShardMsg};

/// Start-up choices that override the config file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub shards: Option<usize>,
}

/// A running gateway.
pub struct Gateway {
    pub control: Arc<Control>,
    shards: Shards,
    admin: Option<crate::admin::AdminServer>,
    flusher: Option<Flusher>,
    fleet: Option<FleetHealth>,
    fleet_limits: Option<FleetLimits>,
    fleet_spend: Option<FleetSpend>,
    exporter: Option<crate::telemetry::exporter::Exporter>,
}

impl Gateway {
    /// Validates `config`, binds every shard's listener and starts the shards.
    pub fn start(
        config: Config,
        source: Option<PathBuf>,
        overrides: &Overrides,
    ) -> Result<Gateway, GatewayError> {
        let config = Arc::new(config);
        crate::log::configure(&config.log);
        // Before any shard: an unusable state_dir or state file stops the start.
        let spend = Arc::new(SpendKeeper::start(&config, SystemTime::now())?);
        let mut table = Table::build(config.clone(), 1, &resolve_host);
        table.spend = spend.ledger();
        let table = Arc::new(table);
        // Before any shard charges: what the book holds now is the fleet's.
        let spend_sync = config
            .cluster
            .as_ref()
            .and_then(|c| FleetSpend::prepare(c, &spend.book()).ok());
        let limits_view = config.cluster.as_ref().map(|_| LimitsView::new());
        let limits_sync = prepare_fleet_limits(&config, limits_view.clone(), &table);
        let budget = cpus::detect();
        let count = shard_count(&config, overrides, &budget);
        let (listeners, addr) =
            crate::server::bind_listeners(config.listen, count).map_err(|source| {
                GatewayError::Listen {
                    addr: config.listen,
                    source,
                }
            })?;
        let options = ShardOptions {
            driver: config.driver,
            cores: budget.cores.clone(),
        };
        let shards = launch::start(table.clone(), listeners, &options)?;
        warn_at_start(&config, &table, addr);
        let view = config.cluster.as_ref().map(FleetHealth::view);
        let control = Arc::new(Control {
            table: Mutex::new(table),
            generation: AtomicU64::new(1),
            source,
            inboxes: shards.inboxes.clone(),
            addr,
            drivers: shards.drivers.clone(),
            spend: spend.clone(),
            cluster: view.clone(),
            fleet_limits: limits_view,
            fleet_spend: spend_sync.as_ref().map(SpendSync::view),
        });
        let flusher = Flusher::start(spend);
        let fleet = start_fleet(&config, &control, view);
        let fleet_limits = start_fleet_limits(limits_sync, &control);
        let fleet_spend = start_fleet_spend(&config, &control, spend_sync);
        let exporter = start_exporter(&config);
        let admin = match &config.admin {
            Some(admin) => Some(
                crate::admin::AdminServer::start(admin, control.clone()).map_err(|source| {
                    GatewayError::Listen {
                        addr: admin.listen,
                        source,
                    }
                })?,
            ),
            None => None,
        };
        crate::event!(
            Level::Info,
            "switchyard listening",
            addr = addr,
            shards = shards.len(),
            driver = shards.drivers.first().copied().unwrap_or("-"),
            config = control
                .source
                .as_deref()
                .map_or_else(|| "-".into(), |p| p.display().to_string())
        );
        Ok(Gateway {
            control,
            shards,
            admin,
            flusher,
            fleet,
            fleet_limits,
            fleet_spend,
            exporter,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.control.addr
    }

    /// The live spend book (per key, by `Config::keys` index).
    pub fn spend(&self) -> Arc<SpendBook> {
        self.control.spend.book()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// Stops accepting, lets in-flight requests finish within the configured grace
    /// period, and waits for every shard to end.
    pub fn shutdown(self) {
        let grace = self.control.current().config.shutdown_grace;
        crate::event!(
            Level::Info,
            "shutting down",
            grace = crate::config::format_duration(grace)
        );
        self.shards.broadcast(|| ShardMsg::Shutdown { grace });
        self.shards.join();
        // After the drain: its last sync sends the last requests' spend.
        if let Some(spend) = self.fleet_spend {
            spend.stop();
        }
        // After the drain, so the last requests' spend is in the file.
        if let Some(flusher) = self.flusher {
            flusher.stop();
        }
        self.control.spend.flush_logged(SystemTime::now());
        if let Some(fleet) = self.fleet {
            fleet.stop();
        }
        if let Some(limits) = self.fleet_limits {
            limits.stop();
        }
        if let Some(admin) = self.admin {
            admin.stop();
        }
        // Last: the drained requests' spans go out (bounded by its deadlines).
        if let Some(exporter) = self.exporter {
            exporter.stop();
        }
        crate::event!(Level::Info, "stopped");
    }
}

/// The fleet-health thread, with `cluster:`; the URL was checked at load, so
/// a failure here is only a thread that could not be spawned (logged).
/// The OTLP exporter thread when `telemetry:` is set; a failed spawn is logged
/// and the gateway runs without traces.
fn start_exporter(config: &Config) -> Option<crate::telemetry::exporter::Exporter> {
    use crate::telemetry::AttrValue;
    let telemetry = config.telemetry.clone()?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut resource = vec![
        ("service.name", AttrValue::Str("switchyard".into())),
        (
            "service.version",
            AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
        ),
        ("host.name", AttrValue::Str(host.trim().to_string())),
    ];
    if let Some(cluster) = &config.cluster {
        resource.push((
            "service.instance.id",
            AttrValue::Str(cluster.node_id.clone()),
        ));
    }
    let endpoint = telemetry.endpoint.text.clone();
    match crate::telemetry::exporter::Exporter::start(telemetry, resource) {
        Ok(exporter) => {
            crate::event!(Level::Info, "trace export on", endpoint = endpoint);
            Some(exporter)
        }
        Err(e) => {
            crate::event!(Level::Error, "trace exporter not started", error = e);
            None
        }
    }
}

fn start_fleet(
    config: &Config,
    control: &Arc<Control>,
    view: Option<Arc<crate::cluster::health::FleetView>>,
) -> Option<FleetHealth> {
    let (cluster, view) = (config.cluster.as_ref()?, view?);
    match FleetHealth::start(cluster, control.clone(), view) {
        Ok(fleet) => {
            crate::event!(
                Level::Info,
                "cluster mode: provider health shared through redis",
                node = cluster.node_id,
                sync_interval = crate::config::format_duration(cluster.sync_interval)
            );
            Some(fleet)
        }
        Err(e) => {
            crate::event!(Level::Error, "cluster mode not started", error = e);
            None
        }
    }
}

/// The fleet-limits thread's first tick, with `cluster:`, before any shard
/// serves (logged when it cannot be made).
fn prepare_fleet_limits(
    config: &Config,
    view: Option<Arc<LimitsView>>,
    table: &Table,
) -> Option<LimitsSync> {
    let (cluster, view) = (config.cluster.as_ref()?, view?);
    match FleetLimits::prepare(cluster, view, table) {
        Ok(sync) => Some(sync),
        Err(e) => {
            crate::event!(Level::Error, "cluster limits not started", error = e);
            None
        }
    }
}

/// The fleet-limits thread (logged when it cannot start).
fn start_fleet_limits(sync: Option<LimitsSync>, control: &Arc<Control>) -> Option<FleetLimits> {
    match FleetLimits::start(sync?, control.clone()) {
        Ok(limits) => {
            crate::event!(
                Level::Info,
                "cluster mode: key limits and quotas leased fleet-wide through redis",
                on_redis_down = control
                    .current()
                    .config
                    .cluster
                    .as_ref()
                    .map_or("local", |c| c.on_redis_down.as_str())
            );
            Some(limits)
        }
        Err(e) => {
            crate::event!(Level::Error, "cluster limits not started", error = e);
            None
        }
    }
}

/// The fleet-spend thread, with `cluster:` (logged when it cannot start).
fn start_fleet_spend(
    config: &Config,
    control: &Arc<Control>,
    sync: Option<SpendSync>,
) -> Option<FleetSpend> {
    let (cluster, sync) = (config.cluster.as_ref()?, sync?);
    match FleetSpend::start(sync, cluster.sync_interval, control.clone()) {
        Ok(spend) => Some(spend),
        Err(e) => {
            crate::event!(Level::Error, "cluster spend not started", error = e);
            None
        }
    }
}

/// How many shards to run (`--shards`, else the config, `auto` = the CPUs this
/// process may use), logged with where the number came from.
fn shard_count(config: &Config, overrides: &Overrides, budget: &cpus::CpuBudget) -> usize {
    let count = overrides.shards.unwrap_or(match config.shards {
        ShardCount::Auto => budget.shards,
        ShardCount::Fixed(n) => n,
    });
    crate::event!(
        Level::Info,
        "shard count",
        shards = count,
        usable_cores = budget.cores.len(),
        cgroup_quota = budget
            .quota
            .map_or("none".to_string(), |q| format!("{q:.2}")),
        source = if overrides.shards.is_some() {
            "--shards"
        } else if config.shards == ShardCount::Auto {
            "auto"
        } else {
            "config"
        },
    );
    count
}

/// The configurations that work but probably not as meant, said once at start.
fn warn_at_start(config: &Config, table: &Table, addr: SocketAddr) {
    if config.keys.is_empty() {
        crate::event!(
            Level::Warn,
            "no client keys configured: this gateway is OPEN to anyone who can reach it",
            listen = addr
        );
    }
    if config.keys.iter().any(|k| k.budget.is_some()) && table.spend.prices.is_empty() {
        crate::event!(
            Level::Warn,
            "keys have budgets but no prices are configured: nothing is charged, so no budget ever runs out (set prices or prices_file)"
        );
    }
}
