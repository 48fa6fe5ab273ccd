//! # myriad-engine
//!
//! The shard-per-core actor runtime of Myriad. A [`Node`] runs one shard per
//! core; each shard is a glommio executor pinned to its core and owns the
//! [`Worker`]s placed on it. Workers exchange [`Message`]s (UTF-8 text) with
//! [`Context::send`] (fire and forget) and [`Context::send_and_receive`]
//! (request and reply); plain threads use a [`NodeHandle`].
//!
//! ```no_run
//! use std::time::Duration;
//! use myriad_engine::{BoxError, Context, Message, Node, NodeConfig, Worker};
//!
//! struct Greeter;
//!
//! impl Worker for Greeter {
//!     async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
//!         ctx.reply(format!("Hello, {msg}!"))?;
//!         Ok(())
//!     }
//! }
//!
//! let reply = Node::start(NodeConfig::default(), |ctx| async move {
//!     ctx.start_worker("greeter", Greeter).await?;
//!     ctx.send_and_receive("greeter", "world", Duration::from_secs(1)).await
//! })
//! .unwrap();
//! assert_eq!(reply.unwrap(), "Hello, world!");
//! ```
//!
//! See `docs/architecture.md` for how shards, mailboxes and cross-shard rings
//! fit together.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
// A `cfg(loom)` build uses only what its model tests need.
#![cfg_attr(loom, allow(dead_code))]

// The cross-thread primitives, alone in a `cfg(loom)` build (see `sync.rs`).
mod doorbell;
mod spare;
mod suspended;
mod sync;

/// Compiles `items` only in a normal build: a `cfg(loom)` build holds just
/// the primitives that loom model-checks.
macro_rules! not_under_loom {
    ($($item:item)*) => { $( #[cfg(not(loom))] $item )* };
}

not_under_loom! {
    mod address;
    mod ask;
    mod config;
    mod context;
    mod directory;
    mod dropped;
    mod envelope;
    mod error;
    mod exit;
    mod host;
    mod inbox;
    mod link;
    mod liveness;
    mod mailbox;
    mod message;
    mod meter;
    pub mod metrics;
    mod node;
    mod node_names;
    pub mod plugin;
    mod remote;
    mod service;
    mod shard;
    mod signal;
    mod slots;
    mod stall;
    mod supervisor;
    mod virtual_workers;
    mod worker;
    pub use address::{validate_name, Address, RemoteAddress, WorkerRef, MAX_NAME_LEN};
    pub use config::NodeConfig;
    pub use context::Context;
    pub use dropped::Dropped;
    pub use error::{BoxError, Error, Result};
    pub use exit::ExitReason;
    pub use message::Message;
    pub use metrics::Metrics;
    pub use node::{Node, NodeHandle, WorkerInfo};
    pub use remote::Replier;
    pub use supervisor::{ChildSpec, Restart, Strategy, Supervisor};
    pub use virtual_workers::{
        Key, MemoryStore, Persistent, RedbStore, StateStore, StoreError, StoreLatency, VirtualStats,
        VirtualWorker, Write, DEFAULT_IDLE, DEFAULT_REMINDER_SCAN, MAX_KEY_ID_LEN, REDB_FILE,
    };
    #[cfg(feature = "postgres")]
    pub use virtual_workers::{PostgresStore, POSTGRES_TABLE};
    pub use worker::Worker;
}
