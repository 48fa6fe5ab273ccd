//! Delivery flow control (link protocol version 2, `docs/protocol.md` §5.7):
//! how much of a receiver's room plain sends may use.
//!
//! Every plain send has a cost, its body plus [`SEND_OVERHEAD`] bytes. On
//! each connection the sender keeps what it sent and the receiver has not
//! settled yet, per target worker, within a [`Window`] of [`WORKER_WINDOW`]
//! bytes per worker and [`PLAIN_LINK_WINDOW`] bytes in all; the receiver
//! checks the total against [`LINK_WINDOW`], which bounds what it holds.
//! The receiver settles each send exactly once — delivered (into the
//! mailbox, possibly after waiting for room) or undeliverable — and gives
//! its cost back with a `credit` envelope; what it could not deliver it
//! reports with an `undeliverable` envelope. So a slow worker holds at most
//! its own window and slows down only the sends to itself, the receiver
//! never stops reading, and nothing accepted is lost without the sender
//! hearing of it.
//!
//! **Forced sends.** The last [`FORCE_RESERVE`] bytes of the link window are
//! kept for sends whose sender must not wait: a worker whose own mailbox is
//! full (the engine's rule against deadlocks, see `Context::send_when_ready`).
//! Such a send ignores its worker's window and needs only room in the whole
//! link window ([`Window::take_forced`]). A receiver that gets a send while
//! what it holds unsettled is beyond [`PLAIN_LINK_WINDOW`] ([`in_reserve`])
//! delivers it at once, past its worker's mailbox capacity, and settles it:
//! so the reserve always drains, whatever the workers do, and two nodes
//! whose workers flood each other with waiting sends cannot deadlock. The
//! wire carries no mark: the receiver tells a forced send from the total.
//!
//! A window also keeps the sends themselves (their costs, in runs of equal
//! cost), so that the sender knows how many are unsettled when a connection
//! ends ([`Window::unsettled_sends`]): those are *in doubt*, delivered or
//! not. Credits settle a worker's sends oldest first, which is the order the
//! reference receiver settles them in.
//!
//! [`Settlements`] gathers the receiver's credits and reports between two
//! writes, so that a burst of sends costs one credit envelope per worker.

use std::collections::{HashMap, VecDeque};

use myriad_engine::Message;

use crate::envelope::{ErrorCode, WorkerAddr};

/// The first link protocol version with delivery flow control.
pub const FLOW_CONTROL_VERSION: u16 = 2;

/// Bytes of window a send of one worker may hold unsettled.
pub const WORKER_WINDOW: u64 = 4 << 20;

/// Bytes of window the sends of one connection may hold unsettled, all
/// workers together: what a receiver holds at most.
pub const LINK_WINDOW: u64 = 16 << 20;

/// The part of [`LINK_WINDOW`] kept for forced sends (see the module doc).
pub const FORCE_RESERVE: u64 = 4 << 20;

/// Bytes of window the plain (unforced) sends of one connection may hold
/// unsettled, all workers together.
pub const PLAIN_LINK_WINDOW: u64 = LINK_WINDOW - FORCE_RESERVE;

/// Window bytes a send costs beyond its body.
pub const SEND_OVERHEAD: u64 = 64;

/// The window bytes a send with a body of `body_len` bytes costs.
pub fn cost(body_len: usize) -> u64 {
    body_len as u64 + SEND_OVERHEAD
}

/// Whether a send costing `cost` fits a window of `window` bytes that holds
/// `held`: within it, or alone (so that a message larger than a window
/// still goes).
pub(crate) fn fits(held: u64, cost: u64, window: u64) -> bool {
    held == 0 || held + cost <= window
}

/// Whether a forced send costing `cost` fits a link that holds `held`: in
/// the whole [`LINK_WINDOW`], or, of any size, while the reserve is untouched
/// (so that a forced message larger than the reserve still goes). This is
/// also what a receiver allows: a send beyond it breaks the protocol.
pub(crate) fn fits_forced(held: u64, cost: u64) -> bool {
    held <= PLAIN_LINK_WINDOW || held + cost <= LINK_WINDOW
}

/// Whether a receiver that holds `held` unsettled, a send just received
/// included, holds some of the reserve: that send was forced (or is a plain
/// message larger than the plain window, alone), and is delivered at once,
/// past its worker's mailbox capacity.
pub fn in_reserve(held: u64) -> bool {
    held > PLAIN_LINK_WINDOW
}

/// `n` in pieces that each fit a `u32` field of the wire.
pub(crate) fn pieces(n: u64) -> impl Iterator<Item = u32> {
    let max = u64::from(u32::MAX);
    (0..n.div_ceil(max)).map(move |i| (n - i * max).min(max) as u32)
}

/// Where a send goes on the wire: the key of the windows.
type Target = Option<WorkerAddr>;

