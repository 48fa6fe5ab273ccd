//! A single-waiter wake-up flag for tasks of one shard.
//!
//! `notify` sets the flag and wakes the waiting task, if any; `wait` returns
//! once the flag is set and clears it. Notifications coalesce: many `notify`
//! calls before a `wait` wake it once. Used to park a shard's scheduler when no
//! worker is runnable and to wake cross-shard flushers when an outbox fills.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// A coalescing, single-waiter wake-up flag (not thread-safe, by design).
#[derive(Default)]
pub(crate) struct Signal {
    notified: Cell<bool>,
    waiter: Cell<Option<Waker>>,
}

impl Signal {
    /// Sets the flag and wakes the waiter.
    pub(crate) fn notify(&self) {
        self.notified.set(true);
        if let Some(waker) = self.waiter.take() {
            waker.wake();
        }
    }

    /// Waits until the flag is set, then clears it.
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            if self.notified.replace(false) {
                Poll::Ready(())
            } else {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn notify_before_wait_is_not_lost_and_coalesces() {
        glommio::LocalExecutor::default().run(async {
            let s = Signal::default();
            s.notify();
            s.notify();
            s.wait().await; // returns at once
            assert!(!s.notified.get());
        });
    }

    #[test]
    fn notify_wakes_a_parked_waiter() {
        glommio::LocalExecutor::default().run(async {
            let s = Rc::new(Signal::default());
            let waiter = glommio::spawn_local({
                let s = s.clone();
                async move {
                    s.wait().await;
                    7
                }
            });
            glommio::yield_if_needed().await;
            futures_lite::future::yield_now().await;
            s.notify();
            assert_eq!(waiter.await, 7);
        });
    }
}
