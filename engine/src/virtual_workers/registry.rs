//! The virtual workers whose home is one shard: for each key that is not
//! just stored, where it stands in its life, and the messages that wait
//! for it.
//!
//! ```text
//!   (stored) ── message ──▶ Loading ── loaded, built ──▶ Active
//!                              ▲                           │ idle, cap, deactivate()
//!       messages wait          │ removed with messages     ▼
//!       in Loading, Stopping   └──────────────────────── Stopping
//!       and Saving             ◀── saved, messages ──┐      │ on_deactivate ran,
//!                                                    │      ▼ state handed over
//!   (stored) ◀──────────── saved, no message ─────── Saving
//! ```
//!
//! Only the key's home shard activates it, and a key has one entry at a
//! time: one activation per key on a node, however many shards send first
//! messages at once. A message that arrives while the key is not active
//! waits in its entry, in order, and is handed to the worker when it is
//! active again: none is lost to a deactivation.
//!
//! This module is plain data (no glommio, no shard): each method says what
//! the shard must do next (`glue.rs` does it), and its tests drive it alone.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ahash::RandomState;

use slab::Slab;

use super::lru::{Linked, Links, Lru};
use super::record::{self, Reminder};
use super::Key;
use crate::envelope::{Delivery, Undelivered};
use crate::{Error, WorkerRef};

/// A kind, as a shard's registry knows it.
pub(crate) struct KindSlot {
    pub name: Arc<str>,
    /// Idle time, in ticks of the registry's clock (milliseconds).
    pub idle_ms: u64,
}

enum Phase {
    /// The record is being read from the store.
    Loading { pending: VecDeque<Delivery> },
    Active {
        worker: WorkerRef,
        /// Messages that waited for this activation and that the worker
        /// has not handled yet (see [`Registry::handled_owed`]).
        owed: usize,
        /// A deactivation from outside waits until `owed` is 0.
        deferred: bool,
    },
    /// Asked to stop; its `on_deactivate` runs.
    Stopping { pending: VecDeque<Delivery> },
    /// Its record is being written (the save's answer brings it back);
    /// `worker` until its slot is freed.
    Saving {
        worker: Option<WorkerRef>,
        pending: VecDeque<Delivery>,
    },
}

struct Entry {
    key: Key,
    kind: usize,
    phase: Phase,
    links: Links,
    /// The registry's clock when a message for it last came (to within
    /// one generation, see [`Registry::touch`]).
    touched: u64,
    /// The registry's generation when it last moved to the front of its
    /// list: the lists are ordered by it.
    stamp: u64,
    /// Its reminders not yet delivered (while it is in memory).
    reminders: Vec<Reminder>,
    /// Reminders delivered while its record was not in memory: dropped
    /// from the record when it is read.
    fired: Vec<u64>,
}

impl Linked for Entry {
    fn links(&mut self) -> &mut Links {
        &mut self.links
    }
}

/// What to do with a message for a key.
pub(crate) enum Route {
    /// Into the active worker's mailbox.
    Worker(WorkerRef, Delivery),
    /// It waits in the entry.
    Waits,
    /// A new entry: load the key's record; first deactivate `evict` (the
    /// cap is reached).
    Load { key: Key, evict: Option<WorkerRef> },
    Refused(Undelivered),
}

/// What a deactivation from outside the worker (`NodeHandle::deactivate`,
/// the cap, a hand-off, the idle sweep) does now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Deactivation {
    /// Ask this worker to stop.
    Stop(WorkerRef),
    /// It stops once it has handled the messages that waited for its
    /// activation.
    Deferred,
    /// The key is not active here (or its deactivation has begun).
    NotActive,
}

/// What a freed slot of a virtual worker means.
pub(crate) enum Removed {
    /// Not a virtual worker: its orphans, as they were.
    NotVirtual(Vec<Delivery>),
    /// Its entry keeps the orphans (its record is being saved).
    Kept,
    /// It ended without saving (a panic, a stop deadline); messages wait:
    /// load its last saved record.
    Reload(Key),
    /// It ended without saving, and nothing waits: the entry is gone.
    Gone,
    /// The node is stopping: these are not delivered.
    Stopping(Vec<Delivery>),
}

/// What a finished save means.
pub(crate) enum AfterSave {
    /// Deactivated; the entry is gone.
    Done,
    /// Messages came meanwhile: activate again from the record just
    /// written.
    Reactivate(Vec<u8>),
    /// The node is stopping: these are not delivered.
    Stopping(Vec<Delivery>),
    /// No such saving entry.
    Unknown,
}

/// A failed activation: the messages that waited for it, and whether it
/// is the key's first failure in a row (the one to report).
pub(crate) struct Failed {
    pub pending: VecDeque<Delivery>,
    pub first: bool,
}

/// Most keys remembered as failing (see [`Registry::failed`]).
const MAX_FAILING: usize = 4096;

/// What the shard builds a worker from.
pub(crate) struct Activation {
    pub key: Key,
    pub kind: usize,
    pub state: Option<Vec<u8>>,
}

/// Counters of one shard.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub activations: u64,
    pub deactivations: u64,
    pub evictions: u64,
    pub failed_activations: u64,
}

