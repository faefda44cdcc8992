//! Starting the shards: one pinned OS thread per core, each running its own monoio
//! runtime with its own listener, pools, routing table and health view, serving
//! until its inbox says stop.

use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::DriverChoice;
use crate::log::Level;
use crate::route::Table;
use crate::shard::stop::StopSignal;
use crate::shard::{deliver, housekeeping, messages, runtime, Inbox, Shard, ShardMsg};

/// Options for starting shards.
#[derive(Debug, Clone)]
pub struct ShardOptions {
    pub driver: DriverChoice,
    /// Cores to pin shard i to (`cores[i % len]`); empty = no pinning.
    pub cores: Vec<usize>,
}

/// The running shards, as the control plane sees them.
pub struct Shards {
    pub inboxes: Vec<Inbox>,
    /// The driver each shard runs on, by shard id.
    pub drivers: Vec<&'static str>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("shard {0}: {1}")]
    Runtime(usize, std::io::Error),
    #[error("shard {0} stopped during start-up")]
    Died(usize),
}

/// Starts one shard per listener; returns once every shard accepts connections.
pub fn start(
    table: Arc<Table>,
    listeners: Vec<std::net::TcpListener>,
    options: &ShardOptions,
) -> Result<Shards, StartError> {
    let inboxes: Vec<Inbox> = listeners.iter().map(|_| messages::inbox()).collect();
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<&'static str, std::io::Error>)>();
    let mut threads = Vec::with_capacity(listeners.len());
    for (id, listener) in listeners.into_iter().enumerate() {
        let core = (!options.cores.is_empty()).then(|| options.cores[id % options.cores.len()]);
        let table = table.clone();
        let inboxes = inboxes.clone();
        let ready = ready_tx.clone();
        let driver = options.driver;
        let thread = std::thread::Builder::new()
            .name(format!("shard-{id}"))
            .spawn(move || shard_thread(id, core, driver, table, inboxes, listener, ready))
            .map_err(|e| StartError::Runtime(id, e))?;
        threads.push(thread);
    }
    drop(ready_tx);
    let mut drivers = vec![""; threads.len()];
    for _ in 0..threads.len() {
        match ready_rx.recv() {
            Ok((id, Ok(driver))) => drivers[id] = driver,
            Ok((id, Err(e))) => return Err(StartError::Runtime(id, e)),
            Err(_) => {
                return Err(StartError::Died(
                    drivers.iter().position(|d| d.is_empty()).unwrap_or(0),
                ))
            }
        }
    }
    Ok(Shards {
        inboxes,
        drivers,
        threads,
    })
}

fn shard_thread(
    id: usize,
    core: Option<usize>,
    driver: DriverChoice,
    table: Arc<Table>,
    inboxes: Vec<Inbox>,
    listener: std::net::TcpListener,
    ready: mpsc::Sender<(usize, Result<&'static str, std::io::Error>)>,
) {
    if let Some(core) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            crate::event!(
                Level::Warn,
                "could not pin shard to core",
                shard = id,
                core = core
            );
        }
    }
    let inbox = inboxes[id].clone();
    let result = runtime::run(driver, |driver_name, fallback_reason| async move {
        if let Some(why) = fallback_reason {
            crate::event!(Level::Warn, "io_uring fallback", shard = id, reason = why);
        }
        let listener = match monoio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = ready.send((id, Err(e)));
                return;
            }
        };
        let shard = Shard::new(id, table, inbox, inboxes);
        let _ = ready.send((id, Ok(driver_name)));
        crate::event!(
            Level::Info,
            "shard serving",
            shard = id,
            driver = driver_name,
            core = core.map_or("-".to_string(), |c| c.to_string())
        );
        run_shard(shard, listener).await;
    });
    if let Err(e) = result {
        crate::event!(Level::Error, "shard runtime failed", shard = id, error = e);
    }
}

async fn run_shard(shard: Rc<Shard>, listener: monoio::net::TcpListener) {
    let stop = Rc::new(StopSignal::default());
    monoio::spawn(crate::server::accept_loop(
        shard.clone(),
        listener,
        stop.clone(),
    ));
    housekeeping::run(shard, stop).await;
}

impl Shards {
    /// Sends a control message to every shard.
    pub fn broadcast(&self, make: impl Fn() -> ShardMsg) {
        for inbox in &self.inboxes {
            deliver(inbox, make());
        }
    }

    pub fn len(&self) -> usize {
        self.inboxes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inboxes.is_empty()
    }

    /// Waits for every shard thread to end.
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}
