//! Virtual workers: per-key workers that activate on demand and sleep to
//! a store.
//!
//! A kind is registered with [`NodeConfig::virtual_kind`]; a message to a
//! [`Key`] of that kind activates its worker ([`VirtualWorker`]) on the
//! key's home shard, built from its saved state; after the kind's idle time
//! (or [`Context::deactivate`], or the node's cap of active workers) the
//! worker runs `on_deactivate`, its state is saved through the node's
//! [`StateStore`] and its memory is freed. The next message activates it
//! again, state restored.
//!
//! The parts, each with one job, depending one way (top on bottom):
//!
//! * `config`: the kinds and the store, as [`NodeConfig`] methods;
//! * `operate`: what an operator asks a node ([`NodeHandle`] methods) and
//!   what a worker asks ([`Context`] methods);
//! * `shard/virtuals.rs` (in the shard): carries out the registry's
//!   decisions on the shard;
//! * `registry`: the state machine of each key on its home shard, plain
//!   data; `lru`: its least-recently-used lists;
//! * `worker`: the [`VirtualWorker`] trait and its host;
//! * `reminder_scan`: which stored keys the node wakes for their
//!   reminders (all of a store of its own; those homed on it of a shared
//!   one);
//! * `store_thread`: the one thread that calls the store, in batches;
//! * `store`, `redb_store`: the [`StateStore`] trait, [`MemoryStore`] and
//!   the embedded default [`RedbStore`]; `postgres_store` (feature
//!   `postgres`): `PostgresStore`, one table shared by a cluster; `record`:
//!   the bytes stored per key;
//! * `key`, `persistent`: [`Key`] and [`Persistent`].

use std::sync::Arc;
use std::time::Duration;

use crate::liveness::Inboxes;
use crate::{Error, NodeConfig, Result};

mod config;
mod key;
mod lru;
mod operate;
mod persistent;
pub(crate) mod placement;
#[cfg(feature = "postgres")]
mod postgres_store;
pub(crate) mod record;
mod redb_store;
mod reminder_scan;
pub(crate) mod registry;
mod store;
pub(crate) mod store_thread;
mod worker;

pub(crate) use config::VirtualConfig;
pub use config::{DEFAULT_IDLE, DEFAULT_REMINDER_SCAN};
pub use key::{Key, MAX_KEY_ID_LEN};
pub use operate::VirtualStats;
pub use persistent::Persistent;
#[cfg(feature = "postgres")]
pub use postgres_store::{PostgresStore, POSTGRES_TABLE};
pub use redb_store::{RedbStore, REDB_FILE};
pub use store::{MemoryStore, StateStore, StoreError, Write};
pub use store_thread::StoreLatency;
pub use worker::VirtualWorker;

use config::Kind;
use registry::{KindSlot, Registry};
use reminder_scan::ScanCounts;
use store_thread::StoreClient;

/// What every shard of a node knows about its virtual workers.
pub(crate) struct NodeVirtuals {
    pub kinds: Vec<Kind>,
    pub store: StoreClient,
    /// Most workers resident on each shard.
    pub cap_per_shard: usize,
    /// How often each shard looks for idle workers.
    pub tick: Duration,
    /// Whether the zone shares the store ([`StateStore::shared`]).
    pub shared: bool,
    /// How often a shared store is scanned for due reminders.
    pub reminder_scan: Duration,
    scan_counts: Arc<ScanCounts>,
    /// Each shard's channel, where woken keys are sent.
    inboxes: Inboxes,
}

impl NodeVirtuals {
    /// Opens the store and starts its thread, if `config` registers a kind.
    pub(crate) fn start(
        config: &NodeConfig,
        shards: usize,
        inboxes: &Inboxes,
    ) -> Result<Option<Arc<NodeVirtuals>>> {
        let v = &config.virtuals;
        if v.kinds.is_empty() {
            return Ok(None);
        }
        let dir = v.data_dir(&config.name);
        let store = v.open_store(&dir).map_err(|e| Error::StateStore(e.0))?;
        let shared = store.shared();
        let store = StoreClient::start(store, inboxes.clone())
            .map_err(|e| Error::Startup(format!("cannot start the state store thread: {e}")))?;
        let shortest = v.kinds.iter().map(|k| k.idle).min().unwrap_or(DEFAULT_IDLE);
        let tick = (shortest / 4).clamp(Duration::from_millis(1), Duration::from_secs(1));
        let cap_per_shard = v.max_active.map_or(usize::MAX, |max| max.div_ceil(shards));
        Ok(Some(Arc::new(NodeVirtuals {
            kinds: v.kinds.clone(),
            store,
            cap_per_shard,
            tick,
            shared,
            reminder_scan: v.reminder_scan,
            scan_counts: Arc::default(),
            inboxes: inboxes.clone(),
        })))
    }

    /// A shard's empty registry.
    pub(crate) fn registry(node: Option<&NodeVirtuals>) -> Registry {
        let Some(node) = node else {
            return Registry::new(Vec::new(), usize::MAX);
        };
        let kinds = node
            .kinds
            .iter()
            .map(|k| KindSlot {
                name: k.name.clone(),
                idle_ms: u64::try_from(k.idle.as_millis()).unwrap_or(u64::MAX),
            })
            .collect();
        Registry::new(kinds, node.cap_per_shard)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory for one test (not created).
    pub(crate) fn scratch_dir(name: &str) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("myriad-{name}-{}-{n}", std::process::id()))
    }
}
