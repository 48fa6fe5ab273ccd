//! Cross-shard links: one bounded lock-free ring per ordered pair of shards,
//! carrying *batches* of packets, and a doorbell per shard.
//!
//! A shard never pushes single packets into a ring: sends to another shard
//! append to a local [`Outbox`], and the shard's scheduler ships each outbox
//! as one ring entry between runs. The consumer's scheduler drains its
//! incoming rings itself, between runs and while it spins before parking, so
//! a busy or recently busy shard picks up cross-shard traffic with a few
//! atomic loads and no wake-up at all.
//!
//! A ring is crossbeam's `ArrayQueue`, a multi-producer multi-consumer
//! queue, used here as SPSC: only the source shard pushes and only the
//! target shard pops. A consumer about to park is woken through its
//! [`Doorbell`] (`doorbell.rs`).
//!
//! A shard that stops *closes* its incoming rings: it will read them no
//! more, so what is in them, and whatever a producer pushes later, is
//! dropped (its senders' answer channels close: they learn that the node
//! stopped instead of waiting for an answer that never comes). The closing
//! consumer marks the ring closed and then empties it; a producer pushes and
//! then looks for the mark, and empties the ring itself if it is there. With
//! a `SeqCst` fence between the two steps on both sides (the producer's is
//! the one its doorbell ring issues anyway), at least one of them sees the
//! other's step (Dekker), so nothing stays behind. A push that finds the
//! ring full waits in the outbox as usual: whoever closes the ring empties
//! it, so the next flush gets in and is dropped.

use std::cell::RefCell;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

use crate::doorbell::Doorbell;
use crate::envelope::Packet;

/// A batch of packets: one entry of a cross-shard ring.
pub(crate) type Batch = Vec<Packet>;

/// One direction between two shards: a bounded ring of batches from the
/// source shard (its only producer) to the target shard (its only
/// consumer), and a small ring that takes the emptied batch vectors back.
///
/// Returning the vectors keeps each batch's allocation on the thread that
/// made it: freeing on the consumer's thread sent glibc down its slow
/// cross-thread path, about 18% of a cross-shard ping-pong profile.
pub(crate) struct Ring {
    batches: ArrayQueue<Entry>,
    empties: ArrayQueue<Batch>,
    /// Set once the consumer reads this ring no more (see the module doc).
    closed: AtomicBool,
}

/// One entry of a ring: a lone packet travels inline, so the consumer reads
/// it from the ring slot itself (no batch vector to fetch and give back:
/// fewer cache lines cross between the cores per hop).
enum Entry {
    One(Packet),
    Many(Batch),
}

impl Ring {
    /// A ring holding up to `capacity` batches.
    pub(crate) fn new(capacity: usize) -> Self {
        Ring {
            batches: ArrayQueue::new(capacity),
            empties: ArrayQueue::new(SPARE_BATCHES),
            closed: AtomicBool::new(false),
        }
    }

    /// Consumer side, when it stops reading: marks the ring closed, then
    /// drops what is in it.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.discard();
    }

    /// Whether the consumer closed the ring.
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Drops every entry in the ring (its consumer is gone).
    fn discard(&self) {
        while let Some(entry) = self.batches.pop() {
            crate::worker::drop_contained(entry, "a packet for a shard that stopped");
        }
    }

    /// Consumer side: gives an emptied batch back to the producer, unless
    /// it grew large (a burst) or enough are waiting already.
    fn recycle(&self, batch: Batch) {
        debug_assert!(batch.is_empty());
        if batch.capacity() <= SPARE_BATCH_CAPACITY {
            // A full return ring just drops this one.
            let _ = self.empties.push(batch);
        }
    }

    /// Producer side: an empty batch to fill next.
    fn fresh_batch(&self, expected: usize) -> Batch {
        self.empties.pop().unwrap_or_else(|| {
            Vec::with_capacity(expected.clamp(OUTBOX_START, SPARE_BATCH_CAPACITY))
        })
    }
}

/// Capacity, in entries (a lone packet or a batch), of each cross-shard
/// ring: 256 slots of 104 bytes (a 96-byte entry and crossbeam's 8-byte
/// stamp), 26 KiB per ordered pair of shards.
pub(crate) const RING_CAPACITY: usize = 256;

// The entry size `RING_CAPACITY` and docs/architecture.md quote.
const _: () = assert!(std::mem::size_of::<Entry>() == 96);

/// Deliveries waiting in one outbox before sends to that shard fail with
/// `MailboxFull` (replies and control packets are never refused).
const OUTBOX_LIMIT: usize = 1 << 18;

/// First capacity of a fresh outbox.
const OUTBOX_START: usize = 64;

/// Emptied batches waiting to go back to each producer.
const SPARE_BATCHES: usize = 4;

/// Largest batch capacity worth giving back (a bigger one came from a burst
/// and is freed), which bounds a link's spare memory to about 100 KiB.
const SPARE_BATCH_CAPACITY: usize = 256;

