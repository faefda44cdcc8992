//! A shard-local stop signal: set once, wakes every task waiting on it.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct StopSignal {
    stopped: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl StopSignal {
    pub fn stop(&self) {
        self.stopped.set(true);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Resolves once [`StopSignal::stop`] has been called.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.stopped.get() {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}
