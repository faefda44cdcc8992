//! Which monoio driver a shard runs on: io_uring when the kernel allows it, else the
//! legacy epoll driver (old kernels, seccomp filters, `io_uring_disabled`).

use std::future::Future;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use crate::config::DriverChoice;

/// Submission queue entries per io_uring instance.
const URING_ENTRIES: u32 = 1024;

/// The name each driver is logged under.
pub const IO_URING: &str = "io_uring";
pub const LEGACY: &str = "legacy";

/// Builds the runtime `choice` asks for and runs `main` on it to completion. `main`
/// learns which driver it runs on, and why it is not the best one when it is
/// not. With `Auto`, an io_uring that cannot be set up falls back to the legacy
/// driver and says why.
pub fn run<F, Fut>(choice: DriverChoice, main: F) -> std::io::Result<Fut::Output>
where
    F: FnOnce(&'static str, Option<String>) -> Fut,
    Fut: Future,
{
    if choice != DriverChoice::Legacy {
        match build_uring() {
            Ok((mut runtime, plain)) => return Ok(runtime.block_on(main(IO_URING, plain))),
            Err(e) if choice == DriverChoice::Auto => {
                let why = format!("io_uring unavailable ({e}); using the legacy epoll driver");
                let mut runtime = RuntimeBuilder::<LegacyDriver>::new()
                    .enable_timer()
                    .build()?;
                return Ok(runtime.block_on(main(LEGACY, Some(why))));
            }
            Err(e) => return Err(e),
        }
    }
    let mut runtime = RuntimeBuilder::<LegacyDriver>::new()
        .enable_timer()
        .build()?;
    Ok(runtime.block_on(main(LEGACY, None)))
}

/// An io_uring runtime whose completions do not interrupt the shard: with
/// `IORING_SETUP_COOP_TASKRUN` the kernel runs a completion's task work when the
/// shard next enters it (every turn of its loop does) instead of sending the
/// running thread an IPI or a signal for it (`perf stat -e
/// irq_vectors:reschedule_entry` on a loaded gateway: 16,598 in 2 s without the
/// flag, 47 with it). Only the shard's own thread uses its ring, the case the
/// flag is made for. Kernels before 5.19 refuse the flag; the ring is then
/// built without it, and the second value says so (the shard logs it).
fn build_uring() -> std::io::Result<(UringRuntime, Option<String>)> {
    let mut cooperative = io_uring::IoUring::builder();
    cooperative.setup_coop_taskrun();
    let build = |setup: io_uring::Builder| {
        RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(URING_ENTRIES)
            .uring_builder(setup)
            .enable_timer()
            .build()
    };
    match build(cooperative) {
        Ok(runtime) => Ok((runtime, None)),
        Err(e) => {
            let why = format!(
                "io_uring without IORING_SETUP_COOP_TASKRUN ({e}; kernels before 5.19): \
                 completions interrupt the shard"
            );
            build(io_uring::IoUring::builder()).map(|runtime| (runtime, Some(why)))
        }
    }
}

type UringRuntime = monoio::Runtime<monoio::time::TimeDriver<IoUringDriver>>;
