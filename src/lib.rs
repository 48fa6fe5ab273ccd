//! # Myriad
//!
//! A thread-per-core actor engine: millions of small stateful workers per
//! server, one message at a time each, addressed by name, and reachable on
//! other nodes of a zone exactly like local ones.
//!
//! This facade re-exports the engine ([`myriad_engine`]) and the transport
//! ([`myriad_transport`]). Start with [`Node::start`] and the [`Worker`] trait;
//! `docs/guide.md` walks through the rest.

pub use myriad_engine::*;
pub use myriad_http as http;
pub use myriad_http::llm;
pub use myriad_transport as transport;
