//! The time series of a workload: what a [`Source`] reads every
//! [`EVERY`] becomes one [`Sample`] of the workload's [`Series`].
//!
//! A source gives counts that only grow (steps per shard), the resident
//! memory, and the latencies recorded since its previous reading; the
//! series turns consecutive readings into rates. The harness's own source
//! ([`HarnessSource`]) reads the workloads' progress counts, `VmRSS` and the
//! latency feed; a source reading the engine's per-shard metrics would give
//! messages handled per shard and mailbox waits the same way.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::latency_feed;
use crate::memory;
use crate::progress;
use crate::report::Latency;

/// How often a workload is sampled.
pub const EVERY: Duration = Duration::from_millis(100);

/// What a source observes at one instant.
#[derive(Debug)]
pub struct Reading {
    /// Steps done by each shard since the process started (they only grow).
    pub per_shard: Vec<u64>,
    /// Resident bytes now.
    pub rss: u64,
    /// Latencies (ns) recorded since the previous reading.
    pub latency: Histogram<u64>,
}

/// Where readings come from.
pub trait Source {
    /// Reads the counters now.
    fn read(&mut self) -> Reading;
}

/// The harness's own observations: the workloads' progress counts
/// ([`progress::tick`]), `VmRSS`, and the latencies they feed
/// ([`latency_feed`]).
pub struct HarnessSource;

impl Source for HarnessSource {
    fn read(&mut self) -> Reading {
        Reading {
            per_shard: progress::per_shard(),
            rss: memory::resident(),
            latency: latency_feed::take(),
        }
    }
}

/// One point of a workload's time series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the workload started.
    pub t: f64,
    /// Steps per second of each shard over the interval before `t`.
    pub per_shard: Vec<f64>,
    /// Resident bytes at `t`.
    pub rss: u64,
    /// Latency percentiles of the interval before `t`, if any was recorded.
    pub latency: Option<Latency>,
    /// The phase running at `t`.
    pub phase: Option<Arc<str>>,
}

impl Sample {
    /// Steps per second of all shards.
    pub fn total(&self) -> f64 {
        self.per_shard.iter().sum()
    }
}

/// A workload's samples, and the distribution of its latencies per
/// variant.
#[derive(Debug)]
pub struct Series {
    /// The workload's name.
    pub workload: &'static str,
    /// The samples, in time order.
    pub samples: Vec<Sample>,
    /// All latencies of each variant (`"ask same shard at 100k/s"`), in
    /// the order the variants ran.
    pub distributions: Vec<(String, Histogram<u64>)>,
    /// The previous reading's time and counts.
    last: Option<(Duration, Vec<u64>)>,
}

impl Series {
    /// An empty series of `workload`.
    pub fn new(workload: &'static str) -> Series {
        Series {
            workload,
            samples: Vec::new(),
            distributions: Vec::new(),
            last: None,
        }
    }

    /// Adds `reading`, taken `t` after the workload started while `phase`
    /// of `variant` ran. The first reading only sets where the counts
    /// start: its rates are 0 and its latencies are left out, as they
    /// belong to no interval of this workload.
    pub fn push(
        &mut self,
        t: Duration,
        reading: Reading,
        phase: Option<Arc<str>>,
        variant: Option<&str>,
    ) {
        let (per_shard, latency) = match &self.last {
            None => (vec![0.0; reading.per_shard.len()], None),
            Some((before, counts)) => {
                let secs = t.saturating_sub(*before).as_secs_f64();
                let rates = reading
                    .per_shard
                    .iter()
                    .enumerate()
                    .map(|(i, &now)| {
                        let was = counts.get(i).copied().unwrap_or(0);
                        rate(now.saturating_sub(was), secs)
                    })
                    .collect();
                self.add_to_distribution(variant, &reading.latency);
                (rates, Latency::of(&reading.latency))
            }
        };
        self.samples.push(Sample {
            t: t.as_secs_f64(),
            per_shard,
            rss: reading.rss,
            latency,
            phase,
        });
        self.last = Some((t, reading.per_shard));
    }

