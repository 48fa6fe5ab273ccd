//! Addressing: how a worker is named and found.
//!
//! A worker is reached either through a [`WorkerRef`] (a cheap, copyable
//! handle returned by `spawn`, valid only on the node that made it), through
//! its unique name on a node, through a [`RemoteAddress`] (`node/name`) on
//! another node of the zone, or, for a virtual worker, through its [`Key`].
//! [`Address`] is the sum of the four; everything that sends accepts
//! `impl Into<Address>`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::node_names::{self, NodeNumber};
use crate::{Error, Key};

/// The longest worker name we accept.
pub const MAX_NAME_LEN: usize = 255;

/// A cheap, copyable reference to a worker.
///
/// It names the shard, the slot and the slot's generation, so a reference to
/// a stopped worker never reaches a newer worker that reuses the slot.
///
/// Most references are to workers of the node that made them (`spawn`,
/// `ctx.me()`). A reference may also be to a worker of another node of the
/// zone: `ctx.sender()` of a message that came from there, the reference a
/// remote `ctx.watch` returns. Sending to it, watching it and comparing it
/// work the same; [`node`](Self::node) tells which node it is on, and it
/// prints as `node/#shard.index.generation`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerRef {
    pub(crate) index: u32,
    pub(crate) generation: u32,
    pub(crate) shard: u16,
    /// 0: a worker of this node; else the node's number (`node_names.rs`).
    pub(crate) node: NodeNumber,
}

impl WorkerRef {
    /// The shard this worker lives on (of its own node).
    pub fn shard(&self) -> usize {
        usize::from(self.shard)
    }

    /// The slot and generation in one word (the shard is known apart).
    pub(crate) fn to_bits(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// Undoes [`WorkerRef::to_bits`] for a worker of shard `shard`.
    pub(crate) fn from_bits(bits: u64, shard: usize) -> Self {
        WorkerRef {
            index: bits as u32,
            generation: (bits >> 32) as u32,
            // The node refuses more than u16::MAX shards at start-up.
            shard: shard as u16,
            node: 0,
        }
    }
    /// The name of the node this worker lives on, if that is another node
    /// (`None` for a worker of this node).
    pub fn node(&self) -> Option<Arc<str>> {
        node_names::name_of(self.node)
    }

    /// Whether this worker lives on another node.
    pub fn is_remote(&self) -> bool {
        self.node != 0
    }

    /// The same worker as its own node names it (what goes on the wire).
    pub(crate) fn on_its_node(self) -> WorkerRef {
        WorkerRef { node: 0, ..self }
    }

    /// Worker `local` of its node (a reference as that node made it), seen
    /// from another node: the node named `node`. `None` if no more node
    /// names can be numbered (see `node_names.rs`).
    pub(crate) fn of_node(node: &str, local: WorkerRef) -> Option<WorkerRef> {
        let node = node_names::number_of(node)?;
        Some(WorkerRef { node, ..local })
    }

    /// A reference to a remote worker, as an address of its node and the
    /// reference's text there (`#shard.index.generation`); `None` for a
    /// worker of this node.
    pub(crate) fn remote_address(&self) -> Option<RemoteAddress> {
        let node = self.node()?;
        let worker = Arc::from(self.on_its_node().to_string());
        Some(RemoteAddress { node, worker })
    }
}

/// A worker reference as its own node makes it, in parts: what a transport
/// puts on the wire for a worker ([`WorkerRef::is_remote`] is not part of
/// it; the node is the link's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireRef {
    /// The shard the worker lives on.
    pub shard: u16,
    /// Its slot on that shard.
    pub index: u32,
    /// The slot's generation.
    pub generation: u32,
}

impl WireRef {
    /// The parts of `r` as `r`'s own node names it.
    pub fn of(r: WorkerRef) -> WireRef {
        WireRef {
            shard: r.shard,
            index: r.index,
            generation: r.generation,
        }
    }

