//! The shard's main loop: takes cross-shard batches, polls woken suspended
//! runs, starts the runs of queued workers (each polled inline), ships the
//! outboxes, and when there is nothing to do spins briefly on its rings
//! before it parks.

use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::slots::Next;
use crate::suspended::{Poller, WakeHere};
use crate::WorkerRef;

use super::Shard;

/// How many runs the scheduler starts before it lets other tasks of the
/// shard (the sweeper, the inbox, the transport's tasks) go.
const SCHEDULER_BATCH: usize = 128;

/// How long an idle scheduler watches its rings before it parks.
const RING_SPIN: Duration = Duration::from_micros(20);

/// How soon a shard whose outbox found a full ring tries again.
pub(super) const FULL_RING_RETRY: Duration = Duration::from_micros(50);

impl Shard {
    /// The scheduler: runs until the shard is asked to stop.
    pub(crate) async fn schedule(self: Rc<Self>) {
        while !self.closed.get() {
            self.stall.beat();
            // Everything a notification can stand for is looked at below.
            self.work.clear();
            let received = self.inbound.drain(|packet| self.accept(packet));
            let resumed = self.suspended.poll_ready(&*self);
            let ran = self.run_some();
            let shipped = self.flush_outboxes();
            if received + resumed + ran > 0 {
                futures_lite::future::yield_now().await;
            } else if !self.spin_for_work().await {
                self.state.borrow_mut().slots.trim();
                self.sleep(shipped).await;
            }
        }
    }

    /// Starts up to [`SCHEDULER_BATCH`] runs; returns how many. Each is
    /// polled once here, with the waker it keeps if it suspends; one that
    /// suspends goes to the shard's table of suspended runs.
    fn run_some(self: &Rc<Self>) -> usize {
        let mut ran = 0;
        // Made when the first run needs it (most passes of a busy
        // scheduler have no run), and again after a run was kept.
        let mut waker: Option<Waker> = None;
        while ran < SCHEDULER_BATCH {
            let next = self.state.borrow_mut().slots.next_run();
            let Some(next) = next else {
                break;
            };
            ran += 1;
            let waker = waker.get_or_insert_with(|| self.suspended.next_waker());
            let mut cx = std::task::Context::from_waker(waker);
            let (me, suspended) = match next {
                Next::Run { worker, me, first } => {
                    (me, self.watched(me, || worker.run(self, me.to_bits(), first, &mut cx)))
                }
                Next::Stop { worker, me } => (me, self.watched(me, || worker.stop(self, me, &mut cx))),
            };
            if let Some(run) = suspended {
                self.suspended.keep(run, me.to_bits());
                *waker = self.suspended.next_waker();
            }
        }
        ran
    }

    /// Ships every outbox; `false` if a ring was full and something waits.
    pub(super) fn flush_outboxes(&self) -> bool {
        let mut all_shipped = true;
        for outbox in self.outboxes.iter().flatten() {
            // Flush every outbox, even after one found its ring full.
            all_shipped &= outbox.flush();
        }
        all_shipped
    }

    /// Spins up to [`RING_SPIN`], watching for incoming batches and local
    /// work; `true` as soon as there is some. It spins by yielding, so the
    /// shard's other tasks (the sweeper, the inbox) run first and an
    /// otherwise idle executor comes straight back here. It is short because
    /// glommio handles no timer while a task stays runnable; the executor's
    /// own spin (`NodeConfig::spin_before_park`) follows, and handles timers
    /// and doorbell wake-ups.
    async fn spin_for_work(&self) -> bool {
        let has_work =
            || self.work.is_set() || self.inbound.pending() || self.suspended.has_ready();
        let deadline = Instant::now() + RING_SPIN;
        loop {
            if has_work() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            futures_lite::future::yield_now().await;
        }
    }

    /// Sleeps until local work is signalled or another shard rings the
    /// doorbell; if a ring was full (`shipped` is false), retries soon.
    async fn sleep(&self, shipped: bool) {
        let woken = poll_fn(|cx| {
            if self.work.poll_wait(cx).is_ready() {
                return Poll::Ready(());
            }
            let doorbell = self.inbound.doorbell();
            doorbell.arm(cx.waker());
            if self.inbound.pending() || self.suspended.has_foreign_ready() {
                return Poll::Ready(());
            }
            Poll::Pending
        });
        self.stall.parked(true);
        if shipped {
            woken.await;
        } else {
            futures_lite::future::or(woken, async {
                glommio::timer::sleep(FULL_RING_RETRY).await;
            })
            .await;
        }
        self.inbound.doorbell().disarm();
        self.stall.parked(false);
    }

    /// Runs `poll`, a poll of a run of worker `me`, telling the stall watch
    /// whose poll it is (so that a stall names its worker; `stall.rs`).
    /// Each poll is also a `trace`-level span `run` with fields `worker` and
    /// `shard` (its messages' `handle` events carry their size): with
    /// `trace` off for this crate, a span costs one check of the level.
    ///
    /// The scheduler does this around each poll, rather than a wrapper
    /// future in each run: a wrapper holding the shard and the worker made
    /// every run 24 bytes bigger, and they were copied into its block with
    /// the rest of the run, once per run.
    fn watched<R>(&self, me: WorkerRef, poll: impl FnOnce() -> R) -> R {
        // Under the target of the `handle` events inside it, the one
        // docs/operations.md tells to switch on.
        let span = trace_enabled().then(|| {
            tracing::trace_span!(target: "myriad_engine::worker", "run", worker = %me, shard = me.shard())
                .entered()
        });
        self.stall.enter(me);
        let polled = poll();
        self.stall.leave();
        // Dropped only where there is one: dropping the `Option` itself is
        // a call per poll.
        if let Some(span) = span {
            drop(span);
        }
        polled
    }
}

/// Whether `trace` events may be on: the check `tracing`'s macros make
/// first, without building a span that would be off anyway.
fn trace_enabled() -> bool {
    use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
    tracing::Level::TRACE <= STATIC_MAX_LEVEL && tracing::Level::TRACE <= LevelFilter::current()
}

impl Poller for Shard {
    /// `owner` is the worker's reference as [`WorkerRef::to_bits`].
    fn poll_run(&self, owner: u64, poll: impl FnOnce() -> bool) -> bool {
        self.watched(WorkerRef::from_bits(owner, self.index), poll)
    }
}

impl WakeHere for Shard {
    /// Queues the suspended run `key` of `table` if that table is this
    /// shard's, and tells the scheduler.
    fn wake_here(&self, table: u32, key: u32) -> bool {
        let queued = self.suspended.wake_local(table, key);
        if queued {
            self.work.notify();
        }
        queued
    }
}
