//! Which stored keys a node wakes for their reminders: the scan of the
//! store's reminder index and its filter.
//!
//! A store of this node alone is read once, when the node starts, and every
//! key in it with a reminder is woken (its record is nowhere else). A
//! store that the zone shares is read every `reminder_scan` period (the
//! first time one period after the start, so that links to the zone are
//! up), for the keys due before the scan after next; of those, the node
//! wakes only the keys whose home node it is by its current view of the
//! zone (`placement.rs`). So while membership is stable each key is woken
//! by one node, its home; when a home is lost, the survivors' next scan
//! finds its keys (overdue ones too) and each wakes those now homed on it;
//! when a node joins, it finds the keys it now wins.
//!
//! A woken key is sent to its home shard (`Shard::wake_key_at`), which
//! waits for the due time, checks again that the key is still homed here,
//! and activates it: its record's reminders are then armed as timers. The
//! shard's registry keeps one entry per key and remembers the wakes and
//! timers it has, so a key found by several scans is woken once and a
//! reminder armed once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::placement::{home_node, KindTable, ZoneKinds};
use super::store_thread::Op;
use super::{Key, NodeVirtuals, StoreError};
use crate::envelope::Packet;

/// What a node counted of its reminder scans.
#[derive(Debug, Default)]
pub(crate) struct ScanCounts {
    /// Scans of the store's reminder index answered and handled.
    pub scans: AtomicU64,
    /// Keys that scans sent to their home shard to be woken.
    pub wakes: AtomicU64,
}

/// Of the keys `due` (with their due times) that the store listed, those
/// this node `me` wakes: keys of a kind it registered and, if the store is
/// `shared` by the zone, whose home node (by `zone`) is `me`.
pub(crate) fn to_wake(due: Vec<(Key, u64)>, shared: bool, zone: &KindTable, me: &str) -> Vec<(Key, u64)> {
    due.into_iter()
        .filter(|(key, _)| {
            let Some(members) = zone.members(key.kind()) else {
                return false;
            };
            if shared {
                home_node(key, members).is_some_and(|home| **home == *me)
            } else {
                members.iter().any(|m| **m == *me)
            }
        })
        .collect()
}

impl NodeVirtuals {
    /// Asks the store for the keys with a reminder due by `until_ms` and
    /// sends each that this node wakes ([`to_wake`], by `zone` as it is
    /// when the answer comes) to its home shard.
    pub(crate) fn scan_due(&self, until_ms: u64, zone: Arc<ZoneKinds>) {
        let inboxes = self.inboxes.clone();
        let shared = self.shared;
        let counts = self.scan_counts.clone();
        let then = Box::new(move |due: Result<Vec<(Key, u64)>, StoreError>| {
            let due = match due {
                Ok(due) => due,
                Err(error) => {
                    tracing::error!(%error, "stored reminders could not be read");
                    return;
                }
            };
            let (_, table) = zone.snapshot();
            let wake = to_wake(due, shared, &table, zone.me());
            counts.wakes.fetch_add(wake.len() as u64, Ordering::Relaxed);
            for (key, at) in wake {
                let home = key.home_shard(inboxes.len());
                inboxes.post(home, Packet::Run(Box::new(move |s| s.wake_key_at(key, at))));
            }
            // After the wakes: who sees this scan counted sees its wakes.
            counts.scans.fetch_add(1, Ordering::Release);
        });
        self.store.submit(0, Op::Due { until_ms, then });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ids: &[&str]) -> Vec<(Key, u64)> {
        ids.iter().map(|id| (Key::new("agent", id), 7)).collect()
    }

    /// The zone of `a` (which registered `agent`) and `b`.
    fn zone_of_a_and_b() -> ZoneKinds {
        let zone = ZoneKinds::new(Arc::from("a"), vec![Arc::from("agent")]);
        zone.member_up("b", &[Arc::from("agent")]);
        zone
    }

    #[test]
    fn with_a_shared_store_a_node_wakes_only_the_keys_homed_on_it() {
        let zone = zone_of_a_and_b();
        let ids: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (_, table) = zone.snapshot();
        let woken = to_wake(keys(&ids), true, &table, "a");
        let expected: Vec<(Key, u64)> = keys(&ids)
            .into_iter()
            .filter(|(k, _)| k.home_node(&["a", "b"]) == Some("a"))
            .collect();
        assert_eq!(woken, expected);
        assert!(!woken.is_empty() && woken.len() < ids.len(), "both nodes are home to some");
        // b lost: a is home to all.
        zone.member_down("b");
        let (_, table) = zone.snapshot();
        assert_eq!(to_wake(keys(&ids), true, &table, "a"), keys(&ids));
    }

    #[test]
    fn with_a_store_of_its_own_a_node_wakes_every_key_of_its_kinds_only() {
        let zone = zone_of_a_and_b();
        zone.member_up("b", &[Arc::from("agent"), Arc::from("cart")]);
        let (_, table) = zone.snapshot();
        let mut due = keys(&["1", "2", "3"]);
        due.push((Key::new("cart", "1"), 7));
        due.push((Key::new("other", "1"), 7));
        assert_eq!(to_wake(due.clone(), false, &table, "a"), keys(&["1", "2", "3"]), "b's kind and nobody's are not a's");
        let shared = to_wake(due, true, &table, "a");
        assert!(shared.iter().all(|(k, _)| k.kind() == "agent"), "{shared:?}");
    }
}
