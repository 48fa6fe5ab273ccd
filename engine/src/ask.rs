//! The table of asks a shard is waiting on, their deadlines, and the future
//! that waits for one.
//!
//! An ask opens an entry (slot + generation); the reply, from this shard or
//! another, fills it and wakes the asker. A finished or cancelled ask removes
//! its entry, so a late reply finds a different generation and is dropped
//! instead of reaching a newer ask.
//!
//! Deadlines live in a hashed timing wheel threaded through the entries
//! themselves (`prev`/`next` links, one list per bucket of [`TICK`]), so
//! arming and cancelling a deadline is O(1) and allocation-free. One sweeper
//! per shard ([`AskTable::sweep`]) sleeps on a single glommio timer until the
//! next non-empty bucket comes due. A glommio timer per ask used to cost a
//! B-tree insert and removal on every `send_and_receive`. Timeouts have a
//! granularity of one tick: an ask never expires early, and at most about
//! one tick late.

use std::cell::{Cell, RefCell};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::signal::Signal;
use crate::{Error, Message};

/// The wheel's resolution.
pub(crate) const TICK: Duration = Duration::from_nanos(TICK_NANOS);

const TICK_NANOS: u64 = 250_000;

/// Buckets in the wheel: a deadline further away than this many ticks is
/// looked at once per turn until it is due.
const BUCKETS: usize = 16384;

const NIL: u32 = u32::MAX;

/// Where an entry stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Waiting,
    /// Answered: the answer is `Table::answers[key]`, kept out of the
    /// entry so that an entry (one per sleeping worker) stays small.
    Answered(u32),
    Expired,
}

/// An open ask or sleep: 48 bytes, of which the waker is a third.
struct Entry {
    waker: Option<Waker>,
    /// The tick at which the entry expires.
    deadline: u64,
    generation: u32,
    /// Links of the wheel bucket the entry is in (`NIL` at the ends).
    prev: u32,
    next: u32,
    phase: Phase,
    /// Whether the entry is in a bucket.
    armed: bool,
}

// The size docs/performance.md quotes for a sleeping worker's entry.
const _: () = assert!(std::mem::size_of::<Entry>() <= 48);

#[derive(Default)]
struct Table {
    entries: Slab<Entry>,
    /// Answers that arrived and wait for their asker's next poll.
    answers: Slab<Result<Message, Error>>,
    /// First entry of each bucket (`NIL` if empty).
    buckets: Vec<u32>,
    /// Entries in buckets.
    armed: usize,
    /// The last tick the sweeper has expired entries up to.
    swept: u64,
}

/// Pending asks of one shard.
pub(crate) struct AskTable {
    table: RefCell<Table>,
    next_generation: Cell<u32>,
    /// Ticks count from here.
    epoch: Instant,
    /// The tick the sweeper sleeps until (`u64::MAX` when it has nothing
    /// to wait for).
    planned: Cell<u64>,
    /// Raised when a deadline earlier than `planned` is armed.
    replan: Signal,
}

impl Default for AskTable {
    fn default() -> Self {
        AskTable {
            table: RefCell::new(Table {
                buckets: vec![NIL; BUCKETS],
                ..Table::default()
            }),
            next_generation: Cell::new(0),
            epoch: Instant::now(),
            planned: Cell::new(u64::MAX),
            replan: Signal::default(),
        }
    }
}

/// One open ask; dropping it closes the entry.
pub(crate) struct PendingAsk<'a> {
    table: &'a AskTable,
    pub slot: u32,
    pub generation: u32,
}

