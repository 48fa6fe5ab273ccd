//! Delivery flow control (link protocol version 2, `docs/protocol.md` §5.7):
//! how much of a receiver's room plain sends may use.
//!
//! Every plain send has a cost, its body plus [`SEND_OVERHEAD`] bytes. On
//! each connection the sender keeps what it sent and the receiver has not
//! settled yet, per target worker, within a [`Window`] of [`WORKER_WINDOW`]
//! bytes per worker and [`LINK_WINDOW`] bytes in all; the receiver checks
//! the total, which bounds what it holds. The receiver settles
//! each send exactly once — delivered (into the mailbox, possibly after
//! waiting for room) or undeliverable — and gives its cost back with a
//! `credit` envelope; what it could not deliver it reports with an
//! `undeliverable` envelope. So a slow worker holds at most its own window
//! and slows down only the sends to itself, the receiver never stops
//! reading, and nothing accepted is lost without the sender hearing of it.
//!
//! [`Settlements`] gathers the receiver's credits and reports between two
//! writes, so that a burst of sends costs one credit envelope per worker.

use std::collections::HashMap;

use myriad_engine::Message;

use crate::envelope::{ErrorCode, WorkerAddr};

/// The first link protocol version with delivery flow control.
pub const FLOW_CONTROL_VERSION: u16 = 2;

/// Bytes of window a send of one worker may hold unsettled.
pub const WORKER_WINDOW: u64 = 4 << 20;

/// Bytes of window the sends of one connection may hold unsettled, all
/// workers together.
pub const LINK_WINDOW: u64 = 16 << 20;

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

/// `n` in pieces that each fit a `u32` field of the wire.
pub(crate) fn pieces(n: u64) -> impl Iterator<Item = u32> {
    let max = u64::from(u32::MAX);
    (0..n.div_ceil(max)).map(move |i| (n - i * max).min(max) as u32)
}

/// Where a send goes on the wire: the key of the windows.
type Target = Option<WorkerAddr>;

/// Whether two targets are equal; a name is first compared by where its
/// bytes are (a sender's targets are clones of one name).
fn same(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Some(WorkerAddr::Name(a)), Some(WorkerAddr::Name(b))) => {
            let (a, b) = (a.as_bytes(), b.as_bytes());
            (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
        }
        _ => a == b,
    }
}

/// Counts per target, with the last target used kept apart so that a run
/// of sends to one worker does not hash its name for each of them.
#[derive(Debug, Default)]
struct Tally {
    hot: Option<(Target, u64)>,
    cold: HashMap<Target, u64>,
}

impl Tally {
    /// The count of `target`, made the hot one.
    fn entry(&mut self, target: &Target) -> &mut u64 {
        let is_hot = matches!(&self.hot, Some((hot, _)) if same(hot, target));
        if !is_hot {
            if let Some((old, n)) = self.hot.take() {
                if n > 0 {
                    self.cold.insert(old, n);
                }
            }
            let n = self.cold.remove(target).unwrap_or(0);
            self.hot = Some((target.clone(), n));
        }
        match &mut self.hot {
            Some((_, n)) => n,
            None => unreachable!("the hot entry was just set"),
        }
    }

    /// Every target with a count above zero, and the count; empties the tally.
    fn drain(&mut self) -> impl Iterator<Item = (Target, u64)> + '_ {
        self.hot
            .take()
            .into_iter()
            .chain(self.cold.drain())
            .filter(|(_, n)| *n > 0)
    }

    fn clear(&mut self) {
        self.hot = None;
        self.cold.clear();
    }
}

/// The window of one direction of a connection: what its sends hold
/// unsettled, per target and in all.
#[derive(Debug, Default)]
pub(crate) struct Window {
    held: Tally,
    total: u64,
}

impl Window {
    /// Takes `cost` bytes of window for a send to `target`, if they [`fits`]
    /// both its worker's window and the link's.
    pub(crate) fn take(&mut self, target: &Target, cost: u64) -> bool {
        if !fits(self.total, cost, LINK_WINDOW) {
            return false;
        }
        let held = self.held.entry(target);
        if !fits(*held, cost, WORKER_WINDOW) {
            return false;
        }
        *held += cost;
        self.total += cost;
        true
    }

    /// Gives back `bytes` of `target`'s window; `false` (and nothing given
    /// back) if it holds fewer.
    pub(crate) fn give_back(&mut self, target: &Target, bytes: u64) -> bool {
        let held = self.held.entry(target);
        if bytes > *held {
            return false;
        }
        *held -= bytes;
        self.total -= bytes;
        true
    }

    /// Bytes held unsettled, all targets together.
    pub(crate) fn total(&self) -> u64 {
        self.total
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
    credits: Tally,
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
    fn the_link_window_bounds_all_workers_together() {
        let mut w = Window::default();
        let workers = LINK_WINDOW / WORKER_WINDOW;
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
