//! What every shard of a node shares: its identity, settings, member list,
//! counters, and the way into each shard. Built once by `node::install`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::admission::HandshakeSlots;
use super::{net, Command, ShardStart};
use crate::config::TransportConfig;
use crate::counters::NodeCounters;
use crate::handshake::LinkConfig;
use crate::membership::Membership;
use crate::zone::NodeName;

/// What every shard of a node shares: identity, settings, member list,
/// counters, and the way into each shard.
pub(crate) struct Shared {
    /// Tells apart the nodes of one process.
    pub(crate) id: u64,
    pub(crate) name: NodeName,
    pub(crate) link: LinkConfig,
    pub(crate) config: TransportConfig,
    pub(crate) socket: net::SocketOptions,
    pub(crate) local_addr: SocketAddr,
    pub(crate) advertise: SocketAddr,
    pub(crate) membership: Membership,
    pub(crate) counters: NodeCounters,
    /// The handshakes in progress on accepted connections.
    pub(crate) handshakes: Arc<HandshakeSlots>,
    pub(crate) commands: Vec<flume::Sender<Command>>,
    /// Each shard's listener and command channel, taken when it starts.
    pub(crate) startup: Mutex<Vec<Option<ShardStart>>>,
}

impl Shared {
    /// Shard `shard`'s listener and command channel (once).
    pub(crate) fn take_startup(&self, shard: usize) -> Option<ShardStart> {
        let mut startup = self.startup.lock().unwrap_or_else(|p| p.into_inner());
        startup.get_mut(shard).and_then(Option::take)
    }
}
