//! The socket-free core of Myriad's transport: Noise handshakes, zones, node
//! keys and the frame codec, as state machines over bytes.
//!
//! Like `quinn-proto`, nothing here touches a socket, a clock or a runtime, so
//! everything is tested deterministically and fuzzed. A driver (the glommio
//! layer) owns the `TcpStream` and moves bytes:
//!
//! 1. it builds a [`LinkConfig`] from the node's [`NodeName`], [`StaticKeypair`]
//!    and [`ZoneConfig`];
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

#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod cipher;
pub mod codec;
mod crypto;
pub mod envelope;
pub mod frame;
pub mod handshake;
pub mod keys;
pub mod stats;
#[cfg(test)]
mod test_support;
pub mod text;
mod wire;
pub mod zone;

pub use codec::{Decoder, EncodeError, Encoder, ProtocolError, DEFAULT_MAX_MESSAGE_SIZE};
pub use envelope::{ControlOp, Envelope, ErrorCode, Kind, WorkerAddr};
pub use handshake::{
    Established, Handshake, HandshakeError, LinkConfig, PeerInfo, Step, PROTOCOL_VERSION,
};
pub use keys::{KeyError, PublicKey, StaticKeypair};
pub use stats::{LinkStats, Traffic};
pub use text::Text;
pub use zone::{resolve_node_name, NameError, NodeName, ZoneConfig, ZoneError, ZoneSecret};
