//! The node's store thread: the one thread that calls the
//! [`StateStore`], so that no shard ever blocks on it.
//!
//! Shards queue requests on a channel; the thread takes everything queued
//! (up to [`MAX_BATCH`]), runs consecutive loads as one batch and
//! consecutive saves as one transaction, in arrival order, and sends the
//! answers back to each asking shard as one job in its inbox per batch
//! (so a batch wakes a shard once, not once per answer). One thread keeps
//! the order of a key's writes (a later save always wins) and lets a slow
//! disk turn many saves into one commit. Answers never overtake each
//! other: those gathered are posted before the thread answers a caller
//! itself (a listing, the reminder index).

use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::store::{StateStore, StoreError, Write};
use super::Key;
use crate::envelope::{Job, Packet};
use crate::liveness::Inboxes;
use crate::shard::Shard;
use crate::worker::panic_text;

/// Most requests handled as one batch.
pub(crate) const MAX_BATCH: usize = 4096;

/// What a shard does with a load's answer; it gets the key back.
pub(crate) type Loaded = Box<dyn FnOnce(&Rc<Shard>, Key, Result<Option<Vec<u8>>, StoreError>) + Send>;
/// What a shard does with a save's answer; it gets the key and the record
/// written back.
///
/// Keys and records go back rather than being dropped here: a key's text is
/// shared with the shard's registry, and dropping a clone on this thread is
/// an atomic write to a cache line the shard owns (three quarters of this
/// loop's own time at a million deactivations, docs/performance.md); a
/// record is freed where it was allocated, and a reactivation starts from
/// it, so the registry keeps no copy while it is written.
pub(crate) type Saved = Box<dyn FnOnce(&Rc<Shard>, Key, Vec<u8>, Result<(), StoreError>) + Send>;

/// What a caller does with the listing of a kind's stored ids.
pub(crate) type Listed = Box<dyn FnOnce(Result<Vec<String>, StoreError>) + Send>;
/// What the node does with the stored reminders' index.
pub(crate) type DueKeys = Box<dyn FnOnce(Result<Vec<(Key, u64)>, StoreError>) + Send>;

/// One thing to ask the store.
pub(crate) enum Op {
    Load { key: Key, then: Loaded },
    Save { key: Key, record: Vec<u8>, next_due_ms: Option<u64>, then: Saved },
    /// Answered on the store thread itself (to a waiting caller).
    Keys { kind: String, then: Listed },
    /// The keys with a reminder due by `until_ms` (`StateStore::due`).
    Due { until_ms: u64, then: DueKeys },
}

enum Request {
    Op { shard: usize, sent: Instant, op: Op },
    Close,
}

/// Latency of the store's loads or saves, from request to answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreLatency {
    /// How many were answered.
    pub count: u64,
    /// The median.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
}

/// What the store thread measured.
pub(crate) struct StoreMetrics {
    loads: Mutex<Histogram<u64>>,
    saves: Mutex<Histogram<u64>>,
    pub(crate) errors: AtomicU64,
}

impl StoreMetrics {
    fn new() -> Self {
        // Microseconds, up to an hour, 3 significant digits.
        let histogram = || Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"));
        StoreMetrics {
            loads: histogram(),
            saves: histogram(),
            errors: AtomicU64::new(0),
        }
    }

    fn record(which: &Mutex<Histogram<u64>>, since: Instant, count: usize) {
        let micros = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
        let mut h = which.lock().unwrap_or_else(|p| p.into_inner());
        let micros = micros.min(h.high());
        let _ = h.record_n(micros, count as u64);
    }

    fn summary(which: &Mutex<Histogram<u64>>) -> StoreLatency {
        let h = which.lock().unwrap_or_else(|p| p.into_inner());
        let at = |q| Duration::from_micros(h.value_at_quantile(q));
        StoreLatency {
            count: h.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: Duration::from_micros(h.max()),
        }
    }

    /// Latency of loads.
    pub(crate) fn loads(&self) -> StoreLatency {
        Self::summary(&self.loads)
    }

    /// Latency of saves.
    pub(crate) fn saves(&self) -> StoreLatency {
        Self::summary(&self.saves)
    }
}

/// The shards' side of the store thread.
pub(crate) struct StoreClient {
    requests: flume::Sender<Request>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) metrics: Arc<StoreMetrics>,
}

impl StoreClient {
    /// Starts the thread for `store`; answers go to the shards' `inboxes`.
    pub(crate) fn start(store: Box<dyn StateStore>, inboxes: Inboxes) -> std::io::Result<Self> {
        let (requests, rx) = flume::unbounded();
        let metrics = Arc::new(StoreMetrics::new());
        let thread_metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("myriad-store".into())
            .spawn(move || serve(store, rx, inboxes, thread_metrics))?;
        Ok(StoreClient {
            requests,
            thread: Mutex::new(Some(thread)),
            metrics,
        })
    }