/// Whether two targets are equal; a name is first compared by where its
/// bytes are (a sender's targets are clones of one name).
#[inline]
fn same(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Some(WorkerAddr::Name(a)), Some(WorkerAddr::Name(b))) => {
            let (a, b) = (a.as_bytes(), b.as_bytes());
            (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
        }
        _ => a == b,
    }
}

/// What a [`Tally`] keeps per target.
trait Slot: Default {
    /// Nothing is kept: the target may be forgotten.
    fn is_empty(&self) -> bool;
}

impl Slot for u64 {
    fn is_empty(&self) -> bool {
        *self == 0
    }
}

/// Something per target, with the last target used kept apart so that a
/// run of sends to one worker does not hash its name for each of them.
#[derive(Debug, Default)]
struct Tally<T> {
    hot: Option<(Target, T)>,
    cold: HashMap<Target, T>,
}

impl<T: Slot> Tally<T> {
    /// The slot of `target`, made the hot one.
    #[inline]
    fn entry(&mut self, target: &Target) -> &mut T {
        let is_hot = matches!(&self.hot, Some((hot, _)) if same(hot, target));
        if !is_hot {
            if let Some((old, slot)) = self.hot.take() {
                if !slot.is_empty() {
                    self.cold.insert(old, slot);
                }
            }
            let slot = self.cold.remove(target).unwrap_or_default();
            self.hot = Some((target.clone(), slot));
        }
        match &mut self.hot {
            Some((_, slot)) => slot,
            None => unreachable!("the hot entry was just set"),
        }
    }

    /// Every slot kept.
    fn slots(&self) -> impl Iterator<Item = &T> {
        self.hot
            .iter()
            .map(|(_, slot)| slot)
            .chain(self.cold.values())
    }

    /// Every target with something kept, and what; empties the tally.
    fn drain(&mut self) -> impl Iterator<Item = (Target, T)> + '_ {
        self.hot
            .take()
            .into_iter()
            .chain(self.cold.drain())
            .filter(|(_, slot)| !slot.is_empty())
    }

    fn clear(&mut self) {
        self.hot = None;
        self.cold.clear();
    }
}

/// What the sends to one target hold of a window: their bytes, and the
/// sends themselves as runs of `(cost, count)`, oldest first.
#[derive(Debug, Default)]
struct Held {
    bytes: u64,
    runs: VecDeque<(u64, u64)>,
    /// Bytes credited that do not make up the oldest send yet (a credit
    /// may be cut into pieces).
    credited: u64,
}

impl Slot for Held {
    fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

impl Held {
    /// A send costing `cost` holds its part.
    fn take(&mut self, cost: u64) {
        self.bytes += cost;
        match self.runs.back_mut() {
            Some((run_cost, count)) if *run_cost == cost => *count += 1,
            _ => self.runs.push_back((cost, 1)),
        }
    }

    /// The latest send costing `cost` did not go after all.
    fn forget(&mut self, cost: u64) {
        let Some(at) = self.runs.iter().rposition(|&(c, _)| c == cost) else {
            return;
        };
        self.bytes -= cost;
        self.runs[at].1 -= 1;
        if self.runs[at].1 == 0 {
            self.runs.remove(at);
        }
    }

    /// The receiver settled `bytes` worth of sends, oldest first; `false`
    /// (and nothing settled) if that is more than they hold.
    fn settle(&mut self, bytes: u64) -> bool {
        if bytes > self.bytes {
            return false;
        }
        self.bytes -= bytes;
        self.credited += bytes;
        while let Some((cost, count)) = self.runs.front_mut() {
            let settled = (self.credited / *cost).min(*count);
            if settled == 0 {
                break;
            }
            self.credited -= settled * *cost;
            *count -= settled;
            if *count == 0 {
                self.runs.pop_front();
            }
        }
        if self.runs.is_empty() {
            self.credited = 0;
        }
        true
    }

    /// How many sends are not settled.
    fn sends(&self) -> u64 {
        self.runs.iter().map(|&(_, count)| count).sum()
    }
}

/// The window of one direction of a connection: what its sends hold
/// unsettled, per target and in all.
#[derive(Debug, Default)]
pub(crate) struct Window {
    held: Tally<Held>,
    total: u64,
}

impl Window {
    /// Takes `cost` bytes of window for a plain send to `target`, if they
    /// [`fits`] both its worker's window and the link's plain window.
    pub(crate) fn take(&mut self, target: &Target, cost: u64) -> bool {
        if !fits(self.total, cost, PLAIN_LINK_WINDOW) {
            return false;
        }
        let held = self.held.entry(target);
        if !fits(held.bytes, cost, WORKER_WINDOW) {
            return false;
        }
        held.take(cost);
        self.total += cost;
        true
    }

