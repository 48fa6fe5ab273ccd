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
//! The protocol core — handshake, codec, envelopes and the link state
//! machine — is the crate `myriad-link` (`transport/core/`), which touches
//! no socket, clock or runtime and is re-exported here (its modules keep
//! their paths: [`codec`], [`envelope`], [`frame`], [`handshake`], [`keys`],
//! [`stats`], [`zone`]). See its documentation for how a driver uses it.
//!
//! This crate is the glommio driver of that core (`driver/`): on every
//! shard it accepts connections, keeps one outbound link per remote node,
//! and is the engine's remote router, so a remote send never leaves its
//! shard's core. Per connection it runs a reader and a writer; per link,
//! one timer that sleeps until the deadline the link's state asks for.

#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod config;
mod counters;
mod driver;
mod error;
mod handle;
mod membership;
mod node;

pub use config::{TransportConfig, ALLOW_OPEN_ZONE_ENV, DEFAULT_PORT};
pub use error::TransportError;
pub use handle::{PeerStats, RemoteWorker, TransportStats, Zone};
pub use myriad_link::{codec, envelope, frame, handshake, keys, stats, zone};
pub use myriad_link::{
    resolve_node_name, ControlOp, Decoder, EncodeError, Encoder, Envelope, ErrorCode, Established,
    Handshake, HandshakeError, KeyError, Kind, LinkConfig, LinkStats, Message, NameError, NodeName,
    PeerInfo, ProtocolError, PublicKey, StaticKeypair, Step, Traffic, WorkerAddr, ZoneConfig,
    ZoneError, ZoneSecret, DEFAULT_MAX_MESSAGE_SIZE, MAX_ADVERTISED_KINDS, PROTOCOL_VERSION,
};
pub use node::{install, start_node};
