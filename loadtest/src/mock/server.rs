//! The mock's threads: one monoio runtime per thread, each with its own listener on
//! the shared port (SO_REUSEPORT), closing and re-binding it as `Refuse` comes and goes.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::io::{CancelHandle, Canceller};
use socket2::{Domain, Protocol, Socket, Type};

use super::conn;
use super::state::Shared;
use super::Fault;

/// How often idle accept loops look at shutdown and fault changes.
const TICK: Duration = Duration::from_millis(10);
/// How long a stopping thread waits for its connections to finish.
const DRAIN: Duration = Duration::from_millis(300);

/// Per-thread state: a cached copy of the fault and the cancellers that end
/// connections' pending I/O (provider connections on `Refuse` or shutdown,
/// control connections on shutdown).
pub(crate) struct Local {
    pub shared: Arc<Shared>,
    view: RefCell<(u64, Arc<Fault>)>,
    provider: RefCell<Canceller>,
    control: RefCell<Canceller>,
    pub live: Cell<usize>,
}

impl Local {
    fn new(shared: Arc<Shared>) -> Self {
        let view = shared.fault();
        Local {
            shared,
            view: RefCell::new(view),
            provider: RefCell::new(Canceller::new()),
            control: RefCell::new(Canceller::new()),
            live: Cell::new(0),
        }
    }

    /// The current fault; costs one atomic load unless it changed.
    pub(crate) fn fault(&self) -> Arc<Fault> {
        let mut view = self.view.borrow_mut();
        if view.0 != self.shared.generation() {
            *view = self.shared.fault();
        }
        Arc::clone(&view.1)
    }

    /// The handle that I/O of a (control or provider) connection registers with.
    pub(crate) fn handle(&self, control: bool) -> CancelHandle {
        self.canceller(control).borrow().handle()
    }

    fn cancel(&self, control: bool) {
        let mut slot = self.canceller(control).borrow_mut();
        let old = std::mem::take(&mut *slot);
        *slot = old.cancel();
    }

    fn canceller(&self, control: bool) -> &RefCell<Canceller> {
        if control {
            &self.control
        } else {
            &self.provider
        }
    }
}

/// Which listener a thread owns: its index, the shared port, and how to re-bind.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place {
    pub index: usize,
    pub addr: SocketAddr,
    pub reuse_port: bool,
}

/// What one mock thread starts with.
pub(crate) struct ThreadSpec {
    pub place: Place,
    pub listener: std::net::TcpListener,
    pub control: Option<std::net::TcpListener>,
    pub pin_core: Option<usize>,
}

/// Binds a non-blocking listener with SO_REUSEADDR (and SO_REUSEPORT if asked).
pub(crate) fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Starts one mock thread; it reports on `ready` once it accepts connections.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    spec: ThreadSpec,
    ready: Sender<io::Result<()>>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!(
            "mock-{}-{}",
            shared.settings.name, spec.place.index
        ))
        .spawn(move || run_thread(shared, spec, ready))
}

fn run_thread(shared: Arc<Shared>, spec: ThreadSpec, ready: Sender<io::Result<()>>) {
    if let Some(tid) = crate::taskclock::thread_self_id() {
        shared.add_thread_id(tid);
    }
    if let Some(core) = spec.pin_core {
        core_affinity::set_for_current(core_affinity::CoreId {
            id: core + spec.place.index,
        });
    }
    match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut runtime) => runtime.block_on(thread_main(shared, spec, ready)),
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

