//! Runs that suspended, kept by their shard and polled by its scheduler
//! when woken, instead of each becoming a glommio task.
//!
//! A handler that awaits (an ask, a sleep) suspends its run. The shard keeps
//! the run in a slab; its key names it in its waker. Waking pushes the key
//! on a ready list and tells the scheduler: on the shard's own thread
//! through a plain queue and the shard's work signal, from any other thread
//! through a lock-free queue and the shard's doorbell (the one its
//! cross-shard rings use). A glommio task per suspension cost an
//! allocation, a second poll right after spawning (to pick up the task's
//! own waker) and the executor's bookkeeping (about 12% of a million-agent
//! profile), and glommio looked at a wake from another thread only at its
//! next preemption, up to ~100 ms later on a busy shard.
//!
//! A waker is two numbers, not an allocation: its table's token and the
//! run's key, packed into the waker's data word. Cloning and dropping it
//! cost nothing; a wake on the table's own thread marks the key queued in
//! the slab (so it is queued once however often it is woken); a wake from
//! another thread finds the table through a process-wide registry of tokens
//! and queues the key without that mark. With one `Arc` waker per key, a
//! million suspended runs kept a million 48-byte wakers, and each poll of a
//! woken run paid an atomic increment on a cold cache line (14 % of a
//! million-agent profile).
//!
//! A stale wake (a waker kept by something that outlived its run) at worst
//! polls whichever run has that key now: a spurious poll, which every
//! future tolerates; a stale waker of a table that is gone does nothing.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, RawWaker, RawWakerVTable, Waker};

use slab::Slab;

use crate::doorbell::Doorbell;
use crate::spare::Run;
use crate::sync::Queue;

/// Most woken runs polled per call of [`Suspended::poll_ready`], so that
/// they take turns with the run queue.
const POLL_BUDGET: usize = 128;

// A waker packs a 32-bit token and a 32-bit key into its data word.
const _: () = assert!(usize::BITS >= 64, "wakers pack two u32 into a usize");

/// Takes the wakes of runs made on its own thread: the shard, which queues
/// the run if the table is its own and tells its scheduler.
pub(crate) trait WakeHere {
    /// Queues run `key` of the table with token `table` if that table is
    /// this thread's; `false` sends the wake the foreign way.
    fn wake_here(&self, table: u32, key: u32) -> bool;
}

thread_local! {
    /// Who takes the wakes made on this thread (a shard's thread has its
    /// shard). A waker is called by arbitrary code with no way to pass it
    /// along, hence a thread-local; the shard registers itself here rather
    /// than this module reaching into the shard.
    static HERE: RefCell<Option<Rc<dyn WakeHere>>> = const { RefCell::new(None) };
}

/// Makes `here` take the wakes made on this thread, until [`leave`].
pub(crate) fn enter(here: Rc<dyn WakeHere>) {
    HERE.with(|h| *h.borrow_mut() = Some(here));
}

/// Undoes [`enter`] (the shard stops).
pub(crate) fn leave() {
    HERE.with(|h| h.borrow_mut().take());
}

/// What a wake from another thread needs to reach its shard.
struct Shared {
    /// Keys woken from other threads.
    foreign: Queue<u32>,
    /// Wakes the shard if it sleeps.
    doorbell: Arc<Doorbell>,
}

/// The tables alive in the process, by token, for wakes from other threads.
fn registry() -> &'static RwLock<HashMap<u32, Arc<Shared>>> {
    static REGISTRY: OnceLock<RwLock<HashMap<u32, Arc<Shared>>>> = OnceLock::new();
    REGISTRY.get_or_init(RwLock::default)
}

/// Gives a new table a token no live table has.
fn register(shared: Arc<Shared>) -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut tables = registry().write().unwrap_or_else(|p| p.into_inner());
    loop {
        let token = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let std::collections::hash_map::Entry::Vacant(free) = tables.entry(token) {
            free.insert(shared);
            return token;
        }
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_raw, drop_raw);

/// The waker of run `key` of table `table`.
fn waker(table: u32, key: u32) -> Waker {
    let data = ((table as usize) << 32) | key as usize;
    // SAFETY: the vtable's functions never dereference `data` (it is two
    // numbers, not a pointer), own nothing (clone copies the word, drop does
    // nothing), and are safe to call from any thread (`wake_packed` uses a
    // thread-local and a locked registry), as `Waker` requires.
    unsafe { Waker::from_raw(RawWaker::new(data as *const (), &VTABLE)) }
}