    /// The worker of this node these parts name.
    pub fn local(self) -> WorkerRef {
        WorkerRef {
            index: self.index,
            generation: self.generation,
            shard: self.shard,
            node: 0,
        }
    }

    /// The worker of node `node` these parts name, as seen from another
    /// node; `None` if no more node names can be numbered (65,535 of them).
    pub fn on_node(self, node: &str) -> Option<WorkerRef> {
        WorkerRef::of_node(node, self.local())
    }

    /// The worker these parts name on the node `other` lives on: as
    /// [`on_node`](Self::on_node) with `other`'s node, without looking the
    /// name up.
    pub fn on_node_of(self, other: WorkerRef) -> WorkerRef {
        WorkerRef {
            node: other.node,
            ..self.local()
        }
    }
}

impl fmt::Display for WireRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.local(), f)
    }
}

#[cfg(test)]
impl WorkerRef {
    /// Worker `index` (generation 1) of shard 0: a reference for unit tests.
    pub(crate) fn test(index: u32) -> Self {
        WorkerRef {
            index,
            generation: 1,
            shard: 0,
            node: 0,
        }
    }
}

impl fmt::Display for WorkerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(node) = self.node() {
            write!(f, "{node}/")?;
        }
        write!(f, "#{}.{}.{}", self.shard, self.index, self.generation)
    }
}

impl fmt::Debug for WorkerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for WorkerRef {
    type Err = Error;
    /// Parses the `#shard.index.generation` form printed by `Display`
    /// (`node/#shard.index.generation` for a worker of another node).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::NoSuchWorker(format!("{s:?} is not a worker reference"));
        if let Some((node, local)) = s.split_once('/') {
            let local: WorkerRef = local.parse().map_err(|_| bad())?;
            if node.is_empty() || local.is_remote() {
                return Err(bad());
            }
            return WorkerRef::of_node(node, local).ok_or_else(bad);
        }
        let mut parts = s.strip_prefix('#').ok_or_else(bad)?.split('.');
        let mut next = || parts.next().ok_or_else(bad);
        let shard = next()?.parse().map_err(|_| bad())?;
        let index = next()?.parse().map_err(|_| bad())?;
        let generation = next()?.parse().map_err(|_| bad())?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(WorkerRef {
            index,
            generation,
            shard,
            node: 0,
        })
    }
}

/// A worker on another node of the zone: `node/name`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RemoteAddress {
    /// The node's name.
    pub node: Arc<str>,
    /// The worker's name on that node.
    pub worker: Arc<str>,
}

impl fmt::Display for RemoteAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.worker)
    }
}

impl fmt::Debug for RemoteAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where a message goes.
///
/// ```
/// use myriad_engine::Address;
/// assert!(matches!(Address::from("greeter"), Address::Name(_)));
/// assert!(matches!(Address::from("runner-1/greeter"), Address::Remote(_)));
/// assert_eq!(Address::remote("runner-1", "greeter").to_string(), "runner-1/greeter");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A worker of this node, by reference.
    Worker(WorkerRef),
    /// A named worker of this node.
    Name(Arc<str>),
    /// A named worker of another node.
    Remote(RemoteAddress),
    /// A virtual worker, by its key: activated by its first message (see
    /// [`Key`]).
    Key(Key),
}

