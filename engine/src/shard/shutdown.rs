//! Stopping a shard: idle workers run `on_stop`, the remote router closes,
//! and everything the shard still holds is freed.

use std::rc::Rc;

use crate::worker::drop_contained;

use super::{Shard, State};

impl Shard {
    /// Asks the shard to stop.
    pub(crate) fn request_shutdown(&self) {
        self.closed.set(true);
        self.asks.wake_sweeper();
        self.work.notify();
        self.stop.notify();
    }

    /// Whether the shard has been asked to stop.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Waits until the shard is asked to stop, then runs `on_stop` of every
    /// idle worker and shuts the remote router down.
    pub(crate) async fn until_stopped(self: &Rc<Self>) {
        self.stop.wait().await;
        let idle = self.state.borrow_mut().slots.take_idle();
        for (me, worker) in idle {
            worker.shut_down(self.clone(), me).await;
        }
        let router = self.remote.get().cloned();
        if let Some(router) = router {
            router.shutdown().await;
        }
        // Handlers still suspended end here (their workers do not run
        // `on_stop`, as they are in the middle of a message).
        for run in self.suspended.take_all() {
            drop_contained(run, "a suspended run");
        }
        // Free every worker and queued message now: glommio does not drop
        // tasks still pending when its executor ends, and a handler suspended
        // at shutdown keeps this shard alive through its `Rc`.
        let state = std::mem::replace(&mut *self.state.borrow_mut(), State::new(self.shard_id()));
        drop_contained(state, "a worker left at shutdown");
    }
}