/// Most batches taken from one ring per drain, so one busy peer cannot keep
/// a shard from its own work.
const DRAIN_BUDGET: usize = 64;

/// The sending half of a link, owned by the source shard.
pub(crate) struct Outbox {
    pending: RefCell<Batch>,
    ring: Arc<Ring>,
    peer: Arc<Doorbell>,
}

impl Outbox {
    pub(crate) fn new(ring: Arc<Ring>, peer: Arc<Doorbell>) -> Self {
        Outbox {
            pending: RefCell::new(Vec::with_capacity(OUTBOX_START)),
            ring,
            peer,
        }
    }

    /// Queues a delivery; gives it back if the link is congested. Returns
    /// whether the outbox was empty before (the scheduler must be told).
    pub(crate) fn push_delivery(&self, packet: Packet) -> Result<bool, Packet> {
        if self.pending.borrow().len() >= OUTBOX_LIMIT {
            return Err(packet);
        }
        Ok(self.push(packet))
    }

    /// Queues a reply or control packet (never refused: their number is
    /// bounded by the asks and operations in flight). Returns whether the
    /// outbox was empty before.
    pub(crate) fn push(&self, packet: Packet) -> bool {
        let mut pending = self.pending.borrow_mut();
        pending.push(packet);
        pending.len() == 1
    }

    /// Ships the pending packets as one batch. Returns `false` if the ring
    /// is full and they stay pending. If the peer stopped (closed the ring),
    /// they are dropped once shipped.
    pub(crate) fn flush(&self) -> bool {
        let mut pending = self.pending.borrow_mut();
        let entry = if pending.len() > 1 {
            let next = self.ring.fresh_batch(pending.len());
            Entry::Many(std::mem::replace(&mut *pending, next))
        } else if let Some(packet) = pending.pop() {
            Entry::One(packet)
        } else {
            return true;
        };
        match self.ring.batches.push(entry) {
            Ok(()) => {
                drop(pending);
                // The doorbell's SeqCst fence also orders the look for a
                // close below after the push (see the module doc). Ringing
                // a peer that closed wakes nobody: it is not parked.
                self.peer.ring();
                if self.ring.is_closed() {
                    self.ring.discard();
                }
                true
            }
            // Nothing was added in between: this borrow is exclusive.
            Err(Entry::One(packet)) => {
                pending.push(packet);
                false
            }
            Err(Entry::Many(batch)) => {
                let spare = std::mem::replace(&mut *pending, batch);
                self.ring.recycle(spare);
                false
            }
        }
    }
}

/// The receiving half of all links into one shard.
pub(crate) struct Inbound {
    rings: Vec<Arc<Ring>>,
    doorbell: Arc<Doorbell>,
}

impl Inbound {
    pub(crate) fn new(rings: Vec<Arc<Ring>>, doorbell: Arc<Doorbell>) -> Self {
        Inbound { rings, doorbell }
    }

    /// Takes waiting batches (a bounded number per ring) and hands every
    /// packet to `accept`. Returns how many batches were taken.
    pub(crate) fn drain(&self, mut accept: impl FnMut(Packet)) -> usize {
        let mut taken = 0;
        for ring in &self.rings {
            for _ in 0..DRAIN_BUDGET {
                let Some(entry) = ring.batches.pop() else {
                    break;
                };
                taken += 1;
                match entry {
                    Entry::One(packet) => accept(packet),
                    Entry::Many(mut batch) => {
                        batch.drain(..).for_each(&mut accept);
                        ring.recycle(batch);
                    }
                }
            }
        }
        taken
    }

    /// This shard reads its rings no more: closes each, dropping what is in
    /// them and what their producers push later.
    pub(crate) fn close(&self) {
        for ring in &self.rings {
            ring.close();
        }
    }

    /// Whether any ring holds a batch.
    pub(crate) fn pending(&self) -> bool {
        self.rings.iter().any(|ring| !ring.batches.is_empty())
    }

