//! Stopping a shard: its workers run `on_stop`, newest first, each within
//! the node's stop deadline, while the scheduler and the deadline wheel
//! still run (an `on_stop` may sleep, ask, be answered); then the remote
//! router and the plugins' services close, the shard's tasks end, and
//! everything the shard still holds is freed.

use std::rc::Rc;
use std::time::Instant;

use crate::worker::{drop_contained, Runnable};
use crate::WorkerRef;

use super::scheduler::FULL_RING_RETRY;
use super::{Shard, State};

impl Shard {
    /// Asks the shard to stop.
    pub(crate) fn request_shutdown(&self) {
        self.stop.notify();
    }

    /// Whether the shard's tasks are to end.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Waits until the shard is asked to stop, stops its workers, shuts the
    /// remote router down and ends the shard's tasks.
    pub(crate) async fn until_stopped(self: &Rc<Self>) {
        self.stop.wait().await;
        // Workers that were running come back to their slots meanwhile, and
        // an `on_stop` may start workers: go round until none is left.
        loop {
            let order = self.state.borrow().slots.stop_order();
            let mut stopped = 0;
            for me in order {
                let worker = self.state.borrow_mut().slots.take_to_stop(me);
                if let Some(worker) = worker {
                    self.stop_in_time(worker, me).await;
                    stopped += 1;
                }
            }
            if stopped == 0 {
                break;
            }
        }
        let router = self.remote.get().cloned();
        if let Some(router) = router {
            router.shutdown().await;
        }
        let services = std::mem::take(&mut *self.services.borrow_mut());
        for service in services {
            service.shutdown().await;
        }
        self.closed.set(true);
        self.asks.wake_sweeper();
        self.work.notify();
        // Handlers still suspended end here (their workers do not run
        // `on_stop`, as they are in the middle of a message).
        for run in self.suspended.take_all() {
            drop_contained(run, "a suspended run");
        }
        // Senders still waiting for room learn that the node stopped.
        self.waiting.clear();
        // Free every worker and queued message now: glommio does not drop
        // tasks still pending when its executor ends, and a handler suspended
        // at shutdown keeps this shard alive through its `Rc`.
        let state = std::mem::replace(&mut *self.state.borrow_mut(), State::new(self.shard_id()));
        drop_contained(state, "a worker left at shutdown");
        // Nothing reads this shard's rings from now on: what other shards
        // put there, now or later, is dropped, and its senders learn that
        // the node stopped (see `link.rs`).
        self.inbound.close();
        self.ship_remaining().await;
    }

    /// Ships what the outboxes still hold (answers from `on_stop`s, say) to
    /// the shards still running, retrying while a ring is full, for at most
    /// the node's stop deadline. A shard that stopped takes nothing: its
    /// packets are dropped.
    async fn ship_remaining(&self) {
        let deadline = Instant::now() + self.node.stop_timeout;
        while !self.flush_outboxes() && Instant::now() < deadline {
            glommio::timer::sleep(FULL_RING_RETRY).await;
        }
    }

    /// Stops `worker` (`on_stop`, then its slot is freed), giving up after
    /// the node's stop deadline.
    async fn stop_in_time(self: &Rc<Self>, worker: Box<dyn Runnable>, me: WorkerRef) {
        let deadline = self.node.stop_timeout;
        let mut run = worker.shut_down(self.clone(), me);
        let stop = async {
            (&mut run).await;
            true
        };
        // The timer is made only if `on_stop` does not finish at once.
        let late = async {
            glommio::timer::sleep(deadline).await;
            false
        };
        if !futures_lite::future::or(stop, late).await {
            tracing::warn!(worker = %self.describe(me), ?deadline, "on_stop did not finish in time");
            drop_contained(run, me);
            self.remove_worker(me, || crate::Error::NodeStopped, crate::ExitReason::Stopped);
        }
    }
}
