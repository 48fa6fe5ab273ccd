//! [`Zone`]: a node's handle on its zone — which nodes are live, remote
//! worker operations, and link statistics. It is `Clone + Send + Sync`;
//! its async methods work on any thread: on a shard of the node they use
//! that shard's links, elsewhere they go through shard 0.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use myriad_engine::metrics::{self, LinkMetrics, PeerMetrics};
use myriad_engine::{Error, Message, Result};

use crate::driver::Shared;
use crate::driver::{self, remote_ops};
use crate::envelope::ControlOp;
use crate::keys::PublicKey;
use crate::stats::{LinkStats, RoundTrips, Traffic};

pub use crate::driver::remote_ops::RemoteWorker;

/// Traffic with one peer node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer's name.
    pub name: String,
    /// Where it listens, if known.
    pub address: Option<SocketAddr>,
    /// Established links to it, over all shards and both directions.
    pub links: usize,
    /// What this node sent it.
    pub sent: Traffic,
    /// What this node received from it.
    pub received: Traffic,
    /// Heartbeat round trips measured on the links with it (nanoseconds).
    pub heartbeat_rtt: RoundTrips,
}

/// The state of a node's links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportStats {
    /// Totals over every link this node had: traffic, and the links closed
    /// by decryption failures, protocol violations and failed handshakes.
    pub links: LinkStats,
    /// Reconnection attempts after a link failed or went down.
    pub reconnects: u64,
    /// Messages that could not be delivered: received for a worker that
    /// does not exist or stopped (reported back to the sender, which counts
    /// them in its `NodeHandle::dropped`; from a version 1 peer, also for a
    /// full mailbox, unreported), or accepted for a link whose connection
    /// attempt then failed, or that the peer refused when it came up (too
    /// large for it). Sends in doubt when a link closes are not among them
    /// (they may have been delivered): see `Dropped::in_doubt`.
    pub undeliverable: u64,
    /// Asks sent to other nodes that a link forgot unanswered because their
    /// askers had stopped waiting (timed out), checked at each heartbeat
    /// tick.
    pub abandoned_asks: u64,
    /// Every known peer, live or not, by name.
    pub peers: Vec<PeerStats>,
}

impl TransportStats {
    /// The names of the peers with at least one established link.
    pub fn connected_peers(&self) -> Vec<&str> {
        self.peers
            .iter()
            .filter(|p| p.links > 0)
            .map(|p| p.name.as_str())
            .collect()
    }
}

/// A node's handle on its zone.
#[derive(Clone)]
pub struct Zone {
    shared: Arc<Shared>,
}

impl Zone {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Zone { shared }
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        self.shared.name.as_str()
    }

    /// Where this node accepts links (the actual port if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// This node's static public key (what other zones pin).
    pub fn public_key(&self) -> &PublicKey {
        self.shared.link.keypair().public_key()
    }

    /// The live nodes of the zone (other than this one) whose name starts
    /// with `filter`, sorted. A node is live while it has an established,
    /// heartbeat-checked link with this one.
    pub fn nodes(&self, filter: &str) -> Vec<String> {
        self.shared.membership.live(filter)
    }

    /// Link statistics.
    pub fn stats(&self) -> TransportStats {
        stats_of(&self.shared)
    }

    /// Starts worker `name` on node `node`, made by the factory that node
    /// registered as `kind` (see
    /// [`TransportConfig::worker_kind`](crate::TransportConfig::worker_kind)).
    /// Then address it as `node/name`.
    pub async fn start_worker(&self, node: &str, name: &str, kind: &str) -> Result<()> {
        let body = Message::from(kind.to_owned());
        self.request(node, ControlOp::StartWorker, Some(name), body)
            .await
            .map(drop)
    }

    /// Stops worker `name` on node `node`.
    pub async fn stop_worker(&self, node: &str, name: &str) -> Result<()> {
        self.request(node, ControlOp::StopWorker, Some(name), Message::default())
            .await
            .map(drop)
    }

    /// Lists the workers of node `node`.
    pub async fn list_workers(&self, node: &str) -> Result<Vec<RemoteWorker>> {
        let list = self
            .request(node, ControlOp::ListWorkers, None, Message::default())
            .await?;
        Ok(remote_ops::parse_list(&list))
    }

    async fn request(
        &self,
        node: &str,
        op: ControlOp,
        worker: Option<&str>,
        body: Message,
    ) -> Result<Message> {
        let (reply, answer) = flume::bounded(1);
        match driver::local(self.shared.id) {
            Some(st) => st.request(node, op, worker, body, reply),
            None => {
                let (node, worker) = (node.to_owned(), worker.map(str::to_owned));
                let command: driver::Command = Box::new(move |st| {
                    st.request(&node, op, worker.as_deref(), body, reply);
                });
                let shard0 = self.shared.commands.first().ok_or(Error::NodeStopped)?;
                shard0.send(command).map_err(|_| Error::NodeStopped)?;
            }
        }
        answer.recv_async().await.map_err(|_| Error::NodeStopped)?
    }
}

/// The link statistics of the node `shared` belongs to.
pub(crate) fn stats_of(shared: &Shared) -> TransportStats {
    let counters = &shared.counters;
    let peers = shared
        .membership
        .snapshot()
        .into_iter()
        .map(|m| PeerStats {
            name: m.name.to_string(),
            address: m.addr,
            links: m.links,
            sent: m.traffic.sent.get(),
            received: m.traffic.received.get(),
            heartbeat_rtt: m.traffic.rtt.get(),
        })
        .collect();
    let handshake_failures = counters.handshake_failures();
    TransportStats {
        links: LinkStats {
            sent: counters.traffic.sent.get(),
            received: counters.traffic.received.get(),
            decrypt_failures: counters.decrypt_failures.get(),
            protocol_errors: counters.protocol_errors.get(),
            handshake_failures: handshake_failures.total(),
            handshake_failures_by_reason: handshake_failures,
        },
        reconnects: counters.reconnects.get(),
        undeliverable: counters.undeliverable.get(),
        abandoned_asks: counters.abandoned_asks.get(),
        peers,
    }
}

impl From<TransportStats> for LinkMetrics {
    fn from(stats: TransportStats) -> Self {
        LinkMetrics {
            sent: traffic(stats.links.sent),
            received: traffic(stats.links.received),
            reconnects: stats.reconnects,
            handshake_failures: stats.links.handshake_failures,
            handshake_failures_by_reason: stats.links.handshake_failures_by_reason,
            decrypt_failures: stats.links.decrypt_failures,
            protocol_errors: stats.links.protocol_errors,
            peers: stats
                .peers
                .into_iter()
                .map(|p| PeerMetrics {
                    peer: p.name,
                    links: p.links as u64,
                    sent: traffic(p.sent),
                    received: traffic(p.received),
                    heartbeat_rtt: p.heartbeat_rtt,
                })
                .collect(),
        }
    }
}

/// Traffic as the metrics snapshot names it (an envelope is a message).
fn traffic(t: Traffic) -> metrics::Traffic {
    metrics::Traffic {
        bytes: t.bytes,
        frames: t.frames,
        messages: t.envelopes,
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Zone")
            .field("node", &self.shared.name)
            .field("zone", &self.shared.config.zone.name())
            .field("local_addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}
