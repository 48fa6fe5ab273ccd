//! Runs that suspended, kept by their shard and polled by its scheduler
//! when woken, instead of each becoming a glommio task.
//!
//! A handler that awaits (an ask, a sleep) suspends its run. The shard keeps
//! the run in a slab; its key names it in a waker made once per key and
//! reused. Waking pushes the key on a ready list and tells the scheduler:
//! on the shard's own thread through a plain queue and the shard's work
//! signal, from any other thread through a lock-free queue and the shard's
//! doorbell (the one its cross-shard rings use). A glommio task per
//! suspension cost an allocation, a second poll right after spawning (to
//! pick up the task's own waker) and the executor's bookkeeping (about 12%
//! of a million-agent profile), and glommio looked at a wake from another
//! thread only at its next preemption, up to ~100 ms later on a busy shard.
//!
//! A stale wake (a waker clone kept by something that outlived its run) at
//! worst polls whichever run has that key now: a spurious poll, which every
//! future tolerates.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use slab::Slab;

use crate::doorbell::Doorbell;
use crate::spare::Run;
use crate::sync::{AtomicBool, Ordering, Queue};

/// Most woken runs polled per call of [`Suspended::poll_ready`], so that
/// they take turns with the run queue.
const POLL_BUDGET: usize = 128;

/// Takes the wakes of runs made on its own thread: the shard, which queues
/// the run if the table is its own and tells its scheduler.
pub(crate) trait WakeHere {
    /// Queues run `key` of `table` if `table` is this thread's; `false`
    /// sends the wake the foreign way.
    fn wake_here(&self, table: &Arc<Shared>, key: u32) -> bool;
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

/// What a waker needs to reach its shard from any thread.
pub(crate) struct Shared {
    /// Keys woken from other threads.
    foreign: Queue<u32>,
    /// Wakes the shard if it sleeps.
    doorbell: Arc<Doorbell>,
}

/// The waker of the run with key `key`.
struct RunWaker {
    key: u32,
    /// Whether the key is on a ready list already.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for RunWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let local = HERE.with(|here| {
            let here = here.try_borrow().ok()?;
            here.as_ref()?
                .wake_here(&self.shared, self.key)
                .then_some(())
        });
        if local.is_none() {
            self.shared.foreign.push(self.key);
            self.shared.doorbell.ring();
        }
    }
}

/// One shard's suspended runs.
pub(crate) struct Suspended {
    runs: RefCell<Slab<Option<Run>>>,
    /// One waker per key, made on first use.
    wakers: RefCell<Vec<Arc<RunWaker>>>,
    /// Keys woken on this shard's thread.
    local: RefCell<VecDeque<u32>>,
    shared: Arc<Shared>,
}

impl Suspended {
    /// An empty table whose foreign wakes ring `doorbell`.
    pub(crate) fn new(doorbell: Arc<Doorbell>) -> Self {
        Suspended {
            runs: RefCell::default(),
            wakers: RefCell::default(),
            local: RefCell::default(),
            shared: Arc::new(Shared {
                foreign: Queue::new(),
                doorbell,
            }),
        }
    }

    /// The waker that the next run to suspend will keep: runs are polled
    /// with it the first time, so a run that suspends needs no second poll.
    pub(crate) fn next_waker(&self) -> Waker {
        let key = self.runs.borrow().vacant_key();
        self.waker(key)
    }

    /// Keeps a run that suspended while polled with [`Self::next_waker`]
    /// (no other run was kept since).
    pub(crate) fn keep(&self, run: Run) {
        self.runs.borrow_mut().insert(Some(run));
    }

