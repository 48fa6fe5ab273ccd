//! A shard's worker slots, their mailboxes, the run queue, and each slot's
//! run state.
//!
//! A worker is a slot of a `slab`: its boxed state (while it is not
//! running), a 12-byte mailbox into the shard's shared pool, a generation
//! and a few flags. The run queue holds the slots that have work. Each slot
//! moves through one small state machine:
//!
//! ```text
//!            message, activate, stop request
//!   Idle ───────────────────────────────────▶ Queued
//!    ▲                                          │ taken by the scheduler
//!    │ parked, mailbox empty                    ▼
//!    └──────────────────────────────────────── Running
//!            parked with work left, or stopping: back to Queued
//! ```
//!
//! A slot is in the run queue exactly while it is `Queued` (stale queue
//! entries of freed slots are skipped), so a worker is never queued twice
//! and never run twice at once. `stopping` is a flag on top: a stopping
//! slot takes no more messages and is next run to stop, not to handle.
//!
//! This module is plain data (no glommio, no `RefCell`): the shard keeps it
//! behind one borrow and tells its scheduler when a method says a slot was
//! queued. It is generic over the worker it holds so that its tests need no
//! worker type.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use slab::Slab;

use crate::envelope::{Delivery, Undelivered};
use crate::exit::{Watcher, WatcherId};
use crate::mailbox::{Mailbox, MailboxPool};
use crate::{Error, WorkerInfo, WorkerRef};

/// Where a slot stands with the scheduler.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RunState {
    /// In its slot, nothing to do.
    Idle,
    /// In its slot and in the run queue.
    Queued,
    /// Taken out by a run.
    Running,
}

struct Slot<T> {
    /// The worker, while it is not running.
    worker: Option<T>,
    mailbox: Mailbox,
    generation: u32,
    handled: u64,
    run: RunState,
    started: bool,
    stopping: bool,
    /// Whether `Slots::names` has an entry for this slot.
    named: bool,
    /// Whether `Slots::watchers` has an entry for this slot.
    watched: bool,
}

// The sizes docs/architecture.md quotes: a slot of 48 bytes with a
// 12-byte mailbox.
const _: () = assert!(std::mem::size_of::<Slot<Box<dyn crate::worker::Runnable>>>() == 48);
const _: () = assert!(std::mem::size_of::<Mailbox>() == 12);

/// What the scheduler does next with a worker taken from the run queue.
pub(crate) enum Next<T> {
    /// Handle its messages (`first`: run `on_start` before).
    Run {
        worker: T,
        me: WorkerRef,
        first: bool,
    },
    /// Run its `on_stop`, then free its slot.
    Stop { worker: T, me: WorkerRef },
}

/// A delivery accepted into a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// The worker was idle and is queued now: the scheduler must be told.
    pub queued: bool,
    /// The mailbox's length with the new delivery in it.
    pub len: usize,
}

/// What a running worker does after a message.
pub(crate) enum Step<B> {
    /// Handle this delivery next; `len_before` is the mailbox's length
    /// before it was taken out (room was made if that was at capacity).
    Handle {
        worker: B,
        delivery: Delivery,
        len_before: usize,
    },
    /// The run ends: the worker is back in its slot (or was dropped with
    /// its freed slot). `requeued`: it is queued again, because it has work
    /// left or is stopping.
    Parked { requeued: bool },
}

/// What a freed slot leaves behind.
pub(crate) struct Freed {
    /// The deliveries still queued for the worker.
    pub orphans: Vec<Delivery>,
    /// Its name, if it had one.
    pub name: Option<Arc<str>>,
    /// Who watched it.
    pub watchers: Vec<Watcher>,
}

/// The worker slots of one shard.
pub(crate) struct Slots<T> {
    shard: u16,
    slots: Slab<Slot<T>>,
    pool: MailboxPool,
    run_queue: VecDeque<u64>,
    /// Names of the named workers of this shard, by slot.
    names: HashMap<u32, Arc<str>>,
    /// Who watches the watched workers of this shard, by slot: an
    /// unwatched worker has no entry and pays nothing.
    watchers: HashMap<u32, Vec<Watcher>>,
    next_generation: u32,
    /// The deepest mailbox seen, after a push.
    depth_max: usize,
}

