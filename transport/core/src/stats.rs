//! Counters for a link: traffic in each direction and the failures that
//! closed links, summed by the driver per peer and per node. The codec
//! counts them ([`LinkStats::of`] is defined there).

use std::ops::AddAssign;

pub use myriad_engine::metrics::{HandshakeFailure, HandshakeFailures, RoundTrips};

/// Traffic in one direction of a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes on the wire, length prefixes and tags included.
    pub bytes: u64,
    /// Encrypted frames.
    pub frames: u64,
    /// Envelopes (a fragmented one counts once).
    pub envelopes: u64,
}

impl AddAssign for Traffic {
    fn add_assign(&mut self, other: Traffic) {
        self.bytes += other.bytes;
        self.frames += other.frames;
        self.envelopes += other.envelopes;
    }
}

/// Statistics of one link, or (added up) of many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// What was sent.
    pub sent: Traffic,
    /// What was received.
    pub received: Traffic,
    /// Links closed because a frame failed to decrypt.
    pub decrypt_failures: u64,
    /// Links closed for any other protocol violation.
    pub protocol_errors: u64,
    /// Handshakes that failed (counted by the driver), all reasons together.
    pub handshake_failures: u64,
    /// Handshakes that failed, by reason (counted by the driver).
    pub handshake_failures_by_reason: HandshakeFailures,
}

impl AddAssign for LinkStats {
    fn add_assign(&mut self, other: LinkStats) {
        self.sent += other.sent;
        self.received += other.received;
        self.decrypt_failures += other.decrypt_failures;
        self.protocol_errors += other.protocol_errors;
        self.handshake_failures += other.handshake_failures;
        self.handshake_failures_by_reason += other.handshake_failures_by_reason;
    }
}
