//! Why a node could not join its zone: [`TransportError`], in a module of
//! its own so that the configuration and the node depend on it and not on
//! each other.

use std::net::SocketAddr;

use myriad_link::keys::KeyError;
use myriad_link::zone::{NameError, ZoneError};

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
