//! Virtual workers on their home shard: the shard carries out what its
//! registry (`virtual_workers/registry.rs`) decides — loads and saves
//! through the node's store thread, activations into ordinary slots,
//! deactivations as ordinary stops, reminder timers and the idle sweep.
//!
//! Nothing here is on the path of a plain named worker: a message reaches
//! this module only when it is addressed by [`Key`].

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::envelope::{Delivery, Undelivered};
use crate::virtual_workers::record::Reminder;
use crate::virtual_workers::registry::{Activation, AfterSave, Counts, Deactivation, Removed, Route};
use crate::virtual_workers::store_thread::Op;
use crate::virtual_workers::StoreError;
use crate::{Error, Key, Message, Result, WorkerRef};

use super::Shard;

/// Milliseconds since the Unix epoch (reminders' due times survive a
/// restart, so they are wall-clock times).
fn now_unix_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

impl Shard {
    fn is_stopping(&self) -> bool {
        self.node.stopping.load(Ordering::SeqCst)
    }

    /// A delivery for `key`, on the key's home shard.
    pub(super) fn deliver_key(&self, key: &Key, delivery: Delivery) -> Result<(), Undelivered> {
        let limit = self.node.mailbox_capacity;
        let stopping = self.is_stopping();
        let route = self.virtuals.borrow_mut().route(key, delivery, limit, stopping);
        match route {
            Route::Worker(r, delivery) => self.deliver_to(r, delivery),
            Route::Waits => Ok(()),
            Route::Load { key, evict } => {
                if let Some(victim) = evict {
                    self.request_stop(victim);
                }
                self.load_key(key);
                Ok(())
            }
            Route::Refused(undelivered) => Err(undelivered),
        }
    }

    /// Asks the store for `key`'s record; the answer activates it.
    fn load_key(&self, key: Key) {
        let Some(node) = self.node.virtuals.as_ref() else {
            return;
        };
        let then = Box::new(|s: &Rc<Shard>, key: Key, record: Result<Option<Vec<u8>>, StoreError>| {
            let activation = record
                .map_err(|e| e.to_string())
                .and_then(|record| s.virtuals.borrow_mut().loaded(&key, record));
            s.activate_virtual(key, activation);
        });
        node.store.submit(self.index, Op::Load { key, then });
    }

    /// Builds and starts `key`'s worker, handing it the messages that
    /// waited; or refuses them with why it could not be activated.
    fn activate_virtual(self: &Rc<Self>, key: Key, activation: Result<Activation, String>) {
        let built = activation.and_then(|a| match self.node.virtuals.as_ref() {
            Some(node) => node.kinds[a.kind].factory.build(&a.key, a.state.as_deref()),
            None => Err("this node hosts no virtual workers".to_owned()),
        });
        let worker = match built {
            Ok(worker) => worker,
            Err(reason) => {
                let failed = self.virtuals.borrow_mut().failed(&key);
                if failed.first {
                    tracing::error!(%key, %reason, "virtual worker not activated");
                } else {
                    // Counted; told once (a corrupt record with a reminder
                    // fails again at each scan of a shared store).
                    tracing::debug!(%key, %reason, "virtual worker not activated, again");
                }
                let error = Error::StateStore(reason);
                for delivery in failed.pending {
                    self.reject(Undelivered { error: error.clone(), delivery });
                }
                return;
            }
        };
        let r = self.state.borrow_mut().slots.insert(worker, None);
        let (pending, to_arm) = self.virtuals.borrow_mut().activated(&key, r);
        // Queued now, so that the scheduler hears of it: its `on_activate`
        // runs before the messages that waited.
        self.activate(r);
        {
            let mut state = self.state.borrow_mut();
            for delivery in pending {
                // A new slot takes every message that waited, past the
                // capacity if need be: they were accepted already.
                if let Err(undelivered) = state.slots.push(r, delivery, usize::MAX) {
                    drop(state);
                    self.reject(undelivered);
                    state = self.state.borrow_mut();
                }
            }
        }
        for reminder in to_arm {
            self.arm_reminder(key.clone(), reminder);
        }
    }

