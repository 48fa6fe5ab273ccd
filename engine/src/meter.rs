//! A shard's live counters: plain `Cell`s and HDR histograms owned by the
//! shard's thread, so counting on the message path is an increment, never
//! a shared atomic. A snapshot ([`crate::metrics::ShardMetrics`]) is read
//! from them on demand, on the shard's own thread.
//!
//! The two timings are sampled, one event in [`SAMPLE_EVERY`], and only one
//! of each is followed at a time, so the message path pays a counter and a
//! comparison, and a clock read only for a sampled message that starts or
//! ends a sample. The clock is the CPU's time-stamp counter where it is
//! invariant (`quanta`; about 11 ns a read here against 29 ns for the
//! system's monotonic clock), scaled to nanoseconds:
//!
//! * *mailbox wait*: a sampled push notes its time and how many messages are
//!   ahead of it; each message then taken from that mailbox counts down, and
//!   the one that finds nothing ahead is the sampled message (mailboxes are
//!   FIFO);
//! * *handler time*: a sampled message notes when its handler was given it;
//!   the same worker asking for its next message ends the sample.
//!
//! A sampled event that finds its sample still followed reads no clock: only
//! one in [`GIVE_UP_LOOK`] of them looks whether the followed one has gone
//! on for longer than [`SAMPLE_GIVE_UP`] and is to be given up.
//!
//! Knows nothing of the shard; unit-tested without glommio.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use quanta::{Clock, Instant};

use crate::metrics::{Asks, Bucket, Histogram, Sent, SAMPLE_EVERY};
use crate::WorkerRef;

/// A sample still followed after this long is given up (its worker sits
/// suspended with a message queued, say), so that sampling goes on.
const SAMPLE_GIVE_UP: Duration = Duration::from_secs(60);

/// Of the sampled events that find their sample still followed, one in this
/// many reads the clock to look whether it is to be given up.
const GIVE_UP_LOOK: u64 = 1024;

/// No sample is followed (no slot has this index).
const NONE: u32 = u32::MAX;

/// Upper bounds of the exported buckets of the time histograms, in
/// nanoseconds: 1 µs to 10 s.
pub(crate) const TIME_BUCKETS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Upper bounds of the exported buckets of the mailbox-depth histogram.
pub(crate) const DEPTH_BUCKETS: [u64; 12] =
    [1, 2, 4, 8, 16, 64, 256, 1_024, 4_096, 16_384, 65_536, 262_144];

/// One HDR histogram (two significant figures) with the exact sum of what
/// it recorded.
struct Recorder {
    histogram: hdrhistogram::Histogram<u64>,
    sum: u64,
    buckets: &'static [u64],
}

impl Recorder {
    fn new(highest: u64, buckets: &'static [u64]) -> Self {
        Recorder {
            // Bounds that are constants and valid (1 <= low, high >= 2 * low,
            // sigfig <= 5): this cannot fail.
            histogram: hdrhistogram::Histogram::new_with_bounds(1, highest, 2)
                .expect("valid histogram bounds"),
            sum: 0,
            buckets,
        }
    }

    fn record(&mut self, value: u64) {
        self.histogram.saturating_record(value);
        self.sum = self.sum.saturating_add(value);
    }

