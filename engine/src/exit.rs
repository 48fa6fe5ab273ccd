//! Why a worker is gone, as its watchers learn it (`Context::watch`,
//! `Worker::on_terminated`).

use std::sync::Arc;

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