    /// A virtual worker ran `on_deactivate`; `state` is its encoded state.
    /// Its record goes to the store.
    pub(crate) fn virtual_stopped(&self, me: WorkerRef, state: Result<Vec<u8>, String>) {
        let state = match state {
            Ok(state) => state,
            Err(reason) => {
                // Its last saved state stays; messages that wait reload it.
                tracing::error!(worker = %me, %reason, "state not saved: it cannot be encoded");
                return;
            }
        };
        let stopped = self.virtuals.borrow_mut().stopped(me, &state);
        let (Some((key, record, next_due_ms)), Some(node)) = (stopped, self.node.virtuals.as_ref()) else {
            return;
        };
        let then = Box::new(|s: &Rc<Shard>, key, record, saved| s.virtual_saved(key, record, saved));
        node.store.submit(self.index, Op::Save { key, record, next_due_ms, then });
    }

    fn virtual_saved(self: &Rc<Self>, key: Key, record: Vec<u8>, saved: Result<(), StoreError>) {
        if let Err(error) = saved {
            tracing::error!(%key, %error, "the state of a deactivated worker was not saved");
        }
        let after = self.virtuals.borrow_mut().saved(&key, record, self.is_stopping());
        match after {
            AfterSave::Done | AfterSave::Unknown => {}
            AfterSave::Reactivate(record) => {
                let activation = self.virtuals.borrow_mut().loaded(&key, Some(record));
                self.activate_virtual(key, activation);
            }
            AfterSave::Stopping(pending) => self.refuse_stopping(pending),
        }
    }

    fn refuse_stopping(&self, pending: Vec<Delivery>) {
        for delivery in pending {
            self.reject(Undelivered { error: Error::NodeStopped, delivery });
        }
    }

    /// A slot of this shard was freed with `orphans` in its mailbox: those
    /// of a virtual worker wait for its next activation; the others are
    /// returned.
    pub(super) fn virtual_removed(&self, me: WorkerRef, orphans: Vec<Delivery>) -> Vec<Delivery> {
        if self.node.virtuals.is_none() {
            return orphans;
        }
        let removed = self.virtuals.borrow_mut().removed(me, orphans, self.is_stopping());
        match removed {
            Removed::NotVirtual(orphans) | Removed::Stopping(orphans) => orphans,
            Removed::Kept | Removed::Gone => Vec::new(),
            Removed::Reload(key) => {
                self.load_key(key);
                Vec::new()
            }
        }
    }

    /// Deactivates `key`'s worker if it is active here (once it has
    /// handled the messages that waited for its activation).
    pub(crate) fn virtual_deactivate_key(&self, key: &Key) -> bool {
        let deactivation = self.virtuals.borrow_mut().deactivate_key(key);
        match deactivation {
            Deactivation::Stop(victim) => self.request_stop(victim),
            Deactivation::Deferred => true,
            Deactivation::NotActive => false,
        }
    }

    /// Virtual worker `me` handled a message: whether it still owes
    /// messages that waited for its activation. A deactivation that waited
    /// for it to handle them begins now.
    pub(crate) fn virtual_handled_owed(&self, me: WorkerRef) -> bool {
        let (owing, stop) = self.virtuals.borrow_mut().handled_owed(me);
        if let Some(me) = stop {
            self.request_stop(me);
        }
        owing
    }

    /// Deactivates virtual worker `me` after its current message.
    pub(crate) fn virtual_deactivate(&self, me: WorkerRef) -> Result<()> {
        let deactivating = self.virtuals.borrow_mut().deactivate_worker(me);
        match deactivating {
            Some(true) => {
                self.request_stop(me);
                Ok(())
            }
            Some(false) => Ok(()),
            None => Err(not_virtual(me)),
        }
    }

