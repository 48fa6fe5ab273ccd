//! Latencies while a workload runs, for the monitor's samples: each thread
//! records into a recorder of its own (hdrhistogram's `sync` module: no lock,
//! no shared write per record), which hands over what it holds at its next
//! record after the monitor asked for it with [`take`]. So a sample covers
//! the latencies recorded since the previous one, give or take each
//! thread's last few records, and nothing is recorded unless a monitor
//! samples ([`set_on`]).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::sync::{Recorder, SyncHistogram};
use hdrhistogram::Histogram;

static ON: AtomicBool = AtomicBool::new(false);

/// The process's one feed: what the recorders handed over, and a recorder
/// that threads copy on their first record.
static FEED: Mutex<Option<Feed>> = Mutex::new(None);

struct Feed {
    merged: SyncHistogram<u64>,
    template: Recorder<u64>,
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder<u64>>> = const { RefCell::new(None) };
}

/// The histogram of a sample's latencies, in nanoseconds: 1 ns to 10
/// minutes, two significant digits (34 KiB, so that handing one over costs
/// a shard a few microseconds).
pub fn sample_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 2).expect("valid histogram bounds")
}

fn feed() -> MutexGuard<'static, Option<Feed>> {
    let mut feed = FEED.lock().unwrap_or_else(|p| p.into_inner());
    if feed.is_none() {
        let merged = SyncHistogram::from(sample_histogram());
        let template = merged.recorder();
        *feed = Some(Feed { merged, template });
    }
    feed
}

/// Starts or stops recording into the feed.
pub fn set_on(on: bool) {
    if on {
        drop(feed());
    }
    ON.store(on, Ordering::Relaxed);
}

/// Records `ns` into the workload's own histogram `h` and, while a monitor
/// samples, into the feed.
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns);
    feed_in(ns);
}

/// Records `ns` into the feed only, while a monitor samples (for a
/// workload that keeps its latencies elsewhere).
pub fn feed_in(ns: u64) {
    if ON.load(Ordering::Relaxed) {
        RECORDER.with(|slot| {
            let mut slot = slot.borrow_mut();
            let recorder = slot.get_or_insert_with(|| {
                feed()
                    .as_ref()
                    .map(|f| f.template.clone())
                    .expect("the feed exists once it is on")
            });
            recorder.saturating_record(ns);
        });
    }
}

/// The latencies handed over since the previous call (empty when nothing
/// was recorded); waits for no thread.
pub fn take() -> Histogram<u64> {
    let mut feed = feed();
    let Some(feed) = feed.as_mut() else {
        return sample_histogram();
    };
    feed.merged.refresh_timeout(Duration::ZERO);
    let taken = (*feed.merged).clone();
    feed.merged.reset();
    taken
}

/// Serialises the tests that turn the feed on and off.
#[cfg(test)]
pub fn test_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_thread_recorded_is_taken_once() {
        let _feed = test_lock();
        set_on(true);
        take();
        let mut own = sample_histogram();
        std::thread::spawn(move || {
            for ns in [1_000, 2_000, 3_000] {
                record(&mut own, ns);
            }
            assert_eq!(own.len(), 3, "the workload's histogram has them all");
        })
        .join()
        .unwrap();
        // The thread ended: its recorder handed everything over.
        let taken = take();
        assert_eq!(taken.len(), 3);
        assert_eq!(taken.max(), taken.highest_equivalent(3_000));
        assert!(take().is_empty(), "taken once");
    }

    #[test]
    fn nothing_is_fed_while_off() {
        let _feed = test_lock();
        let mut own = sample_histogram();
        take();
        set_on(false);
        std::thread::spawn(move || record(&mut own, 5))
            .join()
            .unwrap();
        set_on(true);
        assert!(take().is_empty());
    }
}