fn clone_raw(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn wake_raw(data: *const ()) {
    wake_packed(data as usize);
}

fn drop_raw(_: *const ()) {}

/// Wakes the run that `data` (token and key) names.
fn wake_packed(data: usize) {
    let (table, key) = ((data >> 32) as u32, data as u32);
    let here = HERE
        .try_with(|here| {
            let here = here.try_borrow().ok()?;
            here.as_ref()?.wake_here(table, key).then_some(())
        })
        .ok()
        .flatten();
    if here.is_some() {
        return;
    }
    let shared = registry()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&table)
        .cloned();
    if let Some(shared) = shared {
        shared.foreign.push(key);
        shared.doorbell.ring();
    }
}

/// A suspended run, whose it is, and whether its key waits on the local
/// ready list.
struct Entry {
    /// `None` while it is being polled.
    run: Option<Run>,
    /// The worker whose run it is, as the shard names it (its reference's
    /// bits); opaque here.
    owner: u64,
    queued: bool,
}

/// What polls the woken runs: the shard, which tells its stall watch whose
/// poll each is (`stall.rs`).
pub(crate) trait Poller {
    /// Runs `poll`, a poll of a run of `owner` (as given to
    /// [`Suspended::keep`]), and returns what it returned (whether the run
    /// finished).
    fn poll_run(&self, owner: u64, poll: impl FnOnce() -> bool) -> bool;
}

/// One shard's suspended runs.
pub(crate) struct Suspended {
    /// This table's name in its wakers.
    token: u32,
    runs: RefCell<Slab<Entry>>,
    /// Keys woken on this shard's thread.
    local: RefCell<VecDeque<u32>>,
    shared: Arc<Shared>,
}

impl Suspended {
    /// An empty table whose foreign wakes ring `doorbell`.
    pub(crate) fn new(doorbell: Arc<Doorbell>) -> Self {
        let shared = Arc::new(Shared {
            foreign: Queue::new(),
            doorbell,
        });
        Suspended {
            token: register(shared.clone()),
            runs: RefCell::default(),
            local: RefCell::default(),
            shared,
        }
    }

    /// The waker that the next run to suspend will keep: runs are polled
    /// with it the first time, so a run that suspends needs no second poll.
    pub(crate) fn next_waker(&self) -> Waker {
        let key = self.runs.borrow().vacant_key();
        waker(self.token, key_u32(key))
    }

    /// Keeps a run of `owner` (whose, as the shard names it) that suspended
    /// while polled with [`Self::next_waker`] (no other run was kept since).
    pub(crate) fn keep(&self, run: Run, owner: u64) {
        self.runs.borrow_mut().insert(Entry {
            run: Some(run),
            owner,
            queued: false,
        });
    }

    /// Polls the runs woken since the last call (up to a budget), each
    /// through `poller`; drops those that finish. Returns how many were
    /// polled.
    pub(crate) fn poll_ready(&self, poller: &impl Poller) -> usize {
        let mut polled = 0;
        while polled < POLL_BUDGET {
            let next = self.local.borrow_mut().pop_front();
            let Some(key) = next.or_else(|| self.shared.foreign.pop()) else {
                break;
            };
            polled += 1;
            self.prefetch_next();
            // From here on a wake queues the run again.
            let taken = self
                .runs
                .borrow_mut()
                .get_mut(key as usize)
                .and_then(|entry| {
                    entry.queued = false;
                    Some((entry.run.take()?, entry.owner))
                });
            let Some((mut run, owner)) = taken else {
                continue; // finished already, or a second wake: stale
            };
            let waker = waker(self.token, key);
            let ready = poller.poll_run(owner, || {
                run.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_ready()
            });
            let mut runs = self.runs.borrow_mut();
            if ready {
                runs.remove(key as usize);
            } else if let Some(entry) = runs.get_mut(key as usize) {
                entry.run = Some(run);
            }
        }
        polled
    }

