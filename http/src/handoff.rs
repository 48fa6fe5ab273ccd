//! Fair FIFO hand-off of a bounded set of connection slots.
//!
//! A [`Pool`] has a fixed number of slots (the cap on connections to one
//! origin). A slot is free (its taker dials), holds an idle connection, or
//! is held by a request as a [`Slot`]. [`Pool::acquire`] takes an idle
//! connection or a free slot at once when no one waits, and otherwise joins
//! the back of the queue. When a [`Slot`] is dropped, what it holds (its
//! connection, if still [`Reusable`], or else the bare slot) goes straight
//! to the oldest waiter, which is then woken: nobody arriving later can take
//! it in between (no barging), so waiters are served in order of arrival and
//! every wake-up finds its connection.
//!
//! A waiter dropped before it was served gives up its place (its entry is
//! skipped when reached, or removed at once if it is at the front); one
//! dropped after it was served but before it ran passes what it was given
//! on to the next. Neither a slot nor a connection is ever lost.
//!
//! Slots that never hold a connection make a fair semaphore: [`Permits`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Whether a connection can serve another request.
pub(crate) trait Reusable {
    /// `false` for a connection that has closed, failed or expired: it is
    /// dropped rather than handed out, and its slot goes on bare (a dial).
    fn reusable(&self) -> bool;
}

/// A fair semaphore: slots that never hold a connection, handed out in
/// order of arrival; a [`Slot`] of it is a permit.
pub(crate) type Permits = Pool<std::convert::Infallible>;

impl Reusable for std::convert::Infallible {
    fn reusable(&self) -> bool {
        match *self {}
    }
}

/// A bounded set of slots handed out in order of arrival (module docs).
pub(crate) struct Pool<T: Reusable> {
    state: RefCell<State<T>>,
}

struct State<T> {
    /// Slots without a connection that nobody holds.
    free: usize,
    /// Idle connections, the most recently used last; each fills a slot.
    idle: Vec<T>,
    /// Waiters in order of arrival; cancelled ones are skipped when reached.
    queue: VecDeque<Rc<Waiter<T>>>,
}

/// One queued acquirer, shared by its future and the queue.
struct Waiter<T> {
    turn: RefCell<Turn<T>>,
}

enum Turn<T> {
    /// Queued; woken through this when served.
    Waiting(Waker),
    /// Served: a slot, with a connection or bare, not yet picked up.
    Served(Option<T>),
    /// Dropped before being served, or its service picked up.
    Gone,
}

impl<T: Reusable> Pool<T> {
    /// A pool of `slots` free slots (at least one).
    pub(crate) fn new(slots: usize) -> Rc<Self> {
        Rc::new(Self {
            state: RefCell::new(State {
                free: slots.max(1),
                idle: Vec::new(),
                queue: VecDeque::new(),
            }),
        })
    }

    /// Waits for a slot, first come first served; it may come with an idle
    /// connection ([`Slot::take`]).
    pub(crate) fn acquire(self: &Rc<Self>) -> Acquire<T> {
        Acquire {
            pool: self.clone(),
            queued: None,
        }
    }

    /// Pools `conn`, made outside any slot, if a slot is free; drops it
    /// otherwise (the cap holds).
    pub(crate) fn offer(&self, conn: T) {
        let mut state = self.state.borrow_mut();
        if state.free == 0 {
            return;
        }
        state.free -= 1;
        drop(state);
        self.release(Some(conn));
    }

    /// A slot at once if one is idle or free.
    fn take_now(self: &Rc<Self>) -> Option<Slot<T>> {
        let mut state = self.state.borrow_mut();
        // No barging, by construction: `release` hands a slot to a waiter
        // before it would make it free or idle, and only an acquirer that
        // found neither queues; so while anyone waits, nothing is here.
        debug_assert!(state.queue.is_empty() || (state.free == 0 && state.idle.is_empty()));
        while let Some(conn) = state.idle.pop() {
            if conn.reusable() {
                return Some(self.slot(Some(conn)));
            }
            state.free += 1; // dropping it closes it; its slot is free
        }
        if state.free == 0 {
            return None;
        }
        state.free -= 1;
        Some(self.slot(None))
    }

