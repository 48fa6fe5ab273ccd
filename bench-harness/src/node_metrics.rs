//! The engine's own metrics of the nodes a workload runs, as the monitor
//! samples them: the harness registers each node it starts ([`watch`]), and
//! [`EngineSource`] reads every registered node's
//! [`NodeHandle::metrics`](myriad::NodeHandle::metrics) and turns
//! consecutive snapshots into what happened in between: messages handled
//! per shard, and the sampled mailbox waits of all shards as bucket counts.
//!
//! A reading goes through each shard's control path, so a shard that does
//! not come back to its loop (a workload's `main` spawning a million
//! workers in one handler) delays it, as it would a Prometheus scrape.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use myriad::metrics::Histogram;
use myriad::NodeHandle;

/// The nodes being watched, each with a number of its own.
static NODES: Mutex<Vec<(u64, NodeHandle)>> = Mutex::new(Vec::new());

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A node registered for the monitor; unregistered when dropped.
#[derive(Debug)]
pub struct Watched(u64);

/// Registers `node`, so that the monitor reads its metrics until the
/// returned guard is dropped.
pub fn watch(node: &NodeHandle) -> Watched {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    nodes().push((id, node.clone()));
    Watched(id)
}

impl Drop for Watched {
    fn drop(&mut self) {
        nodes().retain(|(id, _)| *id != self.0);
    }
}

fn nodes() -> std::sync::MutexGuard<'static, Vec<(u64, NodeHandle)>> {
    NODES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts per bucket of a time histogram (not cumulative), the last entry
/// counting the samples above the highest bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    /// Upper bounds (inclusive), ascending, in nanoseconds.
    pub bounds: Vec<u64>,
    /// Samples in each bucket; one more entry than `bounds`.
    pub counts: Vec<u64>,
}

impl Buckets {
    /// The buckets of an engine histogram (whose buckets are cumulative).
    pub fn of(h: &Histogram) -> Buckets {
        let mut below = 0;
        let mut counts: Vec<u64> = h
            .buckets
            .iter()
            .map(|b| {
                let n = b.count.saturating_sub(below);
                below = b.count;
                n
            })
            .collect();
        counts.push(h.count.saturating_sub(below));
        Buckets {
            bounds: h.buckets.iter().map(|b| b.le).collect(),
            counts,
        }
    }

    /// Samples in all buckets.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// What `self` holds beyond `earlier` (the same histogram read before).
    fn since(&self, earlier: &Buckets) -> Buckets {
        if earlier.bounds != self.bounds {
            return self.clone();
        }
        Buckets {
            bounds: self.bounds.clone(),
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(now, was)| now.saturating_sub(*was))
                .collect(),
        }
    }

    /// Adds `other`'s counts (buckets of other bounds are left out).
    pub fn add(&mut self, other: &Buckets) {
        if self.bounds.is_empty() && self.counts.is_empty() {
            *self = other.clone();
        } else if self.bounds == other.bounds {
            for (n, m) in self.counts.iter_mut().zip(&other.counts) {
                *n += m;
            }
        }
    }

    /// The `q` quantile (0..=1), interpolated linearly within its bucket as
    /// Prometheus's `histogram_quantile` does: a bucket's samples are taken
    /// as spread evenly between its bounds. In the bucket above the highest
    /// bound it is that bound. `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(&upper) = self.bounds.get(i) else {
                    return self.bounds.last().copied();
                };
                let lower = if i == 0 { 0 } else { self.bounds[i - 1] };
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lower + ((upper - lower) as f64 * within).round() as u64);
            }
            below += n;
        }
        self.bounds.last().copied()
    }
}

/// What the running nodes' metrics say about one interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineInterval {
    /// Messages handled in the interval by each shard of the running nodes,
    /// labelled `shard 0`, or `a shard 0` when several nodes run.
    pub handled: Vec<(String, u64)>,
    /// Mailbox waits sampled in the interval on all those shards.
    pub waits: Buckets,
}

impl EngineInterval {
    /// Adds a later interval to this one: counts of the same label add up.
    pub fn add(&mut self, later: &EngineInterval) {
        for (label, n) in &later.handled {
            match self.handled.iter_mut().find(|(l, _)| l == label) {
                Some((_, m)) => *m += n,
                None => self.handled.push((label.clone(), *n)),
            }
        }
        self.waits.add(&later.waits);
    }
}