    /// Starts loading the block of the next woken run into the cache, so
    /// that its poll does not wait for memory: a run woken after a second's
    /// sleep is cold, and at a million agents the first read of a woken
    /// run's block was a third of the samples of its poll.
    fn prefetch_next(&self) {
        let Some(&next) = self.local.borrow().front() else {
            return;
        };
        let runs = self.runs.borrow();
        let Some(Entry { run: Some(run), .. }) = runs.get(next as usize) else {
            return;
        };
        let block = std::ptr::from_ref::<dyn std::future::Future<Output = ()>>(&**run).cast::<u8>();
        for offset in (0..std::mem::size_of_val(&**run)).step_by(64) {
            prefetch(block.wrapping_add(offset));
        }
    }

    /// Whether woken runs wait to be polled.
    pub(crate) fn has_ready(&self) -> bool {
        !self.local.borrow().is_empty() || !self.shared.foreign.is_empty()
    }

    /// Whether runs woken from other threads wait (checked by a scheduler
    /// about to sleep, after arming the doorbell).
    pub(crate) fn has_foreign_ready(&self) -> bool {
        !self.shared.foreign.is_empty()
    }

    /// On this shard's thread: queues `key` if `table` is this table's
    /// token. A key already queued is not queued twice; a key with no run
    /// yet (one being polled the first time) is queued.
    pub(crate) fn wake_local(&self, table: u32, key: u32) -> bool {
        if table != self.token {
            return false;
        }
        let (Ok(mut runs), Ok(mut local)) =
            (self.runs.try_borrow_mut(), self.local.try_borrow_mut())
        else {
            return false;
        };
        if let Some(entry) = runs.get_mut(key as usize) {
            if std::mem::replace(&mut entry.queued, true) {
                return true;
            }
        }
        local.push_back(key);
        true
    }

    /// Takes every suspended run out, to be dropped (the shard stops).
    pub(crate) fn take_all(&self) -> Vec<Run> {
        let runs = std::mem::take(&mut *self.runs.borrow_mut());
        runs.into_iter()
            .filter_map(|(_, entry)| entry.run)
            .collect()
    }

    /// How many runs are suspended.
    pub(crate) fn len(&self) -> usize {
        self.runs.borrow().len()
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        // Wakers that outlive the table now find nothing.
        registry()
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.token);
    }
}

/// Asks the CPU to load the cache line at `at` (a hint: it never faults).
fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it reads nothing the program
    // sees and does not fault on any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

fn key_u32(key: usize) -> u32 {
    u32::try_from(key).expect("more than 2^32 runs suspended on one shard")
}

#[cfg(test)]
mod tests {
    //! Without a shard on the thread, every wake takes the foreign path (the
    //! registry, the lock-free queue and the doorbell); `Here` stands in for
    //! a shard where a test needs the local path. The engine's integration
    //! tests cover both, as every ask and sleep suspends.
    //!
    //! These tests use no glommio, so that they also run under a sanitizer
    //! (the wakers are built with `unsafe`): `RUSTFLAGS=-Zsanitizer=address
    //! cargo +nightly test -p myriad-engine --lib suspended --target
    //! x86_64-unknown-linux-gnu`.

    use super::*;
    use crate::sync::CountingWaker;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::Mutex;

    /// Polls each run as it is: no shard watches the polls.
    pub(super) struct Plain;

    impl Poller for Plain {
        fn poll_run(&self, _: u64, poll: impl FnOnce() -> bool) -> bool {
            poll()
        }
    }

    /// Whose the tests' runs are.
    pub(super) fn owner() -> u64 {
        7
    }
    use std::task::Poll;