    fn summary(&self) -> Histogram {
        let h = &self.histogram;
        if h.is_empty() {
            return Histogram {
                buckets: self.buckets.iter().map(|&le| Bucket { le, count: 0 }).collect(),
                ..Histogram::default()
            };
        }
        Histogram {
            count: h.len(),
            sum: self.sum,
            min: h.min(),
            max: h.max(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            buckets: self.cumulative(),
        }
    }

    /// The exported buckets, in one pass over the recorded values (a
    /// snapshot must cost little whatever was recorded).
    fn cumulative(&self) -> Vec<Bucket> {
        let mut counts = vec![0; self.buckets.len()];
        for v in self.histogram.iter_recorded() {
            let at = self.buckets.partition_point(|&le| le < v.value_iterated_to());
            if let Some(count) = counts.get_mut(at) {
                *count += v.count_since_last_iteration();
            }
        }
        let mut below = 0;
        self.buckets
            .iter()
            .zip(counts)
            .map(|(&le, count)| {
                below += count;
                Bucket { le, count: below }
            })
            .collect()
    }
}

/// A sampled message on its way through a mailbox (the messages ahead of
/// it are [`Meter`]'s `wait_ahead`).
#[derive(Clone, Copy)]
struct WaitSample {
    worker: WorkerRef,
    since: Instant,
}

/// A sampled message being handled.
#[derive(Clone, Copy)]
struct HandlerSample {
    worker: WorkerRef,
    since: Instant,
}

/// The counters of one shard.
pub(crate) struct Meter {
    /// The samples' clock (a copy of the process's calibrated one).
    clock: Clock,
    handled: Cell<u64>,
    sent: Cell<Sent>,
    asks: Cell<Asks>,
    sleeps_pending: Cell<u64>,
    panics: Cell<u64>,
    pushes: Cell<u64>,
    takes: Cell<u64>,
    /// The slot index of the followed wait sample's worker, or [`NONE`]:
    /// what each take compares with.
    wait_slot: Cell<u32>,
    /// Messages still ahead of the followed wait sample: counted down
    /// inline, each take from its worker's mailbox.
    wait_ahead: Cell<usize>,
    wait: Cell<Option<WaitSample>>,
    handler_slot: Cell<u32>,
    handler: Cell<Option<HandlerSample>>,
    depths: RefCell<Recorder>,
    waits: RefCell<Recorder>,
    handler_times: RefCell<Recorder>,
}

impl Default for Meter {
    fn default() -> Self {
        Meter::with_clock(Clock::new())
    }
}

impl Meter {
    fn with_clock(clock: Clock) -> Self {
        const HOUR_NS: u64 = 3_600_000_000_000;
        Meter {
            clock,
            handled: Cell::new(0),
            sent: Cell::new(Sent::default()),
            asks: Cell::new(Asks::default()),
            sleeps_pending: Cell::new(0),
            panics: Cell::new(0),
            pushes: Cell::new(0),
            takes: Cell::new(0),
            wait_slot: Cell::new(NONE),
            wait_ahead: Cell::new(0),
            wait: Cell::new(None),
            handler_slot: Cell::new(NONE),
            handler: Cell::new(None),
            depths: RefCell::new(Recorder::new(1 << 32, &DEPTH_BUCKETS)),
            waits: RefCell::new(Recorder::new(HOUR_NS, &TIME_BUCKETS)),
            handler_times: RefCell::new(Recorder::new(HOUR_NS, &TIME_BUCKETS)),
        }
    }
}

/// How an ask ended, for [`Meter::ask_ended`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AskEnd {
    Answered,
    TimedOut,
    Failed,
}

impl Meter {
    /// Counts `n` handled messages.
    pub(crate) fn handled(&self, n: u64) {
        self.handled.set(self.handled.get() + n);
    }

    /// Counts a message routed to this shard (`local`) or another one.
    pub(crate) fn sent_here_or_across(&self, local: bool) {
        let mut sent = self.sent.get();
        if local {
            sent.local += 1;
        } else {
            sent.cross_shard += 1;
        }
        self.sent.set(sent);
    }

    /// Counts a message accepted by the remote router.
    pub(crate) fn sent_remote(&self) {
        let mut sent = self.sent.get();
        sent.remote += 1;
        self.sent.set(sent);
    }

    /// Counts a push into `worker`'s mailbox, which then holds `depth`
    /// messages; one in [`SAMPLE_EVERY`] records the depth and may start
    /// following the message.
    pub(crate) fn pushed(&self, worker: WorkerRef, depth: usize) {
        let pushes = self.pushes.get().wrapping_add(1);
        self.pushes.set(pushes);
        if pushes % SAMPLE_EVERY == 0 {
            self.sample_push(worker, depth);
        }
    }

    /// The one push in [`SAMPLE_EVERY`]: out of line, so that the message
    /// path inlines only the counter and the comparison above.
    #[cold]
    fn sample_push(&self, worker: WorkerRef, depth: usize) {
        self.depths.borrow_mut().record(depth as u64);
        let Some(ahead) = depth.checked_sub(1) else {
            return;
        };
        let followed = self.wait.get().map(|s| s.since);
        if let Some(since) = self.sample_start(followed, self.pushes.get()) {
            self.wait.set(Some(WaitSample { worker, since }));
            self.wait_ahead.set(ahead);
            self.wait_slot.set(worker.index);
        }
    }

    /// `worker`'s handler is given its next message.
    ///
    /// By reference, as [`Meter::handler_done`]: the worker's reference is
    /// read whole only when a sample ends or starts (see
    /// `Shard::next_or_park`).
    pub(crate) fn taken(&self, worker: &WorkerRef) {
        if self.wait_slot.get() == worker.index {
            // A slot's worker is forgotten when it goes: the sample is its.
            match self.wait_ahead.get() {
                0 => self.end_wait_sample(*worker),
                ahead => self.wait_ahead.set(ahead - 1),
            }
        }
        let takes = self.takes.get().wrapping_add(1);
        self.takes.set(takes);
        if takes % SAMPLE_EVERY == 0 {
            self.sample_handler(*worker);
        }
    }

