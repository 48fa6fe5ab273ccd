//! The member list of a node: which nodes of the zone it knows, where they
//! listen, and which are live (at least one established link to them, on any
//! shard, in either direction). Shared by all shards and the `Zone` handle.
//!
//! Nodes are learned from seeds (the handshake names whoever answers at a
//! seed address), from inbound links, and from gossip: every gossip round a
//! node sends each live peer a `members` envelope listing itself and the
//! nodes it has live links to, one `name address` line each. A node that is
//! not live and has not been heard of for `forget_after` is forgotten.
//!
//! Names are bound to keys (`docs/protocol.md` §9): the first authenticated
//! handshake with a name binds it to the peer's static key until the node is
//! forgotten, and a handshake that claims the name with another key is
//! refused. Gossip changes a known node's address only in the sender's own
//! line (the sender's link is authenticated with the key its name is bound
//! to); a line about another node only introduces a name not known yet.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use myriad_engine::Message;

use crate::counters::PeerTraffic;
use crate::handshake::HandshakeError;
use crate::keys::PublicKey;
use crate::zone::NodeName;

/// What is known of one other node.
#[derive(Debug)]
struct Member {
    addr: Option<SocketAddr>,
    /// The static key the name is bound to (none until a handshake with it).
    key: Option<PublicKey>,
    links: usize,
    last_heard: Instant,
    traffic: Arc<PeerTraffic>,
}

