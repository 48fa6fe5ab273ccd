//! Cross-shard links: one bounded lock-free SPSC ring per ordered pair of
//! shards, carrying *batches* of packets.
//!
//! The ring is glommio's `shared_channel` (a lock-free SPSC ring whose
//! producer wakes a sleeping consumer through its eventfd only when the
//! consumer is parked). A shard never pushes single packets into it: sends
//! to another shard append to a local outbox, and a flusher task ships the
//! whole outbox as one ring entry when the shard's current work yields. One
//! ring slot, one wake-up check and one allocation are thus shared by every
//! packet of the batch.

use std::cell::RefCell;
use std::rc::Rc;

use glommio::channels::shared_channel::{SharedReceiver, SharedSender};

use crate::envelope::Packet;
use crate::shard::Shard;
use crate::signal::Signal;

/// A batch of packets: one entry of a cross-shard ring.
pub(crate) type Batch = Vec<Packet>;

/// Capacity, in batches, of each cross-shard ring.
pub(crate) const RING_CAPACITY: usize = 1024;

/// Deliveries waiting in one outbox before sends to that shard fail with
/// `MailboxFull` (replies and control packets are never refused).
const OUTBOX_LIMIT: usize = 1 << 18;

/// First capacity of a fresh outbox.
const OUTBOX_START: usize = 64;

/// The sending half of a link, owned by the source shard.
#[derive(Default)]
pub(crate) struct Outbox {
    pending: RefCell<Batch>,
    ready: Signal,
}

impl Outbox {
    /// Queues a delivery; gives it back if the link is congested.
    pub(crate) fn push_delivery(&self, packet: Packet) -> Result<(), Packet> {
        if self.pending.borrow().len() >= OUTBOX_LIMIT {
            return Err(packet);
        }
        self.push(packet);
        Ok(())
    }

    /// Queues a reply or control packet (never refused: their number is
    /// bounded by the asks and operations in flight).
    pub(crate) fn push(&self, packet: Packet) {
        let mut pending = self.pending.borrow_mut();
        pending.push(packet);
        if pending.len() == 1 {
            self.ready.notify();
        }
    }

    fn take(&self) -> Batch {
        let mut pending = self.pending.borrow_mut();
        let next = Vec::with_capacity(pending.len().clamp(OUTBOX_START, 4096));
        std::mem::replace(&mut *pending, next)
    }
}

/// Ships an outbox into its ring, batch by batch, until the peer is gone.
pub(crate) async fn flush(outbox: Rc<Outbox>, ring: SharedSender<Batch>) {
    let ring = ring.connect().await;
    loop {
        outbox.ready.wait().await;
        loop {
            let batch = outbox.take();
            if batch.is_empty() {
                break;
            }
            if ring.send(batch).await.is_err() {
                return;
            }
        }
    }
}

/// Drains a ring into `shard` until the peer is gone.
pub(crate) async fn receive(shard: Rc<Shard>, ring: SharedReceiver<Batch>) {
    let ring = ring.connect().await;
    while let Some(batch) = ring.recv().await {
        for packet in batch {
            shard.accept(packet);
        }
    }
}