    /// The key of virtual worker `me`.
    pub(crate) fn virtual_key(&self, me: WorkerRef) -> Option<Key> {
        self.virtuals.borrow().key_of(me).cloned()
    }

    /// The active keys of kind `kind` on this shard.
    pub(crate) fn virtual_active_keys(&self, kind: &str) -> Vec<Key> {
        self.virtuals.borrow().active_keys(kind)
    }

    /// This shard's counters, and how many virtual workers are active.
    pub(crate) fn virtual_counts(&self) -> (Counts, usize) {
        let registry = self.virtuals.borrow();
        (registry.counts, registry.active_count())
    }

    /// The active worker of `key` (on its home shard).
    pub(crate) fn virtual_worker(&self, key: &Key) -> Option<WorkerRef> {
        self.virtuals.borrow().active_worker(key)
    }

    /// Writes `me`'s record now, with `state`; returns once it is stored.
    pub(crate) async fn virtual_checkpoint(&self, me: WorkerRef, state: Vec<u8>) -> Result<()> {
        let checkpoint = self.virtuals.borrow().checkpoint(me, &state);
        let Some((key, record, next_due_ms)) = checkpoint else {
            return Err(not_virtual(me));
        };
        let Some(node) = self.node.virtuals.as_ref() else {
            return Err(not_virtual(me));
        };
        let (tx, rx) = flume::bounded(1);
        let then = Box::new(move |_: &Rc<Shard>, _, _, saved: Result<(), StoreError>| {
            let _ = tx.send(saved);
        });
        node.store.submit(self.index, Op::Save { key, record, next_due_ms, then });
        match rx.recv_async().await {
            Ok(saved) => saved.map_err(|e| Error::StateStore(e.0)),
            Err(_) => Err(Error::NodeStopped),
        }
    }

    /// Adds a reminder to virtual worker `me`: `msg` comes to its key after
    /// `after`, activating it if need be.
    pub(crate) fn virtual_remind(self: &Rc<Self>, me: WorkerRef, after: Duration, msg: Message) -> Result<()> {
        let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        let reminder = Reminder {
            id: self.next_reminder_id(),
            due_ms: now_unix_ms().saturating_add(after_ms),
            msg,
        };
        let key = self.virtuals.borrow_mut().remind(me, reminder.clone());
        let key = key.ok_or_else(|| not_virtual(me))?;
        self.arm_reminder(key, reminder);
        Ok(())
    }

    /// A reminder id unique on this node: the shard in the top bits, then
    /// a counter that starts from the clock (unique across restarts too).
    fn next_reminder_id(&self) -> u64 {
        let next = self.reminder_ids.get().max(now_unix_ms() << 10) + 1;
        self.reminder_ids.set(next);
        (u64::from(self.shard_id()) << 56) | (next & ((1 << 56) - 1))
    }

    /// Whether this node delivers `key`'s reminders: with a store of its
    /// own, those of every key it holds; with a store the zone shares, only
    /// those of the keys whose home node it is (the others' homes find them
    /// in the store).
    fn reminds_here(&self, key: &Key) -> bool {
        let shared = self.node.virtuals.as_ref().is_some_and(|v| v.shared);
        !shared || self.home_node(key).is_none()
    }

    /// Delivers `reminder` to `key` when it is due, if this node still
    /// delivers the key's reminders then; else leaves it to the key's new
    /// home, which finds it in the shared store: the key, if active here,
    /// is deactivated, which saves its record with the reminder.
    fn arm_reminder(self: &Rc<Self>, key: Key, reminder: Reminder) {
        let wait = Duration::from_millis(reminder.due_ms.saturating_sub(now_unix_ms()));
        let shard = self.clone();
        glommio::spawn_local(async move {
            shard.sleep_for(wait).await;
            if shard.closed.get() {
                return;
            }
            if !shard.reminds_here(&key) {
                shard.virtuals.borrow_mut().disarm(&key, reminder.id);
                shard.virtual_deactivate_key(&key);
                return;
            }
            let delivery = Delivery { msg: reminder.msg, from: None, reply: None };
            let delivered = shard.deliver_key(&key, delivery);
            shard.virtuals.borrow_mut().reminder_due(&key, reminder.id);
            if let Err(undelivered) = delivered {
                shard.reject(undelivered);
            }
        })
        .detach();
    }