/// The registry of one shard.
pub(crate) struct Registry {
    kinds: Vec<KindSlot>,
    /// Entries by key text; hashed with aHash (randomly keyed, so still
    /// safe against keys chosen to collide), which costs a fraction of
    /// SipHash on every message sent by key.
    map: HashMap<Arc<str>, u32, RandomState>,
    entries: Slab<Entry>,
    by_worker: HashMap<WorkerRef, u32, RandomState>,
    /// Per kind, the active workers, most recently used first.
    lru: Vec<Lru>,
    /// Entries that hold or load a worker (Loading and Active).
    resident: usize,
    cap: usize,
    clock: u64,
    /// Moves on at each tick of the sweep and each new entry (see
    /// [`Registry::touch`]).
    generation: u64,
    /// Reminder timers this shard has armed, by key text and id.
    armed: HashSet<(Arc<str>, u64)>,
    /// Wakes of stored keys this shard waits for, by key text and time.
    waking: HashSet<(Arc<str>, u64)>,
    /// Keys whose last activation failed (reported once; at most
    /// [`MAX_FAILING`]).
    failing: HashSet<Arc<str>>,
    pub counts: Counts,
}

impl Registry {
    /// A registry for `kinds`, keeping at most `cap` workers resident.
    pub(crate) fn new(kinds: Vec<KindSlot>, cap: usize) -> Self {
        let lru = kinds.iter().map(|_| Lru::default()).collect();
        Registry {
            kinds,
            map: HashMap::default(),
            entries: Slab::new(),
            by_worker: HashMap::default(),
            lru,
            resident: 0,
            cap,
            clock: 0,
            generation: 0,
            armed: HashSet::new(),
            waking: HashSet::new(),
            failing: HashSet::new(),
            counts: Counts::default(),
        }
    }

    /// Moves the clock to `now` (ms since the shard started).
    pub(crate) fn set_clock(&mut self, now: u64) {
        self.clock = now;
        self.generation += 1;
    }

    fn index(&self, key: &Key) -> Option<u32> {
        self.map.get(key.as_str()).copied()
    }

    /// Marks entry `i` (active, so on its kind's list) used now. It moves
    /// to the front of its list only if it has not moved in this
    /// generation, which ends at each tick of the sweep and each new
    /// entry (the moments an idle or least recently used worker is
    /// chosen): a key sent many messages in between pays one move, not one
    /// per message. So the lists are in the order of last use, except that
    /// keys used since the last new entry keep the order of their first
    /// use since then.
    fn touch(&mut self, i: u32) {
        if self.entries[i as usize].stamp != self.generation {
            self.move_to_front(i);
        }
    }

    /// Puts entry `i` at the front of its list, used now.
    fn move_to_front(&mut self, i: u32) {
        let entry = &mut self.entries[i as usize];
        entry.touched = self.clock;
        entry.stamp = self.generation;
        self.lru[entry.kind].touch(&mut self.entries, i);
    }

    /// Where a message for `key` goes. `limit` bounds the messages one key
    /// keeps waiting; `stopping` refuses new activations.
    pub(crate) fn route(&mut self, key: &Key, delivery: Delivery, limit: usize, stopping: bool) -> Route {
        if let Some(i) = self.index(key) {
            let entry = &mut self.entries[i as usize];
            let pending = match &mut entry.phase {
                Phase::Active { worker, .. } => {
                    let worker = *worker;
                    self.touch(i);
                    return Route::Worker(worker, delivery);
                }
                Phase::Loading { pending } | Phase::Stopping { pending } | Phase::Saving { pending, .. } => pending,
            };
            if pending.len() >= limit {
                let error = Error::MailboxFull(key.to_string());
                return Route::Refused(Undelivered { error, delivery });
            }
            pending.push_back(delivery);
            return Route::Waits;
        }
        let kind = match self.new_entry_kind(key, stopping) {
            Ok(kind) => kind,
            Err(error) => return Route::Refused(Undelivered { error, delivery }),
        };
        let evict = self.insert(key, kind, VecDeque::from([delivery]));
        Route::Load {
            key: key.clone(),
            evict,
        }
    }

    /// A stored key is to be woken at `at` (its record has a reminder due
    /// then): `true` unless this shard already waits to wake it then.
    pub(crate) fn plan_wake(&mut self, key: &Key, at: u64) -> bool {
        self.waking.insert((key.text().clone(), at))
    }

    /// The wake of `key` planned for `at` is due: `Some` if the key must be
    /// loaded (with the worker to evict first), `None` if it is in memory
    /// already or `refused` (the node stops, or the key's home moved to
    /// another node).
    pub(crate) fn wake(&mut self, key: &Key, at: u64, refused: bool) -> Option<Option<WorkerRef>> {
        self.waking.remove(&(key.text().clone(), at));
        if self.index(key).is_some() {
            return None;
        }
        let kind = self.new_entry_kind(key, refused).ok()?;
        Some(self.insert(key, kind, VecDeque::new()))
    }

    fn new_entry_kind(&self, key: &Key, stopping: bool) -> Result<usize, Error> {
        if stopping {
            return Err(Error::NodeStopped);
        }
        key.check()?;
        self.kinds
            .iter()
            .position(|k| *k.name == *key.kind())
            .ok_or_else(|| Error::NoSuchWorker(format!("{key}: no virtual kind {:?} on this node", key.kind())))
    }

