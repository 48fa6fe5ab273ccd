//! [`Latch`]: set once, it wakes every waiter for good ("this connection is
//! closed"); it allocates nothing per wait once its waiters are known. (To
//! wake one waiting task, "there is something to send", the link tasks use
//! the engine's `plugin::Signal`.)

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Set once, then every current and future [`wait`](Self::wait) returns.
#[derive(Debug, Default)]
pub(crate) struct Latch {
    set: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Latch {
    /// Sets the latch and wakes every waiter. Returns false if it was already set.
    pub(crate) fn set(&self) -> bool {
        if self.set.replace(true) {
            return false;
        }
        for waker in self.waiters.take() {
            waker.wake();
        }
        true
    }

    /// True once [`set`](Self::set) was called.
    pub(crate) fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Waits until the latch is set.
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.get() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn a_latch_stays_set() {
        let latch = Latch::default();
        assert!(future::block_on(future::poll_once(latch.wait())).is_none());
        assert!(latch.set());
        assert!(!latch.set());
        future::block_on(latch.wait());
        future::block_on(latch.wait());
        assert!(latch.is_set());
    }
}