    fn slot(self: &Rc<Self>, conn: Option<T>) -> Slot<T> {
        Slot {
            pool: self.clone(),
            conn,
        }
    }

    /// Hands a slot (and `conn`, if reusable) to the oldest waiter, or
    /// keeps it when none waits.
    fn release(&self, conn: Option<T>) {
        let mut conn = conn.filter(T::reusable);
        let mut state = self.state.borrow_mut();
        while let Some(waiter) = state.queue.pop_front() {
            if let Some(waker) = waiter.serve(&mut conn) {
                drop(state);
                waker.wake();
                return;
            }
        }
        match conn {
            Some(conn) => state.idle.push(conn),
            None => state.free += 1,
        }
    }

    /// Drops cancelled waiters from the front of the queue (the others are
    /// skipped when `release` reaches them).
    fn forget_cancelled(&self) {
        let mut state = self.state.borrow_mut();
        while state.queue.front().is_some_and(|w| !w.is_waiting()) {
            state.queue.pop_front();
        }
    }
}

impl<T> Waiter<T> {
    fn is_waiting(&self) -> bool {
        matches!(*self.turn.borrow(), Turn::Waiting(_))
    }

    /// Gives it `conn` (or a bare slot) if it still waits: its waker.
    fn serve(&self, conn: &mut Option<T>) -> Option<Waker> {
        let mut turn = self.turn.borrow_mut();
        match std::mem::replace(&mut *turn, Turn::Gone) {
            Turn::Waiting(waker) => {
                *turn = Turn::Served(conn.take());
                Some(waker)
            }
            other => {
                *turn = other;
                None
            }
        }
    }
}

/// The future of [`Pool::acquire`].
pub(crate) struct Acquire<T: Reusable> {
    pool: Rc<Pool<T>>,
    queued: Option<Rc<Waiter<T>>>,
}

impl<T: Reusable> Future for Acquire<T> {
    type Output = Slot<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Slot<T>> {
        let this = self.get_mut();
        let Some(waiter) = &this.queued else {
            if let Some(slot) = this.pool.take_now() {
                return Poll::Ready(slot);
            }
            let waiter = Rc::new(Waiter {
                turn: RefCell::new(Turn::Waiting(cx.waker().clone())),
            });
            this.pool.state.borrow_mut().queue.push_back(waiter.clone());
            this.queued = Some(waiter);
            return Poll::Pending;
        };
        let mut turn = waiter.turn.borrow_mut();
        if let Turn::Waiting(waker) = &mut *turn {
            if !waker.will_wake(cx.waker()) {
                waker.clone_from(cx.waker());
            }
            return Poll::Pending;
        }
        // Served: a queued waiter is `Gone` only once its own drop ran.
        let Turn::Served(conn) = std::mem::replace(&mut *turn, Turn::Gone) else {
            return Poll::Pending;
        };
        drop(turn);
        this.queued = None;
        Poll::Ready(this.pool.slot(conn))
    }
}

impl<T: Reusable> Drop for Acquire<T> {
    fn drop(&mut self) {
        let Some(waiter) = self.queued.take() else {
            return;
        };
        let turn = std::mem::replace(&mut *waiter.turn.borrow_mut(), Turn::Gone);
        match turn {
            // Served but never ran: what it got goes on to the next.
            Turn::Served(conn) => self.pool.release(conn),
            // Still queued: forget it (the queue skips it when reached).
            Turn::Waiting(_) => self.pool.forget_cancelled(),
            Turn::Gone => {}
        }
    }
}

/// A slot held by one request: the right to one connection to the origin,
/// with it in hand or not. Dropping it hands it on (module docs).
pub(crate) struct Slot<T: Reusable> {
    pool: Rc<Pool<T>>,
    conn: Option<T>,
}

impl<T: Reusable> Slot<T> {
    /// Takes the connection this slot came with, if any; without one the
    /// holder dials.
    pub(crate) fn take(&mut self) -> Option<T> {
        self.conn.take()
    }

    /// Puts a connection in this slot, to be handed on when it is dropped
    /// (if it is still reusable then).
    pub(crate) fn put(&mut self, conn: T) {
        self.conn = Some(conn);
    }
}

