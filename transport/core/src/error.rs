//! The errors of the codec, in a module of their own so that the modules
//! that report them (the envelope layout, the codec, the handshake) depend
//! on it and not on each other.

use crate::wire::Truncated;

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