    /// This shard's doorbell.
    pub(crate) fn doorbell(&self) -> &Arc<Doorbell> {
        &self.doorbell
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::CountingWaker;

    fn packet() -> Packet {
        Packet::Run(Box::new(|_| {}))
    }

    /// One link of `capacity` entries: its ring, both ends and the
    /// consumer's doorbell.
    fn link(capacity: usize) -> (Arc<Ring>, Outbox, Inbound, Arc<Doorbell>) {
        let ring = Arc::new(Ring::new(capacity));
        let bell = Arc::new(Doorbell::default());
        let outbox = Outbox::new(ring.clone(), bell.clone());
        let inbound = Inbound::new(vec![ring.clone()], bell.clone());
        (ring, outbox, inbound, bell)
    }

    #[test]
    fn batches_cross_in_order_and_a_parked_consumer_is_woken_once() {
        let (_, outbox, inbound, bell) = link(4);
        let (waker, counter) = CountingWaker::new();

        // Awake consumer: no wake-up is paid for.
        assert!(outbox.push(packet()));
        assert!(!outbox.push(packet()));
        assert!(outbox.flush());
        assert_eq!(counter.wakes(), 0);
        let mut seen = 0;
        assert_eq!(inbound.drain(|_| seen += 1), 1);
        assert_eq!(seen, 2);

        // Parked consumer: the next batch wakes it.
        bell.arm(&waker);
        assert!(!inbound.pending());
        outbox.push(packet());
        assert!(outbox.flush());
        assert_eq!(counter.wakes(), 1);
        assert!(inbound.pending());
        bell.disarm();
    }

    #[test]
    fn emptied_batches_go_back_to_their_producer() {
        let (_, outbox, inbound, _) = link(4);
        outbox.push(packet());
        outbox.push(packet());
        let first = outbox.pending.borrow().as_ptr();
        assert!(outbox.flush());
        assert_eq!(inbound.drain(|_| {}), 1);
        outbox.push(packet());
        outbox.push(packet());
        assert!(outbox.flush());
        assert_eq!(
            outbox.pending.borrow().as_ptr(),
            first,
            "the drained batch is the producer's next one"
        );
    }

    #[test]
    fn a_lone_packet_travels_inline_and_waits_if_the_ring_is_full() {
        let (ring, outbox, inbound, _) = link(1);
        let kept = outbox.pending.borrow().as_ptr();
        outbox.push(packet());
        assert!(outbox.flush());
        assert!(matches!(ring.batches.pop(), Some(Entry::One(_))));
        assert_eq!(outbox.pending.borrow().as_ptr(), kept, "no batch left");
        outbox.push(packet());
        assert!(outbox.flush());
        outbox.push(packet());
        assert!(!outbox.flush(), "the ring holds one entry");
        assert_eq!(outbox.pending.borrow().len(), 1);
        let mut seen = 0;
        assert_eq!(inbound.drain(|_| seen += 1), 1);
        assert!(outbox.flush());
        assert_eq!(inbound.drain(|_| seen += 1), 1);
        assert_eq!(seen, 2);
    }

    #[test]
    fn a_full_ring_keeps_the_batch_pending() {
        let (_, outbox, inbound, _) = link(1);
        outbox.push(packet());
        assert!(outbox.flush());
        outbox.push(packet());
        outbox.push(packet());
        assert!(!outbox.flush(), "the ring holds one batch");
        assert_eq!(outbox.pending.borrow().len(), 2);
        assert_eq!(inbound.drain(|_| {}), 1);
        assert!(outbox.flush());
        let mut seen = 0;
        inbound.drain(|_| seen += 1);
        assert_eq!(seen, 2);
    }

    /// A packet whose drop the test can see: its channel disconnects.
    fn watched_packet() -> (Packet, flume::Receiver<()>) {
        let (tx, rx) = flume::bounded::<()>(1);
        (Packet::Run(Box::new(move |_| drop(tx))), rx)
    }

    fn dropped(rx: &flume::Receiver<()>) -> bool {
        matches!(rx.try_recv(), Err(flume::TryRecvError::Disconnected))
    }

    #[test]
    fn closing_a_ring_drops_what_is_in_it_and_what_comes_later() {
        let (ring, outbox, inbound, _) = link(4);

        // Shipped before the consumer closes: dropped by the close.
        let (before, before_rx) = watched_packet();
        outbox.push(before);
        assert!(outbox.flush());
        assert!(!dropped(&before_rx));
        inbound.close();
        assert!(dropped(&before_rx), "the close drops what the ring held");
        assert!(ring.batches.is_empty());

        // Pushed after the close: dropped by the producer's flush.
        let (after, after_rx) = watched_packet();
        outbox.push(after);
        assert!(outbox.flush(), "nothing waits for a closed ring");
        assert!(dropped(&after_rx), "the producer drops what a closed ring will never take");
        assert!(ring.batches.is_empty() && outbox.pending.borrow().is_empty());
    }

    #[test]
    fn a_push_racing_the_close_is_dropped_by_one_side() {
        // The close may land between a producer's closed-check and its push:
        // then the producer's check after the push finds it.
        for _ in 0..200 {
            let (ring, outbox, inbound, _) = link(RING_CAPACITY);
            let closer = std::thread::spawn(move || inbound.close());
            let mut watched = Vec::new();
            for _ in 0..64 {
                let (packet, rx) = watched_packet();
                watched.push(rx);
                outbox.push(packet);
                outbox.flush();
            }
            closer.join().unwrap();
            // The producer's next flush finds the ring closed, if the last
            // one did not.
            assert!(outbox.flush());
            assert!(ring.batches.is_empty(), "nothing stays in a closed ring");
            assert!(watched.iter().all(dropped), "every packet was dropped");
        }
    }
}
