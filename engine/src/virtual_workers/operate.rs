//! What a worker asks about its own activation ([`Context`] methods) and
//! what an operator asks a node about its virtual workers ([`NodeHandle`]
//! methods).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::registry::Counts;
use super::store_thread::{Op, StoreLatency};
use super::{Key, Persistent};
use crate::{Context, Error, Message, NodeHandle, Result};

impl Context {
    /// This worker's key, if it is a virtual worker.
    pub fn key(&self) -> Option<Key> {
        self.shard_handle().virtual_key(self.me())
    }

    /// Deactivates this virtual worker once the current message is handled:
    /// `on_deactivate` runs, its state is saved, its memory is freed.
    /// Messages that come meanwhile wait and activate it again. Fails if
    /// this is not a virtual worker.
    pub fn deactivate(&self) -> Result<()> {
        self.shard_handle().virtual_deactivate(self.me())
    }

    /// Saves `state` (pass [`VirtualWorker::state`](super::VirtualWorker::state))
    /// as this virtual worker's state now, with its reminders, and returns
    /// once the store has it: an agent that must not lose a turn saves
    /// before it answers. Fails with [`Error::StateStore`] if the store
    /// fails.
    pub async fn save<S: Persistent>(&self, state: &S) -> Result<()> {
        let bytes = state
            .to_bytes()
            .map_err(|e| Error::StateStore(format!("the state cannot be encoded: {e}")))?;
        self.shard_handle().virtual_checkpoint(self.me(), bytes).await
    }

    /// Sends `msg` to this virtual worker's key after `after`, even if it is
    /// deactivated meanwhile (the message activates it). The reminder is
    /// stored with the state at the next save or deactivation; a node that
    /// starts on that store delivers it then. A reminder is delivered at
    /// least once: a node that stops between delivering it and saving again
    /// delivers it again when it restarts. With a store the zone shares
    /// ([`StateStore::shared`](super::StateStore::shared)), the key's home
    /// node delivers it, wherever it was set, and a new home does when the
    /// key moves ([`NodeConfig::reminder_scan`](crate::NodeConfig::reminder_scan)).
    /// Fails if this is not a virtual worker.
    pub fn remind_after(&self, after: Duration, msg: impl Into<Message>) -> Result<()> {
        self.shard_handle()
            .virtual_remind(self.me(), after, msg.into())
    }
}

/// What a node counted of its virtual workers
/// ([`NodeHandle::virtual_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtualStats {
    /// Workers activated (a key's worker built and started).
    pub activations: u64,
    /// Workers deactivated (state saved, memory freed).
    pub deactivations: u64,
    /// Deactivations forced by the cap of active workers.
    pub evictions: u64,
    /// Activations that failed (store error, corrupt state, factory panic).
    pub failed_activations: u64,
    /// Workers active now.
    pub active: u64,
    /// Latency of the store's loads.
    pub store_loads: StoreLatency,
    /// Latency of the store's saves.
    pub store_saves: StoreLatency,
    /// Store calls that failed, counted per key.
    pub store_errors: u64,
    /// Scans of the store's reminder index done (see
    /// [`NodeConfig::reminder_scan`](crate::NodeConfig::reminder_scan)).
    pub reminder_scans: u64,
    /// Stored keys that those scans found due and woke on this node, their
    /// home (a key already active counts too).
    pub reminder_wakes: u64,
}

impl NodeHandle {
    /// The keys of kind `kind` whose workers are active now.
    pub fn active_keys(&self, kind: &str) -> Result<Vec<Key>> {
        let mut keys = Vec::new();
        for shard in 0..self.shards() {
            let kind = kind.to_owned();
            let found = self.call("active_keys", shard, move |s| s.virtual_active_keys(&kind))?;
            keys.extend(found);
        }
        keys.sort();
        Ok(keys)
    }

    /// The keys of kind `kind` that have stored state, from the store.
    pub fn stored_keys(&self, kind: &str) -> Result<Vec<Key>> {
        let node = self.virtuals().ok_or_else(|| Error::Config("this node hosts no virtual workers".into()))?;
        let (tx, rx) = flume::bounded(1);
        let then = Box::new(move |ids| {
            let _ = tx.send(ids);
        });
        node.store.submit(0, Op::Keys { kind: kind.to_owned(), then });
        let ids = rx.recv().map_err(|_| Error::NodeStopped)?.map_err(|e| Error::StateStore(e.0))?;
        Ok(ids.iter().map(|id| Key::new(kind, id)).collect())
    }

    /// Deactivates the worker of `key` if it is active (as
    /// [`Context::deactivate`] does): `true` if it was.
    pub fn deactivate(&self, key: &Key) -> Result<bool> {
        let home = key.home_shard(self.shards());
        let key = key.clone();
        self.call("deactivate", home, move |s| s.virtual_deactivate_key(&key))
    }

    /// What the node counted of its virtual workers.
    pub fn virtual_stats(&self) -> Result<VirtualStats> {
        let mut stats = VirtualStats::default();
        for shard in 0..self.shards() {
            let (counts, active): (Counts, usize) = self.call("virtual_stats", shard, |s| s.virtual_counts())?;
            stats.activations += counts.activations;
            stats.deactivations += counts.deactivations;
            stats.evictions += counts.evictions;
            stats.failed_activations += counts.failed_activations;
            stats.active += active as u64;
        }
        if let Some(node) = self.virtuals() {
            stats.store_loads = node.store.metrics.loads();
            stats.store_saves = node.store.metrics.saves();
            stats.store_errors = node.store.metrics.errors.load(Ordering::Relaxed);
            // Scans first: the wakes of every scan counted are in.
            stats.reminder_scans = node.scan_counts.scans.load(Ordering::Acquire);
            stats.reminder_wakes = node.scan_counts.wakes.load(Ordering::Relaxed);
        }
        Ok(stats)
    }
}
