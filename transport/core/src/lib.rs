//! The socket-free core of Myriad's transport: everything a link between two
//! nodes does that is not I/O. Like `quinn-proto`, it touches no socket,
//! clock or runtime, so it is tested deterministically and fuzzed; the
//! glommio driver in `myriad-transport` moves bytes and sleeps.
//!
//! 1. a driver builds a [`LinkConfig`] from the node's [`NodeName`],
//!    [`StaticKeypair`] and [`ZoneConfig`];
//! 2. it runs a [`Handshake`] (initiator on connect, responder on accept),
//!    writing what [`Step::Send`] hands it and feeding what it reads, until
//!    [`Step::Done`] yields the authenticated [`PeerInfo`] plus an [`Encoder`]
//!    and a [`Decoder`];
//! 3. it hands those to the link's [`LinkState`], which packs the
//!    [`Envelope`]s of sends, asks and replies into encrypted frames, decodes
//!    what arrives, matches replies to the asks waiting for them, sends
//!    heartbeats and notices a silent peer. The driver feeds it bytes and the
//!    time ([`LinkState::handle_input`], [`LinkState::handle_timeout`]),
//!    writes what [`LinkState::poll_transmit`] hands it, and sleeps until
//!    [`LinkState::poll_timeout`].
//!
//! Any error from the handshake or the decoder means "close this link"; the
//! node goes on. The wire format is specified in `docs/protocol.md`.
//!
//! Module dependencies point one way: `wire`, `crypto`, `frame` and `cipher`
//! at the bottom; `keys`, `zone`, `error` and `stats` above them; then
//! `envelope`, `codec`, `handshake`, `remote_error`, `flow`, `backlog`, `watches`; `link` on top.

#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod backlog;
mod cipher;
pub mod codec;
mod crypto;
pub mod envelope;
mod error;
pub mod flow;
pub mod frame;
pub mod handshake;
pub mod keys;
pub mod link;
pub mod remote_error;
pub mod stats;
#[cfg(test)]
mod test_support;
mod watches;
mod wire;
pub mod zone;

pub use codec::{Decoder, EncodeError, Encoder, ProtocolError, DEFAULT_MAX_MESSAGE_SIZE};
pub use envelope::{ControlOp, Envelope, ErrorCode, Kind, WorkerAddr};
pub use handshake::{
    Established, Handshake, HandshakeError, LinkConfig, PeerInfo, Step, MAX_ADVERTISED_KINDS,
    PROTOCOL_VERSION,
};
pub use keys::{KeyError, PublicKey, StaticKeypair};
pub use link::{LinkError, LinkState};
pub use myriad_engine::Message;
pub use stats::{LinkStats, Traffic};
pub use watches::Exit;
pub use zone::{resolve_node_name, NameError, NodeName, ZoneConfig, ZoneError, ZoneSecret};
