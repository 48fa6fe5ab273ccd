//! Where in the zone a key lives: its home node, by rendezvous (highest
//! random weight) hashing of the key over the live members of the zone that
//! registered its kind; and the kind → members table that every shard of a
//! node reads to find it.
//!
//! Every node computes a key's home alone, from its own view of the zone;
//! while the views agree, so do the homes. The hash is fixed (FNV-1a with a
//! 64-bit finaliser), never std's randomised one, so every node and every
//! run agrees. When a member leaves, only the keys whose home it was move
//! (to the member with the next highest weight); when one joins, only the
//! keys it now wins move to it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Key;

/// The weight of node `node` for key `key`: the highest wins.
fn weight(key: &Key, node: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    // A separator no key or node name contains keeps ("ab","c") and
    // ("a","bc") apart.
    for &b in key.as_str().as_bytes().iter().chain(&[0xff]).chain(node.as_bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // MurmurHash3's finaliser: FNV-1a alone mixes its last bytes poorly.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The home node of `key` among `members` (the live nodes that registered
/// its kind, this one included if it did): the member of highest weight,
/// ties broken by name; `None` if there is no member.
pub(crate) fn home_node<'a, S: AsRef<str> + ?Sized + 'a>(
    key: &Key,
    members: impl IntoIterator<Item = &'a S>,
) -> Option<&'a S> {
    members
        .into_iter()
        .max_by(|a, b| {
            let (a, b) = (a.as_ref(), b.as_ref());
            weight(key, a).cmp(&weight(key, b)).then_with(|| b.cmp(a))
        })
}

/// Which nodes of the zone registered each virtual kind: this node (for
/// the kinds it registered) and the live peers, as the transport reported
/// them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct KindTable {
    /// Kind → the nodes that registered it, sorted.
    by_kind: BTreeMap<Arc<str>, BTreeSet<Arc<str>>>,
}

impl KindTable {
    /// The nodes that registered `kind`.
    pub(crate) fn members(&self, kind: &str) -> Option<&BTreeSet<Arc<str>>> {
        self.by_kind.get(kind)
    }

    fn add(&mut self, node: &Arc<str>, kinds: &[Arc<str>]) {
        for kind in kinds {
            self.by_kind.entry(kind.clone()).or_default().insert(node.clone());
        }
    }

    fn remove(&mut self, node: &str) {
        self.by_kind.retain(|_, nodes| {
            nodes.remove(node);
            !nodes.is_empty()
        });
    }
}

/// The node's kind table, shared by its shards: a shard keeps its own copy
/// (an `Arc`) and takes the new one only when the version moved, so a send
/// by key reads one atomic in the common case.
#[derive(Debug)]
pub(crate) struct ZoneKinds {
    me: Arc<str>,
    version: AtomicU64,
    table: Mutex<Arc<KindTable>>,
}

impl ZoneKinds {
    /// The table of node `me`, which registered `own` kinds, alone in its
    /// zone.
    pub(crate) fn new(me: Arc<str>, own: Vec<Arc<str>>) -> Self {
        let mut table = KindTable::default();
        table.add(&me, &own);
        ZoneKinds {
            me,
            version: AtomicU64::new(1),
            table: Mutex::new(Arc::new(table)),
        }
    }

    /// This node's name.
    pub(crate) fn me(&self) -> &Arc<str> {
        &self.me
    }

    /// The version of the table: it moves at every change.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The table now, with its version.
    pub(crate) fn snapshot(&self) -> (u64, Arc<KindTable>) {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        (self.version.load(Ordering::Acquire), table.clone())
    }

    fn update(&self, change: impl FnOnce(&mut KindTable)) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = KindTable::clone(&table);
        change(&mut next);
        if next != **table {
            *table = Arc::new(next);
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// Peer `node` is live and registered `kinds` (replacing what it said
    /// before).
    pub(crate) fn member_up(&self, node: &str, kinds: &[Arc<str>]) {
        if *node == *self.me {
            return;
        }
        let node: Arc<str> = Arc::from(node);
        self.update(|t| {
            t.remove(&node);
            t.add(&node, kinds);
        });
    }

    /// Peer `node` is no longer live: its keys go to the other members.
    pub(crate) fn member_down(&self, node: &str) {
        if *node == *self.me {
            return;
        }
        self.update(|t| t.remove(node));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn no_member_no_home_and_one_member_is_home_of_all() {
        let key = Key::new("agent", "1");
        assert_eq!(home_node::<String>(&key, &[]), None);
        let one = vec!["a".to_owned()];
        assert_eq!(home_node(&key, &one).map(String::as_str), Some("a"));
    }

    #[test]
    fn the_weight_is_fixed_across_runs_and_machines() {
        // A changed hash would move every stored key of a running zone.
        assert_eq!(weight(&Key::new("agent", "customer-42"), "runner-1"), weight(&Key::new("agent", "customer-42"), "runner-1"));
        let members = nodes(3);
        let homes: Vec<&str> = (0..8)
            .map(|i| home_node(&Key::new("agent", &i.to_string()), &members).map_or("", String::as_str))
            .collect();
        assert_eq!(homes, HOMES_OF_0_TO_7);
    }

    /// The homes of keys `agent:0` to `agent:7` over `node-0..node-2`.
    const HOMES_OF_0_TO_7: [&str; 8] = ["node-2", "node-1", "node-0", "node-2", "node-0", "node-1", "node-0", "node-2"];

    #[test]
    fn keys_spread_roughly_evenly() {
        let members = nodes(4);
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let home = home_node(&Key::new("agent", &format!("k{i}")), &members).unwrap();
            counts[members.iter().position(|m| m == home).unwrap()] += 1;
        }
        for c in counts {
            assert!((800..=1200).contains(&c), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn the_table_tracks_members_and_moves_its_version_only_on_change() {
        let zone = ZoneKinds::new(Arc::from("a"), vec![Arc::from("agent")]);
        let v0 = zone.version();
        zone.member_up("b", &[Arc::from("agent"), Arc::from("cart")]);
        let (v1, table) = zone.snapshot();
        assert!(v1 > v0);
        let agents: Vec<&str> = table.members("agent").unwrap().iter().map(|n| &**n).collect();
        assert_eq!(agents, ["a", "b"]);
        zone.member_up("b", &[Arc::from("agent"), Arc::from("cart")]);
        assert_eq!(zone.version(), v1, "no change, same version");
        zone.member_down("b");
        let (_, table) = zone.snapshot();
        assert!(table.members("cart").is_none());
        zone.member_down("a");
        assert!(zone.snapshot().1.members("agent").is_some(), "this node never leaves its own table");
    }

    proptest! {
        #[test]
        fn home_is_deterministic_and_order_free(id in "[a-z0-9]{1,20}", n in 1usize..8, rot in 0usize..8) {
            let key = Key::new("agent", &id);
            let members = nodes(n);
            let mut rotated = members.clone();
            rotated.rotate_left(rot % n);
            prop_assert_eq!(home_node(&key, &members), home_node(&key, &rotated));
        }

        #[test]
        fn only_the_keys_of_a_leaving_member_move(ids in proptest::collection::vec("[a-z0-9]{1,12}", 1..50), n in 2usize..8, gone in 0usize..8) {
            let members = nodes(n);
            let gone = &members[gone % n];
            let left: Vec<String> = members.iter().filter(|m| *m != gone).cloned().collect();
            for id in ids {
                let key = Key::new("agent", &id);
                let before = home_node(&key, &members).unwrap();
                let after = home_node(&key, &left).unwrap();
                if before != gone {
                    prop_assert_eq!(before, after);
                }
            }
        }
    }
}
