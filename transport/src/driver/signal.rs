//! Two tiny single-thread wake-up primitives for the link tasks of one shard:
//! [`Notify`] wakes one waiting task (the writer: "there is something to
//! send"), [`Latch`] is set once and wakes every waiter for good ("this
//! connection is closed"). Neither allocates per wait.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Wakes a single waiter; a notification that arrives while nobody waits is
/// kept (once) for the next [`wait`](Self::wait).
#[derive(Debug, Default)]
pub(crate) struct Notify {
    pending: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl Notify {
    /// Wakes the waiter, or lets the next `wait` return at once.
    pub(crate) fn notify(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waiter.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Waits for a notification, consuming it.
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            if self.pending.replace(false) {
                Poll::Ready(())
            } else {
                *self.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

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
    fn a_notification_before_the_wait_is_kept_once() {
        let notify = Notify::default();
        notify.notify();
        notify.notify();
        future::block_on(notify.wait());
        assert!(future::block_on(future::poll_once(notify.wait())).is_none());
    }

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
