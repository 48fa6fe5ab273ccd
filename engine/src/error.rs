//! The engine's error type: every way a send, an ask or a start can fail.

use std::time::Duration;

/// Everything that can go wrong when talking to workers.
///
/// Errors are `Clone` so that one failure (a worker's panic, a lost link) can
/// be handed to every caller waiting on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `send_and_receive` got no reply in time. The text contains "timeout".
    #[error("timeout: no reply from {worker} within {after:?}")]
    Timeout {
        /// The worker that was asked.
        worker: String,
        /// How long the caller waited.
        after: Duration,
    },
    /// No live worker has this name or reference.
    #[error("no such worker: {0}")]
    NoSuchWorker(String),
    /// A worker name outside `[A-Za-z0-9_-]+` (or empty, or too long).
    #[error("invalid worker name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A worker with this name is already running on the node.
    #[error("worker name {0:?} is already taken")]
    NameTaken(String),
    /// The receiver's mailbox (or the path to it) is full; nothing was enqueued.
    #[error("mailbox of {0} is full")]
    MailboxFull(String),
    /// The worker panicked or its handler returned an error for this message.
    #[error("worker {worker} failed: {reason}")]
    WorkerFailed {
        /// The worker that failed.
        worker: String,
        /// The panic message or the handler's error text.
        reason: String,
    },
    /// The worker finished handling an ask without calling `reply`.
    #[error("worker {0} handled the message without replying")]
    NoReply(String),
    /// `reply` was called for a message that was not sent with
    /// `send_and_receive`, or was called twice.
    #[error("nothing to reply to: the current message was not an ask, or it was already answered")]
    NothingToReplyTo,
    /// A payload that is not valid UTF-8, or otherwise not a message.
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// A message larger than the configured maximum.
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// Size of the rejected message.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// An address names another node, and no route to it is known.
    #[error("no route to node {0:?}")]
    NoRoute(String),
    /// The link to a remote node went down while the request was in flight.
    #[error("connection lost to node {0:?}")]
    ConnectionLost(String),
    /// The node is shutting down or has stopped.
    #[error("the node is shut down")]
    NodeStopped,
    /// The shard's thread has ended (it failed): nothing on it answers.
    #[error("shard {0} is down: its thread has ended")]
    ShardDown(usize),
    /// A blocking [`NodeHandle`](crate::NodeHandle) call was made on a shard
    /// thread, where waiting would stop the shard that must answer it.
    #[error("blocking NodeHandle::{0} called on a shard thread; use the worker's Context instead")]
    BlockingOnShard(&'static str),
    /// A shard index outside `0..shards`.
    #[error("no shard {shard}: the node has {shards} shards")]
    NoSuchShard {
        /// The requested shard.
        shard: usize,
        /// How many shards the node has.
        shards: usize,
    },
    /// The node configuration is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A virtual worker's state could not be loaded, used or saved (a store
    /// failure, a corrupt stored state); the text says which key and why.
    #[error("state store: {0}")]
    StateStore(String),
    /// A shard's executor could not be started (io_uring, locked memory, cores).
    #[error("cannot start shard: {0}")]
    Startup(String),
}

/// The result type of the engine's API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error a handler may return: any error type converts into it with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_text_says_timeout() {
        let e = Error::Timeout {
            worker: "greeter".into(),
            after: Duration::from_millis(5),
        };
        assert!(e.to_string().contains("timeout"), "{e}");
    }
}
