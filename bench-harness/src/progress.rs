//! What a running workload has done so far: its steps counted per shard,
//! and the phase it is in.
//!
//! Workers count their steps with [`tick`], which only bumps a counter of
//! their own thread and publishes it to their shard's slot (a cache line of
//! its own) every [`PUBLISH_EVERY`] steps, so counting costs the hot path
//! almost nothing and shards never write the same line. The counts only
//! grow; a [`Phase`] remembers where they stood when it started. The
//! monitor ([`crate::monitor`]) reads both to print progress and sample the
//! run.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam::utils::CachePadded;
use myriad::Context;

/// Steps a thread counts before it publishes them.
const PUBLISH_EVERY: u64 = 256;

/// Shards with a slot of their own; a shard beyond shares slot
/// `shard % SLOTS` (it is then counted with that shard).
pub const SLOTS: usize = 64;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Published steps of each shard since the process started.
static COUNTS: [CachePadded<AtomicU64>; SLOTS] =
    [const { CachePadded::new(AtomicU64::new(0)) }; SLOTS];

/// One more than the highest slot that has published.
static SLOTS_USED: AtomicUsize = AtomicUsize::new(0);

/// The phase running now, and the variant of the workload it belongs to.
static CURRENT: Mutex<Current> = Mutex::new(Current {
    variant: None,
    phase: None,
});

struct Current {
    variant: Option<Arc<str>>,
    phase: Option<PhaseInfo>,
}

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

/// Counts `n` steps of the current phase, done on `ctx`'s shard.
pub fn tick(ctx: &Context, n: u64) {
    UNPUBLISHED.with(|c| {
        let pending = c.get() + n;
        if pending >= PUBLISH_EVERY {
            publish(ctx.shard(), pending);
            c.set(0);
        } else {
            c.set(pending);
        }
    });
}

fn publish(shard: usize, steps: u64) {
    let slot = shard % SLOTS;
    COUNTS[slot].fetch_add(steps, Ordering::Relaxed);
    // Read first: shards only ever read this line once it is set.
    if SLOTS_USED.load(Ordering::Relaxed) <= slot {
        SLOTS_USED.fetch_max(slot + 1, Ordering::Relaxed);
    }
}

/// Steps published so far by all shards (it lags [`tick`] by less than
/// [`PUBLISH_EVERY`] steps per thread).
pub fn done() -> u64 {
    COUNTS[..SLOTS_USED.load(Ordering::Relaxed)]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
}

/// Steps published so far by each shard, in shard order (as many as the
/// highest shard that has published).
pub fn per_shard() -> Vec<u64> {
    COUNTS[..SLOTS_USED.load(Ordering::Relaxed)]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect()
}

/// A running phase as the monitor sees it.
#[derive(Debug, Clone)]
pub struct PhaseInfo {
    /// The phase's label, with the variant when there is one
    /// (`asks (same shard at 100k/s)`).
    pub label: Arc<str>,
    /// Steps the phase will take.
    pub total: u64,
    /// [`done`] when it started.
    pub base: u64,
    /// When it started.
    pub started: Instant,
}

impl PhaseInfo {
    /// Steps of this phase done by now, given [`done`].
    pub fn done(&self, all: u64) -> u64 {
        all.saturating_sub(self.base)
    }
}

/// The phase running now, if any.
pub fn current_phase() -> Option<PhaseInfo> {
    lock().phase.clone()
}

/// The variant of the workload running now, if it has several (see
/// [`Variant`]).
pub fn current_variant() -> Option<Arc<str>> {
    lock().variant.clone()
}

fn lock() -> std::sync::MutexGuard<'static, Current> {
    CURRENT.lock().unwrap_or_else(|p| p.into_inner())
}

/// The variant of a workload that runs (one result row); it ends when
/// dropped.
pub struct Variant(());

impl Variant {
    /// Marks variant `label` (`same shard at 100k/s`; `""` for a workload
    /// of one row) as running.
    pub fn start(label: &str) -> Variant {
        lock().variant = (!label.is_empty()).then(|| label.into());
        Variant(())
    }
}

impl Drop for Variant {
    fn drop(&mut self) {
        lock().variant = None;
    }
}

/// A running phase; it ends when dropped.
pub struct Phase(());

impl Phase {
    /// Starts phase `label` of `total` steps.
    pub fn start(label: &str, total: u64) -> Phase {
        let mut current = lock();
        let label = match &current.variant {
            Some(variant) => format!("{label} ({variant})").into(),
            None => label.into(),
        };
        current.phase = Some(PhaseInfo {
            label,
            total,
            base: done(),
            started: Instant::now(),
        });
        Phase(())
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        lock().phase = None;
    }
}

/// `done` of `total` in whole percent, at most 100 (published counts run
/// slightly behind and may include a few steps of the previous phase).
pub fn percent(done: u64, total: u64) -> u64 {
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

    #[test]
    fn published_steps_land_in_their_shard_slot() {
        // Slots far from the ones the workloads' tests use.
        let before = per_shard();
        publish(SLOTS - 1, 5);
        publish(2 * SLOTS - 1, 7);
        let after = per_shard();
        assert_eq!(after.len(), SLOTS);
        let was = before.get(SLOTS - 1).copied().unwrap_or(0);
        assert_eq!(after[SLOTS - 1] - was, 12, "shard 127 shares slot 63");
        assert!(done() >= 12);
    }

    #[test]
    fn a_phase_is_labelled_with_its_variant_and_counts_from_its_start() {
        let variant = Variant::start("same shard");
        let phase = Phase::start("asks", 10);
        let info = current_phase().unwrap();
        assert_eq!(&*info.label, "asks (same shard)");
        assert_eq!(info.done(info.base + 4), 4);
        assert_eq!(info.done(0), 0);
        drop(phase);
        assert!(current_phase().is_none());
        assert_eq!(current_variant().as_deref(), Some("same shard"));
        drop(variant);
        assert!(current_variant().is_none());
        let _one_row = Variant::start("");
        assert!(current_variant().is_none(), "a single row has no variant");
    }
}
