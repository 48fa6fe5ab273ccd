//! The workers of this shard: adding them, handing a run its next message,
//! stopping them and freeing their slots. The slot table itself and its
//! run states are `slots.rs`; this module tells the scheduler when a worker
//! was queued and sends what a freed slot leaves behind where it belongs.

use std::rc::Rc;
use std::sync::Arc;

use crate::envelope::{Delivery, ReplyTo, Undelivered};
use crate::exit::{Watcher, WatcherId};
use crate::slots::Step;
use crate::worker::Runnable;
use crate::{Address, Error, ExitReason, Message, WorkerInfo, WorkerRef};

use super::Shard;

impl Shard {
    /// Adds a worker to this shard. An active worker is queued at once so its
    /// `on_start` runs; an inactive one waits for [`Shard::activate`].
    pub(crate) fn insert_worker(
        &self,
        worker: Box<dyn Runnable>,
        name: Option<Arc<str>>,
        active: bool,
    ) -> WorkerRef {
        let r = self.state.borrow_mut().slots.insert(worker, name);
        if active {
            self.activate(r);
        }
        r
    }

    /// Lets a worker inserted inactive start running.
    pub(crate) fn activate(&self, r: WorkerRef) {
        if self.state.borrow_mut().slots.activate(r) {
            self.work.notify();
        }
    }

    /// Counts the messages a running worker just handled and gives it its
    /// next one, with the worker. When the mailbox is empty, the run's budget
    /// is spent (`more` is false) or the worker is being stopped, puts the
    /// worker back in its slot instead (queued again if it still has work)
    /// and returns `None`. One borrow per message.
    pub(crate) fn next_or_park<W: Runnable>(
        &self,
        me: &WorkerRef,
        handled: u64,
        more: bool,
        worker: Box<W>,
    ) -> Option<(Box<W>, Delivery)> {
        // By reference, and read field by field: the run's context holds
        // it, and a copy was read back whole right after the context was
        // made, across its fields' fresh narrower stores (a store-forwarding
        // stall per run).
        self.meter.handler_done(me);
        self.meter.handled(handled);
        let step = self.state.borrow_mut().slots.next_or_park(
            me,
            handled,
            more,
            worker,
            |w| -> Box<dyn Runnable> { w },
        );
        match step {
            Step::Handle {
                worker,
                delivery,
                len_before,
            } => {
                // Sends park only for a full mailbox (see `ready.rs`).
                if len_before >= self.node.mailbox_capacity {
                    self.room_made(*me);
                }
                self.meter.taken(me);
                Some((worker, delivery))
            }
            Step::Parked { requeued } => {
                if requeued {
                    self.work.notify();
                }
                None
            }
        }
    }

    /// Marks a worker of this shard to stop after its current message;
    /// `false` if it is not a live worker here.
    pub(crate) fn request_stop(&self, me: WorkerRef) -> bool {
        let marked = self.state.borrow_mut().slots.request_stop(me);
        if marked == Some(true) {
            self.work.notify();
        }
        marked.is_some()
    }

    /// Stops a worker after a panic; asks queued for it fail with the reason.
    pub(crate) fn worker_panicked(self: &Rc<Self>, me: WorkerRef, reason: String) {
        let worker = self.describe(me);
        tracing::error!(%worker, %reason, "worker panicked and was stopped");
        self.meter.panicked();
        let exit = ExitReason::Panicked(Arc::from(reason.as_str()));
        let why = || Error::WorkerFailed {
            worker: worker.clone(),
            reason: reason.clone(),
        };
        self.remove_worker(me, why, exit);
    }

    /// Frees a worker's slot and name; its queued messages are rejected
    /// with the error `why` makes, its watchers are told `exit`. The error
    /// is made only if something is rejected: most workers leave nothing
    /// queued, and a stopped worker's error is a `format!`.
    pub(crate) fn remove_worker(self: &Rc<Self>, me: WorkerRef, why: impl Fn() -> Error, exit: ExitReason) {
        let removed = self.state.borrow_mut().slots.remove(me);
        let Some(freed) = removed else {
            return;
        };
        self.meter.forget(me);
        let made = std::cell::OnceCell::new();
        let why = || made.get_or_init(&why).clone();
        self.fail_parked(me, why);
        for delivery in self.virtual_removed(me, freed.orphans) {
            self.reject(Undelivered { error: why(), delivery });
        }
        let notify = move |shard: &Rc<Shard>| {
            for watcher in freed.watchers {
                match watcher {
                    Watcher::Worker(watcher) => shard.notify_watcher(watcher, me, exit.clone()),
                    Watcher::Callback { notify, .. } => notify(me, exit.clone()),
                }
            }
        };
        match freed.name {
            Some(name) => self.unbind_then(name, me, notify),
            None => notify(self),
        }
    }

    /// Tells `watcher` that `who` terminated (a notice in its mailbox,
    /// handled by `Worker::on_terminated`). A watcher that is gone needs
    /// no notice.
    pub(crate) fn notify_watcher(self: &Rc<Self>, watcher: WorkerRef, who: WorkerRef, exit: ExitReason) {
        let notice = Delivery {
            msg: Message::default(),
            from: Some(who),
            reply: Some(ReplyTo::Notice(exit)),
        };
        if let Err(undelivered) = self.route(&Address::Worker(watcher), notice) {
            tracing::debug!(%watcher, error = %undelivered.error, "notice for a watcher that is gone");
        }
    }

    /// Adds `watcher`'s watch of `target`, a worker of this shard; gives
    /// the watcher back if `target` is gone.
    pub(crate) fn add_watch(&self, target: WorkerRef, watcher: Watcher) -> Result<(), Watcher> {
        self.state.borrow_mut().slots.watch(target, watcher)
    }

    /// Removes watcher `id`'s watch of `target`, a worker of this shard;
    /// `true` if it was there.
    pub(crate) fn remove_watch(&self, target: WorkerRef, id: WatcherId) -> bool {
        self.state.borrow_mut().slots.unwatch(target, id)
    }

    /// `name` if the worker has one, else its reference.
    pub(crate) fn describe(&self, r: WorkerRef) -> String {
        self.state.borrow().slots.describe(r)
    }

    /// The name of worker `r` of this shard, if it has one.
    pub(crate) fn name_of(&self, r: WorkerRef) -> Option<Arc<str>> {
        self.state.borrow().slots.name(r).cloned()
    }

    /// The workers of this shard.
    pub(crate) fn list_here(&self) -> Vec<WorkerInfo> {
        self.state.borrow().slots.list()
    }
}
