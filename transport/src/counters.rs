//! Shared counters behind [`Zone::stats`](crate::Zone::stats): traffic per
//! peer and per node, and the failures links end with. Links add to them once
//! per read or write (not per message), from any shard.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::stats::{HandshakeFailure, HandshakeFailures, RoundTrips, Traffic};

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

/// Traffic with one peer (or with all of them), and the heartbeat round
/// trips measured on its links.
#[derive(Debug, Default)]
pub(crate) struct PeerTraffic {
    pub(crate) sent: TrafficCounter,
    pub(crate) received: TrafficCounter,
    pub(crate) rtt: RttCounter,
}

/// Heartbeat round trips, recorded by many links (nanoseconds).
#[derive(Debug, Default)]
pub(crate) struct RttCounter {
    samples: AtomicU64,
    last: AtomicU64,
    /// `u64::MAX` until the first sample.
    min: AtomicU64,
    max: AtomicU64,
    sum: AtomicU64,
}

impl RttCounter {
    /// Records one round trip.
    pub(crate) fn record(&self, nanos: u64) {
        self.last.store(nanos, Relaxed);
        self.sum.fetch_add(nanos, Relaxed);
        self.max.fetch_max(nanos, Relaxed);
        // `min` starts at 0 (the `Default`): 0 means "none yet", so store
        // `nanos + 1` and subtract on reading.
        let shifted = nanos.saturating_add(1);
        let _ = self.min.fetch_update(Relaxed, Relaxed, |m| {
            (m == 0 || shifted < m).then_some(shifted)
        });
        self.samples.fetch_add(1, Relaxed);
    }

    /// What was recorded so far.
    pub(crate) fn get(&self) -> RoundTrips {
        RoundTrips {
            samples: self.samples.load(Relaxed),
            last: self.last.load(Relaxed),
            min: self.min.load(Relaxed).saturating_sub(1),
            max: self.max.load(Relaxed),
            sum: self.sum.load(Relaxed),
        }
    }
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

impl NodeCounters {
    /// Counts one failed handshake.
    pub(crate) fn handshake_failed(&self, reason: HandshakeFailure) {
        self.handshake_failures[reason.index()].bump();
    }

    /// The failed handshakes so far, by reason.
    pub(crate) fn handshake_failures(&self) -> HandshakeFailures {
        let mut by_reason = HandshakeFailures::default();
        for reason in HandshakeFailure::ALL {
            by_reason.add(reason, self.handshake_failures[reason.index()].get());
        }
        by_reason
    }
}

/// The node's totals.
#[derive(Debug, Default)]
pub(crate) struct NodeCounters {
    pub(crate) traffic: PeerTraffic,
    /// Failed handshakes, by [`HandshakeFailure::index`].
    pub(crate) handshake_failures: [Count; HandshakeFailure::ALL.len()],
    pub(crate) decrypt_failures: Count,
    pub(crate) protocol_errors: Count,
    pub(crate) reconnects: Count,
    pub(crate) undeliverable: Count,
    pub(crate) abandoned_asks: Count,
}