    /// Adds a Loading entry; returns the worker to evict if over the cap.
    fn insert(&mut self, key: &Key, kind: usize, pending: VecDeque<Delivery>) -> Option<WorkerRef> {
        self.generation += 1;
        let i = self.entries.insert(Entry {
            key: key.clone(),
            kind,
            phase: Phase::Loading { pending },
            links: Links::default(),
            touched: self.clock,
            stamp: self.generation,
            reminders: Vec::new(),
            fired: Vec::new(),
        });
        // A shard holds far fewer than 2^32 entries: each is a worker.
        self.map.insert(key.text().clone(), i as u32);
        self.resident += 1;
        if self.resident > self.cap {
            self.evict_one()
        } else {
            None
        }
    }

    /// Begins deactivating the least recently used active worker of any
    /// kind (the oldest of the kinds' tails).
    fn evict_one(&mut self) -> Option<WorkerRef> {
        let oldest = self
            .lru
            .iter()
            .filter_map(Lru::back)
            .min_by_key(|&i| self.entries[i as usize].stamp)?;
        self.counts.evictions += 1;
        match self.deactivate_from_outside(oldest) {
            Deactivation::Stop(worker) => Some(worker),
            Deactivation::Deferred | Deactivation::NotActive => None,
        }
    }

    /// The record of a Loading key was read (`Ok(None)`: never stored):
    /// what to build its worker from, or why it can't be.
    pub(crate) fn loaded(&mut self, key: &Key, record: Option<Vec<u8>>) -> Result<Activation, String> {
        let Some(i) = self.index(key) else {
            return Err(format!("{key} was loaded but is not loading"));
        };
        let entry = &mut self.entries[i as usize];
        let decoded = match record {
            Some(bytes) => Some(record::decode(&bytes).map_err(|e| format!("the stored record of {key} is corrupt: {e}"))?),
            None => None,
        };
        let (state, mut reminders) = match decoded {
            Some(r) => (Some(r.state), r.reminders),
            None => (None, Vec::new()),
        };
        let fired = std::mem::take(&mut entry.fired);
        reminders.retain(|r| !fired.contains(&r.id));
        entry.reminders = reminders;
        Ok(Activation {
            key: key.clone(),
            kind: entry.kind,
            state,
        })
    }

    /// A Loading key could not be activated: its entry is gone, and its
    /// waiting messages are to be refused. Every failure is counted; only
    /// the first of a key's failures in a row is to be reported (a corrupt
    /// record with a reminder fails again at each scan of a shared store).
    pub(crate) fn failed(&mut self, key: &Key) -> Failed {
        self.counts.failed_activations += 1;
        if self.failing.len() >= MAX_FAILING && !self.failing.contains(key.as_str()) {
            // Bounded: past this many failing keys, each is reported again.
            self.failing.clear();
        }
        let first = self.failing.insert(key.text().clone());
        let pending = match self.index(key) {
            Some(i) => {
                self.resident -= 1;
                match self.remove_entry(i).phase {
                    Phase::Loading { pending } => pending,
                    _ => VecDeque::new(),
                }
            }
            None => VecDeque::new(),
        };
        Failed { pending, first }
    }

    /// The worker of a Loading key was built as `worker`: it is active.
    /// Returns the messages that waited, in order, and the reminders it
    /// has that no timer of this shard watches yet.
    pub(crate) fn activated(&mut self, key: &Key, worker: WorkerRef) -> (VecDeque<Delivery>, Vec<Reminder>) {
        let Some(i) = self.index(key) else {
            return (VecDeque::new(), Vec::new());
        };
        let entry = &mut self.entries[i as usize];
        let active = Phase::Active {
            worker,
            owed: 0,
            deferred: false,
        };
        let pending = match std::mem::replace(&mut entry.phase, active) {
            Phase::Loading { pending } => pending,
            other => {
                entry.phase = other;
                return (VecDeque::new(), Vec::new());
            }
        };
        if let Phase::Active { owed, .. } = &mut entry.phase {
            *owed = pending.len();
        }
        let to_arm = entry
            .reminders
            .iter()
            .filter(|r| self.armed.insert((key.text().clone(), r.id)))
            .cloned()
            .collect();
        self.move_to_front(i);
        self.by_worker.insert(worker, i);
        self.counts.activations += 1;
        if !self.failing.is_empty() {
            self.failing.remove(key.as_str());
        }
        (pending, to_arm)
    }

    /// Begins deactivating the active worker of entry `i`: it is to be
    /// asked to stop.
    fn begin_stop(&mut self, i: u32) -> Option<WorkerRef> {
        let entry = &mut self.entries[i as usize];
        let Phase::Active { worker, .. } = entry.phase else {
            return None;
        };
        entry.phase = Phase::Stopping {
            pending: VecDeque::new(),
        };
        let kind = entry.kind;
        self.lru[kind].unlink(&mut self.entries, i);
        self.resident -= 1;
        Some(worker)
    }

