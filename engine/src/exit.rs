//! Why a worker is gone, as its watchers learn it (`Context::watch`,
//! `Worker::on_terminated`), and who the watchers are.

use std::sync::Arc;

use crate::WorkerRef;

/// Why a watched worker terminated: the `reason` of
/// [`Worker::on_terminated`](crate::Worker::on_terminated).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitReason {
    /// It was stopped (`stop_worker`, `ctx.stop()`, the node's shutdown).
    Stopped,
    /// It panicked (in a handler, `on_start`, `on_stop` or its `Drop`);
    /// the text of the panic.
    Panicked(Arc<str>),
    /// Its node became unreachable (the link to it was lost, or it stopped).
    NodeLost,
    /// It was already gone when the watch was made (or never existed).
    NoSuchWorker,
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::Stopped => f.write_str("stopped"),
            ExitReason::Panicked(text) => f.write_str(text),
            ExitReason::NodeLost => f.write_str("its node was lost"),
            ExitReason::NoSuchWorker => f.write_str("no such worker"),
        }
    }
}

/// Called once with the watched worker and why it ended: a watch that a
/// transport keeps for a watcher on another node
/// ([`ShardHandle::watch_with`](crate::plugin::ShardHandle::watch_with)).
/// It may run on any shard of the node.
pub type OnExit = Box<dyn FnOnce(WorkerRef, ExitReason) + Send>;

/// Who is told when a watched worker ends; kept with the watched worker's
/// slot (`slots.rs`).
pub(crate) enum Watcher {
    /// A worker: a notice in its mailbox, for `Worker::on_terminated`.
    Worker(WorkerRef),
    /// A transport's callback, told by calling it.
    Callback {
        /// Tells it from the other callbacks watching the same worker.
        key: u64,
        notify: OnExit,
    },
}

/// Which watcher a [`Watcher`] is: what `unwatch` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatcherId {
    Worker(WorkerRef),
    Callback(u64),
}

impl Watcher {
    pub(crate) fn id(&self) -> WatcherId {
        match self {
            Watcher::Worker(r) => WatcherId::Worker(*r),
            Watcher::Callback { key, .. } => WatcherId::Callback(*key),
        }
    }
}