impl Member {
    fn new(addr: Option<SocketAddr>) -> Self {
        Member {
            addr,
            key: None,
            links: 0,
            last_heard: Instant::now(),
            traffic: Arc::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Members {
    nodes: HashMap<NodeName, Member>,
    /// Addresses at which this node found itself (a seed list or DNS name
    /// that includes this node).
    own_addrs: HashSet<SocketAddr>,
}

/// One other node, as listed by [`Membership::snapshot`].
#[derive(Debug, Clone)]
pub(crate) struct MemberView {
    pub(crate) name: NodeName,
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) links: usize,
    pub(crate) traffic: Arc<PeerTraffic>,
}

/// The member list.
#[derive(Debug)]
pub(crate) struct Membership {
    me: NodeName,
    inner: Mutex<Members>,
}

impl Membership {
    /// The member list of node `me`, empty.
    pub(crate) fn new(me: NodeName) -> Self {
        Membership {
            me,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        // The lock guards plain data; a panic elsewhere cannot break it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `name` listens at `addr`, as learned first-hand: a
    /// handshake with `name` at that address, or `name`'s own gossip line.
    pub(crate) fn learn(&self, name: &NodeName, addr: SocketAddr) {
        if *name == self.me {
            return;
        }
        let mut members = self.lock();
        let member = members
            .nodes
            .entry(name.clone())
            .or_insert_with(|| Member::new(None));
        member.addr = Some(addr);
        member.last_heard = Instant::now();
    }

    /// Records a hint from a third party that `name` listens at `addr`:
    /// taken only for a name not known yet (a wrong hint costs a dial, whose
    /// handshake tells who answers).
    fn hint(&self, name: &NodeName, addr: SocketAddr) {
        if *name != self.me {
            self.lock()
                .nodes
                .entry(name.clone())
                .or_insert_with(|| Member::new(Some(addr)));
        }
    }

    /// Binds `name` to `key` after an authenticated handshake, or refuses
    /// the peer if the name is bound to another key.
    pub(crate) fn bind(&self, name: &NodeName, key: &PublicKey) -> Result<(), HandshakeError> {
        let mut members = self.lock();
        let member = members
            .nodes
            .entry(name.clone())
            .or_insert_with(|| Member::new(None));
        match member.key {
            Some(bound) if bound != *key => Err(HandshakeError::NameTaken {
                name: name.clone(),
                key: *key,
                bound,
            }),
            _ => {
                member.key = Some(*key);
                Ok(())
            }
        }
    }

    /// Where `name` listens, if known.
    pub(crate) fn address_of(&self, name: &NodeName) -> Option<SocketAddr> {
        self.lock().nodes.get(name).and_then(|m| m.addr)
    }

    /// True if `name` is in the list (live or not).
    pub(crate) fn knows(&self, name: &NodeName) -> bool {
        self.lock().nodes.contains_key(name)
    }

    /// A link to `name` came up; returns the counters for its traffic.
    #[cfg(test)]
    pub(crate) fn link_up(&self, name: &NodeName) -> Arc<PeerTraffic> {
        self.link_up_then(name, || {})
    }

    /// A link to `name` came up: `then` runs while the list is locked (so
    /// that what it tells is in the order links come and go); returns the
    /// counters for its traffic.
    pub(crate) fn link_up_then(&self, name: &NodeName, then: impl FnOnce()) -> Arc<PeerTraffic> {
        let mut members = self.lock();
        then();
        let member = members
            .nodes
            .entry(name.clone())
            .or_insert_with(|| Member::new(None));
        member.links += 1;
        member.last_heard = Instant::now();
        member.traffic.clone()
    }

    /// A link to `name` went down.
    #[cfg(test)]
    pub(crate) fn link_down(&self, name: &NodeName) {
        self.link_down_then(name, || {});
    }

    /// A link to `name` went down: if it was the last, `lost` runs while
    /// the list is locked.
    pub(crate) fn link_down_then(&self, name: &NodeName, lost: impl FnOnce()) {
        let mut members = self.lock();
        if let Some(member) = members.nodes.get_mut(name) {
            member.links = member.links.saturating_sub(1);
            member.last_heard = Instant::now();
            if member.links == 0 {
                lost();
            }
        }
    }

    /// The live nodes whose name starts with `prefix`, sorted.
    pub(crate) fn live(&self, prefix: &str) -> Vec<String> {
        let mut live: Vec<String> = self
            .lock()
            .nodes
            .iter()
            .filter(|(name, m)| m.links > 0 && name.as_str().starts_with(prefix))
            .map(|(name, _)| name.to_string())
            .collect();
        live.sort();
        live
    }

    /// True if a live node listens at `addr`.
    pub(crate) fn is_live_at(&self, addr: SocketAddr) -> bool {
        self.lock()
            .nodes
            .values()
            .any(|m| m.links > 0 && m.addr == Some(addr))
    }

    /// Records that dialling `addr` reached this very node.
    pub(crate) fn mark_own(&self, addr: SocketAddr) {
        self.lock().own_addrs.insert(addr);
    }

    /// True if `addr` is known to be this node.
    pub(crate) fn is_own(&self, addr: SocketAddr) -> bool {
        self.lock().own_addrs.contains(&addr)
    }

    /// Every known node with an address (to keep a link to).
    pub(crate) fn dialable(&self) -> Vec<NodeName> {
        self.lock()
            .nodes
            .iter()
            .filter(|(_, m)| m.addr.is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The gossip body: this node at `advertise`, then every live node.
    pub(crate) fn gossip(&self, advertise: SocketAddr) -> Message {
        let mut body = format!("{} {advertise}\n", self.me);
        for (name, member) in &self.lock().nodes {
            if let (true, Some(addr)) = (member.links > 0, member.addr) {
                body.push_str(&format!("{name} {addr}\n"));
            }
        }
        Message::from(body)
    }

    /// Takes in a gossip body received from `sender`, whose connection comes
    /// from `sender_ip`: the sender's own line sets its address; other lines
    /// only introduce unknown names. Malformed lines are skipped.
    pub(crate) fn merge(&self, body: &str, sender: &NodeName, sender_ip: Option<IpAddr>) {
        for line in body.lines() {
            let Some((name, addr)) = line.split_once(' ') else {
                continue;
            };
            let (Ok(name), Ok(mut addr)) = (NodeName::new(name), addr.parse::<SocketAddr>()) else {
                continue;
            };
            if addr.ip().is_unspecified() {
                match sender_ip {
                    Some(ip) if name == *sender => addr.set_ip(ip),
                    _ => continue,
                }
            }
            if name == *sender {
                self.learn(&name, addr);
            } else {
                self.hint(&name, addr);
            }
        }
    }

    /// Forgets nodes that are not live and were not heard of for `after`.
    pub(crate) fn expire(&self, after: Duration) {
        let now = Instant::now();
        self.lock()
            .nodes
            .retain(|_, m| m.links > 0 || now.duration_since(m.last_heard) < after);
    }

    /// Every known node, sorted by name.
    pub(crate) fn snapshot(&self) -> Vec<MemberView> {
        let mut all: Vec<MemberView> = self
            .lock()
            .nodes
            .iter()
            .map(|(name, m)| MemberView {
                name: name.clone(),
                addr: m.addr,
                links: m.links,
                traffic: m.traffic.clone(),
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }

    #[test]
    fn only_nodes_with_links_are_live() {
        let list = Membership::new(name("me"));
        list.learn(&name("runner-1"), "10.0.0.1:7700".parse().unwrap());
        list.learn(&name("me"), "10.0.0.9:7700".parse().unwrap());
        assert!(list.live("").is_empty());
        list.link_up(&name("runner-1"));
        list.link_up(&name("client"));
        assert_eq!(list.live("runner"), ["runner-1"]);
        assert_eq!(list.live(""), ["client", "runner-1"]);
        list.link_down(&name("runner-1"));
        assert_eq!(list.live(""), ["client"]);
        assert!(!list.knows(&name("me")));
    }

    #[test]
    fn gossip_round_trips_and_fills_in_the_senders_ip() {
        let a = Membership::new(name("a"));
        a.learn(&name("b"), "10.0.0.2:7700".parse().unwrap());
        a.link_up(&name("b"));
        a.learn(&name("c"), "10.0.0.3:7700".parse().unwrap());
        let body = a.gossip("0.0.0.0:7701".parse().unwrap());
        let d = Membership::new(name("d"));
        d.merge(&body, &name("a"), Some("10.0.0.1".parse().unwrap()));
        d.merge("junk\nx y\nb 1.2.3.4\n", &name("a"), None);
        assert_eq!(d.address_of(&name("a")), "10.0.0.1:7701".parse().ok());
        assert_eq!(d.address_of(&name("b")), "10.0.0.2:7700".parse().ok());
        assert!(!d.knows(&name("c")), "c is not live at a");
    }

    fn key(byte: u8) -> PublicKey {
        PublicKey::from_bytes([byte; 32])
    }

    #[test]
    fn a_name_stays_bound_to_the_first_key_until_forgotten() {
        let list = Membership::new(name("me"));
        list.bind(&name("b"), &key(1)).unwrap();
        list.bind(&name("b"), &key(1)).unwrap();
        let err = list.bind(&name("b"), &key(2)).unwrap_err();
        assert!(
            matches!(err, HandshakeError::NameTaken { bound, key: k, .. }
                if bound == key(1) && k == key(2)),
            "{err}"
        );
        list.expire(Duration::ZERO);
        list.bind(&name("b"), &key(2)).unwrap();
    }

    #[test]
    fn gossip_cannot_rebind_a_known_name() {
        let list = Membership::new(name("me"));
        let real: SocketAddr = "10.0.0.2:7700".parse().unwrap();
        list.learn(&name("b"), real);
        list.bind(&name("b"), &key(2)).unwrap();
        // `c` claims that `b` (and this node) moved to its own address.
        list.merge(
            "b 10.6.6.6:7700\nme 10.6.6.6:7700\nnew 10.0.0.4:7700\n",
            &name("c"),
            None,
        );
        assert_eq!(list.address_of(&name("b")), Some(real));
        assert!(!list.knows(&name("me")));
        // A name nobody knew is a hint.
        assert_eq!(list.address_of(&name("new")), "10.0.0.4:7700".parse().ok());
        // `b` itself may move.
        list.merge("b 10.0.0.5:7700\n", &name("b"), None);
        assert_eq!(list.address_of(&name("b")), "10.0.0.5:7700".parse().ok());
        // And `c`'s line about `new` no longer moves it once known.
        list.merge("new 10.6.6.6:7700\n", &name("c"), None);
        assert_eq!(list.address_of(&name("new")), "10.0.0.4:7700".parse().ok());
    }

    #[test]
    fn silent_nodes_are_forgotten() {
        let list = Membership::new(name("me"));
        list.learn(&name("gone"), "10.0.0.1:7700".parse().unwrap());
        list.link_up(&name("up"));
        list.expire(Duration::ZERO);
        assert!(!list.knows(&name("gone")));
        assert!(list.knows(&name("up")));
    }
}