impl AskTable {
    /// Opens an entry for a new ask that expires after `timeout`.
    pub(crate) fn open(&self, timeout: Duration) -> PendingAsk<'_> {
        let generation = self.next_generation.get().wrapping_add(1);
        self.next_generation.set(generation);
        // Rounded up: an ask never expires before its timeout.
        let deadline = self.ticks_at(Instant::now() + timeout + TICK);
        let mut table = self.table.borrow_mut();
        let key = table.entries.insert(Entry {
            waker: None,
            deadline,
            generation,
            prev: NIL,
            next: NIL,
            phase: Phase::Waiting,
            armed: false,
        });
        let slot = u32::try_from(key).expect("more than 2^32 asks pending on one shard");
        table.arm(slot);
        drop(table);
        if deadline < self.planned.get() {
            // The sweeper sleeps until later: it moves its wake-up here.
            self.planned.set(deadline);
            self.replan.notify();
        }
        PendingAsk {
            table: self,
            slot,
            generation,
        }
    }

    /// Delivers the answer to an ask, if it is still waiting.
    pub(crate) fn fulfil(&self, slot: u32, generation: u32, result: Result<Message, Error>) {
        let waker = {
            let mut table = self.table.borrow_mut();
            let table = &mut *table;
            let Some(entry) = table.entries.get_mut(slot as usize) else {
                return;
            };
            if entry.generation != generation || entry.phase != Phase::Waiting {
                return;
            }
            let answer = table.answers.insert(result);
            let answer =
                u32::try_from(answer).expect("more than 2^32 answers waiting on one shard");
            entry.phase = Phase::Answered(answer);
            let waker = entry.waker.take();
            table.disarm(slot);
            waker
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the ask `slot`/`generation` still waits for its answer (it
    /// has not been answered, timed out or dropped).
    pub(crate) fn is_waiting(&self, slot: u32, generation: u32) -> bool {
        self.table
            .borrow()
            .entries
            .get(slot as usize)
            .is_some_and(|e| e.generation == generation && e.phase == Phase::Waiting)
    }

    /// Expires the asks whose deadline has passed by `now`, waking their
    /// askers.
    pub(crate) fn expire(&self, now: Instant) {
        let now_tick = self.ticks_at(now);
        let mut wakers = Vec::new();
        let mut table = self.table.borrow_mut();
        if table.armed == 0 {
            // Nothing can expire: skip the empty buckets.
            table.swept = table.swept.max(now_tick);
            return;
        }
        let from = table.swept + 1;
        // One turn of the wheel visits every bucket.
        let to = now_tick.min(table.swept + BUCKETS as u64);
        for tick in from..=to {
            let mut cursor = table.buckets[bucket(tick)];
            while cursor != NIL {
                let entry = &mut table.entries[cursor as usize];
                let next = entry.next;
                if entry.deadline <= now_tick {
                    entry.phase = Phase::Expired;
                    wakers.extend(entry.waker.take());
                    table.disarm(cursor);
                }
                cursor = next;
            }
        }
        table.swept = table.swept.max(now_tick);
        drop(table);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// The shard's sweeper: expires due asks, then sleeps until the next
    /// non-empty bucket comes due or an earlier deadline is armed. Runs
    /// until `stopped`.
    pub(crate) async fn sweep(&self, stopped: impl Fn() -> bool) {
        while !stopped() {
            let planned = self.planned.get();
            if planned == u64::MAX {
                // Nothing armed: `open` sets `planned` and wakes us.
                self.replan.wait().await;
                continue;
            }
            let at = self.epoch + Duration::from_nanos(planned.saturating_mul(TICK_NANOS));
            let now = Instant::now();
            if at > now {
                let sleep = glommio::timer::sleep(at - now);
                futures_lite::future::or(sleep, self.replan.wait()).await;
                // Woken early: by an earlier deadline (sleep until it
                // instead) or to stop; either way, look again.
                if Instant::now() < at {
                    continue;
                }
            }
            self.expire(Instant::now());
            // The first bucket after the swept ticks that holds an entry,
            // found once per wake-up, not once per ask.
            let due = self.table.borrow().next_due();
            self.planned.set(due.unwrap_or(u64::MAX));
        }
    }

    /// Wakes the sweeper (to let it see that the shard stops).
    pub(crate) fn wake_sweeper(&self) {
        self.replan.notify();
    }

    /// Whole ticks from the table's epoch to `at`.
    fn ticks_at(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos / u128::from(TICK_NANOS)).unwrap_or(u64::MAX)
    }

    /// Number of asks still open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.borrow().entries.len()
    }
}

impl Table {
    /// The first tick after `swept` whose bucket holds an entry (which may
    /// be due only on a later turn), if any entry is armed.
    fn next_due(&self) -> Option<u64> {
        if self.armed == 0 {
            return None;
        }
        (self.swept + 1..=self.swept + BUCKETS as u64).find(|&t| self.buckets[bucket(t)] != NIL)
    }

    /// Links entry `slot` into the bucket of its deadline.
    fn arm(&mut self, slot: u32) {
        let b = bucket(self.entries[slot as usize].deadline);
        let head = self.buckets[b];
        if head != NIL {
            self.entries[head as usize].prev = slot;
        }
        let entry = &mut self.entries[slot as usize];
        entry.prev = NIL;
        entry.next = head;
        entry.armed = true;
        self.buckets[b] = slot;
        self.armed += 1;
    }

    /// Unlinks entry `slot` from its bucket, if it is in one.
    fn disarm(&mut self, slot: u32) {
        let entry = &mut self.entries[slot as usize];
        if !entry.armed {
            return;
        }
        entry.armed = false;
        let (prev, next, deadline) = (entry.prev, entry.next, entry.deadline);
        if prev == NIL {
            self.buckets[bucket(deadline)] = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        self.armed -= 1;
    }
}

fn bucket(tick: u64) -> usize {
    (tick % BUCKETS as u64) as usize
}

impl PendingAsk<'_> {
    /// The answer, `None` if the ask expired first; or `Pending`, and `cx`'s
    /// waker is woken when it comes.
    pub(crate) fn poll_answer(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        let mut table = self.table.table.borrow_mut();
        let table = &mut *table;
        let Some(entry) = table.entries.get_mut(self.slot as usize) else {
            return Poll::Ready(Some(Err(Error::NodeStopped)));
        };
        match std::mem::replace(&mut entry.phase, Phase::Waiting) {
            Phase::Answered(answer) => Poll::Ready(Some(table.answers.remove(answer as usize))),
            Phase::Expired => Poll::Ready(None),
            Phase::Waiting => {
                match &mut entry.waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    none => *none = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Waits for the answer; `None` if the ask expired first.
    #[cfg(test)]
    async fn answer(&self) -> Option<Result<Message, Error>> {
        std::future::poll_fn(|cx| self.poll_answer(cx)).await
    }
}

impl Drop for PendingAsk<'_> {
    fn drop(&mut self) {
        let mut table = self.table.table.borrow_mut();
        let table = &mut *table;
        let Some(entry) = table.entries.get(self.slot as usize) else {
            return;
        };
        if entry.generation != self.generation {
            return;
        }
        if let Phase::Answered(answer) = entry.phase {
            // Answered, but its asker went away before it looked.
            drop(table.answers.remove(answer as usize));
        }
        table.disarm(self.slot);
        table.entries.remove(self.slot as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    fn answer_now(pending: &PendingAsk<'_>) -> Option<Result<Message, Error>> {
        glommio::LocalExecutor::default().run(pending.answer())
    }

    #[test]
    fn late_answer_after_close_reaches_nobody() {
        let table = AskTable::default();
        let (slot, generation) = {
            let first = table.open(LONG);
            (first.slot, first.generation)
        };
        assert_eq!(table.len(), 0);
        let second = table.open(LONG);
        assert_eq!(second.slot, slot, "the slot is reused");
        table.fulfil(slot, generation, Ok(Message::from("stale")));
        table.fulfil(second.slot, second.generation, Ok(Message::from("fresh")));
        let answer = answer_now(&second).expect("answered, not expired");
        assert_eq!(answer.unwrap(), "fresh");
    }

    #[test]
    fn an_ask_expires_at_its_deadline_and_not_before() {
        let table = AskTable::default();
        let start = table.epoch;
        let short = table.open(Duration::from_millis(5));
        let long = table.open(Duration::from_millis(700));
        // Just before the deadline: nothing expires.
        table.expire(start + Duration::from_millis(4));
        table.fulfil(long.slot, long.generation, Ok("not yet".into()));
        let long_answer = answer_now(&long).expect("answered");
        assert_eq!(long_answer.unwrap(), "not yet");
        let again = table.open(Duration::from_millis(700));
        // Past the short deadline (the wheel turns more than once for the
        // 700 ms one): only the short ask expires.
        table.expire(start + Duration::from_millis(10));
        assert!(answer_now(&short).is_none(), "expired");
        table.expire(start + Duration::from_millis(600));
        table.fulfil(again.slot, again.generation, Ok("in time".into()));
        assert_eq!(answer_now(&again).expect("answered").unwrap(), "in time");
        assert_eq!(table.table.borrow().armed, 0);
    }

    #[test]
    fn a_deadline_a_few_turns_away_expires_on_time() {
        let table = AskTable::default();
        let start = table.epoch;
        let three_turns = 3 * BUCKETS as u32;
        let pending = table.open(TICK * (three_turns + 7));
        let mut at = start;
        // Sweep tick by tick, as the sweeper does, for a little over three turns.
        while at < start + TICK * (three_turns + 6) {
            at += TICK;
            table.expire(at);
            assert_eq!(table.table.borrow().armed, 1, "expired early at {at:?}");
        }
        table.expire(at + 3 * TICK);
        assert!(answer_now(&pending).is_none());
    }

    #[test]
    fn an_ask_waits_until_answered_expired_or_dropped() {
        let table = AskTable::default();
        let answered = table.open(LONG);
        let expiring = table.open(Duration::from_millis(1));
        let dropped = table.open(LONG);
        let ids = |p: &PendingAsk<'_>| (p.slot, p.generation);
        let (a, e, d) = (ids(&answered), ids(&expiring), ids(&dropped));
        assert!(table.is_waiting(a.0, a.1) && table.is_waiting(e.0, e.1));
        table.fulfil(a.0, a.1, Ok("done".into()));
        table.expire(table.epoch + Duration::from_millis(10));
        drop(dropped);
        assert!(!table.is_waiting(a.0, a.1), "answered");
        assert!(!table.is_waiting(e.0, e.1), "expired");
        assert!(!table.is_waiting(d.0, d.1), "dropped");
    }

    #[test]
    fn answered_and_dropped_asks_leave_the_wheel() {
        let table = AskTable::default();
        let asks: Vec<_> = (0..10).map(|_| table.open(LONG)).collect();
        assert_eq!(table.table.borrow().armed, 10);
        // Answer every other one (unlinking from the middle of a bucket),
        // drop the rest.
        for ask in asks.iter().step_by(2) {
            table.fulfil(ask.slot, ask.generation, Ok("x".into()));
        }
        assert_eq!(table.table.borrow().armed, 5);
        drop(asks);
        assert_eq!(table.table.borrow().armed, 0);
        assert_eq!(table.len(), 0);
        assert!(table.table.borrow().buckets.iter().all(|&b| b == NIL));
    }
}
