//! A node's metrics as one plain snapshot: what [`NodeHandle::metrics`]
//! returns, what the Prometheus endpoint renders and what a load-test report
//! samples. Every type here is plain data (serde-serialisable); the live
//! counters that fill it are owned by each shard's thread (`meter.rs`)
//! and read through the cross-shard control path only when a snapshot is
//! asked for.
//!
//! Names are stable: `docs/operations.md` lists each field with the
//! Prometheus metric it becomes.
//!
//! [`NodeHandle::metrics`]: crate::NodeHandle::metrics

use serde::{Deserialize, Serialize};

use crate::Dropped;

/// Everything a node counts, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The node's name.
    pub node: String,
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardMetrics>,
    /// The node's links to other nodes, if a transport is installed.
    pub links: Option<LinkMetrics>,
}

impl Metrics {
    /// Sums a counter over the shards, e.g. `m.total(|s| s.handled)`.
    pub fn total(&self, counter: impl Fn(&ShardMetrics) -> u64) -> u64 {
        self.shards.iter().map(counter).sum()
    }
}

/// What one shard counted since the node started (counters) or holds now
/// (gauges).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardMetrics {
    /// The shard's index.
    pub shard: usize,
    /// Messages handled by this shard's workers (counter).
    pub handled: u64,
    /// Messages routed from this shard, by where they went (counters).
    pub sent: Sent,
    /// The deepest mailbox this shard has held, in messages (a high-water
    /// mark since start).
    pub mailbox_depth_max: u64,
    /// Depth of the receiving mailbox right after a push, sampled one push
    /// in [`SAMPLE_EVERY`] (messages).
    pub mailbox_depth: Histogram,
    /// Time from a message's push into its mailbox to its handler being
    /// given it, sampled (nanoseconds).
    pub mailbox_wait: Histogram,
    /// Time from a handler being given a message to it asking for the next
    /// (awaits included), sampled one message in [`SAMPLE_EVERY`]
    /// (nanoseconds).
    pub handler_time: Histogram,
    /// Workers living on this shard (gauge).
    pub workers_live: u64,
    /// Runs suspended in an `.await` (a sleep, an ask), waiting to be woken
    /// (gauge).
    pub workers_suspended: u64,
    /// Workers queued to run (gauge).
    pub run_queue: u64,
    /// Asks (`send_and_receive`) made by this shard's workers.
    pub asks: Asks,
    /// Sleeps of this shard's workers not yet over (gauge).
    pub sleeps_pending: u64,
    /// Plain messages accepted and then dropped on this shard, by reason
    /// (counters).
    pub dropped: Dropped,
    /// Workers stopped by a panic in a handler, `on_start` or
    /// `on_terminated` (counter).
    pub panics: u64,
    /// Times the shard did not come back to its loop within the stall
    /// threshold (counter; see `NodeConfig::stall_threshold`).
    pub stalls: u64,
}

/// How many events one sample stands for in the sampled histograms
/// ([`ShardMetrics::mailbox_depth`], [`ShardMetrics::mailbox_wait`],
/// [`ShardMetrics::handler_time`]).
pub const SAMPLE_EVERY: u64 = 64;

/// Messages routed from one shard, by destination (counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// To a worker of the same shard.
    pub local: u64,
    /// To a worker of another shard of this node.
    pub cross_shard: u64,
    /// To a worker of another node, accepted by the transport.
    pub remote: u64,
}

/// Asks made by one shard's workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asks {
    /// Asks waiting for their answer now (gauge).
    pub in_flight: u64,
    /// Asks answered with a message (counter).
    pub answered: u64,
    /// Asks that got no answer in time (counter).
    pub timed_out: u64,
    /// Asks answered with an error other than a timeout (counter).
    pub failed: u64,
}