/// Reads the registered nodes' metrics; each reading tells what happened
/// since the previous one.
#[derive(Debug, Default)]
pub struct EngineSource {
    /// The last counts read, by node and shard: messages handled and the
    /// mailbox waits' buckets.
    last: HashMap<(u64, usize), (u64, Buckets)>,
}

impl EngineSource {
    /// What the running nodes did since the previous reading; `None` when
    /// no node is registered (or none answers: it is stopping).
    pub fn read(&mut self) -> Option<EngineInterval> {
        let running: Vec<(u64, NodeHandle)> = nodes().clone();
        let several = running.len() > 1;
        let mut interval = EngineInterval::default();
        let mut answered = false;
        let mut seen = Vec::new();
        for (id, node) in running {
            let Ok(metrics) = node.metrics() else {
                continue;
            };
            answered = true;
            for shard in &metrics.shards {
                let key = (id, shard.shard);
                let waits = Buckets::of(&shard.mailbox_wait);
                let (handled, was) = match self.last.get(&key) {
                    Some((n, was)) => (shard.handled.saturating_sub(*n), waits.since(was)),
                    None => (shard.handled, waits.clone()),
                };
                let label = if several {
                    format!("{} shard {}", metrics.node, shard.shard)
                } else {
                    format!("shard {}", shard.shard)
                };
                interval.handled.push((label, handled));
                interval.waits.add(&was);
                self.last.insert(key, (shard.handled, waits));
                seen.push(key);
            }
        }
        // Nodes that went away are not read again.
        self.last.retain(|key, _| seen.contains(key));
        answered.then_some(interval)
    }
}

#[cfg(test)]
mod tests {
    use myriad::metrics::Bucket;

    use super::*;

    fn histogram(bounds: &[u64], per_bucket: &[u64]) -> Histogram {
        let mut below = 0;
        let buckets = bounds
            .iter()
            .zip(per_bucket)
            .map(|(&le, &n)| {
                below += n;
                Bucket { le, count: below }
            })
            .collect();
        Histogram {
            count: per_bucket.iter().sum(),
            buckets,
            ..Histogram::default()
        }
    }

    #[test]
    fn cumulative_buckets_become_counts_with_the_overflow_last() {
        let b = Buckets::of(&histogram(&[1_000, 2_500, 5_000], &[3, 0, 2, 4]));
        assert_eq!(b.counts, [3, 0, 2, 4]);
        assert_eq!(b.total(), 9);
        let empty = Buckets::of(&Histogram::default());
        assert_eq!((empty.total(), empty.quantile(0.99)), (0, None));
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let bounds = [1_000, 2_000, 4_000];
        let b = Buckets::of(&histogram(&bounds, &[50, 0, 50, 0]));
        assert_eq!(
            b.quantile(0.5),
            Some(1_000),
            "the 50th of 100 ends the first bucket"
        );
        assert_eq!(b.quantile(0.25), Some(500));
        assert_eq!(b.quantile(0.75), Some(3_000), "halfway through 2 µs..4 µs");
        assert_eq!(b.quantile(1.0), Some(4_000));
        let over = Buckets::of(&histogram(&bounds, &[1, 0, 0, 99]));
        assert_eq!(
            over.quantile(0.99),
            Some(4_000),
            "above the bounds: the highest"
        );
    }

    #[test]
    fn an_interval_is_what_grew_and_intervals_add_up_by_label() {
        let bounds = [1_000, 2_000];
        let before = Buckets::of(&histogram(&bounds, &[5, 1, 0]));
        let after = Buckets::of(&histogram(&bounds, &[7, 1, 3]));
        assert_eq!(after.since(&before).counts, [2, 0, 3]);
        let mut sum = EngineInterval {
            handled: vec![("shard 0".into(), 10)],
            waits: after.since(&before),
        };
        sum.add(&EngineInterval {
            handled: vec![("shard 0".into(), 5), ("shard 1".into(), 7)],
            waits: before.clone(),
        });
        assert_eq!(sum.handled, [("shard 0".into(), 15), ("shard 1".into(), 7)]);
        assert_eq!(sum.waits.counts, [7, 1, 3]);
        let mut empty = EngineInterval::default();
        empty.add(&sum);
        assert_eq!(empty, sum);
    }
}