    /// Queues `op` from shard `shard`. A store that is closed drops it
    /// (the node is stopping).
    pub(crate) fn submit(&self, shard: usize, op: Op) {
        let _ = self.requests.send(Request::Op {
            shard,
            sent: Instant::now(),
            op,
        });
    }

    /// Finishes what is queued and ends the thread (the node stopped).
    pub(crate) fn close(&self) {
        let _ = self.requests.send(Request::Close);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the state store thread panicked");
            }
        }
    }
}

/// The answers of one batch, by shard, posted together.
struct Answers {
    inboxes: Inboxes,
    jobs: Vec<Vec<Job>>,
}

impl Answers {
    fn new(inboxes: Inboxes) -> Self {
        let jobs = (0..inboxes.len()).map(|_| Vec::new()).collect();
        Answers { inboxes, jobs }
    }

    /// Gathers `job` for shard `shard`.
    fn add(&mut self, shard: usize, job: Job) {
        if let Some(jobs) = self.jobs.get_mut(shard) {
            jobs.push(job);
        }
    }

    /// Posts what was gathered, one job per shard that runs its answers
    /// in order. A shard that is gone no longer waits: its answers are
    /// dropped (`Inboxes::post`).
    fn post(&mut self) {
        for (shard, jobs) in self.jobs.iter_mut().enumerate() {
            if jobs.is_empty() {
                continue;
            }
            let jobs = std::mem::take(jobs);
            let all: Job = Box::new(move |s| jobs.into_iter().for_each(|job| job(s)));
            self.inboxes.post(shard, Packet::Run(all));
        }
    }
}

/// Calls the store, turning a panic into an error.
fn contained<T>(what: &str, call: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(AssertUnwindSafe(call))
        .unwrap_or_else(|panic| Err(StoreError::new(format!("the store's {what} {}", panic_text(&panic)))))
}

fn serve(
    mut store: Box<dyn StateStore>,
    rx: flume::Receiver<Request>,
    inboxes: Inboxes,
    metrics: Arc<StoreMetrics>,
) {
    let mut answers = Answers::new(inboxes);
    let count_errors = |result: Option<&StoreError>, n: usize| {
        if let Some(error) = result {
            metrics.errors.fetch_add(n as u64, Ordering::Relaxed);
            tracing::error!(%error, "state store call failed");
        }
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter().take(MAX_BATCH - 1));
        let mut ops = batch.drain(..).peekable();
        while let Some(request) = ops.next() {
            let Request::Op { shard, sent, op } = request else {
                answers.post();
                return;
            };
            match op {
                Op::Load { key, then } => {
                    let (mut keys, mut run) = (vec![key], vec![(shard, sent, then)]);
                    while let Some(Request::Op { op: Op::Load { .. }, .. }) = ops.peek() {
                        if let Some(Request::Op { shard, sent, op: Op::Load { key, then } }) = ops.next() {
                            keys.push(key);
                            run.push((shard, sent, then));
                        }
                    }
                    let loaded = contained("load", || store.load(&keys));
                    count_errors(loaded.as_ref().err(), run.len());
                    let mut records = match loaded {
                        Ok(records) if records.len() == run.len() => records.into_iter().map(Ok).collect(),
                        Ok(records) => {
                            let wrong = StoreError::new(format!("load of {} keys returned {} records", run.len(), records.len()));
                            vec![Err(wrong); run.len()]
                        }
                        Err(e) => vec![Err(e); run.len()],
                    };
                    for (((shard, sent, then), key), record) in run.into_iter().zip(keys).zip(records.drain(..)) {
                        StoreMetrics::record(&metrics.loads, sent, 1);
                        answers.add(shard, Box::new(move |s| then(s, key, record)));
                    }
                }
                Op::Save { key, record, next_due_ms, then } => {
                    let mut run = vec![(shard, sent, key, record, next_due_ms, then)];
                    while let Some(Request::Op { op: Op::Save { .. }, .. }) = ops.peek() {
                        if let Some(Request::Op { shard, sent, op: Op::Save { key, record, next_due_ms, then } }) = ops.next() {
                            run.push((shard, sent, key, record, next_due_ms, then));
                        }
                    }
                    let writes: Vec<Write<'_>> = run
                        .iter()
                        .map(|(_, _, key, record, next_due_ms, _)| Write { key, record, next_due_ms: *next_due_ms })
                        .collect();
                    let saved = contained("save", || store.save(&writes));
                    drop(writes);
                    count_errors(saved.as_ref().err(), run.len());
                    for (shard, sent, key, record, _, then) in run {
                        StoreMetrics::record(&metrics.saves, sent, 1);
                        let saved = saved.clone();
                        answers.add(shard, Box::new(move |s| then(s, key, record, saved)));
                    }
                }
                Op::Keys { kind, then } => {
                    answers.post();
                    then(contained("listing", || store.keys(&kind)));
                }
                Op::Due { until_ms, then } => {
                    answers.post();
                    then(contained("reminder index", || store.due(until_ms)));
                }
            }
        }
        answers.post();
    }
}
