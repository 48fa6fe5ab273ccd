//! Mailboxes that cost twelve bytes per worker.
//!
//! Every mailbox on a shard is an intrusive FIFO list threaded through one
//! shared pool of envelopes (a `slab`). An idle worker therefore holds three
//! `u32`s instead of a queue with its own allocation, and the pool's memory
//! is reused across all workers of the shard. Only the owning shard touches
//! the pool, so no synchronisation is needed.

use slab::Slab;

use crate::envelope::Delivery;

const NIL: u32 = u32::MAX;

/// A worker's queue of pending deliveries: head, tail and length.
#[derive(Debug)]
pub(crate) struct Mailbox {
    head: u32,
    tail: u32,
    len: u32,
}

impl Mailbox {
    /// An empty mailbox.
    pub(crate) const fn new() -> Self {
        Mailbox {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    /// Number of queued deliveries.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

struct Node {
    delivery: Delivery,
    next: u32,
}

/// The shard's pool of queued deliveries, shared by all of its mailboxes.
#[derive(Default)]
pub(crate) struct MailboxPool {
    nodes: Slab<Node>,
}

/// Above this many idle slots an empty pool gives its memory back.
const RETAINED_CAPACITY: usize = 4096;

impl MailboxPool {
    /// Appends `delivery` to the back of `mailbox`.
    pub(crate) fn push(&mut self, mailbox: &mut Mailbox, delivery: Delivery) {
        let key = self.nodes.insert(Node {
            delivery,
            next: NIL,
        });
        // Slab keys stay below the number of live entries plus the free list;
        // a shard holding 2^32 queued messages is far beyond any memory.
        let key = u32::try_from(key).expect("more than 2^32 queued messages on one shard");
        if mailbox.tail == NIL {
            mailbox.head = key;
        } else {
            self.nodes[mailbox.tail as usize].next = key;
        }
        mailbox.tail = key;
        mailbox.len += 1;
    }

    /// Removes the delivery at the front of `mailbox`.
    pub(crate) fn pop(&mut self, mailbox: &mut Mailbox) -> Option<Delivery> {
        if mailbox.head == NIL {
            return None;
        }
        let node = self.nodes.remove(mailbox.head as usize);
        mailbox.head = node.next;
        if node.next == NIL {
            mailbox.tail = NIL;
        }
        mailbox.len -= 1;
        Some(node.delivery)
    }

    /// Releases the pool's memory after a burst, once nothing is queued.
    pub(crate) fn trim(&mut self) {
        if self.nodes.is_empty() && self.nodes.capacity() > RETAINED_CAPACITY {
            self.nodes = Slab::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn delivery(text: String) -> Delivery {
        Delivery {
            msg: Message::from(text),
            from: None,
            reply: None,
        }
    }

    #[test]
    fn interleaved_mailboxes_stay_fifo() {
        let mut pool = MailboxPool::default();
        let mut a = Mailbox::new();
        let mut b = Mailbox::new();
        for i in 0..100 {
            pool.push(&mut a, delivery(format!("a{i}")));
            pool.push(&mut b, delivery(format!("b{i}")));
            if i % 3 == 0 {
                // Popping in between reuses pool slots across the two lists.
                let first = pool.pop(&mut a).unwrap();
                assert!(first.msg.starts_with('a'));
                pool.push(&mut a, first);
            }
        }
        assert_eq!((a.len(), b.len()), (100, 100));
        let mut seen_b = Vec::new();
        while let Some(d) = pool.pop(&mut b) {
            seen_b.push(d.msg.to_string());
        }
        let expected: Vec<_> = (0..100).map(|i| format!("b{i}")).collect();
        assert_eq!(seen_b, expected);
        assert!(b.is_empty());
        assert_eq!(pool.pop(&mut b).map(|d| d.msg), None);
        assert_eq!(a.len(), 100);
    }

    #[test]
    fn trim_releases_memory_only_when_empty() {
        let mut pool = MailboxPool::default();
        let mut m = Mailbox::new();
        for i in 0..10_000 {
            pool.push(&mut m, delivery(i.to_string()));
        }
        pool.trim();
        assert_eq!(m.len(), 10_000);
        while pool.pop(&mut m).is_some() {}
        pool.trim();
        assert_eq!(pool.nodes.capacity(), 0);
    }
}