    /// Takes `cost` bytes of window for a forced send to `target` (see the
    /// module doc), if they [`fits_forced`] the link: its worker's window
    /// does not count.
    pub(crate) fn take_forced(&mut self, target: &Target, cost: u64) -> bool {
        if !fits_forced(self.total, cost) {
            return false;
        }
        self.held.entry(target).take(cost);
        self.total += cost;
        true
    }

    /// Gives back the window of the latest send to `target` costing `cost`,
    /// which did not go after all.
    pub(crate) fn forget(&mut self, target: &Target, cost: u64) {
        let held = self.held.entry(target);
        let before = held.bytes;
        held.forget(cost);
        self.total -= before - held.bytes;
    }

    /// Gives back `bytes` of `target`'s window, the receiver's credit for
    /// its oldest sends; `false` (and nothing given back) if it holds fewer.
    pub(crate) fn give_back(&mut self, target: &Target, bytes: u64) -> bool {
        if !self.held.entry(target).settle(bytes) {
            return false;
        }
        self.total -= bytes;
        true
    }

    /// Bytes held unsettled, all targets together.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// How many sends are not settled, all targets together.
    pub(crate) fn unsettled_sends(&self) -> u64 {
        self.held.slots().map(Held::sends).sum()
    }

    /// Forgets everything (the connection is over).
    pub(crate) fn clear(&mut self) {
        self.held.clear();
        self.total = 0;
    }
}

/// Sends to one target that the receiver could not deliver, for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Drops {
    count: u64,
    /// The first error's text.
    text: Message,
}

/// A report for the peer: `count` of its sends to `target` were not
/// delivered, for the reason `code` (`text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) target: Target,
    pub(crate) code: ErrorCode,
    pub(crate) count: u64,
    pub(crate) text: Message,
}

/// What a receiver settled since its last write: the credits to give back
/// and the sends to report undeliverable, per target.
#[derive(Debug, Default)]
pub(crate) struct Settlements {
    credits: Tally<u64>,
    drops: HashMap<(Target, ErrorCode), Drops>,
    pending: bool,
}

impl Settlements {
    /// A send to `target` that cost `cost` was settled: delivered (`Ok`), or
    /// not for the reason `code` with `text`. Returns `true` if nothing was
    /// pending before (the writer has something new to write).
    pub(crate) fn settle(
        &mut self,
        target: &Target,
        cost: u64,
        outcome: Result<(), (ErrorCode, Message)>,
    ) -> bool {
        *self.credits.entry(target) += cost;
        if let Err((code, text)) = outcome {
            self.drops
                .entry((target.clone(), code))
                .and_modify(|d| d.count += 1)
                .or_insert(Drops { count: 1, text });
        }
        !std::mem::replace(&mut self.pending, true)
    }

    /// Whether anything waits to be written.
    pub(crate) fn is_pending(&self) -> bool {
        self.pending
    }

    /// The reports, then the credits, gathered so far; empties the set.
    pub(crate) fn take(&mut self) -> (Vec<Report>, Vec<(Target, u64)>) {
        self.pending = false;
        let drops = self
            .drops
            .drain()
            .map(|((target, code), Drops { count, text })| Report {
                target,
                code,
                count,
                text,
            })
            .collect();
        (drops, self.credits.drain().collect())
    }