impl<T: Reusable> Drop for Slot<T> {
    fn drop(&mut self) {
        self.pool.release(self.conn.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// A fake connection: a name, and whether it still works.
    struct Conn {
        name: &'static str,
        works: Rc<Cell<bool>>,
    }

    impl Reusable for Conn {
        fn reusable(&self) -> bool {
            self.works.get()
        }
    }

    fn conn(name: &'static str) -> Conn {
        Conn {
            name,
            works: Rc::new(Cell::new(true)),
        }
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An acquire polled by hand, with its own wake counter.
    struct Probe {
        acquire: Pin<Box<Acquire<Conn>>>,
        wakes: Arc<Wakes>,
    }

    impl Probe {
        /// Starts acquiring (polls once, so it takes its place in line).
        fn start(pool: &Rc<Pool<Conn>>) -> (Probe, Option<Slot<Conn>>) {
            let mut probe = Probe {
                acquire: Box::pin(pool.acquire()),
                wakes: Arc::default(),
            };
            let ready = probe.poll();
            (probe, ready)
        }

        fn poll(&mut self) -> Option<Slot<Conn>> {
            let waker = Waker::from(self.wakes.clone());
            match self.acquire.as_mut().poll(&mut Context::from_waker(&waker)) {
                Poll::Ready(slot) => Some(slot),
                Poll::Pending => None,
            }
        }

        fn woken(&self) -> usize {
            self.wakes.0.load(Ordering::Relaxed)
        }
    }

    /// Acquires at once, or fails the test.
    fn now(pool: &Rc<Pool<Conn>>) -> Slot<Conn> {
        match Probe::start(pool) {
            (_, Some(slot)) => slot,
            (_, None) => panic!("expected a slot at once"),
        }
    }

    /// Starts an acquire that must queue.
    fn queued(pool: &Rc<Pool<Conn>>) -> Probe {
        match Probe::start(pool) {
            (probe, None) => probe,
            (_, Some(_)) => panic!("expected to wait"),
        }
    }

    fn name(slot: &mut Slot<Conn>) -> Option<&'static str> {
        slot.take().map(|c| c.name)
    }

    #[test]
    fn slots_up_to_the_cap_are_free_then_requests_wait() {
        let pool = Pool::new(2);
        let mut a = now(&pool);
        let mut b = now(&pool);
        assert_eq!(
            (name(&mut a), name(&mut b)),
            (None, None),
            "free slots dial"
        );
        let mut c = queued(&pool);
        assert!(c.poll().is_none());
        assert_eq!(c.woken(), 0);
    }

    #[test]
    fn waiters_are_served_in_order_of_arrival() {
        let pool = Pool::new(1);
        let mut held = now(&pool);
        let mut waiters: Vec<Probe> = (0..3).map(|_| queued(&pool)).collect();
        held.put(conn("c"));
        drop(held);
        for i in 0..3 {
            for (j, w) in waiters.iter().enumerate() {
                assert_eq!(w.woken(), usize::from(j == i), "only waiter {i} is woken");
            }
            let mut slot = waiters[i].poll().expect("the woken waiter has its slot");
            for later in &mut waiters[i + 1..] {
                assert!(later.poll().is_none());
            }
            assert_eq!(
                name(&mut slot),
                Some("c"),
                "the connection itself is handed on"
            );
            slot.put(conn("c"));
            drop(slot);
            waiters[i].wakes.0.store(0, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_newcomer_cannot_take_what_was_handed_to_a_waiter() {
        let pool = Pool::new(1);
        let mut held = now(&pool);
        let mut first = queued(&pool);
        held.put(conn("c"));
        drop(held);
        // The waiter has not run yet; a newcomer arrives first and waits.
        let mut newcomer = queued(&pool);
        let mut slot = first.poll().expect("served while it slept");
        assert_eq!(name(&mut slot), Some("c"));
        assert!(newcomer.poll().is_none());
        assert_eq!(newcomer.woken(), 0);
        drop(slot);
        assert_eq!(newcomer.woken(), 1);
        assert!(newcomer.poll().is_some());
    }

    #[test]
    fn a_released_connection_is_reused_when_nobody_waits() {
        let pool = Pool::new(3);
        let mut held = now(&pool);
        held.put(conn("c"));
        drop(held);
        let mut again = now(&pool);
        assert_eq!(name(&mut again), Some("c"));
    }

    #[test]
    fn a_waiter_cancelled_after_being_served_passes_the_connection_on() {
        let pool = Pool::new(1);
        let mut held = now(&pool);
        let first = queued(&pool);
        let mut second = queued(&pool);
        held.put(conn("c"));
        drop(held);
        assert_eq!((first.woken(), second.woken()), (1, 0));
        drop(first); // e.g. its request timed out before it ran
        assert_eq!(second.woken(), 1);
        let mut slot = second.poll().expect("passed on");
        assert_eq!(name(&mut slot), Some("c"));
    }

    #[test]
    fn a_waiter_cancelled_before_being_served_is_skipped() {
        let pool = Pool::new(1);
        let held = now(&pool);
        let first = queued(&pool);
        let mut second = queued(&pool);
        drop(first);
        drop(held);
        assert_eq!(second.woken(), 1);
        assert!(second.poll().is_some());
    }

    #[test]
    fn a_waiter_cancelled_in_the_middle_of_the_line_is_skipped() {
        let pool = Pool::new(1);
        let held = now(&pool);
        let mut first = queued(&pool);
        let middle = queued(&pool);
        let mut last = queued(&pool);
        drop(middle);
        drop(held);
        let slot = first.poll().expect("the first is served");
        drop(slot);
        assert_eq!(last.woken(), 1, "served past the cancelled one");
        assert!(last.poll().is_some());
        assert!(pool.state.borrow().queue.is_empty());
    }

    #[test]
    fn cancelled_waiters_give_back_every_slot() {
        let pool = Pool::new(1);
        let held = now(&pool);
        let waiters: Vec<Probe> = (0..5).map(|_| queued(&pool)).collect();
        drop(held);
        drop(waiters); // the first was served, the rest still queued
        assert!(pool.state.borrow().queue.is_empty());
        let _slot = now(&pool);
    }

    #[test]
    fn an_acquire_dropped_after_its_slot_was_taken_releases_nothing_twice() {
        let pool = Pool::new(1);
        let held = now(&pool);
        let mut first = queued(&pool);
        drop(held);
        let slot = first.poll().expect("served");
        drop(first);
        assert_eq!(pool.state.borrow().free, 0, "the slot is still held");
        drop(slot);
        assert_eq!(pool.state.borrow().free, 1);
    }

    #[test]
    fn a_failed_connection_is_not_handed_out_the_waiter_dials() {
        let pool = Pool::new(1);
        let mut held = now(&pool);
        let mut waiter = queued(&pool);
        let failed = conn("failed");
        let works = failed.works.clone();
        held.put(failed);
        works.set(false);
        drop(held);
        let mut slot = waiter.poll().expect("the slot is still handed on");
        assert_eq!(name(&mut slot), None, "a bare slot: the waiter dials");
    }

    #[test]
    fn an_idle_connection_that_failed_is_dropped_and_its_slot_freed() {
        let pool = Pool::new(2);
        let (mut a, mut b) = (now(&pool), now(&pool));
        let (good, bad) = (conn("good"), conn("bad"));
        let bad_works = bad.works.clone();
        a.put(good);
        b.put(bad);
        drop(a);
        drop(b); // "bad" is the most recent idle one
        bad_works.set(false);
        let mut first = now(&pool);
        assert_eq!(name(&mut first), Some("good"));
        let mut second = now(&pool);
        assert_eq!(name(&mut second), None, "the failed one's slot dials");
    }

    #[test]
    fn an_offered_connection_fills_a_free_slot_or_is_dropped() {
        let pool = Pool::new(1);
        pool.offer(conn("offered"));
        let mut slot = now(&pool);
        assert_eq!(name(&mut slot), Some("offered"));
        let extra = conn("extra");
        let dropped = Rc::downgrade(&extra.works);
        pool.offer(extra);
        assert!(dropped.upgrade().is_none(), "no free slot: not pooled");
        assert!(pool.state.borrow().idle.is_empty());
    }
}
