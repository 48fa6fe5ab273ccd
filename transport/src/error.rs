//! The errors of the protocol core, in a module of their own so that the
//! modules that report them (the envelope layout, the codec, the handshake)
//! depend on it and not on each other.

use std::net::SocketAddr;

use crate::keys::KeyError;
use crate::wire::Truncated;
use crate::zone::{NameError, ZoneError};

/// Why the encoder refused an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The body exceeds the link's maximum message size (the smaller of this
    /// node's and the peer's). Nothing was queued; the encoder stays usable.
    #[error("message of {size} bytes exceeds this link's maximum message size of {max} bytes")]
    TooLarge {
        /// The body's size.
        size: usize,
        /// The link's maximum.
        max: u32,
    },
    /// A worker name is empty or longer than 255 bytes. Nothing was queued.
    #[error("the {field} name must be 1 to 255 bytes long, not {len}")]
    BadName {
        /// Which name.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// Encryption failed (the 2^64 frame nonces are used up); close the link.
    #[error("encryption failed; the link must be closed and re-established")]
    Crypto,
}

/// A violation of the protocol by the peer (or corruption on the way). The
/// decoder that reports one stays failed: close the link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A frame failed authentication: tampered, truncated, reordered or not
    /// from this session.
    #[error("a frame failed to decrypt (tampered, reordered or not from this session)")]
    Decrypt,
    /// A frame too short to hold its authentication tag.
    #[error("a frame of {0} bytes is shorter than its 16-byte authentication tag")]
    ShortFrame(usize),
    /// A record runs past the end of its frame.
    #[error("a record runs past the end of its frame")]
    Truncated,
    /// A type, kind, flag or code this version does not know.
    #[error("unknown {what} {value:#04x}")]
    Unknown {
        /// What was being decoded.
        what: &'static str,
        /// The unknown byte.
        value: u8,
    },
    /// A name or message body that is not valid UTF-8.
    #[error("the {0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// Well-formed bytes that break a rule of the protocol.
    #[error("protocol violation: {0}")]
    Malformed(&'static str),
    /// The peer sent a message larger than this node accepts.
    #[error("the peer sent a message of {size} bytes; this node accepts at most {max}")]
    TooLarge {
        /// The size the peer announced.
        size: u64,
        /// This node's maximum message size.
        max: u32,
    },
}

impl From<Truncated> for ProtocolError {
    fn from(_: Truncated) -> Self {
        ProtocolError::Truncated
    }
}

/// Why a node could not join its zone.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The node has no usable name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The node's key could not be generated or loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The zone could not be configured (name or secret).
    #[error(transparent)]
    Zone(#[from] ZoneError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// The engine refused the node configuration or could not start it.
    #[error(transparent)]
    Engine(#[from] myriad_engine::Error),
}
