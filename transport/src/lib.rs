//! Myriad's transport: encrypted, mutually authenticated links between the
//! nodes of a zone, so that a worker on another node is addressed by name
//! (`node/worker`) and used with the same `send` and `send_and_receive` as a
//! local one.
//!
//! # Joining a zone
//!
//! [`start_node`] (or [`install`], to start the node yourself) takes the
//! engine's `NodeConfig` and a [`TransportConfig`] — the zone, a listen
//! address, seeds — and returns the node and its [`Zone`] handle:
//! [`Zone::nodes`] lists the live nodes by name prefix, and
//! [`Zone::start_worker`], [`Zone::stop_worker`] and [`Zone::list_workers`]
//! act on other nodes. `docs/deploy.md` shows a two-process run and a
//! Kubernetes deployment.
//!
//! # How it is built
//!
//! Like `quinn-proto`, the protocol core touches no socket, clock or runtime,
//! so it is tested deterministically and fuzzed:
//!
//! 1. a driver builds a [`LinkConfig`] from the node's [`NodeName`],
//!    [`StaticKeypair`] and [`ZoneConfig`];
//! 2. it runs a [`Handshake`] (initiator on connect, responder on accept),
//!    writing what [`Step::Send`] hands it and feeding what it reads, until
//!    [`Step::Done`] yields the authenticated [`PeerInfo`] plus an [`Encoder`]
//!    and a [`Decoder`];
//! 3. from then on it [`Encoder::push`]es [`Envelope`]s and writes
//!    [`Encoder::flush`]ed frames, and [`Decoder::feed`]s what it reads and
//!    pulls envelopes with [`Decoder::next_envelope`].
//!
//! Any error from the handshake or the decoder means "close this link"; the
//! node goes on. The wire format is specified in `docs/protocol.md`.
//!
//! The glommio driver (`driver/`) is that driver: on every shard it accepts
//! connections, keeps one outbound link per remote node, and is the
//! engine's remote router, so a remote send never leaves its shard's core.

#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod cipher;
pub mod codec;
mod config;
mod counters;
mod crypto;
mod driver;
pub mod envelope;
mod error;
pub mod frame;
mod handle;
pub mod handshake;
pub mod keys;
mod membership;
mod node;
pub mod stats;
#[cfg(test)]
mod test_support;
mod wire;
pub mod zone;

pub use codec::{Decoder, EncodeError, Encoder, ProtocolError, DEFAULT_MAX_MESSAGE_SIZE};
pub use config::{TransportConfig, DEFAULT_PORT};
pub use envelope::{ControlOp, Envelope, ErrorCode, Kind, WorkerAddr};
pub use error::TransportError;
pub use handle::{PeerStats, RemoteWorker, TransportStats, Zone};
pub use handshake::{
    Established, Handshake, HandshakeError, LinkConfig, PeerInfo, Step, PROTOCOL_VERSION,
};
pub use keys::{KeyError, PublicKey, StaticKeypair};
pub use myriad_engine::Message;
pub use node::{install, start_node};
pub use stats::{LinkStats, Traffic};
pub use zone::{resolve_node_name, NameError, NodeName, ZoneConfig, ZoneError, ZoneSecret};