impl<T> Slots<T> {
    /// The empty table of shard `shard`.
    pub(crate) fn new(shard: u16) -> Self {
        Slots {
            shard,
            slots: Slab::new(),
            pool: MailboxPool::default(),
            run_queue: VecDeque::new(),
            names: HashMap::new(),
            watchers: HashMap::new(),
            next_generation: 0,
            depth_max: 0,
        }
    }

    fn worker_ref(&self, index: u32, generation: u32) -> WorkerRef {
        WorkerRef {
            index,
            generation,
            shard: self.shard,
            node: 0,
        }
    }

    /// Adds an idle, not yet queued worker (see [`Self::activate`]).
    pub(crate) fn insert(&mut self, worker: T, name: Option<Arc<str>>) -> WorkerRef {
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let key = self.slots.insert(Slot {
            worker: Some(worker),
            mailbox: Mailbox::new(),
            generation,
            handled: 0,
            run: RunState::Idle,
            started: false,
            stopping: false,
            named: name.is_some(),
            watched: false,
        });
        let index = u32::try_from(key).expect("more than 2^32 workers on one shard");
        if let Some(name) = name {
            self.names.insert(index, name);
        }
        self.worker_ref(index, generation)
    }

    /// Queues an idle worker, so that its `on_start` runs. Returns whether
    /// it was queued (the scheduler must be told).
    #[must_use]
    pub(crate) fn activate(&mut self, r: WorkerRef) -> bool {
        match self.slots.get_mut(r.index as usize) {
            Some(slot) if slot.generation == r.generation && slot.run == RunState::Idle => {
                slot.run = RunState::Queued;
                self.run_queue.push_back(r.to_bits());
                true
            }
            _ => false,
        }
    }

    /// Appends `delivery` to worker `r`'s mailbox, which holds at most
    /// `capacity`. Returns whether the worker was queued (the scheduler must
    /// be told) and the mailbox's new length, or the delivery with why it
    /// was refused.
    #[inline(always)]
    pub(crate) fn push(
        &mut self,
        r: WorkerRef,
        delivery: Delivery,
        capacity: usize,
    ) -> Result<Pushed, Undelivered> {
        let slot = match self.slots.get_mut(r.index as usize) {
            Some(slot) if slot.generation == r.generation && !slot.stopping => slot,
            _ => {
                let error = Error::NoSuchWorker(r.to_string());
                return Err(Undelivered { error, delivery });
            }
        };
        if slot.mailbox.len() >= capacity {
            let error = Error::MailboxFull(describe(&self.names, r));
            return Err(Undelivered { error, delivery });
        }
        self.pool.push(&mut slot.mailbox, delivery);
        let len = slot.mailbox.len();
        self.depth_max = self.depth_max.max(len);
        if slot.run != RunState::Idle {
            return Ok(Pushed { queued: false, len });
        }
        slot.run = RunState::Queued;
        self.run_queue.push_back(r.to_bits());
        Ok(Pushed { queued: true, len })
    }

    /// Takes the next queued worker out of its slot.
    pub(crate) fn next_run(&mut self) -> Option<Next<T>> {
        loop {
            let me = WorkerRef::from_bits(self.run_queue.pop_front()?, self.shard.into());
            let Some(slot) = self.slots.get_mut(me.index as usize) else {
                continue;
            };
            if slot.generation != me.generation || slot.run != RunState::Queued {
                continue;
            }
            let Some(worker) = slot.worker.take() else {
                continue;
            };
            slot.run = RunState::Running;
            if slot.stopping {
                return Some(Next::Stop { worker, me });
            }
            let first = !std::mem::replace(&mut slot.started, true);
            return Some(Next::Run { worker, me, first });
        }
    }