    /// Deactivates the worker of entry `i` for a reason outside it. A
    /// worker that has not yet handled the messages that waited for its
    /// activation stops once it has: otherwise deactivations that keep
    /// coming could stop each activation before its first message, and
    /// the messages would wait for ever (each activation handing them to
    /// the next).
    fn deactivate_from_outside(&mut self, i: u32) -> Deactivation {
        match &mut self.entries[i as usize].phase {
            Phase::Active { owed, deferred, .. } if *owed > 0 => {
                *deferred = true;
                Deactivation::Deferred
            }
            _ => self.begin_stop(i).map_or(Deactivation::NotActive, Deactivation::Stop),
        }
    }

    /// Deactivates the worker of `key`, from outside it.
    pub(crate) fn deactivate_key(&mut self, key: &Key) -> Deactivation {
        match self.index(key) {
            Some(i) => self.deactivate_from_outside(i),
            None => Deactivation::NotActive,
        }
    }

    /// Deactivates virtual worker `worker` at its own request: `None` if
    /// it is not one, else whether it is to be asked to stop now (it was
    /// active; one already being deactivated, by the idle sweep, the cap
    /// or a hand-off, is on its way). Its own request is not deferred: it
    /// comes from a message it handled.
    pub(crate) fn deactivate_worker(&mut self, worker: WorkerRef) -> Option<bool> {
        let &i = self.by_worker.get(&worker)?;
        Some(self.begin_stop(i).is_some())
    }

    /// Virtual worker `worker` handled a message. Returns whether it still
    /// owes messages that waited for its activation (it reports each until
    /// it owes none), and the worker to stop now if a deactivation waited
    /// for that.
    pub(crate) fn handled_owed(&mut self, worker: WorkerRef) -> (bool, Option<WorkerRef>) {
        let Some(&i) = self.by_worker.get(&worker) else {
            return (false, None);
        };
        let Phase::Active { owed, deferred, .. } = &mut self.entries[i as usize].phase else {
            return (false, None);
        };
        *owed = owed.saturating_sub(1);
        if *owed > 0 {
            return (true, None);
        }
        let stop = if *deferred { self.begin_stop(i) } else { None };
        (false, stop)
    }

    /// Workers idle longer than their kind's idle time, now being
    /// deactivated. `busy` says whether a worker still has messages queued
    /// (by reference): such a one counts as used now.
    pub(crate) fn sweep(&mut self, busy: impl Fn(WorkerRef) -> bool) -> Vec<WorkerRef> {
        let mut victims = Vec::new();
        for kind in 0..self.kinds.len() {
            let idle = self.kinds[kind].idle_ms;
            // Each entry is looked at once per sweep.
            for _ in 0..self.lru[kind].len() {
                let Some(i) = self.lru[kind].back() else { break };
                let entry = &mut self.entries[i as usize];
                if self.clock.saturating_sub(entry.touched) < idle {
                    break;
                }
                let Phase::Active { worker, owed, .. } = entry.phase else { break };
                if owed > 0 || busy(worker) {
                    self.move_to_front(i);
                    continue;
                }
                victims.extend(self.begin_stop(i));
            }
        }
        victims
    }

    /// The worker `worker` ran `on_deactivate` and gave its state: the
    /// record to save (with its next reminder's due time), or `None` if it
    /// is not a virtual worker.
    pub(crate) fn stopped(&mut self, worker: WorkerRef, state: &[u8]) -> Option<(Key, Vec<u8>, Option<u64>)> {
        let &i = self.by_worker.get(&worker)?;
        let entry = &mut self.entries[i as usize];
        let pending = match std::mem::replace(&mut entry.phase, Phase::Loading { pending: VecDeque::new() }) {
            Phase::Stopping { pending } => pending,
            Phase::Active { .. } => {
                // Stopped from outside the registry (stop_worker, node
                // shutdown): a deactivation all the same.
                let kind = entry.kind;
                self.lru[kind].unlink(&mut self.entries, i);
                self.resident -= 1;
                VecDeque::new()
            }
            other => {
                self.entries[i as usize].phase = other;
                return None;
            }
        };
        let entry = &mut self.entries[i as usize];
        let record = record::encode(state, &entry.reminders);
        let due = record::next_due(&entry.reminders);
        entry.phase = Phase::Saving {
            worker: Some(worker),
            pending,
        };
        Some((entry.key.clone(), record, due))
    }

    /// Virtual worker `worker`'s slot was freed, with `orphans` still in its
    /// mailbox.
    pub(crate) fn removed(&mut self, worker: WorkerRef, orphans: Vec<Delivery>, stopping: bool) -> Removed {
        let Some(i) = self.by_worker.remove(&worker) else {
            return Removed::NotVirtual(orphans);
        };
        let entry = &mut self.entries[i as usize];
        let kind = entry.kind;
        let (was_active, mut pending) = match std::mem::replace(&mut entry.phase, Phase::Loading { pending: VecDeque::new() }) {
            Phase::Saving { mut pending, .. } => {
                for d in orphans.into_iter().rev() {
                    pending.push_front(d);
                }
                entry.phase = Phase::Saving { worker: None, pending };
                return Removed::Kept;
            }
            Phase::Active { .. } => (true, VecDeque::new()),
            Phase::Stopping { pending } => (false, pending),
            Phase::Loading { pending } => (false, pending),
        };
        if was_active {
            self.lru[kind].unlink(&mut self.entries, i);
            self.resident -= 1;
        }
        for d in orphans.into_iter().rev() {
            pending.push_front(d);
        }
        if stopping {
            self.remove_entry(i);
            return Removed::Stopping(pending.into());
        }
        if pending.is_empty() {
            self.remove_entry(i);
            return Removed::Gone;
        }
        let entry = &mut self.entries[i as usize];
        entry.phase = Phase::Loading { pending };
        self.resident += 1;
        Removed::Reload(entry.key.clone())
    }