    #[cold]
    fn sample_handler(&self, worker: WorkerRef) {
        let followed = self.handler.get().map(|s| s.since);
        if let Some(since) = self.sample_start(followed, self.takes.get()) {
            self.handler.set(Some(HandlerSample { worker, since }));
            self.handler_slot.set(worker.index);
        }
    }

    #[cold]
    fn end_wait_sample(&self, worker: WorkerRef) {
        if let Some(sample) = self.wait.get().filter(|s| s.worker == worker) {
            self.waits.borrow_mut().record(self.elapsed_ns(sample.since));
        }
        self.forget_wait();
    }

    /// `worker` is done with its current message (it asks for the next, or
    /// its run ends).
    pub(crate) fn handler_done(&self, worker: &WorkerRef) {
        if self.handler_slot.get() == worker.index {
            self.end_handler_sample(*worker);
        }
    }

    #[cold]
    fn end_handler_sample(&self, worker: WorkerRef) {
        if let Some(sample) = self.handler.get().filter(|s| s.worker == worker) {
            self.handler_times
                .borrow_mut()
                .record(self.elapsed_ns(sample.since));
            self.handler.set(None);
            self.handler_slot.set(NONE);
        }
    }

    /// `worker` is gone: a sample that follows it ends unrecorded.
    pub(crate) fn forget(&self, worker: WorkerRef) {
        if self.wait.get().is_some_and(|s| s.worker == worker) {
            self.forget_wait();
        }
        if self.handler.get().is_some_and(|s| s.worker == worker) {
            self.handler.set(None);
            self.handler_slot.set(NONE);
        }
    }

    fn forget_wait(&self) {
        self.wait.set(None);
        self.wait_slot.set(NONE);
    }

    /// When a sampled event may start a sample, the time it starts: now if
    /// no sample is followed (`followed` is when the followed one started),
    /// and over a followed one only once that has gone on for longer than
    /// [`SAMPLE_GIVE_UP`], looked at one sampled event in [`GIVE_UP_LOOK`]
    /// (`count` counts the events).
    fn sample_start(&self, followed: Option<Instant>, count: u64) -> Option<Instant> {
        let Some(since) = followed else {
            return Some(self.clock.now());
        };
        if count % (SAMPLE_EVERY * GIVE_UP_LOOK) != 0 {
            return None;
        }
        let now = self.clock.now();
        (now.saturating_duration_since(since) > SAMPLE_GIVE_UP).then_some(now)
    }