    /// Counts the `handled` messages of running worker `me` and gives it its
    /// next delivery. When its mailbox is empty, `more` is false (the run's
    /// budget is spent) or it is stopping, puts the worker back instead
    /// (`park` turns the run's worker into the slot's).
    pub(crate) fn next_or_park<B>(
        &mut self,
        me: &WorkerRef,
        handled: u64,
        more: bool,
        worker: B,
        park: impl FnOnce(B) -> T,
    ) -> Step<B> {
        let Some(slot) = self.slots.get_mut(me.index as usize) else {
            return Step::Parked { requeued: false };
        };
        slot.handled += handled;
        if more && !slot.stopping {
            let len_before = slot.mailbox.len();
            if let Some(delivery) = self.pool.pop(&mut slot.mailbox) {
                return Step::Handle {
                    worker,
                    delivery,
                    len_before,
                };
            }
        }
        slot.worker = Some(park(worker));
        let requeued = slot.stopping || !slot.mailbox.is_empty();
        if requeued {
            slot.run = RunState::Queued;
            self.run_queue.push_back(me.to_bits());
        } else {
            slot.run = RunState::Idle;
        }
        Step::Parked { requeued }
    }

    /// Marks worker `me` to stop after its current message: `None` if it is
    /// not a live worker of this shard (or stops already), else whether it
    /// was queued (the scheduler must be told).
    pub(crate) fn request_stop(&mut self, me: WorkerRef) -> Option<bool> {
        let slot = self.slots.get_mut(me.index as usize)?;
        if slot.generation != me.generation || slot.stopping {
            return None;
        }
        slot.stopping = true;
        if slot.run != RunState::Idle {
            return Some(false);
        }
        slot.run = RunState::Queued;
        self.run_queue.push_back(me.to_bits());
        Some(true)
    }

    /// Adds `watcher` to the watchers of worker `target` (a worker once per
    /// pair); gives it back if `target` is not a live worker of this shard.
    pub(crate) fn watch(&mut self, target: WorkerRef, watcher: Watcher) -> Result<(), Watcher> {
        let Some(slot) = self.slots.get_mut(target.index as usize) else {
            return Err(watcher);
        };
        if slot.generation != target.generation {
            return Err(watcher);
        }
        slot.watched = true;
        let watchers = self.watchers.entry(target.index).or_default();
        let id = watcher.id();
        if !watchers.iter().any(|w| w.id() == id) {
            watchers.push(watcher);
        }
        Ok(())
    }

    /// Removes watcher `id`'s watch of `target`; `true` if it was there (so
    /// `target`'s end will not be told to it).
    pub(crate) fn unwatch(&mut self, target: WorkerRef, id: WatcherId) -> bool {
        let Some(slot) = self.slots.get_mut(target.index as usize) else {
            return false;
        };
        if slot.generation != target.generation || !slot.watched {
            return false;
        }
        let Some(watchers) = self.watchers.get_mut(&target.index) else {
            return false;
        };
        let before = watchers.len();
        watchers.retain(|w| w.id() != id);
        let removed = watchers.len() < before;
        if watchers.is_empty() {
            self.watchers.remove(&target.index);
            slot.watched = false;
        }
        removed
    }

    /// Frees worker `me`'s slot: returns what it leaves behind, or `None`
    /// if the slot is not `me`'s.
    pub(crate) fn remove(&mut self, me: WorkerRef) -> Option<Freed> {
        let index = me.index as usize;
        if self
            .slots
            .get(index)
            .is_none_or(|s| s.generation != me.generation)
        {
            return None;
        }
        let mut slot = self.slots.remove(index);
        let mut orphans = Vec::new();
        while let Some(delivery) = self.pool.pop(&mut slot.mailbox) {
            orphans.push(delivery);
        }
        let name = if slot.named {
            self.names.remove(&me.index)
        } else {
            None
        };
        let watchers = if slot.watched {
            self.watchers.remove(&me.index).unwrap_or_default()
        } else {
            Vec::new()
        };
        Some(Freed {
            orphans,
            name,
            watchers,
        })
    }

    /// Workers in the table.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Entries on the run queue (a worker removed while queued leaves its
    /// entry until the queue reaches it).
    pub(crate) fn queued(&self) -> usize {
        self.run_queue.len()
    }

    /// The deepest any mailbox of this table has been, after a push.
    pub(crate) fn depth_max(&self) -> usize {
        self.depth_max
    }

