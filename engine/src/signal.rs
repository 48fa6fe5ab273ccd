//! A single-waiter wake-up flag for tasks of one shard.
//!
//! `notify` sets the flag and wakes the waiting task, if any; `poll_wait`
//! clears a set flag, or registers the waiter. Notifications coalesce: many
//! `notify` calls before a wait wake it once. It parks a shard's scheduler
//! until a worker becomes runnable or an outbox needs flushing, and is
//! offered to transports (`plugin::Signal`) for their own tasks.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

/// A coalescing, single-waiter wake-up flag for the tasks of one thread
/// (neither `Send` nor `Sync`, by design): a notification that arrives while
/// nobody waits is kept, once, for the next wait.
#[derive(Default)]
pub struct Signal {
    notified: Cell<bool>,
    waiter: Cell<Option<Waker>>,
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal")
            .field("notified", &self.notified.get())
            .finish_non_exhaustive()
    }
}

impl Signal {
    /// Sets the flag and wakes the waiter.
    pub fn notify(&self) {
        self.notified.set(true);
        if let Some(waker) = self.waiter.take() {
            waker.wake();
        }
    }

    /// Clears the flag (the caller is about to look at all of its work).
    pub fn clear(&self) {
        self.notified.set(false);
    }

    /// Whether the flag is set (without clearing it).
    pub fn is_set(&self) -> bool {
        self.notified.get()
    }

    /// Clears the flag if it is set and returns `Ready`; otherwise registers
    /// the task's waker and returns `Pending`.
    pub fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.notified.replace(false) {
            Poll::Ready(())
        } else {
            self.waiter.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }

    /// Waits until the flag is set, then clears it.
    pub async fn wait(&self) {
        poll_fn(|cx| self.poll_wait(cx)).await
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
