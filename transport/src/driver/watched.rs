//! The watches a peer holds on this node's workers over one link
//! (`docs/protocol.md` §10.5): each is an engine callback watch
//! ([`ShardHandle::watch_with`]) under the id of the peer's `watch` request,
//! for as long as the connection it came on lives.
//!
//! A watch is *resolving* while the engine looks its target up, then *in
//! force*; its callback may fire on any shard and comes back to the link's
//! shard as a [`Completed::Exited`](super::inbound::Completed), which sends
//! the peer's `exited` notice once. When the connection ends, every watch
//! is removed from the engine: a new connection starts with none.

use std::cell::RefCell;
use std::collections::HashMap;

use myriad_engine::plugin::{CallbackWatch, ShardHandle};

/// At most this many watches per link: a peer asking for more is refused
/// (`reply err`), the link stays up.
pub(crate) const MAX_WATCHES_PER_LINK: usize = 1 << 16;

/// Where one watch stands.
enum Entry {
    /// The engine is resolving its target.
    Resolving,
    /// In force in the engine.
    InForce(CallbackWatch),
    /// Its worker ended while it was resolving: the notice went out.
    Fired,
}

/// The peer's watches over one link, by id.
#[derive(Default)]
pub(crate) struct Watched {
    entries: RefCell<HashMap<u64, Entry>>,
}

/// What [`Watched::open`] decided about a new watch.
pub(crate) enum Opened {
    /// Resolve it.
    Resolve,
    /// Refuse it, for this reason.
    Refuse(&'static str),
}

impl Watched {
    /// A `watch` request `id` came: note it as resolving, unless the id is
    /// in use or the link holds too many watches.
    pub(crate) fn open(&self, id: u64) -> Opened {
        let mut entries = self.entries.borrow_mut();
        if entries.contains_key(&id) {
            return Opened::Refuse("a watch id that is already in use");
        }
        if entries.len() >= MAX_WATCHES_PER_LINK {
            return Opened::Refuse("too many watches on this link");
        }
        entries.insert(id, Entry::Resolving);
        Opened::Resolve
    }

    /// Watch `id` is now `watch` in the engine. Returns it back if the
    /// watch is no longer wanted (the peer unwatched it, the connection
    /// ended): the caller removes it from the engine.
    pub(crate) fn resolved(&self, id: u64, watch: CallbackWatch) -> Option<CallbackWatch> {
        let mut entries = self.entries.borrow_mut();
        match entries.get(&id) {
            Some(Entry::Resolving) => {
                entries.insert(id, Entry::InForce(watch));
                None
            }
            Some(Entry::Fired) => {
                entries.remove(&id);
                None
            }
            Some(Entry::InForce(_)) | None => Some(watch),
        }
    }

    /// Watch `id` could not be made.
    pub(crate) fn failed(&self, id: u64) {
        self.entries.borrow_mut().remove(&id);
    }

    /// Watch `id`'s worker ended: `true` if the peer is to be told (the
    /// watch is still wanted).
    pub(crate) fn fired(&self, id: u64) -> bool {
        let mut entries = self.entries.borrow_mut();
        match entries.get(&id) {
            Some(Entry::Resolving) => {
                entries.insert(id, Entry::Fired);
                true
            }
            Some(Entry::InForce(_)) => {
                entries.remove(&id);
                true
            }
            Some(Entry::Fired) | None => false,
        }
    }

    /// The peer unwatched `id`: removes it (from the engine too).
    pub(crate) fn close(&self, id: u64, shard: &ShardHandle) {
        let removed = self.entries.borrow_mut().remove(&id);
        if let Some(Entry::InForce(watch)) = removed {
            shard.unwatch_with(watch);
        }
    }

    /// The connection ended: removes every watch (from the engine too).
    pub(crate) fn close_all(&self, shard: &ShardHandle) {
        let entries = std::mem::take(&mut *self.entries.borrow_mut());
        for entry in entries.into_values() {
            if let Entry::InForce(watch) = entry {
                shard.unwatch_with(watch);
            }
        }
    }
}