async fn thread_main(shared: Arc<Shared>, spec: ThreadSpec, ready: Sender<io::Result<()>>) {
    let local = Rc::new(Local::new(shared));
    let started = Acceptor::new(spec.listener).and_then(|provider| {
        let control = spec.control.map(Acceptor::new).transpose()?;
        Ok((provider, control))
    });
    let (provider, control) = match started {
        Ok(found) => found,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if let Some(control) = control {
        monoio::spawn(control_loop(control, Rc::clone(&local)));
    }
    let _ = ready.send(Ok(()));
    provider_loop(Some(provider), spec.place, &local).await;
    local.cancel(false);
    local.cancel(true);
    let deadline = Instant::now() + DRAIN;
    while local.live.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Accepts provider connections and follows `Refuse` until shutdown.
async fn provider_loop(mut acceptor: Option<Acceptor>, place: Place, local: &Rc<Local>) {
    let shared = &local.shared;
    let mut applied = 0;
    let mut warned = false;
    while !shared.shutdown.load(Ordering::Acquire) {
        if shared.generation() != applied {
            let (generation, fault) = shared.fault();
            match reconcile(acceptor.take(), &fault, place, local) {
                Ok(next) => {
                    acceptor = next;
                    applied = generation;
                    shared.mark_applied(place.index, generation);
                }
                Err(e) if !warned => {
                    warned = true;
                    eprintln!(
                        "mock {}: cannot re-bind {}: {e}",
                        shared.settings.name, place.addr
                    );
                }
                Err(_) => {}
            }
        }
        match &acceptor {
            Some(listener) => listener.accept_one(local, false).await,
            None => monoio::time::sleep(TICK).await,
        }
    }
}

/// Closes or re-opens the listener to match `fault`.
fn reconcile(
    acceptor: Option<Acceptor>,
    fault: &Fault,
    place: Place,
    local: &Local,
) -> io::Result<Option<Acceptor>> {
    match (acceptor, fault.refuses()) {
        (Some(open), false) => Ok(Some(open)),
        (Some(open), true) => {
            // Stop listening now: the runtime's duplicate descriptor may be
            // closed asynchronously (io_uring), and until then the port would
            // still accept — a refusing mock must refuse once `set_fault`
            // returns. On Linux, shutting a listening socket down closes it.
            let _ = socket2::SockRef::from(&open.std).shutdown(std::net::Shutdown::Both);
            drop(open);
            local.cancel(false);
            Ok(None)
        }
        (None, true) => Ok(None),
        (None, false) => Acceptor::new(bind(place.addr, place.reuse_port)?).map(Some),
    }
}

/// Serves the control listener until shutdown; faults never touch it.
async fn control_loop(acceptor: Acceptor, local: Rc<Local>) {
    while !local.shared.shutdown.load(Ordering::Acquire) {
        acceptor.accept_one(&local, true).await;
    }
}

/// A listener: accepted through std (so each connection keeps a descriptor for
/// socket options), woken through monoio readiness on a duplicate descriptor.
struct Acceptor {
    std: std::net::TcpListener,
    ready: monoio::net::TcpListener,
}

impl Acceptor {
    fn new(std: std::net::TcpListener) -> io::Result<Self> {
        let ready = monoio::net::TcpListener::from_std(std.try_clone()?)?;
        Ok(Acceptor { std, ready })
    }

    /// Accepts one connection and spawns its task, or waits up to one tick.
    async fn accept_one(&self, local: &Rc<Local>, control: bool) {
        match self.std.accept() {
            Ok((stream, _)) => {
                if let Err(e) = start_conn(stream, local, control) {
                    eprintln!(
                        "mock {}: dropping a connection: {e}",
                        local.shared.settings.name
                    );
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = monoio::time::timeout(TICK, self.ready.readable(false)).await;
            }
            Err(_) => monoio::time::sleep(TICK).await,
        }
    }
}

fn start_conn(stream: std::net::TcpStream, local: &Rc<Local>, control: bool) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if monoio::utils::is_legacy() {
        stream.set_nonblocking(true)?;
    }
    let ctl = stream.try_clone()?;
    let stream = monoio::net::TcpStream::from_std(stream)?;
    if !control {
        Shared::count(&local.shared.connections);
    }
    monoio::spawn(conn::serve(stream, ctl, Rc::clone(local), control));
    Ok(())
}
