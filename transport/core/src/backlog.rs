//! Waiting sends on a link ([`LinkState::send_when_ready`]): plain sends
//! kept until the delivery window (`flow.rs`) or the outbound buffer has
//! room for them, for senders that prefer waiting to `MailboxFull`.
//!
//! Nothing here is on the path of a send that finds room: a send waits here
//! only when its window is full, and the link looks here only when a credit
//! or a write makes room while something waits.
//!
//! Unforced sends wait per target, each target's in the order they came; a
//! target's first waiting send blocks the later ones to it, never those to
//! other targets. Forced sends (their senders' own mailboxes are full, see
//! `flow.rs`) wait in one queue of their own, for the link's reserve only,
//! and go first.
//!
//! [`LinkState::send_when_ready`]: crate::link::LinkState::send_when_ready

use std::collections::{HashMap, VecDeque};
use std::fmt;

use myriad_engine::Result;

use crate::envelope::{Envelope, WorkerAddr};

/// Told once whether a waiting send was taken by the link (`Ok`), or why not.
pub type Ready = Box<dyn FnOnce(Result<()>)>;

/// A plain send waiting for room.
pub(crate) struct Waiting {
    /// Unique among the link's waiting sends.
    pub(crate) id: u64,
    pub(crate) target: Option<WorkerAddr>,
    pub(crate) envelope: Envelope,
    /// Its cost in the window (`flow::cost`).
    pub(crate) cost: u64,
    pub(crate) ready: Ready,
}

impl fmt::Debug for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiting")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

/// The waiting sends of one link.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    /// Unforced sends, by target, each target's oldest first.
    queues: HashMap<Option<WorkerAddr>, VecDeque<Waiting>>,
    /// Forced sends, oldest first.
    forced: VecDeque<Waiting>,
    next_id: u64,
}

impl Backlog {
    /// A fresh id for a waiting send.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Whether no send waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.forced.is_empty() && self.queues.is_empty()
    }

    /// Whether a send that is `forced` (or not) to `target` must queue
    /// behind others rather than try for room at once.
    pub(crate) fn must_queue(&self, target: &Option<WorkerAddr>, forced: bool) -> bool {
        if forced {
            !self.forced.is_empty()
        } else {
            self.queues.contains_key(target)
        }
    }

    /// Queues `waiting`, forced or not, behind the sends of its kind.
    pub(crate) fn push(&mut self, waiting: Waiting, forced: bool) {
        if forced {
            self.forced.push_back(waiting);
        } else {
            let target = waiting.target.clone();
            self.queues.entry(target).or_default().push_back(waiting);
        }
    }

    /// Makes unforced send `id` a forced one (its sender's mailbox filled
    /// up while it waited); `false` if no unforced send `id` waits.
    pub(crate) fn force(&mut self, id: u64) -> bool {
        let found = self.queues.iter_mut().find_map(|(target, queue)| {
            let at = queue.iter().position(|w| w.id == id)?;
            Some((target.clone(), queue.remove(at)))
        });
        let Some((target, Some(waiting))) = found else {
            return false;
        };
        if self.queues.get(&target).is_some_and(VecDeque::is_empty) {
            self.queues.remove(&target);
        }
        self.forced.push_back(waiting);
        true
    }

    /// Takes out the waiting sends that `room` finds room for (it takes that
    /// room, and is told whether the send is forced), in the order they are
    /// to go: the forced ones first, then each target's, oldest first, until
    /// one finds none.
    pub(crate) fn release(&mut self, mut room: impl FnMut(&Waiting, bool) -> bool) -> Vec<Waiting> {
        let mut out = Vec::new();
        while let Some(waiting) = self.forced.front() {
            if !room(waiting, true) {
                break;
            }
            out.extend(self.forced.pop_front());
        }
        self.queues.retain(|_, queue| {
            while let Some(waiting) = queue.front() {
                if !room(waiting, false) {
                    break;
                }
                out.extend(queue.pop_front());
            }
            !queue.is_empty()
        });
        out
    }

    /// Takes out every waiting send (the connection is over).
    pub(crate) fn drain(&mut self) -> Vec<Waiting> {
        let mut all: Vec<Waiting> = self.forced.drain(..).collect();
        all.extend(self.queues.drain().flat_map(|(_, queue)| queue));
        all
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::envelope::Kind;

    fn waiting(backlog: &mut Backlog, to: &str, told: &Rc<RefCell<Vec<u64>>>) -> Waiting {
        let id = backlog.next_id();
        let told = told.clone();
        Waiting {
            id,
            target: Some(WorkerAddr::from(to)),
            envelope: Envelope::new(Kind::Send, Some(WorkerAddr::from(to)), "x"),
            cost: 1,
            ready: Box::new(move |_| told.borrow_mut().push(id)),
        }
    }

    fn ids(released: &[Waiting]) -> Vec<u64> {
        released.iter().map(|w| w.id).collect()
    }

    #[test]
    fn a_full_target_holds_up_its_own_sends_only_and_forced_ones_go_first() {
        let told = Rc::default();
        let mut b = Backlog::default();
        for to in ["slow", "slow", "fast", "slow"] {
            let w = waiting(&mut b, to, &told);
            b.push(w, false);
        }
        assert!(b.must_queue(&Some(WorkerAddr::from("slow")), false));
        assert!(!b.must_queue(&Some(WorkerAddr::from("other")), false));
        assert!(!b.must_queue(&None, true));
        assert!(b.force(4), "the last send to slow is forced");
        assert!(!b.force(4), "only once");
        assert!(b.must_queue(&None, true));
        let slow = Some(WorkerAddr::from("slow"));
        // Room for everything but `slow`'s unforced sends.
        let released = b.release(|w, forced| forced || w.target != slow);
        assert_eq!(ids(&released), [4, 3]);
        assert!(!b.is_empty());
        let released = b.release(|_, _| true);
        assert_eq!(ids(&released), [1, 2]);
        assert!(b.is_empty());
    }

    #[test]
    fn release_stops_a_target_at_its_first_send_without_room() {
        let told = Rc::default();
        let mut b = Backlog::default();
        for _ in 0..3 {
            let w = waiting(&mut b, "w", &told);
            b.push(w, false);
        }
        let mut room = 1;
        let released = b.release(|_, _| {
            room -= 1;
            room >= 0
        });
        assert_eq!(ids(&released), [1]);
        let all = b.drain();
        assert_eq!(ids(&all), [2, 3]);
        assert!(b.is_empty());
        for w in all {
            (w.ready)(Ok(()));
        }
        assert_eq!(*told.borrow(), [2, 3]);
    }
}