    /// Polls the runs woken since the last call (up to a budget); drops
    /// those that finish. Returns how many were polled.
    pub(crate) fn poll_ready(&self) -> usize {
        let mut polled = 0;
        while polled < POLL_BUDGET {
            let next = self.local.borrow_mut().pop_front();
            let Some(key) = next.or_else(|| self.shared.foreign.pop()) else {
                break;
            };
            polled += 1;
            let waker = self.waker_arc(key);
            // From here on a wake queues the run again. A swap, not a
            // store: a wake that found the flag still up and queued nothing
            // must happen-before the poll below, or the poll may miss what
            // that wake announced (found by loom: `loom_tests`).
            waker.queued.swap(false, Ordering::AcqRel);
            let taken = self
                .runs
                .borrow_mut()
                .get_mut(key as usize)
                .and_then(Option::take);
            let Some(mut run) = taken else {
                continue; // finished already: a stale wake
            };
            let waker = Waker::from(waker);
            let ready = run
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready();
            let mut runs = self.runs.borrow_mut();
            if ready {
                runs.remove(key as usize);
            } else if let Some(slot) = runs.get_mut(key as usize) {
                *slot = Some(run);
            }
        }
        polled
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

    /// On this shard's thread: queues `key` if `shared` is this table's.
    pub(crate) fn wake_local(&self, shared: &Arc<Shared>, key: u32) -> bool {
        if !Arc::ptr_eq(shared, &self.shared) {
            return false;
        }
        match self.local.try_borrow_mut() {
            Ok(mut local) => {
                local.push_back(key);
                true
            }
            Err(_) => false,
        }
    }

    /// Takes every suspended run out, to be dropped (the shard stops).
    pub(crate) fn take_all(&self) -> Vec<Run> {
        let runs = std::mem::take(&mut *self.runs.borrow_mut());
        runs.into_iter().filter_map(|(_, run)| run).collect()
    }

    /// How many runs are suspended.
    pub(crate) fn len(&self) -> usize {
        self.runs.borrow().len()
    }

    fn waker(&self, key: usize) -> Waker {
        Waker::from(self.waker_arc(key as u32))
    }

    fn waker_arc(&self, key: u32) -> Arc<RunWaker> {
        let mut wakers = self.wakers.borrow_mut();
        while wakers.len() <= key as usize {
            let key = wakers.len() as u32;
            wakers.push(Arc::new(RunWaker {
                key,
                queued: AtomicBool::new(false),
                shared: self.shared.clone(),
            }));
        }
        wakers[key as usize].clone()
    }
}

#[cfg(test)]
mod tests {
    //! Without a shard on the thread, every wake takes the foreign path (the
    //! lock-free queue and the doorbell); the local path is covered by the
    //! engine's integration tests, where every ask and sleep suspends.

    use super::*;
    use crate::sync::CountingWaker;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::Mutex;
    use std::task::Poll;

    /// A run that finishes on its `polls_needed`-th poll, and hands out the
    /// waker it was last polled with.
    fn run(polls: &Rc<Cell<usize>>, polls_needed: usize, waker: &Arc<Mutex<Option<Waker>>>) -> Run {
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
            table.keep(run);
        }
    }

    #[test]
    fn a_woken_run_is_polled_again_until_it_finishes() {
        let table = Suspended::new(Arc::default());
        let (polls, waker) = (Rc::default(), Arc::default());
        start(&table, run(&polls, 3, &waker));
        assert_eq!((table.len(), polls.get()), (1, 1));
        assert!(!table.has_ready());
        assert_eq!(table.poll_ready(), 0, "not woken: not polled");
        // Woken twice before the scheduler looks: polled once.
        let first = waker.lock().unwrap().clone().unwrap();
        first.wake_by_ref();
        first.wake_by_ref();
        assert!(table.has_ready());
        assert_eq!(table.poll_ready(), 1);
        assert_eq!(polls.get(), 2);
        // The run kept the same waker across polls.
        let second = waker.lock().unwrap().clone().unwrap();
        assert!(second.will_wake(&first));
        second.wake();
        assert_eq!(table.poll_ready(), 1);
        assert_eq!((table.len(), polls.get()), (0, 3), "finished and dropped");
    }

    #[test]
    fn a_stale_wake_polls_nothing() {
        let table = Suspended::new(Arc::default());
        let (polls, waker) = (Rc::default(), Arc::default());
        start(&table, run(&polls, 2, &waker));
        let stale = waker.lock().unwrap().clone().unwrap();
        stale.wake_by_ref();
        assert_eq!(table.poll_ready(), 1);
        assert_eq!(table.len(), 0);
        stale.wake();
        assert_eq!(table.poll_ready(), 1, "the stale key is looked at");
        assert_eq!(polls.get(), 2, "but nothing runs");
    }

    #[test]
    fn a_wake_from_another_thread_rings_the_sleeping_shard() {
        let doorbell = Arc::new(Doorbell::default());
        let table = Suspended::new(doorbell.clone());
        let (polls, waker) = (Rc::default(), Arc::default());
        start(&table, run(&polls, 2, &waker));
        let (waker_of_shard, sleeper) = CountingWaker::new();
        doorbell.arm(&waker_of_shard);
        assert!(!table.has_foreign_ready());
        let remote = waker.lock().unwrap().clone().unwrap();
        std::thread::spawn(move || remote.wake()).join().unwrap();
        assert_eq!(sleeper.wakes(), 1, "the shard was woken");
        assert!(table.has_foreign_ready());
        doorbell.disarm();
        assert_eq!(table.poll_ready(), 1);
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
    //! The wake flag of a suspended run under loom: a wake from another
    //! thread is never lost, even when it finds the run queued already and
    //! the scheduler is about to poll it.

    use super::*;
    use crate::sync::CountingWaker;
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
            table.keep(run);
            // Woken once already: its key waits on the ready list.
            waker.wake_by_ref();
            let answer = {
                let (ready, waker) = (ready.clone(), waker.clone());
                loom::thread::spawn(move || {
                    ready.store(1, Ordering::Relaxed);
                    waker.wake();
                })
            };
            table.poll_ready();
            answer.join().unwrap();
            // The scheduler polls whatever was woken since.
            table.poll_ready();
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
            table.keep(Box::pin(std::future::pending()));
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
