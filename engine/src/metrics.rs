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
    /// Handshakes that failed (counter).
    pub handshake_failures: u64,
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
}