    /// How many deliveries wait in worker `r`'s mailbox; `None` if `r` is
    /// not a live worker here.
    pub(crate) fn mailbox_len(&self, r: WorkerRef) -> Option<usize> {
        let slot = self.slots.get(r.index as usize)?;
        (slot.generation == r.generation).then(|| slot.mailbox.len())
    }

    /// The name of worker `r` of this shard, if it has one.
    pub(crate) fn name(&self, r: WorkerRef) -> Option<&Arc<str>> {
        self.names.get(&r.index)
    }

    /// `name` if worker `r` has one, else its reference.
    pub(crate) fn describe(&self, r: WorkerRef) -> String {
        describe(&self.names, r)
    }

    /// The live (not stopping) workers.
    pub(crate) fn list(&self) -> Vec<WorkerInfo> {
        self.slots
            .iter()
            .filter(|(_, slot)| !slot.stopping)
            .map(|(index, slot)| {
                let index = index as u32;
                WorkerInfo {
                    id: self.worker_ref(index, slot.generation),
                    name: self.names.get(&index).map(|n| n.to_string()),
                    shard: usize::from(self.shard),
                    mailbox_len: slot.mailbox.len(),
                    handled: slot.handled,
                }
            })
            .collect()
    }

    /// The live (not stopping) workers, newest first: the order in which
    /// a stopping shard stops them.
    pub(crate) fn stop_order(&self) -> Vec<WorkerRef> {
        let mut live: Vec<WorkerRef> = self
            .slots
            .iter()
            .filter(|(_, slot)| !slot.stopping)
            .map(|(index, slot)| self.worker_ref(index as u32, slot.generation))
            .collect();
        // Generations grow with each insert (they wrap only after 2^32).
        live.sort_unstable_by_key(|r| std::cmp::Reverse(r.generation));
        live
    }

    /// Takes worker `me` out of its slot to stop it, if it is in its slot
    /// (not running) and not stopping yet; it takes no more messages.
    pub(crate) fn take_to_stop(&mut self, me: WorkerRef) -> Option<T> {
        let slot = self.slots.get_mut(me.index as usize)?;
        if slot.generation != me.generation || slot.stopping {
            return None;
        }
        let worker = slot.worker.take()?;
        slot.stopping = true;
        slot.run = RunState::Running;
        Some(worker)
    }

    /// Releases the mailbox pool's memory after a burst (see
    /// [`MailboxPool::trim`]).
    pub(crate) fn trim(&mut self) {
        self.pool.trim();
    }
}

fn describe(names: &HashMap<u32, Arc<str>>, r: WorkerRef) -> String {
    match names.get(&r.index) {
        Some(name) => name.to_string(),
        None => r.to_string(),
    }
}

#[cfg(test)]
mod tests {
    //! The run-state machine alone, with a `&str` for a worker.

    use super::*;
    use crate::Message;

    type Table = Slots<&'static str>;

    fn delivery(text: &'static str) -> Delivery {
        Delivery {
            msg: Message::from(text),
            from: None,
            reply: None,
        }
    }

    fn text(d: &Delivery) -> String {
        d.msg.to_string()
    }

    /// Takes the next run; panics unless it is a `Run`.
    fn run(slots: &mut Table) -> (&'static str, WorkerRef, bool) {
        match slots.next_run() {
            Some(Next::Run { worker, me, first }) => (worker, me, first),
            Some(Next::Stop { .. }) => panic!("a stop, not a run"),
            None => panic!("nothing queued"),
        }
    }