    /// The save of `key`'s record (at deactivation) finished; `record` is
    /// what was written, which a reactivation starts from without reading
    /// the store.
    pub(crate) fn saved(&mut self, key: &Key, record: Vec<u8>, stopping: bool) -> AfterSave {
        let Some(i) = self.index(key) else {
            return AfterSave::Unknown;
        };
        let entry = &mut self.entries[i as usize];
        let Phase::Saving { worker, pending } = std::mem::replace(&mut entry.phase, Phase::Loading { pending: VecDeque::new() }) else {
            return AfterSave::Unknown;
        };
        if let Some(worker) = worker {
            // The slot is freed right after the state is handed over, before
            // any answer of the store can arrive; this is only defensive.
            self.by_worker.remove(&worker);
        }
        self.counts.deactivations += 1;
        if stopping {
            self.remove_entry(i);
            return AfterSave::Stopping(pending.into());
        }
        if pending.is_empty() {
            self.remove_entry(i);
            return AfterSave::Done;
        }
        self.entries[i as usize].phase = Phase::Loading { pending };
        self.resident += 1;
        AfterSave::Reactivate(record)
    }

    /// Forgets entry `i` (its residence is accounted by the caller).
    fn remove_entry(&mut self, i: u32) -> Entry {
        let entry = self.entries.remove(i as usize);
        self.map.remove(entry.key.as_str());
        entry
    }

    /// The key of virtual worker `worker`.
    pub(crate) fn key_of(&self, worker: WorkerRef) -> Option<&Key> {
        let &i = self.by_worker.get(&worker)?;
        Some(&self.entries[i as usize].key)
    }

    /// The active worker of `key`.
    pub(crate) fn active_worker(&self, key: &Key) -> Option<WorkerRef> {
        match self.entries[self.index(key)? as usize].phase {
            Phase::Active { worker, .. } => Some(worker),
            _ => None,
        }
    }