    fn elapsed_ns(&self, since: Instant) -> u64 {
        let elapsed = self.clock.now().saturating_duration_since(since);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    /// An ask begins; see [`Meter::ask_ended`].
    pub(crate) fn ask_started(&self) {
        let mut asks = self.asks.get();
        asks.in_flight += 1;
        self.asks.set(asks);
    }

    /// An ask counted by [`Meter::ask_started`] ended (`None`: abandoned,
    /// its asker went away).
    pub(crate) fn ask_ended(&self, end: Option<AskEnd>) {
        let mut asks = self.asks.get();
        asks.in_flight -= 1;
        match end {
            Some(AskEnd::Answered) => asks.answered += 1,
            Some(AskEnd::TimedOut) => asks.timed_out += 1,
            Some(AskEnd::Failed) => asks.failed += 1,
            None => {}
        }
        self.asks.set(asks);
    }

    /// A sleep begins (`true`) or ends.
    pub(crate) fn sleeping(&self, begins: bool) {
        let pending = self.sleeps_pending.get();
        self.sleeps_pending
            .set(if begins { pending + 1 } else { pending - 1 });
    }

    /// Counts a worker stopped by a panic.
    pub(crate) fn panicked(&self) {
        self.panics.set(self.panics.get() + 1);
    }

    /// The counters, as a snapshot (the gauges the shard holds elsewhere
    /// are left at zero for the caller to fill).
    pub(crate) fn read(&self) -> crate::metrics::ShardMetrics {
        crate::metrics::ShardMetrics {
            handled: self.handled.get(),
            sent: self.sent.get(),
            asks: self.asks.get(),
            sleeps_pending: self.sleeps_pending.get(),
            panics: self.panics.get(),
            mailbox_depth: self.depths.borrow().summary(),
            mailbox_wait: self.waits.borrow().summary(),
            handler_time: self.handler_times.borrow().summary(),
            ..Default::default()
        }
    }
}

/// Calibrates the samples' clock (up to 200 ms, once per process) before
/// any shard makes its meter: on a shard it would stall every worker of
/// that shard.
pub(crate) fn calibrate_clock() {
    Clock::new();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sampled_push_is_timed_when_its_own_message_is_taken() {
        let meter = Meter::default();
        let (w, other) = (WorkerRef::test(3), WorkerRef::test(4));
        // Pushes 1..63 are not sampled; the 64th finds 2 messages ahead.
        for _ in 1..SAMPLE_EVERY {
            meter.pushed(other, 0);
        }
        meter.pushed(w, 3);
        meter.taken(&other);
        meter.taken(&w);
        meter.taken(&w);
        assert_eq!(meter.read().mailbox_wait.count, 0, "two were ahead of it");
        meter.taken(&w);
        let read = meter.read();
        assert_eq!(read.mailbox_wait.count, 1);
        assert_eq!(read.mailbox_depth.count, 1);
        assert_eq!(read.mailbox_depth.max, 3);
        meter.taken(&w);
        assert_eq!(meter.read().mailbox_wait.count, 1, "the sample is over");
    }

    #[test]
    fn one_take_in_sample_every_is_timed_until_the_same_worker_is_done() {
        let meter = Meter::default();
        let (w, other) = (WorkerRef::test(1), WorkerRef::test(2));
        for _ in 1..SAMPLE_EVERY {
            meter.taken(&other);
        }
        meter.taken(&w);
        meter.handler_done(&other);
        assert_eq!(meter.read().handler_time.count, 0);
        meter.handler_done(&w);
        let read = meter.read();
        assert_eq!(read.handler_time.count, 1);
        assert_eq!(read.handler_time.buckets.len(), TIME_BUCKETS.len());
    }

    #[test]
    fn a_worker_that_goes_away_ends_its_samples_unrecorded() {
        let meter = Meter::default();
        let w = WorkerRef::test(7);
        for _ in 1..SAMPLE_EVERY {
            meter.pushed(w, 0);
        }
        meter.pushed(w, 1);
        meter.forget(w);
        meter.taken(&w);
        assert_eq!(meter.read().mailbox_wait.count, 0);
    }

    #[test]
    fn a_followed_sample_is_given_up_only_after_a_minute_at_a_look() {
        let (clock, time) = Clock::mock();
        let meter = Meter::with_clock(clock);
        let (stuck, other) = (WorkerRef::test(1), WorkerRef::test(2));
        // The first sampled push finds `stuck`'s mailbox with one
        // message ahead, which `stuck` never takes.
        for _ in 1..SAMPLE_EVERY {
            meter.pushed(other, 0);
        }
        meter.pushed(stuck, 2);
        time.increment(SAMPLE_GIVE_UP + Duration::from_secs(1));
        // Every sampled push until the look finds it followed.
        let look = SAMPLE_EVERY * GIVE_UP_LOOK;
        for _ in SAMPLE_EVERY..look - 1 {
            meter.pushed(other, 1);
        }
        meter.taken(&other);
        assert_eq!(meter.read().mailbox_wait.count, 0, "still following `stuck`'s");
        // The look gives it up and follows this push's message instead.
        meter.pushed(other, 1);
        time.increment(Duration::from_micros(3));
        meter.taken(&other);
        let waits = meter.read().mailbox_wait;
        assert_eq!((waits.count, waits.max / 1_000), (1, 3), "{waits:?}");
    }

    #[test]
    fn buckets_are_cumulative_and_match_the_recorded_values() {
        let mut recorder = Recorder::new(1 << 32, &DEPTH_BUCKETS);
        for depth in [1, 1, 3, 8, 9, 1_000_000] {
            recorder.record(depth);
        }
        let summary = recorder.summary();
        let count = |le| summary.buckets.iter().find(|b| b.le == le).unwrap().count;
        assert_eq!((count(1), count(2), count(4), count(8), count(16)), (2, 2, 3, 4, 5));
        assert_eq!(summary.buckets.last().unwrap().count, 5, "one above the last bound");
        assert_eq!((summary.count, summary.sum), (6, 1_000_022));
    }

    #[test]
    fn asks_and_sleeps_are_gauges_and_counters() {
        let meter = Meter::default();
        for _ in 0..4 {
            meter.ask_started();
        }
        meter.ask_ended(Some(AskEnd::Answered));
        meter.ask_ended(Some(AskEnd::TimedOut));
        meter.ask_ended(Some(AskEnd::Failed));
        meter.sleeping(true);
        meter.sleeping(true);
        meter.sleeping(false);
        let read = meter.read();
        let expected = Asks {
            in_flight: 1,
            answered: 1,
            timed_out: 1,
            failed: 1,
        };
        assert_eq!((read.asks, read.sleeps_pending), (expected, 1));
    }
}
