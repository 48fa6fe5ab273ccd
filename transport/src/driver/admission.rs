//! Bounds on unauthenticated connections: how many handshakes may be in
//! progress at once, in total and per source address. A connection over
//! either limit is closed at once, before any handshake work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// The handshakes in progress on a node (all shards).
#[derive(Debug)]
pub(crate) struct HandshakeSlots {
    total: usize,
    per_address: usize,
    taken: Mutex<Taken>,
}

#[derive(Debug, Default)]
struct Taken {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl HandshakeSlots {
    /// At most `total` handshakes at once, at most `per_address` from one IP.
    pub(crate) fn new(total: usize, per_address: usize) -> Arc<Self> {
        Arc::new(HandshakeSlots {
            total,
            per_address,
            taken: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Taken> {
        // Plain counters: a panic elsewhere cannot break them.
        self.taken.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a handshake from `from`, or `None` if a limit is reached.
    pub(crate) fn acquire(self: &Arc<Self>, from: IpAddr) -> Option<Slot> {
        let mut taken = self.lock();
        let here = taken.by_address.get(&from).copied().unwrap_or(0);
        if taken.total >= self.total || here >= self.per_address {
            return None;
        }
        taken.total += 1;
        taken.by_address.insert(from, here + 1);
        Some(Slot {
            slots: self.clone(),
            from,
        })
    }

    /// Handshakes in progress now.
    #[cfg(test)]
    fn in_progress(&self) -> usize {
        self.lock().total
    }
}

/// One handshake in progress; freed when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<HandshakeSlots>,
    from: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = self.slots.lock();
        taken.total = taken.total.saturating_sub(1);
        if let Some(n) = taken.by_address.get_mut(&self.from) {
            *n -= 1;
            if *n == 0 {
                taken.by_address.remove(&self.from);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn handshakes_are_capped_per_address_and_in_total() {
        let slots = HandshakeSlots::new(3, 2);
        let a1 = slots.acquire(ip("10.0.0.1")).unwrap();
        let _a2 = slots.acquire(ip("10.0.0.1")).unwrap();
        assert!(slots.acquire(ip("10.0.0.1")).is_none(), "per address");
        let _b1 = slots.acquire(ip("10.0.0.2")).unwrap();
        assert!(slots.acquire(ip("10.0.0.3")).is_none(), "in total");
        drop(a1);
        assert_eq!(slots.in_progress(), 2);
        let _c1 = slots
            .acquire(ip("10.0.0.3"))
            .expect("a freed slot is reusable");
        assert!(slots.acquire(ip("10.0.0.1")).is_none());
    }

    #[test]
    fn freed_slots_leave_nothing_behind() {
        let slots = HandshakeSlots::new(10, 10);
        let held: Vec<Slot> = (1..=5)
            .map(|i| slots.acquire(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        drop(held);
        assert_eq!(slots.in_progress(), 0);
        assert!(slots.lock().by_address.is_empty());
    }
}