    /// Adds `latency` to the distribution of `variant`; between variants
    /// (`None`), to the latest one, whose last latencies arrive after it
    /// ended.
    fn add_to_distribution(&mut self, variant: Option<&str>, latency: &Histogram<u64>) {
        if latency.is_empty() {
            return;
        }
        let label = match (variant, self.distributions.last()) {
            (Some(v), _) => format!("{} {v}", self.workload),
            (None, Some((latest, _))) => latest.clone(),
            (None, None) => self.workload.to_owned(),
        };
        let at = match self.distributions.iter().position(|(l, _)| *l == label) {
            Some(at) => at,
            None => {
                let empty = latency_feed::sample_histogram();
                self.distributions.push((label, empty));
                self.distributions.len() - 1
            }
        };
        self.distributions[at]
            .1
            .add(latency)
            .expect("sample histograms share their bounds");
    }

    /// Shards seen in any sample.
    pub fn shards(&self) -> usize {
        self.samples
            .iter()
            .map(|s| s.per_shard.len())
            .max()
            .unwrap_or(0)
    }

    /// Whether any sample has latencies.
    pub fn has_latency(&self) -> bool {
        self.samples.iter().any(|s| s.latency.is_some())
    }
}

/// `steps` in `secs` seconds, per second (0 over no time).
fn rate(steps: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        steps as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(per_shard: &[u64], rss: u64, latencies: &[u64]) -> Reading {
        let mut latency = latency_feed::sample_histogram();
        for &ns in latencies {
            latency.record(ns).unwrap();
        }
        Reading {
            per_shard: per_shard.to_vec(),
            rss,
            latency,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rates_come_from_consecutive_readings_per_shard() {
        let mut series = Series::new("counting");
        series.push(ms(0), reading(&[1_000, 5_000], 10, &[]), None, None);
        series.push(ms(100), reading(&[2_000, 5_500], 20, &[]), None, None);
        series.push(ms(300), reading(&[2_000, 5_500, 400], 30, &[]), None, None);
        let s = &series.samples;
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].per_shard, [0.0, 0.0], "the first only sets the start");
        assert_eq!(s[1].per_shard, [10_000.0, 5_000.0]);
        assert_eq!(s[1].total(), 15_000.0);
        assert_eq!(
            s[2].per_shard,
            [0.0, 0.0, 2_000.0],
            "a shard that joins late"
        );
        assert_eq!((s[1].t, s[2].rss), (0.1, 30));
        assert_eq!(series.shards(), 3);
    }

    #[test]
    fn counts_that_go_back_and_readings_at_one_instant_give_zero() {
        let mut series = Series::new("spawn");
        series.push(ms(0), reading(&[500], 0, &[]), None, None);
        series.push(ms(100), reading(&[400], 0, &[]), None, None);
        series.push(ms(100), reading(&[900], 0, &[]), None, None);
        assert_eq!(series.samples[1].per_shard, [0.0]);
        assert_eq!(series.samples[2].per_shard, [0.0]);
    }

    #[test]
    fn latencies_are_per_interval_and_add_up_per_variant() {
        let mut series = Series::new("ask");
        // Left over from before this workload: not counted.
        series.push(ms(0), reading(&[0], 0, &[9_000_000]), None, None);
        let asks: Option<Arc<str>> = Some("asks (same shard)".into());
        series.push(
            ms(100),
            reading(&[10], 0, &[1_000, 2_000]),
            asks.clone(),
            Some("same shard"),
        );
        series.push(
            ms(200),
            reading(&[20], 0, &[]),
            asks.clone(),
            Some("same shard"),
        );
        series.push(ms(300), reading(&[30], 0, &[50_000]), None, Some("across"));
        series.push(ms(400), reading(&[30], 0, &[60_000]), None, None);
        let s = &series.samples;
        assert_eq!(s[0].latency, None);
        let first = s[1].latency.unwrap();
        assert!((990..=1_010).contains(&first.p50), "{first:?}");
        assert!((1_990..=2_010).contains(&first.max), "{first:?}");
        assert_eq!(s[1].phase, asks);
        assert_eq!(s[2].latency, None, "nothing recorded in that interval");
        assert!(series.has_latency());
        let d = &series.distributions;
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].0.as_str(), d[0].1.len()), ("ask same shard", 2));
        assert_eq!(
            (d[1].0.as_str(), d[1].1.len()),
            ("ask across", 2),
            "late latencies go to the variant that just ended"
        );
    }

    #[test]
    fn a_workload_without_latency_has_no_distribution() {
        let mut series = Series::new("ring");
        series.push(ms(0), reading(&[0], 0, &[]), None, None);
        series.push(ms(100), reading(&[10], 0, &[]), None, None);
        assert!(!series.has_latency());
        assert!(series.distributions.is_empty());
    }
}