/// A distribution, summarised: its count, a few percentiles and cumulative
/// buckets (the shape of a Prometheus histogram). Values are in the unit the
/// field documents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Samples recorded.
    pub count: u64,
    /// Sum of the samples.
    pub sum: u64,
    /// Smallest sample (0 when empty).
    pub min: u64,
    /// Largest sample (0 when empty).
    pub max: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Cumulative buckets, `le` ascending: samples `<= le`. The last bucket
    /// is not `+Inf`: samples above it are `count - last.count`.
    pub buckets: Vec<Bucket>,
}

/// One cumulative histogram bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Upper bound, inclusive.
    pub le: u64,
    /// Samples at or below `le`.
    pub count: u64,
}

/// The node's links to other nodes, as the transport counts them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkMetrics {
    /// Traffic sent, all links together (counters).
    pub sent: Traffic,
    /// Traffic received, all links together (counters).
    pub received: Traffic,
    /// Reconnection attempts after a link failed or went down (counter).
    pub reconnects: u64,
    /// Handshakes that failed, all reasons together (counter; the sum of
    /// [`handshake_failures_by_reason`](Self::handshake_failures_by_reason)).
    pub handshake_failures: u64,
    /// Handshakes that failed, by reason (counters).
    pub handshake_failures_by_reason: HandshakeFailures,
    /// Links closed because a frame failed to decrypt (counter).
    pub decrypt_failures: u64,
    /// Links closed for another protocol violation (counter).
    pub protocol_errors: u64,
    /// Per peer node, by name.
    pub peers: Vec<PeerMetrics>,
}

/// Traffic in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Bytes on the wire, framing and tags included.
    pub bytes: u64,
    /// Encrypted frames.
    pub frames: u64,
    /// Messages (envelopes: messages, replies, control, heartbeats).
    pub messages: u64,
}

/// The links with one peer node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerMetrics {
    /// The peer's name.
    pub peer: String,
    /// Established links to it now, over all shards and both directions
    /// (gauge).
    pub links: u64,
    /// Traffic sent to it (counters).
    pub sent: Traffic,
    /// Traffic received from it (counters).
    pub received: Traffic,
    /// Heartbeat round-trip times measured on the links with it
    /// (nanoseconds).
    pub heartbeat_rtt: RoundTrips,
}

/// Why a handshake failed: the `reason` label of
/// `myriad_link_handshake_failures_total` (`docs/operations.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandshakeFailure {
    /// The peer is not of this zone: another zone secret or zone name, a
    /// secret on one side only, or a public key the zone does not pin.
    Zone,
    /// The peer claims this node's own name, or a name bound to another key.
    Identity,
    /// The peer's protocol versions do not overlap this node's.
    Version,
    /// A handshake message that does not follow the protocol.
    Malformed,
    /// The peer closed the connection before it learned who this node is.
    Closed,
    /// The peer closed the connection after this node's credentials: it
    /// refused them (its log says why).
    Rejected,
    /// Connecting and the handshake took longer than the connect timeout.
    Timeout,
    /// The connection could not be made or failed (refused, reset, ...).
    Io,
    /// Closed at accept, before any handshake work: too many handshakes
    /// were in progress, in total or from the connection's address.
    Busy,
    /// Anything else (a local setup failure).
    Other,
}

impl HandshakeFailure {
    /// Every reason, in the order they are exported.
    pub const ALL: [HandshakeFailure; 10] = [
        HandshakeFailure::Zone,
        HandshakeFailure::Identity,
        HandshakeFailure::Version,
        HandshakeFailure::Malformed,
        HandshakeFailure::Closed,
        HandshakeFailure::Rejected,
        HandshakeFailure::Timeout,
        HandshakeFailure::Io,
        HandshakeFailure::Busy,
        HandshakeFailure::Other,
    ];