    /// Activates `key` at `due_ms` (a reminder in its stored record is
    /// due; `reminder_scan.rs` found it), if this node still delivers its
    /// reminders then: its reminders are then armed, and those overdue
    /// come at once. A wake already planned for that time is not planned
    /// twice.
    pub(crate) fn wake_key_at(self: &Rc<Self>, key: Key, due_ms: u64) {
        if !self.virtuals.borrow_mut().plan_wake(&key, due_ms) {
            return;
        }
        let wait = Duration::from_millis(due_ms.saturating_sub(now_unix_ms()));
        let shard = self.clone();
        glommio::spawn_local(async move {
            shard.sleep_for(wait).await;
            if shard.closed.get() {
                return;
            }
            let refused = shard.is_stopping() || !shard.reminds_here(&key);
            let woken = shard.virtuals.borrow_mut().wake(&key, due_ms, refused);
            if let Some(evict) = woken {
                if let Some(victim) = evict {
                    shard.request_stop(victim);
                }
                shard.load_key(key);
            }
        })
        .detach();
    }

    /// Looks for the stored keys whose reminders this node delivers
    /// (`reminder_scan.rs`): once, now, in a store of the node's own; every
    /// `reminder_scan` period, for those due before the scan after next, in
    /// a store the zone shares. Runs on one shard of the node.
    pub(crate) async fn scan_reminders(self: Rc<Self>) {
        let Some(node) = self.node.virtuals.clone() else {
            return;
        };
        let zone = self.node.zone_kinds.clone();
        if !node.shared {
            node.scan_due(u64::MAX, zone);
            return;
        }
        let period = node.reminder_scan;
        let ahead = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).saturating_mul(2);
        loop {
            // First one period after the start: links to the zone come up
            // meanwhile, so the node does not take itself for every key's home.
            self.sleep_for(period).await;
            if self.closed.get() {
                return;
            }
            node.scan_due(now_unix_ms().saturating_add(ahead), zone.clone());
        }
    }

    /// With a store the zone shares, deactivates the active keys whose home
    /// is now another node (one joined, or views changed): their records,
    /// reminders included, are saved for the new home.
    fn hand_off_moved_keys(&self) {
        let active = self.virtuals.borrow().all_active_keys();
        for key in active {
            if !self.reminds_here(&key) {
                self.virtual_deactivate_key(&key);
            }
        }
    }

    /// Deactivates idle virtual workers, every tick, until the shard stops;
    /// and, with a store the zone shares, the keys that moved to another
    /// node, each time the zone's membership changed.
    pub(crate) async fn sweep_virtuals(self: Rc<Self>) {
        let Some((tick, shared)) = self.node.virtuals.as_ref().map(|v| (v.tick, v.shared)) else {
            return;
        };
        let started = std::time::Instant::now();
        let mut zone_version = self.node.zone_kinds.version();
        while !self.closed.get() {
            self.sleep_for(tick).await;
            let version = self.node.zone_kinds.version();
            if shared && version != zone_version {
                zone_version = version;
                self.hand_off_moved_keys();
            }
            let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let victims = {
                let mut registry = self.virtuals.borrow_mut();
                registry.set_clock(now);
                let state = self.state.borrow();
                registry.sweep(|w| state.slots.mailbox_len(w).is_some_and(|n| n > 0))
            };
            for victim in victims {
                self.request_stop(victim);
            }
        }
    }
}

fn not_virtual(me: WorkerRef) -> Error {
    Error::NoSuchWorker(format!("{me} is not a virtual worker"))
}
