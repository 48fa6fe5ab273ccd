//! Shared counters behind [`Zone::stats`](crate::Zone::stats): traffic per
//! peer and per node, and the failures links end with. Links add to them once
//! per read or write (not per message), from any shard.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::stats::Traffic;

/// Traffic in one direction, added to by many links.
#[derive(Debug, Default)]
pub(crate) struct TrafficCounter {
    bytes: AtomicU64,
    frames: AtomicU64,
    envelopes: AtomicU64,
}

impl TrafficCounter {
    /// Adds `delta`.
    pub(crate) fn add(&self, delta: Traffic) {
        self.bytes.fetch_add(delta.bytes, Relaxed);
        self.frames.fetch_add(delta.frames, Relaxed);
        self.envelopes.fetch_add(delta.envelopes, Relaxed);
    }

    /// The totals so far.
    pub(crate) fn get(&self) -> Traffic {
        Traffic {
            bytes: self.bytes.load(Relaxed),
            frames: self.frames.load(Relaxed),
            envelopes: self.envelopes.load(Relaxed),
        }
    }
}

/// Traffic with one peer (or with all of them).
#[derive(Debug, Default)]
pub(crate) struct PeerTraffic {
    pub(crate) sent: TrafficCounter,
    pub(crate) received: TrafficCounter,
}

/// A monotonic event count.
#[derive(Debug, Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    /// Counts one event.
    pub(crate) fn bump(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    /// Counts `n` events.
    pub(crate) fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Relaxed);
        }
    }

    /// Events so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// The node's totals.
#[derive(Debug, Default)]
pub(crate) struct NodeCounters {
    pub(crate) traffic: PeerTraffic,
    pub(crate) handshake_failures: Count,
    pub(crate) decrypt_failures: Count,
    pub(crate) protocol_errors: Count,
    pub(crate) reconnects: Count,
    pub(crate) undeliverable: Count,
    pub(crate) abandoned_asks: Count,
}