    /// Forgets everything (the connection is over).
    pub(crate) fn clear(&mut self) {
        self.credits.clear();
        self.drops.clear();
        self.pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(name: &str) -> Target {
        Some(WorkerAddr::from(name))
    }

    #[test]
    fn a_worker_window_fills_up_and_empties_without_touching_the_others() {
        let mut w = Window::default();
        let (a, b) = (worker("a"), worker("b"));
        let cost = WORKER_WINDOW / 4;
        for _ in 0..4 {
            assert!(w.take(&a, cost));
        }
        assert!(!w.take(&a, 1), "a's window is full");
        assert!(w.take(&b, cost), "b's is not");
        assert!(w.give_back(&a, cost));
        assert!(w.take(&a, cost));
        assert_eq!(w.total(), 5 * cost);
        assert!(!w.give_back(&b, cost + 1), "more than b holds");
        assert!(w.give_back(&b, cost));
        assert_eq!(w.total(), 4 * cost);
    }

    #[test]
    fn the_plain_link_window_bounds_all_workers_together() {
        let mut w = Window::default();
        let workers = PLAIN_LINK_WINDOW / WORKER_WINDOW;
        for i in 0..workers {
            assert!(w.take(&worker(&i.to_string()), WORKER_WINDOW));
        }
        assert!(!w.take(&worker("one more"), 1));
        assert!(w.give_back(&worker("0"), 1));
        assert!(w.take(&worker("one more"), 1));
    }

    #[test]
    fn a_message_larger_than_a_window_goes_alone() {
        let mut w = Window::default();
        let (a, b) = (worker("a"), worker("b"));
        assert!(w.take(&a, LINK_WINDOW + 1), "nothing held: it goes");
        assert!(!w.take(&a, 1));
        assert!(!w.take(&b, 1), "the link window is over");
        assert!(w.give_back(&a, LINK_WINDOW + 1));
        assert!(w.take(&b, 1));
    }

    #[test]
    fn forced_sends_ignore_the_worker_window_and_use_the_reserve() {
        let mut w = Window::default();
        let (a, b) = (worker("a"), worker("b"));
        let quarter = WORKER_WINDOW / 4;
        for _ in 0..PLAIN_LINK_WINDOW / quarter {
            assert!(w.take_forced(&a, quarter), "a's window does not count");
        }
        assert!(!w.take(&b, 1), "the plain window is full");
        for _ in 0..FORCE_RESERVE / quarter {
            assert!(w.take_forced(&b, quarter), "the reserve takes forced sends");
        }
        assert!(!w.take_forced(&b, 1), "the whole link window is full");
        assert!(w.give_back(&a, 2 * quarter));
        assert!(!w.take(&b, 1), "the plain window is still over");
        assert!(w.take_forced(&b, quarter));
        // A forced message larger than the reserve goes while it is untouched.
        let mut w = Window::default();
        assert!(w.take(&a, PLAIN_LINK_WINDOW - 1));
        assert!(w.take_forced(&b, LINK_WINDOW));
        assert!(!w.take_forced(&b, 1));
    }

    #[test]
    fn the_receiver_finds_forced_sends_in_the_reserve() {
        assert!(!in_reserve(PLAIN_LINK_WINDOW));
        assert!(in_reserve(PLAIN_LINK_WINDOW + 1));
        assert!(fits_forced(PLAIN_LINK_WINDOW, LINK_WINDOW));
        assert!(fits_forced(LINK_WINDOW - 1, 1));
        assert!(!fits_forced(LINK_WINDOW - 1, 2));
    }

    #[test]
    fn a_window_counts_its_unsettled_sends_as_credits_settle_the_oldest() {
        let mut w = Window::default();
        let (a, b) = (worker("a"), worker("b"));
        for cost in [10, 10, 10, 30, 10] {
            assert!(w.take(&a, cost));
        }
        assert!(w.take(&b, 5));
        assert_eq!(w.unsettled_sends(), 6);
        // A credit cut into pieces settles whole sends only.
        assert!(w.give_back(&a, 15));
        assert_eq!(w.unsettled_sends(), 5);
        assert!(w.give_back(&a, 5));
        assert_eq!(w.unsettled_sends(), 4);
        assert!(w.give_back(&a, 39));
        assert_eq!(w.unsettled_sends(), 3, "the 30 is not whole yet");
        assert!(w.give_back(&a, 1));
        assert_eq!(w.unsettled_sends(), 2);
        // A send that did not go is forgotten, whatever came after it.
        assert!(w.take(&b, 7));
        w.forget(&b, 5);
        assert_eq!(w.unsettled_sends(), 2);
        assert_eq!(w.total(), 10 + 7);
        assert!(w.give_back(&b, 7));
        assert!(w.give_back(&a, 10));
        assert_eq!((w.unsettled_sends(), w.total()), (0, 0));
    }

    #[test]
    fn counts_are_cut_into_pieces_that_fit_the_wire() {
        let max = u64::from(u32::MAX);
        let all = |n| pieces(n).map(u64::from).collect::<Vec<_>>();
        assert_eq!(all(0), [] as [u64; 0]);
        assert_eq!(all(5), [5]);
        assert_eq!(all(max), [max]);
        assert_eq!(all(2 * max + 3), [max, max, 3]);
    }

    #[test]
    fn settlements_gather_credits_and_reports_per_target() {
        let mut s = Settlements::default();
        let (a, b) = (worker("a"), worker("b"));
        assert!(s.settle(&a, 10, Ok(())), "the first one wakes the writer");
        assert!(!s.settle(&b, 20, Ok(())));
        let gone = (ErrorCode::NoSuchWorker, Message::from("b"));
        assert!(!s.settle(&b, 30, Err(gone.clone())));
        assert!(!s.settle(&a, 40, Ok(())));
        assert!(!s.settle(&b, 50, Err((ErrorCode::NoSuchWorker, "later".into()))));
        assert!(s.is_pending());
        let (drops, mut credits) = s.take();
        credits.sort_by_key(|(target, _)| format!("{target:?}"));
        assert_eq!(credits, [(a, 50), (b.clone(), 100)]);
        let report = Report {
            target: b,
            code: ErrorCode::NoSuchWorker,
            count: 2,
            text: gone.1,
        };
        assert_eq!(drops, [report]);
        assert!(!s.is_pending());
        assert_eq!(s.take(), (vec![], vec![]));
    }
}