    fn step(slots: &mut Table, me: WorkerRef, handled: u64, more: bool) -> Step<&'static str> {
        slots.next_or_park(&me, handled, more, "w", |w| w)
    }

    #[test]
    fn a_message_queues_an_idle_worker_once() {
        let mut slots = Table::new(3);
        let w = slots.insert("w", None);
        assert_eq!(w.shard(), 3);
        assert!(slots.next_run().is_none(), "inserted inactive");
        assert!(slots.push(w, delivery("a"), 10).unwrap().queued, "Idle -> Queued");
        assert!(!slots.push(w, delivery("b"), 10).unwrap().queued, "already queued");
        let (_, me, first) = run(&mut slots);
        assert_eq!((me, first), (w, true));
        assert!(slots.next_run().is_none(), "queued once");
        // While it runs, messages are kept but do not queue it.
        assert!(!slots.push(w, delivery("c"), 10).unwrap().queued);
        let Step::Handle { delivery: d, .. } = step(&mut slots, me, 0, true) else {
            panic!("a message waits");
        };
        assert_eq!(text(&d), "a");
        assert!(matches!(step(&mut slots, me, 1, true), Step::Handle { delivery: d, .. } if text(&d) == "b"));
        assert!(matches!(step(&mut slots, me, 1, true), Step::Handle { delivery: d, .. } if text(&d) == "c"));
        assert!(matches!(
            step(&mut slots, me, 1, true),
            Step::Parked { requeued: false }
        ));
        assert!(slots.next_run().is_none(), "Running -> Idle");
        assert_eq!(slots.list()[0].handled, 3);
        // The next message starts a run that is not the first.
        assert!(slots.push(w, delivery("d"), 10).unwrap().queued);
        assert!(!run(&mut slots).2);
    }

    #[test]
    fn mailbox_len_counts_the_queue_of_a_live_worker_only() {
        let mut slots = Table::new(0);
        let w = slots.insert("w", None);
        assert_eq!(slots.mailbox_len(w), Some(0));
        assert!(slots.push(w, delivery("a"), 10).is_ok());
        assert_eq!(slots.mailbox_len(w), Some(1));
        let stale = WorkerRef {
            generation: w.generation.wrapping_add(1),
            ..w
        };
        assert_eq!(slots.mailbox_len(stale), None);
        assert!(slots.remove(w).is_some());
        assert_eq!(slots.mailbox_len(w), None);
    }

    #[test]
    fn a_spent_budget_requeues_a_worker_with_work_left() {
        let mut slots = Table::new(0);
        let w = slots.insert("w", None);
        assert!(slots.push(w, delivery("a"), 10).unwrap().queued);
        assert!(!slots.push(w, delivery("b"), 10).unwrap().queued);
        let (_, me, _) = run(&mut slots);
        assert!(matches!(step(&mut slots, me, 0, true), Step::Handle { .. }));
        assert!(matches!(
            step(&mut slots, me, 1, false),
            Step::Parked { requeued: true }
        ));
        let (_, again, first) = run(&mut slots);
        assert_eq!((again, first), (w, false));
        assert!(matches!(step(&mut slots, me, 0, true), Step::Handle { delivery: d, .. } if text(&d) == "b"));
    }

    #[test]
    fn activate_queues_only_an_idle_worker() {
        let mut slots = Table::new(0);
        let w = slots.insert("w", None);
        assert!(slots.activate(w));
        assert!(!slots.activate(w), "queued already");
        run(&mut slots);
        assert!(!slots.activate(w), "running");
    }

    #[test]
    fn push_and_step_report_the_mailbox_length_around_the_message() {
        let mut slots = Table::new(0);
        let w = slots.insert("w", None);
        assert_eq!(slots.push(w, delivery("a"), 10).unwrap(), Pushed { queued: true, len: 1 });
        assert_eq!(slots.push(w, delivery("b"), 10).unwrap(), Pushed { queued: false, len: 2 });
        let (_, me, _) = run(&mut slots);
        let lens: Vec<usize> = (0..2)
            .map(|_| match step(&mut slots, me, 0, true) {
                Step::Handle { len_before, .. } => len_before,
                Step::Parked { .. } => panic!("two messages wait"),
            })
            .collect();
        assert_eq!(lens, [2, 1], "the length before each message was taken");
    }

    #[test]
    fn a_full_mailbox_and_a_stale_reference_refuse_the_delivery() {
        let mut slots = Table::new(0);
        let w = slots.insert("w", Some(Arc::from("greeter")));
        assert!(slots.push(w, delivery("a"), 1).unwrap().queued);
        let full = slots.push(w, delivery("b"), 1).unwrap_err();
        assert!(matches!(full.error, Error::MailboxFull(ref who) if who == "greeter"));
        assert_eq!(text(&full.delivery), "b", "the delivery comes back");
        let freed = slots.remove(w).expect("a live worker");
        assert_eq!((freed.orphans.len(), freed.name.as_deref()), (1, Some("greeter")));
        assert!(slots.remove(w).is_none(), "removed once");
        // A new worker reuses the slot under a new generation.
        let newer = slots.insert("v", None);
        assert_eq!(newer.index, w.index);
        let stale = slots.push(w, delivery("c"), 1).unwrap_err();
        assert!(matches!(stale.error, Error::NoSuchWorker(_)));
        // The stale queue entry of the freed slot is skipped.
        assert!(slots.next_run().is_none());
    }

    #[test]
    fn a_stop_request_turns_the_next_run_into_a_stop() {
        let mut slots = Table::new(0);
        let idle = slots.insert("idle", None);
        let busy = slots.insert("busy", None);
        assert_eq!(slots.request_stop(idle), Some(true), "Idle -> Queued");
        assert_eq!(slots.request_stop(idle), None, "stops already");
        assert!(matches!(slots.next_run(), Some(Next::Stop { me, .. }) if me == idle));
        assert!(slots.push(busy, delivery("a"), 10).unwrap().queued);
        assert!(!slots.push(busy, delivery("b"), 10).unwrap().queued);
        let (_, me, _) = run(&mut slots);
        assert!(matches!(step(&mut slots, me, 0, true), Step::Handle { .. }));
        assert_eq!(slots.request_stop(busy), Some(false), "running: not queued");
        assert!(slots.push(busy, delivery("c"), 10).is_err(), "no more mail");
        assert!(
            matches!(
                step(&mut slots, me, 1, true),
                Step::Parked { requeued: true }
            ),
            "a stopping worker handles nothing more"
        );
        assert!(matches!(slots.next_run(), Some(Next::Stop { me, .. }) if me == busy));
        assert!(slots.list().is_empty(), "stopping workers are not listed");
    }

    #[test]
    fn shutdown_stops_the_newest_first_and_only_workers_in_their_slots() {
        let mut slots = Table::new(0);
        let old = slots.insert("old", None);
        let busy = slots.insert("busy", None);
        let new = slots.insert("new", None);
        assert_eq!(slots.stop_order(), [new, busy, old]);
        assert!(slots.activate(busy));
        run(&mut slots);
        assert_eq!(slots.take_to_stop(busy), None, "running");
        assert_eq!(slots.take_to_stop(new), Some("new"));
        assert_eq!(slots.take_to_stop(new), None, "taken once");
        assert_eq!(slots.stop_order(), [busy, old]);
        assert!(slots.push(new, delivery("late"), 8).is_err(), "a stopping worker takes no message");
    }

    #[test]
    fn watchers_are_kept_once_per_pair_and_handed_over_when_the_slot_is_freed() {
        let mut slots = Table::new(0);
        let target = slots.insert("target", None);
        let (a, b) = (slots.insert("a", None), slots.insert("b", None));
        let ids = |freed: Freed| freed.watchers.iter().map(Watcher::id).collect::<Vec<_>>();
        assert!(slots.watch(target, Watcher::Worker(a)).is_ok());
        assert!(
            slots.watch(target, Watcher::Worker(a)).is_ok(),
            "a second watch of the pair is the same watch"
        );
        assert!(slots.watch(target, Watcher::Worker(b)).is_ok());
        let callback = |key| Watcher::Callback {
            key,
            notify: Box::new(|_, _| {}),
        };
        assert!(slots.watch(target, callback(7)).is_ok());
        assert!(slots.watch(target, callback(8)).is_ok());
        assert!(slots.unwatch(target, WatcherId::Worker(b)));
        assert!(!slots.unwatch(target, WatcherId::Worker(b)), "unwatched once");
        assert!(slots.unwatch(target, WatcherId::Callback(8)));
        assert_eq!(
            ids(slots.remove(target).unwrap()),
            [WatcherId::Worker(a), WatcherId::Callback(7)]
        );
        let refused = slots.watch(target, callback(9)).unwrap_err();
        assert_eq!(refused.id(), WatcherId::Callback(9), "gone: the watcher comes back");
        assert!(!slots.unwatch(target, WatcherId::Worker(a)));
        assert!(ids(slots.remove(a).unwrap()).is_empty());
    }
}