    fn active(&self) -> impl Iterator<Item = &Key> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e.phase, Phase::Active { .. }))
            .map(|(_, e)| &e.key)
    }

    /// The active keys of kind `kind`.
    pub(crate) fn active_keys(&self, kind: &str) -> Vec<Key> {
        self.active().filter(|k| k.kind() == kind).cloned().collect()
    }

    /// The keys of every kind whose workers are active.
    pub(crate) fn all_active_keys(&self) -> Vec<Key> {
        self.active().cloned().collect()
    }

    /// How many workers are active.
    pub(crate) fn active_count(&self) -> usize {
        self.lru.iter().map(Lru::len).sum()
    }

    /// Adds a reminder to virtual worker `worker`: its key, if it is one.
    /// The reminder is watched by a timer of this shard from now on.
    pub(crate) fn remind(&mut self, worker: WorkerRef, reminder: Reminder) -> Option<Key> {
        let &i = self.by_worker.get(&worker)?;
        let entry = &mut self.entries[i as usize];
        self.armed.insert((entry.key.text().clone(), reminder.id));
        entry.reminders.push(reminder);
        Some(entry.key.clone())
    }

    /// The record of `worker` now, for `Context::save`, with the due time
    /// of its next reminder.
    pub(crate) fn checkpoint(&self, worker: WorkerRef, state: &[u8]) -> Option<(Key, Vec<u8>, Option<u64>)> {
        let &i = self.by_worker.get(&worker)?;
        let entry = &self.entries[i as usize];
        let record = record::encode(state, &entry.reminders);
        Some((entry.key.clone(), record, record::next_due(&entry.reminders)))
    }

    /// The timer of reminder `id` of `key` ended without delivering it
    /// (the key's home moved to another node, which delivers it from the
    /// shared store): an activation here arms it again.
    pub(crate) fn disarm(&mut self, key: &Key, id: u64) {
        self.armed.remove(&(key.text().clone(), id));
    }

    /// Reminder `id` of `key` is due: it is no longer pending, wherever its
    /// record is (in memory, or to be read).
    pub(crate) fn reminder_due(&mut self, key: &Key, id: u64) {
        self.armed.remove(&(key.text().clone(), id));
        let Some(i) = self.index(key) else { return };
        let entry = &mut self.entries[i as usize];
        entry.reminders.retain(|r| r.id != id);
        // A record being read or written still lists it.
        if matches!(entry.phase, Phase::Loading { .. } | Phase::Saving { .. }) {
            entry.fired.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn registry(cap: usize) -> Registry {
        Registry::new(vec![KindSlot { name: "agent".into(), idle_ms: 100 }], cap)
    }

    fn msg(text: &'static str) -> Delivery {
        Delivery { msg: Message::from(text), from: None, reply: None }
    }

    fn texts(pending: impl IntoIterator<Item = Delivery>) -> Vec<String> {
        pending.into_iter().map(|d| d.msg.to_string()).collect()
    }

    /// Activates `key` as `w` with no stored record; `w` handles the
    /// message that activated it.
    fn activate(r: &mut Registry, key: &Key, w: WorkerRef) -> Vec<String> {
        assert!(matches!(r.route(key, msg("first"), 10, false), Route::Load { evict: None, .. }));
        let activation = r.loaded(key, None).unwrap();
        assert!(activation.state.is_none());
        let handed = texts(r.activated(key, w).0);
        assert_eq!(r.handled_owed(w), (false, None), "it owed only that one");
        handed
    }

    /// A registry where `key`'s worker 1 (active, nothing owed) is being
    /// deactivated: asked to stop.
    fn stopping(key: &Key) -> Registry {
        let mut r = registry(10);
        activate(&mut r, key, WorkerRef::test(1));
        assert_eq!(r.deactivate_key(key), Deactivation::Stop(WorkerRef::test(1)));
        r
    }

    #[test]
    fn the_first_message_loads_later_ones_wait_then_all_reach_the_worker_in_order() {
        let mut r = registry(10);
        let key = Key::new("agent", "1");
        assert!(matches!(r.route(&key, msg("a"), 10, false), Route::Load { .. }));
        assert!(matches!(r.route(&key, msg("b"), 10, false), Route::Waits));
        r.loaded(&key, None).unwrap();
        assert_eq!(texts(r.activated(&key, WorkerRef::test(1)).0), ["a", "b"]);
        assert!(matches!(r.route(&key, msg("c"), 10, false), Route::Worker(w, _) if w == WorkerRef::test(1)));
        assert_eq!(r.active_keys("agent"), vec![key.clone()]);
        assert_eq!(r.counts.activations, 1);
    }

    #[test]
    fn unknown_kinds_malformed_keys_and_a_stopping_node_are_refused() {
        let mut r = registry(10);
        let refused = |route| match route {
            Route::Refused(u) => u.error,
            _ => panic!("not refused"),
        };
        assert!(matches!(refused(r.route(&Key::new("other", "1"), msg("x"), 10, false)), Error::NoSuchWorker(_)));
        assert!(matches!(refused(r.route(&Key::new("agent", ""), msg("x"), 10, false)), Error::InvalidName { .. }));
        assert!(matches!(refused(r.route(&Key::new("agent", "1"), msg("x"), 10, true)), Error::NodeStopped));
    }

    #[test]
    fn messages_during_a_deactivation_wait_and_reactivate_from_the_saved_record() {
        let key = Key::new("agent", "1");
        let mut r = stopping(&key);
        assert!(matches!(r.route(&key, msg("during stop"), 10, false), Route::Waits));
        let (_, record, due) = r.stopped(WorkerRef::test(1), b"state").unwrap();
        assert_eq!(due, None);
        assert!(matches!(r.route(&key, msg("during save"), 10, false), Route::Waits));
        // The mailbox still held one (sent by reference): it goes first.
        assert!(matches!(r.removed(WorkerRef::test(1), vec![msg("orphan")], false), Removed::Kept));
        let AfterSave::Reactivate(saved) = r.saved(&key, record.clone(), false) else { panic!("not reactivated") };
        assert_eq!(saved, record);
        let activation = r.loaded(&key, Some(saved)).unwrap();
        assert_eq!(activation.state.as_deref(), Some(&b"state"[..]));
        assert_eq!(texts(r.activated(&key, WorkerRef::test(2)).0), ["orphan", "during stop", "during save"]);
        assert_eq!((r.counts.activations, r.counts.deactivations), (2, 1));
    }

    #[test]
    fn a_worker_that_asks_to_be_deactivated_while_it_already_is_is_told_yes() {
        // Being deactivated by a hand-off, say.
        let mut r = stopping(&Key::new("agent", "1"));
        assert_eq!(r.deactivate_worker(WorkerRef::test(1)), Some(false), "on its way: no second stop");
        assert_eq!(r.deactivate_worker(WorkerRef::test(2)), None, "not a virtual worker");
    }

    /// The interleaving that kept `no_message_is_lost_across_deactivations`
    /// (tests/virtual_workers.rs) from ever answering: a deactivation from
    /// outside arrives after each reactivation and before the new worker's
    /// first run. Stopped then, every activation handed all the messages
    /// that waited to the next one, and none was ever handled.
    #[test]
    fn a_deactivation_from_outside_waits_until_the_activation_handled_what_waited_for_it() {
        let key = Key::new("agent", "1");
        let mut r = stopping(&key);
        let mut worker = 1;
        for round in 0..3 {
            // Messages wait while it is saved; the save's answer reactivates it.
            for text in ["a", "b"] {
                assert!(matches!(r.route(&key, msg(text), 10, false), Route::Waits));
            }
            let (_, record, _) = r.stopped(WorkerRef::test(worker), b"s").unwrap();
            assert!(matches!(r.removed(WorkerRef::test(worker), vec![], false), Removed::Kept));
            let AfterSave::Reactivate(record) = r.saved(&key, record, false) else { panic!("round {round}: not reactivated") };
            r.loaded(&key, Some(record)).unwrap();
            worker += 1;
            let w = WorkerRef::test(worker);
            assert_eq!(texts(r.activated(&key, w).0), ["a", "b"]);
            // The deactivation comes before its first run: it waits.
            assert_eq!(r.deactivate_key(&key), Deactivation::Deferred, "round {round}");
            assert_eq!(r.deactivate_key(&key), Deactivation::Deferred, "asked again");
            assert_eq!(r.active_worker(&key), Some(w));
            assert_eq!(r.handled_owed(w), (true, None), "a handled, b owed");
            assert_eq!(r.handled_owed(w), (false, Some(w)), "b handled: now it stops");
            assert_eq!(r.deactivate_key(&key), Deactivation::NotActive, "stopping already");
        }
        // A worker's own deactivation is not deferred: it comes from a
        // message it handled.
        let (_, record, _) = r.stopped(WorkerRef::test(worker), b"s").unwrap();
        r.removed(WorkerRef::test(worker), vec![msg("c")], false);
        let AfterSave::Reactivate(record) = r.saved(&key, record, false) else { panic!("not reactivated") };
        r.loaded(&key, Some(record)).unwrap();
        let w = WorkerRef::test(worker + 1);
        assert_eq!(texts(r.activated(&key, w).0), ["c"]);
        assert_eq!(r.deactivate_worker(w), Some(true));
    }

    #[test]
    fn a_worker_owing_messages_is_evicted_and_swept_only_once_it_handled_them() {
        let mut r = registry(1);
        let (a, b) = (Key::new("agent", "a"), Key::new("agent", "b"));
        assert!(matches!(r.route(&a, msg("a1"), 10, false), Route::Load { .. }));
        assert!(matches!(r.route(&a, msg("a2"), 10, false), Route::Waits));
        r.loaded(&a, None).unwrap();
        let wa = WorkerRef::test(1);
        r.activated(&a, wa);
        let Route::Load { evict, .. } = r.route(&b, msg("b"), 10, false) else { panic!("b not loaded") };
        assert_eq!(evict, None, "a owes two messages: its eviction waits");
        r.set_clock(1_000);
        assert!(r.sweep(|_| false).is_empty(), "nor does the sweep take it");
        assert_eq!(r.handled_owed(wa), (true, None));
        assert_eq!(r.handled_owed(wa), (false, Some(wa)), "evicted now");
        assert_eq!(r.counts.evictions, 1);
    }

    #[test]
    fn a_deactivation_with_nothing_waiting_forgets_the_key() {
        let key = Key::new("agent", "1");
        let mut r = stopping(&key);
        let (_, record, _) = r.stopped(WorkerRef::test(1), b"s").unwrap();
        assert!(matches!(r.removed(WorkerRef::test(1), vec![], false), Removed::Kept));
        assert!(matches!(r.saved(&key, record, false), AfterSave::Done));
        assert!(r.active_keys("agent").is_empty());
        assert!(matches!(r.route(&key, msg("again"), 10, false), Route::Load { .. }));
    }

    #[test]
    fn a_worker_that_ends_without_saving_reloads_if_messages_wait() {
        let mut r = registry(10);
        let key = Key::new("agent", "1");
        activate(&mut r, &key, WorkerRef::test(1));
        assert!(matches!(r.removed(WorkerRef::test(1), vec![msg("queued")], false), Removed::Reload(k) if k == key));
        r.loaded(&key, None).unwrap();
        assert_eq!(texts(r.activated(&key, WorkerRef::test(2)).0), ["queued"]);
        assert!(matches!(r.removed(WorkerRef::test(2), vec![], false), Removed::Gone));
        assert!(matches!(r.removed(WorkerRef::test(3), vec![msg("x")], false), Removed::NotVirtual(o) if o.len() == 1));
    }

    #[test]
    fn a_key_that_keeps_failing_to_activate_is_reported_once_and_counted_each_time() {
        let mut r = registry(10);
        let key = Key::new("agent", "1");
        // A corrupt record with a reminder: each scan of a shared store wakes it.
        for (scan, reported) in [true, false, false].into_iter().enumerate() {
            assert!(matches!(r.wake(&key, 5, false), Some(None)));
            assert!(r.loaded(&key, Some(b"not a record".to_vec())).is_err());
            assert_eq!(r.failed(&key).first, reported, "scan {scan}");
        }
        assert_eq!(r.counts.failed_activations, 3);
        // Mended, it activates: a later failure is news again.
        activate(&mut r, &key, WorkerRef::test(1));
        assert!(matches!(r.removed(WorkerRef::test(1), vec![], false), Removed::Gone));
        assert!(matches!(r.wake(&key, 6, false), Some(None)));
        assert!(r.failed(&key).first);
        assert_eq!(r.counts.failed_activations, 4);
    }

    #[test]
    fn the_keys_remembered_as_failing_are_bounded() {
        let mut r = registry(usize::MAX);
        let fail = |r: &mut Registry, id: usize| {
            let key = Key::new("agent", &id.to_string());
            r.wake(&key, 1, false);
            r.failed(&key).first
        };
        assert!(fail(&mut r, 0));
        for id in 1..MAX_FAILING {
            assert!(fail(&mut r, id));
        }
        assert!(!fail(&mut r, 0), "still remembered at the bound");
        assert!(fail(&mut r, MAX_FAILING), "past it, the set starts again");
        assert!(fail(&mut r, 0), "and reports each key again");
        assert!(r.failing.len() <= MAX_FAILING);
    }

    #[test]
    fn past_the_cap_the_least_recently_used_is_evicted() {
        let mut r = registry(2);
        let (a, b, c) = (Key::new("agent", "a"), Key::new("agent", "b"), Key::new("agent", "c"));
        r.set_clock(1);
        activate(&mut r, &a, WorkerRef::test(1));
        r.set_clock(2);
        activate(&mut r, &b, WorkerRef::test(2));
        r.set_clock(3);
        assert!(matches!(r.route(&a, msg("use a"), 10, false), Route::Worker(..)));
        let Route::Load { evict, .. } = r.route(&c, msg("c"), 10, false) else { panic!() };
        assert_eq!(evict, Some(WorkerRef::test(2)), "b was used least recently");
        assert_eq!(r.counts.evictions, 1);
    }

    #[test]
    fn the_sweep_deactivates_only_workers_idle_past_their_time_and_not_busy_ones() {
        let mut r = registry(10);
        let (a, b, c) = (Key::new("agent", "a"), Key::new("agent", "b"), Key::new("agent", "c"));
        activate(&mut r, &a, WorkerRef::test(1));
        activate(&mut r, &b, WorkerRef::test(2));
        r.set_clock(50);
        activate(&mut r, &c, WorkerRef::test(3));
        r.set_clock(120);
        assert_eq!(r.sweep(|w| w == WorkerRef::test(2)), vec![WorkerRef::test(1)], "b is busy, c is young");
        r.set_clock(300);
        assert_eq!(r.sweep(|_| false), vec![WorkerRef::test(3), WorkerRef::test(2)]);
    }

    #[test]
    fn a_wake_is_planned_once_per_time_and_a_refused_or_needless_one_loads_nothing() {
        let mut r = registry(10);
        let key = Key::new("agent", "1");
        assert!(r.plan_wake(&key, 5));
        assert!(!r.plan_wake(&key, 5), "found again by the next scan: not planned twice");
        assert!(r.plan_wake(&key, 6), "another due time is another wake");
        assert!(r.wake(&key, 5, true).is_none(), "refused: the home moved, or the node stops");
        assert!(r.plan_wake(&key, 5), "a wake that ended may be planned again");
        assert!(matches!(r.wake(&key, 5, false), Some(None)), "loaded, nothing to evict");
        assert!(r.wake(&key, 6, false).is_none(), "already loading");
        assert!(r.plan_wake(&key, 6));
    }

    #[test]
    fn a_disarmed_reminder_is_armed_again_by_the_next_activation() {
        let mut r = registry(10);
        let key = Key::new("agent", "1");
        activate(&mut r, &key, WorkerRef::test(1));
        let reminder = Reminder { id: 1, due_ms: 10, msg: Message::from("ping") };
        r.remind(WorkerRef::test(1), reminder.clone()).unwrap();
        r.deactivate_key(&key);
        let (_, record, _) = r.stopped(WorkerRef::test(1), b"s").unwrap();
        r.removed(WorkerRef::test(1), vec![], false);
        assert!(matches!(r.saved(&key, record.clone(), false), AfterSave::Done));
        // Its timer ended without delivering it (the home moved away).
        r.disarm(&key, 1);
        assert!(matches!(r.route(&key, msg("back"), 10, false), Route::Load { .. }));
        r.loaded(&key, Some(record)).unwrap();
        assert_eq!(r.activated(&key, WorkerRef::test(2)).1, vec![reminder], "watched again");
    }

    #[test]
    fn a_reminder_due_while_the_record_is_stored_is_dropped_from_it_when_read() {
        let mut r = registry(10);
        let key = Key::new("agent", "1");
        activate(&mut r, &key, WorkerRef::test(1));
        let reminder = |id| Reminder { id, due_ms: 10 * id, msg: Message::from("ping") };
        r.remind(WorkerRef::test(1), reminder(1)).unwrap();
        r.remind(WorkerRef::test(1), reminder(2)).unwrap();
        r.deactivate_key(&key);
        let (_, record, due) = r.stopped(WorkerRef::test(1), b"s").unwrap();
        assert_eq!(due, Some(10));
        let record_copy = record.clone();
        r.removed(WorkerRef::test(1), vec![], false);
        assert!(matches!(r.saved(&key, record.clone(), false), AfterSave::Done));
        // Reminder 1 fires: it wakes the key, whose record still lists it.
        assert!(matches!(r.route(&key, msg("ping"), 10, false), Route::Load { .. }));
        r.reminder_due(&key, 1);
        r.loaded(&key, Some(record)).unwrap();
        let (_, to_arm) = r.activated(&key, WorkerRef::test(2));
        assert!(to_arm.is_empty(), "2 is still watched by this shard's timer");
        // A node started afresh on that record watches 2 only.
        let mut fresh = registry(10);
        fresh.route(&key, msg("ping"), 10, false);
        fresh.reminder_due(&key, 1);
        let stored = fresh.loaded(&key, Some(record_copy)).unwrap();
        assert!(stored.state.is_some());
        assert_eq!(fresh.activated(&key, WorkerRef::test(3)).1, vec![reminder(2)]);
    }
}
