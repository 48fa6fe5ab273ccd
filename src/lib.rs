//! # Myriad
//!
//! A thread-per-core actor engine: millions of small stateful workers per
//! server, one message at a time each, addressed by name, and reachable on
//! other nodes of a zone exactly like local ones.
//!
//! This facade re-exports the engine ([`myriad_engine`]) and the transport
//! ([`myriad_transport`]). Start with [`Node::start`] and the [`Worker`] trait;
//! `docs/guide.md` walks through the rest.

pub use endpoint::MetricsListen;
pub use myriad_engine::*;
pub use myriad_http as http;
pub use myriad_http::llm;

mod endpoint;
pub mod prometheus;

/// The user's guide (`docs/guide.md`), here so that its examples are
/// compiled and run as doctests and can never drift from the code.
#[doc = include_str!("../docs/guide.md")]
pub mod guide {}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
pub use myriad_transport as transport;

/// The executor Myriad's shards run on: `myriad-glommio`, glommio 0.9.0 with
/// the fix for an executor that parks with runnable work
/// (`vendor/glommio/MYRIAD-PATCH.md`). A handler that needs glommio's own
/// I/O or timers should use this one: crates.io's `glommio` is a different
/// crate, and its calls find no executor on a Myriad shard.
pub use glommio;
