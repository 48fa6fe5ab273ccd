//! Progress lines on stderr for phases that last longer than a second:
//! phase, percent done and rate.
//!
//! Workers count their steps with [`tick`], which only bumps a counter of
//! their own thread and publishes it to a shared atomic every
//! [`PUBLISH_EVERY`] steps, so counting costs the hot path almost nothing.
//! A [`Phase`] owns a reporter thread that wakes once a second and prints.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::report::si;

/// Steps a thread counts before it publishes them.
const PUBLISH_EVERY: u64 = 4096;

/// How often a running phase prints a line.
const INTERVAL: Duration = Duration::from_secs(1);

static ENABLED: AtomicBool = AtomicBool::new(true);
static DONE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static UNPUBLISHED: Cell<u64> = const { Cell::new(0) };
}

/// Turns progress lines on or off (`--quiet`).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether progress lines are on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Counts `n` steps of the current phase.
pub fn tick(n: u64) {
    UNPUBLISHED.with(|c| {
        let pending = c.get() + n;
        if pending >= PUBLISH_EVERY {
            DONE.fetch_add(pending, Ordering::Relaxed);
            c.set(0);
        } else {
            c.set(pending);
        }
    });
}

/// Steps of the current phase published so far (it lags [`tick`] by up to
/// [`PUBLISH_EVERY`] steps per thread).
pub fn done() -> u64 {
    DONE.load(Ordering::Relaxed)
}

/// A running phase; its reporter stops when it is dropped.
pub struct Phase {
    stop: Option<mpsc::Sender<()>>,
    reporter: Option<JoinHandle<()>>,
}

impl Phase {
    /// Starts phase `label` of `total` steps.
    pub fn start(label: &str, total: u64) -> Phase {
        DONE.store(0, Ordering::Relaxed);
        if !enabled() {
            return Phase {
                stop: None,
                reporter: None,
            };
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let label = label.to_owned();
        let reporter = std::thread::spawn(move || {
            let start = Instant::now();
            let mut last = (start, 0);
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                let now = Instant::now();
                let done = done();
                let rate = (done - last.1.min(done)) as f64 / (now - last.0).as_secs_f64();
                eprintln!(
                    "  {label}: {:>3}% ({}/{}) {}/s, {:.0} s",
                    percent(done, total),
                    si(done as f64),
                    si(total as f64),
                    si(rate),
                    (now - start).as_secs_f64()
                );
                last = (now, done);
            }
        });
        Phase {
            stop: Some(stop),
            reporter: Some(reporter),
        }
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(reporter) = self.reporter.take() {
            // The reporter only prints; a panic there must not end the run.
            let _ = reporter.join();
        }
    }
}

/// `done` of `total` in whole percent, at most 100 (published counts run
/// slightly behind and may include a few steps of the previous phase).
fn percent(done: u64, total: u64) -> u64 {
    (done.saturating_mul(100) / total.max(1)).min(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_clamped() {
        assert_eq!(percent(0, 0), 0);
        assert_eq!(percent(50, 200), 25);
        assert_eq!(percent(300, 200), 100);
    }
}