impl Address {
    /// The address of worker `name` on node `node`.
    pub fn remote(node: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Address::Remote(RemoteAddress {
            node: node.into(),
            worker: name.into(),
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Worker(r) => fmt::Display::fmt(r, f),
            Address::Name(n) => f.write_str(n),
            Address::Remote(r) => fmt::Display::fmt(r, f),
            Address::Key(k) => fmt::Display::fmt(k, f),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<WorkerRef> for Address {
    fn from(r: WorkerRef) -> Self {
        Address::Worker(r)
    }
}

impl From<&WorkerRef> for Address {
    fn from(r: &WorkerRef) -> Self {
        Address::Worker(*r)
    }
}

impl From<&str> for Address {
    /// `"name"` is a local name, `"node/name"` a remote one, `"#s.i.g"` a
    /// worker reference.
    fn from(s: &str) -> Self {
        if let Some((node, name)) = s.split_once('/') {
            return Address::remote(node, name);
        }
        if s.starts_with('#') {
            if let Ok(r) = s.parse() {
                return Address::Worker(r);
            }
        }
        Address::Name(Arc::from(s))
    }
}

impl From<String> for Address {
    fn from(s: String) -> Self {
        Address::from(s.as_str())
    }
}

impl From<&Address> for Address {
    fn from(a: &Address) -> Self {
        a.clone()
    }
}

impl From<Key> for Address {
    fn from(k: Key) -> Self {
        Address::Key(k)
    }
}

impl From<&Key> for Address {
    fn from(k: &Key) -> Self {
        Address::Key(k.clone())
    }
}

impl From<RemoteAddress> for Address {
    fn from(r: RemoteAddress) -> Self {
        Address::Remote(r)
    }
}

/// Checks that `name` is a valid worker name: 1 to 255 characters of
/// `[A-Za-z0-9_-]`.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("a name must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("a name must be at most 255 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return invalid("a name may contain only A-Z, a-z, 0-9, '_' and '-'");
    }
    Ok(())
}

/// The shard a name lives on by default (FNV-1a of the name, modulo the shard
/// count): every shard computes it alone, without asking anyone.
pub fn home_shard(name: &str, shards: usize) -> usize {
    // The modulo keeps the value below `shards`, which is a usize.
    (fnv1a(name.as_bytes()) % shards.max(1) as u64) as usize
}

/// The 64-bit FNV-1a hash of `bytes`: the placement hash of names and keys.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("greeter_1-a").is_ok());
        for bad in [
            "",
            "has space",
            "slash/y",
            "dot.name",
            "ünï",
            &"x".repeat(256),
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn home_shard_is_stable_and_in_range() {
        assert_eq!(home_shard("greeter", 4), home_shard("greeter", 4));
        let spread: std::collections::HashSet<_> =
            (0..100).map(|i| home_shard(&format!("w{i}"), 4)).collect();
        assert_eq!(spread.len(), 4);
        assert_eq!(home_shard("anything", 1), 0);
    }

    #[test]
    fn worker_refs_round_trip_through_text() {
        let r = WorkerRef {
            index: 7,
            generation: 9,
            shard: 1,
            node: 0,
        };
        assert_eq!(r.to_string().parse::<WorkerRef>().unwrap(), r);
        assert_eq!(Address::from("#1.7.9"), Address::Worker(r));
        assert!("#1.7".parse::<WorkerRef>().is_err());
        assert!("#1.7.9.3".parse::<WorkerRef>().is_err());
    }

    #[test]
    fn a_reference_to_a_worker_of_another_node_names_the_node() {
        let local = WorkerRef {
            index: 7,
            generation: 9,
            shard: 1,
            node: 0,
        };
        let remote = WorkerRef::of_node("address-test-node", local).unwrap();
        assert!(remote.is_remote() && !local.is_remote());
        assert_ne!(remote, local);
        assert_eq!(remote.node().as_deref(), Some("address-test-node"));
        assert_eq!(remote.to_string(), "address-test-node/#1.7.9");
        assert_eq!(remote.to_string().parse::<WorkerRef>().unwrap(), remote);
        assert_eq!(remote.on_its_node(), local);
        assert_eq!(
            remote.remote_address(),
            Some(RemoteAddress {
                node: "address-test-node".into(),
                worker: "#1.7.9".into()
            })
        );
        assert_eq!(local.remote_address(), None);
        for bad in ["/#1.7.9", "n/#1.7", "a/b/#1.7.9"] {
            assert!(bad.parse::<WorkerRef>().is_err(), "{bad}");
        }
    }
}
