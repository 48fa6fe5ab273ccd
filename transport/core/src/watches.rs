//! Remote watches as a link keeps them (`docs/protocol.md` §10.5): the
//! watches this node's workers hold on workers of the peer, each under the
//! id of its `watch` request, and the text of an `exited` notice's reason.
//!
//! The table is the watcher side's truth: a notice for an id it does not
//! hold (unwatched, timed out, from an earlier connection) is dropped, and
//! when the connection ends every watch in it fires once with
//! [`ExitReason::NodeLost`] and is gone.

use std::collections::HashMap;

use myriad_engine::plugin::WireRef;
use myriad_engine::{ExitReason, Message, RemoteAddress, WorkerRef};

use crate::zone::NodeName;

/// A remote watch that fired: tell `watcher`, a worker of this node, that
/// `who`, a worker of node `node`, ended, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The watching worker (of this node).
    pub watcher: WorkerRef,
    /// The watched worker, as its node names it.
    pub who: WireRef,
    /// The node the watched worker lives on.
    pub node: NodeName,
    /// Why the watch fired.
    pub reason: ExitReason,
}

/// One watch in force.
#[derive(Debug, Clone)]
struct Watch {
    watcher: WorkerRef,
    who: WireRef,
    /// The address the watcher named it by (`node/name` or a reference).
    target: RemoteAddress,
}

/// The watches of one link's connection, by the id of their `watch` request.
#[derive(Debug, Default)]
pub(crate) struct Watches {
    active: HashMap<u64, Watch>,
    /// The watch of each (watcher, watched worker) pair: a pair is watched once.
    pairs: HashMap<(WorkerRef, WireRef), u64>,
}

impl Watches {
    /// Puts watch `id` in force; `false` (and nothing kept) if `watcher`
    /// already watches `who` under another id.
    pub(crate) fn activate(
        &mut self,
        id: u64,
        watcher: WorkerRef,
        who: WireRef,
        target: RemoteAddress,
    ) -> bool {
        if self.pairs.contains_key(&(watcher, who)) {
            return false;
        }
        self.pairs.insert((watcher, who), id);
        let watch = Watch {
            watcher,
            who,
            target,
        };
        self.active.insert(id, watch);
        true
    }

    /// Takes watch `id` out, as it fires: its watcher and watched worker.
    pub(crate) fn fire(&mut self, id: u64) -> Option<(WorkerRef, WireRef)> {
        let watch = self.active.remove(&id)?;
        self.pairs.remove(&(watch.watcher, watch.who));
        Some((watch.watcher, watch.who))
    }

    /// Takes out `watcher`'s watch of `target` (the name it was watched
    /// by, or the watched worker's reference); returns its id.
    pub(crate) fn remove(&mut self, watcher: WorkerRef, target: &RemoteAddress) -> Option<u64> {
        let id = self.active.iter().find_map(|(&id, watch)| {
            let named =
                watch.target.worker == target.worker || watch.who.to_string() == *target.worker;
            (watch.watcher == watcher && named).then_some(id)
        })?;
        self.fire(id).map(|_| id)
    }

    /// Takes out every watch (the connection ended).
    pub(crate) fn drain(&mut self) -> Vec<(WorkerRef, WireRef)> {
        self.pairs.clear();
        self.active
            .drain()
            .map(|(_, watch)| (watch.watcher, watch.who))
            .collect()
    }
}

/// The body of an `exited` notice for `reason`.
pub(crate) fn encode_reason(reason: &ExitReason) -> Message {
    match reason {
        ExitReason::Stopped => Message::from_static("stopped"),
        ExitReason::NoSuchWorker => Message::from_static("no-such-worker"),
        ExitReason::NodeLost => Message::from_static("node-lost"),
        ExitReason::Panicked(text) => Message::from(format!("panicked\n{text}")),
        // A reason this build does not know: the worker is gone.
        _ => Message::from_static("stopped"),
    }
}

/// The reason an `exited` notice's body gives, or `None` if it is none of
/// the documented ones.
pub(crate) fn decode_reason(body: &str) -> Option<ExitReason> {
    match body {
        "stopped" => Some(ExitReason::Stopped),
        "no-such-worker" => Some(ExitReason::NoSuchWorker),
        "node-lost" => Some(ExitReason::NodeLost),
        _ => {
            let text = body.strip_prefix("panicked\n")?;
            Some(ExitReason::Panicked(text.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(index: u32) -> WireRef {
        WireRef {
            shard: 0,
            index,
            generation: 1,
        }
    }

    #[test]
    fn reasons_round_trip_and_unknown_ones_are_refused() {
        for reason in [
            ExitReason::Stopped,
            ExitReason::NoSuchWorker,
            ExitReason::NodeLost,
            ExitReason::Panicked("boom\nwith two lines".into()),
            ExitReason::Panicked("".into()),
        ] {
            assert_eq!(decode_reason(&encode_reason(&reason)), Some(reason));
        }
        for junk in ["", "Stopped", "panicked", "exploded\nboom"] {
            assert_eq!(decode_reason(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn a_pair_is_watched_once_and_each_watch_fires_once() {
        let mut watches = Watches::default();
        let (w, other) = (r(1).local(), r(2).local());
        let by_name = RemoteAddress {
            node: "b".into(),
            worker: "greeter".into(),
        };
        assert!(watches.activate(1, w, r(9), by_name.clone()));
        assert!(
            !watches.activate(2, w, r(9), by_name.clone()),
            "the same pair"
        );
        assert!(watches.activate(3, other, r(9), by_name.clone()));
        assert_eq!(watches.fire(2), None);
        assert_eq!(watches.fire(1), Some((w, r(9))));
        assert_eq!(watches.fire(1), None, "once");
        assert!(watches.activate(4, w, r(9), by_name.clone()), "free again");
        let by_ref = RemoteAddress {
            node: "b".into(),
            worker: "#0.9.1".into(),
        };
        assert_eq!(watches.remove(other, &by_ref), Some(3));
        assert_eq!(watches.remove(other, &by_name), None);
        assert_eq!(watches.drain(), [(w, r(9))]);
        assert!(watches.drain().is_empty());
    }
}