    /// The reason's label, as in the serialised snapshot and Prometheus.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Zone => "zone",
            HandshakeFailure::Identity => "identity",
            HandshakeFailure::Version => "version",
            HandshakeFailure::Malformed => "malformed",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::Rejected => "rejected",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Io => "io",
            HandshakeFailure::Busy => "busy",
            HandshakeFailure::Other => "other",
        }
    }

    /// The reason's place in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Failed handshakes by reason (counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeFailures {
    /// See [`HandshakeFailure::Zone`].
    pub zone: u64,
    /// See [`HandshakeFailure::Identity`].
    pub identity: u64,
    /// See [`HandshakeFailure::Version`].
    pub version: u64,
    /// See [`HandshakeFailure::Malformed`].
    pub malformed: u64,
    /// See [`HandshakeFailure::Closed`].
    pub closed: u64,
    /// See [`HandshakeFailure::Rejected`].
    pub rejected: u64,
    /// See [`HandshakeFailure::Timeout`].
    pub timeout: u64,
    /// See [`HandshakeFailure::Io`].
    pub io: u64,
    /// See [`HandshakeFailure::Busy`].
    pub busy: u64,
    /// See [`HandshakeFailure::Other`].
    pub other: u64,
}

impl HandshakeFailures {
    /// The count of one reason.
    pub fn get(&self, reason: HandshakeFailure) -> u64 {
        *self.field(reason)
    }

    /// Adds `n` to the count of `reason`.
    pub fn add(&mut self, reason: HandshakeFailure, n: u64) {
        *self.field_mut(reason) += n;
    }

    /// All reasons together.
    pub fn total(&self) -> u64 {
        HandshakeFailure::ALL.iter().map(|&r| self.get(r)).sum()
    }

    /// Each reason with its count, in [`HandshakeFailure::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (HandshakeFailure, u64)> + '_ {
        HandshakeFailure::ALL.iter().map(|&r| (r, self.get(r)))
    }

    fn field(&self, reason: HandshakeFailure) -> &u64 {
        match reason {
            HandshakeFailure::Zone => &self.zone,
            HandshakeFailure::Identity => &self.identity,
            HandshakeFailure::Version => &self.version,
            HandshakeFailure::Malformed => &self.malformed,
            HandshakeFailure::Closed => &self.closed,
            HandshakeFailure::Rejected => &self.rejected,
            HandshakeFailure::Timeout => &self.timeout,
            HandshakeFailure::Io => &self.io,
            HandshakeFailure::Busy => &self.busy,
            HandshakeFailure::Other => &self.other,
        }
    }

    fn field_mut(&mut self, reason: HandshakeFailure) -> &mut u64 {
        match reason {
            HandshakeFailure::Zone => &mut self.zone,
            HandshakeFailure::Identity => &mut self.identity,
            HandshakeFailure::Version => &mut self.version,
            HandshakeFailure::Malformed => &mut self.malformed,
            HandshakeFailure::Closed => &mut self.closed,
            HandshakeFailure::Rejected => &mut self.rejected,
            HandshakeFailure::Timeout => &mut self.timeout,
            HandshakeFailure::Io => &mut self.io,
            HandshakeFailure::Busy => &mut self.busy,
            HandshakeFailure::Other => &mut self.other,
        }
    }
}

impl std::ops::AddAssign for HandshakeFailures {
    fn add_assign(&mut self, other: HandshakeFailures) {
        for (reason, n) in other.iter() {
            self.add(reason, n);
        }
    }
}

/// Round-trip times of heartbeats (a ping and the peer's echo,
/// `docs/protocol.md` §10.1), in nanoseconds: the last one and the smallest,
/// largest and summed since start. All zero until the first sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundTrips {
    /// Round trips measured (counter).
    pub samples: u64,
    /// The latest one (gauge).
    pub last: u64,
    /// The shortest one.
    pub min: u64,
    /// The longest one.
    pub max: u64,
    /// All of them added up (counter): `sum / samples` is the mean.
    pub sum: u64,
}

impl RoundTrips {
    /// Records one round trip of `nanos` nanoseconds.
    pub fn record(&mut self, nanos: u64) {
        self.min = if self.samples == 0 {
            nanos
        } else {
            self.min.min(nanos)
        };
        self.max = self.max.max(nanos);
        self.last = nanos;
        self.sum = self.sum.saturating_add(nanos);
        self.samples += 1;
    }

    /// The mean round trip (0 without samples).
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.samples).unwrap_or(0)
    }
}