    /// A run that finishes on its `polls_needed`-th poll, and hands out the
    /// waker it was last polled with.
    fn run(polls: &Rc<Cell<usize>>, polls_needed: usize, waker: &LastWaker) -> Run {
        let (polls, waker) = (polls.clone(), waker.clone());
        Box::pin(std::future::poll_fn(move |cx| {
            polls.set(polls.get() + 1);
            *waker.lock().unwrap() = Some(cx.waker().clone());
            if polls.get() >= polls_needed {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }))
    }

    /// Polls `run` for the first time the way the scheduler does; keeps it
    /// if it suspends.
    fn start(table: &Suspended, mut run: Run) {
        let waker = table.next_waker();
        if run
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
        {
            table.keep(run, owner());
        }
    }

    /// Where a test's run hands out the waker it was last polled with.
    type LastWaker = Arc<Mutex<Option<Waker>>>;

    /// A table ringing `doorbell`, holding one run (see [`run`]) that
    /// finishes on its second poll.
    fn one_run(doorbell: &Arc<Doorbell>) -> (Suspended, Rc<Cell<usize>>, LastWaker) {
        let table = Suspended::new(doorbell.clone());
        let (polls, waker) = (Rc::default(), Arc::default());
        start(&table, run(&polls, 2, &waker));
        (table, polls, waker)
    }

    /// Arms `doorbell` as a shard about to sleep does; counts its wakes.
    fn park(doorbell: &Doorbell) -> Arc<CountingWaker> {
        let (waker_of_shard, sleeper) = CountingWaker::new();
        doorbell.arm(&waker_of_shard);
        sleeper
    }

    /// The shard's part on this thread: takes the wakes of `table`.
    struct Here(Rc<Suspended>);

    impl WakeHere for Here {
        fn wake_here(&self, table: u32, key: u32) -> bool {
            self.0.wake_local(table, key)
        }
    }

    /// Runs `test` with `table` taking this thread's wakes.
    fn on_its_thread(table: &Rc<Suspended>, test: impl FnOnce()) {
        enter(Rc::new(Here(table.clone())));
        test();
        leave();
    }

    #[test]
    fn a_woken_run_is_polled_again_until_it_finishes() {
        let table = Suspended::new(Arc::default());
        let (polls, waker) = (Rc::default(), Arc::default());
        start(&table, run(&polls, 3, &waker));
        assert_eq!((table.len(), polls.get()), (1, 1));
        assert!(!table.has_ready());
        assert_eq!(table.poll_ready(&Plain), 0, "not woken: not polled");
        let first = waker.lock().unwrap().clone().unwrap();
        first.wake_by_ref();
        assert!(table.has_ready());
        assert_eq!(table.poll_ready(&Plain), 1);
        assert_eq!(polls.get(), 2);
        // The run was polled with a waker of the same key.
        let second = waker.lock().unwrap().clone().unwrap();
        assert!(second.will_wake(&first));
        second.wake();
        assert_eq!(table.poll_ready(&Plain), 1);
        assert_eq!((table.len(), polls.get()), (0, 3), "finished and dropped");
    }

    #[test]
    fn wakes_on_the_shards_thread_queue_a_run_once() {
        let table = Rc::new(Suspended::new(Arc::default()));
        let (polls, waker) = (Rc::default(), Arc::default());
        start(&table, run(&polls, 3, &waker));
        on_its_thread(&table, || {
            let waker = waker.lock().unwrap().clone().unwrap();
            waker.wake_by_ref();
            waker.wake_by_ref();
            // A clone is the same waker.
            let clone = waker.clone();
            clone.wake();
            assert!(!table.has_foreign_ready(), "the local path took them");
            assert_eq!(table.poll_ready(&Plain), 1, "queued once");
            assert_eq!(polls.get(), 2);
            waker.wake();
            assert_eq!(table.poll_ready(&Plain), 1);
        });
        assert_eq!((table.len(), polls.get()), (0, 3));
    }

    #[test]
    fn a_run_that_wakes_itself_in_its_first_poll_is_polled_again() {
        let table = Rc::new(Suspended::new(Arc::default()));
        let polls = Rc::new(Cell::new(0));
        let counted = polls.clone();
        // As `yield_now` does: wakes itself, then suspends.
        let yielding: Run = Box::pin(std::future::poll_fn(move |cx| {
            counted.set(counted.get() + 1);
            if counted.get() == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(())
        }));
        on_its_thread(&table, || {
            start(&table, yielding);
            assert!(table.has_ready(), "woken before it was kept");
            assert_eq!(table.poll_ready(&Plain), 1);
        });
        assert_eq!((table.len(), polls.get()), (0, 2));
    }

    #[test]
    fn a_stale_wake_polls_nothing() {
        let table = Suspended::new(Arc::default());
        let (polls, waker) = (Rc::default(), Arc::default());
        start(&table, run(&polls, 2, &waker));
        let stale = waker.lock().unwrap().clone().unwrap();
        stale.wake_by_ref();
        assert_eq!(table.poll_ready(&Plain), 1);
        assert_eq!(table.len(), 0);
        stale.wake();
        assert_eq!(table.poll_ready(&Plain), 1, "the stale key is looked at");
        assert_eq!(polls.get(), 2, "but nothing runs");
    }

    #[test]
    fn a_waker_that_outlives_its_table_does_nothing() {
        let doorbell = Arc::new(Doorbell::default());
        let (table, polls, waker) = one_run(&doorbell);
        let orphan = waker.lock().unwrap().clone().unwrap();
        drop(table.take_all());
        drop(table);
        let sleeper = park(&doorbell);
        orphan.wake_by_ref();
        assert_eq!(sleeper.wakes(), 0, "no shard to wake");
        // Another table's token is another: its runs are not woken either.
        let other = Suspended::new(doorbell.clone());
        start(&other, run(&polls, 5, &waker));
        let theirs = waker.lock().unwrap().clone().unwrap();
        assert!(!theirs.will_wake(&orphan), "tokens are not reused");
        doorbell.disarm();
    }

    #[test]
    fn a_wake_from_another_thread_rings_the_sleeping_shard() {
        let doorbell = Arc::new(Doorbell::default());
        let (table, polls, waker) = one_run(&doorbell);
        let sleeper = park(&doorbell);
        assert!(!table.has_foreign_ready());
        let remote = waker.lock().unwrap().clone().unwrap();
        std::thread::spawn(move || remote.wake()).join().unwrap();
        assert_eq!(sleeper.wakes(), 1, "the shard was woken");
        assert!(table.has_foreign_ready());
        doorbell.disarm();
        assert_eq!(table.poll_ready(&Plain), 1);
        assert_eq!((table.len(), polls.get()), (0, 2));
    }

    #[test]
    fn runs_left_at_shutdown_are_handed_over() {
        let table = Suspended::new(Arc::default());
        let (polls, waker) = (Rc::default(), Arc::default());
        for _ in 0..3 {
            start(&table, run(&polls, usize::MAX, &waker));
        }
        assert_eq!(table.take_all().len(), 3);
        assert_eq!(table.len(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Wakes from another thread under loom: never lost, even when the run
    //! is queued already and the scheduler is about to poll it.

    use super::tests::{owner, Plain};
    use super::*;
    use crate::sync::{CountingWaker, Ordering};
    use loom::sync::atomic::AtomicUsize;
    use std::future::poll_fn;
    use std::task::Poll;

    #[test]
    fn loom_a_wake_during_a_poll_is_not_lost() {
        loom::model(|| {
            let table = Suspended::new(Arc::new(Doorbell::default()));
            // What the other thread's wake stands for (an answer arrived).
            let ready = Arc::new(loom::sync::Arc::new(AtomicUsize::new(0)));
            let waker = table.next_waker();
            let run: Run = {
                let ready = ready.clone();
                Box::pin(poll_fn(move |_| {
                    if ready.load(Ordering::Relaxed) == 1 {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                }))
            };
            table.keep(run, owner());
            // Woken once already: its key waits on the ready list.
            waker.wake_by_ref();
            let answer = {
                let (ready, waker) = (ready.clone(), waker.clone());
                loom::thread::spawn(move || {
                    ready.store(1, Ordering::Relaxed);
                    waker.wake();
                })
            };
            table.poll_ready(&Plain);
            answer.join().unwrap();
            // The scheduler polls whatever was woken since.
            table.poll_ready(&Plain);
            assert_eq!(table.len(), 0, "the run saw its answer or was woken again");
        });
    }

    /// A wake from another thread while the scheduler parks (arms the
    /// doorbell, then looks for foreign wakes once more, as
    /// `Shard::sleep` does): the scheduler sees the woken run or is woken.
    #[test]
    fn loom_a_foreign_wake_reaches_a_parking_scheduler() {
        loom::model(|| {
            let doorbell = Arc::new(Doorbell::default());
            let table = Suspended::new(doorbell.clone());
            let waker = table.next_waker();
            table.keep(Box::pin(std::future::pending()), owner());
            let remote = loom::thread::spawn(move || waker.wake());
            let (waker_of_scheduler, scheduler) = CountingWaker::new();
            doorbell.arm(&waker_of_scheduler);
            let seen = table.has_foreign_ready();
            remote.join().unwrap();
            let woken = scheduler.wakes() > 0;
            assert!(seen || woken, "the wake was lost");
            doorbell.disarm();
            drop(table.take_all());
        });
    }
}
