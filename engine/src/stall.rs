//! Stall detection: a shard that does not come back to its loop within a
//! threshold (a handler that made a blocking call, a long loop) is named.
//!
//! A blocked shard cannot notice its own stall, so a watchdog thread per
//! node looks. Each shard publishes, in a [`StallWatch`] of its own (one
//! cache line, written only by the shard), a beat that moves whenever the
//! shard passes its loop or enters or leaves a worker's poll, which worker
//! it is in, and whether it is parked. The message path pays two plain
//! stores per run, never a read-modify-write.
//!
//! The watchdog wakes every half threshold. A shard whose beat has not
//! moved for the threshold, and that is not parked, is stalled: the
//! watchdog counts it, logs it at once (`warn`, with the worker's
//! reference: a worker that never returns is still reported), and when
//! the beat moves again asks the shard itself to log the worker's name and
//! how long it held the shard (to within half a threshold).
//!
//! Not seen: a task other than the scheduler (the transport, `main`) that
//! blocks while the scheduler is parked.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::utils::CachePadded;

use crate::WorkerRef;

/// No worker is being polled.
const NO_WORKER: u64 = u64::MAX;

/// What one shard publishes for the watchdog.
#[derive(Debug)]
pub(crate) struct StallWatch(CachePadded<Published>);

#[derive(Debug)]
struct Published {
    beat: AtomicU64,
    worker: AtomicU64,
    parked: AtomicBool,
    /// Stalls seen, written by the watchdog only.
    stalls: AtomicU64,
}

impl Default for StallWatch {
    fn default() -> Self {
        StallWatch(CachePadded::new(Published {
            beat: AtomicU64::new(0),
            worker: AtomicU64::new(NO_WORKER),
            parked: AtomicBool::new(false),
            stalls: AtomicU64::new(0),
        }))
    }
}

impl StallWatch {
    fn step(&self) {
        // The shard is the only writer: a load and a store, no RMW.
        let beat = &self.0.beat;
        beat.store(beat.load(Relaxed).wrapping_add(1), Relaxed);
    }

    /// The shard passes its loop.
    pub(crate) fn beat(&self) {
        self.step();
    }

    /// The shard starts polling worker `who`'s run.
    pub(crate) fn enter(&self, who: WorkerRef) {
        self.step();
        self.0.worker.store(who.to_bits(), Relaxed);
    }

    /// The poll started by [`StallWatch::enter`] returned.
    pub(crate) fn leave(&self) {
        self.step();
        self.0.worker.store(NO_WORKER, Relaxed);
    }

    /// The shard's scheduler sleeps (`true`) or wakes up.
    pub(crate) fn parked(&self, parked: bool) {
        self.0.parked.store(parked, Relaxed);
        self.step();
    }

    /// Stalls counted so far.
    pub(crate) fn stalls(&self) -> u64 {
        self.0.stalls.load(Relaxed)
    }
}

/// A stall that ended: the worker polled when it was seen (if any), and
/// about how long the shard was away.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stall {
    pub(crate) shard: usize,
    pub(crate) worker: Option<WorkerRef>,
    pub(crate) held: Duration,
}

/// What the watchdog remembers of one shard.
struct Seen {
    beat: u64,
    since: Instant,
    /// The stall under way, once counted.
    stalled: Option<Option<WorkerRef>>,
}

/// Watches `watches` every half `threshold` until `stop`'s sender is
/// dropped; `ended` is told each stall that ended.
pub(crate) fn watch(
    watches: Vec<Arc<StallWatch>>,
    threshold: Duration,
    stop: flume::Receiver<()>,
    ended: impl Fn(Stall),
) {
    let interval = (threshold / 2).max(Duration::from_micros(100));
    let now = Instant::now();
    let mut seen: Vec<Seen> = watches
        .iter()
        .map(|w| Seen {
            beat: w.0.beat.load(Relaxed),
            since: now,
            stalled: None,
        })
        .collect();
    while let Err(flume::RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
        let now = Instant::now();
        for (shard, (watch, seen)) in watches.iter().zip(&mut seen).enumerate() {
            let beat = watch.0.beat.load(Relaxed);
            if beat != seen.beat || watch.0.parked.load(Relaxed) {
                if let Some(worker) = seen.stalled.take() {
                    let held = now.duration_since(seen.since);
                    ended(Stall { shard, worker, held });
                }
                seen.beat = beat;
                seen.since = now;
                continue;
            }
            let away = now.duration_since(seen.since);
            if seen.stalled.is_none() && away >= threshold {
                let bits = watch.0.worker.load(Relaxed);
                let worker = (bits != NO_WORKER).then(|| WorkerRef::from_bits(bits, shard));
                watch.0.stalls.fetch_add(1, Relaxed);
                seen.stalled = Some(worker);
                let who = worker.map_or_else(|| "no worker (another task)".to_owned(), |w| w.to_string());
                tracing::warn!(
                    shard,
                    worker = %who,
                    "shard {shard} has not come back to its loop for {away:?}: a blocking call or a long loop in {who}?"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_that_stops_is_a_stall_until_it_moves_again() {
        let published = Arc::new(StallWatch::default());
        let who = WorkerRef {
            index: 5,
            generation: 2,
            shard: 0,
            node: 0,
        };
        published.enter(who);
        let (stop, stopped) = flume::bounded(1);
        let (tell, told) = flume::unbounded();
        let watchdog = {
            let watches = vec![published.clone()];
            std::thread::spawn(move || {
                watch(watches, Duration::from_millis(2), stopped, |s| {
                    tell.send(s).unwrap()
                })
            })
        };
        // The shard is "blocked" in `who` until the watchdog counts it.
        while published.stalls() == 0 {
            std::thread::yield_now();
        }
        published.leave();
        let stall = told.recv().unwrap();
        assert_eq!((stall.shard, stall.worker), (0, Some(who)));
        assert!(stall.held >= Duration::from_millis(2), "{stall:?}");
        drop(stop);
        watchdog.join().unwrap();
        assert_eq!(published.stalls(), 1);
        assert!(told.try_recv().is_err());
    }
}
