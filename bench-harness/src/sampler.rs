//! The time series of a workload: what a [`Source`] reads every
//! [`EVERY`] becomes one [`Sample`] of the workload's [`Series`].
//!
//! A source gives counts that only grow (steps per shard), the resident
//! memory, the latencies recorded since its previous reading and what the
//! engine's metrics of the running nodes say about that interval (messages
//! handled per shard, sampled mailbox waits); the series turns consecutive
//! readings into rates. The harness's own source ([`HarnessSource`]) reads
//! the workloads' progress counts, `VmRSS`, the latency feed and the
//! nodes' metrics ([`node_metrics`]).

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::latency_feed;
use crate::memory;
use crate::node_metrics::{EngineInterval, EngineSource};
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
    /// What the running nodes' metrics say about the interval since the
    /// previous reading, if they were read.
    pub engine: Option<EngineInterval>,
}

/// Where readings come from.
pub trait Source {
    /// Reads the counters now.
    fn read(&mut self) -> Reading;
}

/// The harness's own observations: the workloads' progress counts
/// ([`progress::tick`]), `VmRSS`, the latencies they feed
/// ([`latency_feed`]), and, when `engine` is there, the running nodes'
/// metrics.
pub struct HarnessSource {
    /// Reads the nodes' metrics (`None`: they are not read).
    pub engine: Option<EngineSource>,
}

impl Source for HarnessSource {
    fn read(&mut self) -> Reading {
        Reading {
            per_shard: progress::per_shard(),
            rss: memory::resident(),
            latency: latency_feed::take(),
            engine: self.engine.as_mut().and_then(EngineSource::read),
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
    /// Messages handled per second by each shard of the running nodes over
    /// the interval before `t`, from their metrics (empty if not read).
    pub messages: Vec<(String, f64)>,
    /// Mailbox waits of the interval before `t`, from the nodes' sampled
    /// histograms, if any was sampled.
    pub mailbox_wait: Option<Waits>,
    /// The phase running at `t`.
    pub phase: Option<Arc<str>>,
}

impl Sample {
    /// Steps per second of all shards.
    pub fn total(&self) -> f64 {
        self.per_shard.iter().sum()
    }
}

/// Percentiles of the mailbox waits of an interval (ns), read from the
/// engine's buckets ([`crate::node_metrics::Buckets::quantile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
}

impl Waits {
    /// The percentiles of `engine`'s waits; `None` when none was sampled.
    pub fn of(engine: &EngineInterval) -> Option<Waits> {
        Some(Waits {
            p50: engine.waits.quantile(0.5)?,
            p99: engine.waits.quantile(0.99)?,
        })
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
        let (per_shard, latency, messages, mailbox_wait) = match &self.last {
            None => (vec![0.0; reading.per_shard.len()], None, Vec::new(), None),
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
                let engine = reading.engine.as_ref();
                let messages = engine.map_or_else(Vec::new, |e| {
                    e.handled
                        .iter()
                        .map(|(label, n)| (label.clone(), rate(*n, secs)))
                        .collect()
                });
                (
                    rates,
                    Latency::of(&reading.latency),
                    messages,
                    engine.and_then(Waits::of),
                )
            }
        };
        self.samples.push(Sample {
            t: t.as_secs_f64(),
            per_shard,
            rss: reading.rss,
            latency,
            messages,
            mailbox_wait,
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

    /// The engine's shards seen in any sample, by label, in the order they
    /// first appear.
    pub fn engine_shards(&self) -> Vec<&str> {
        let mut labels: Vec<&str> = Vec::new();
        for (label, _) in self.samples.iter().flat_map(|s| &s.messages) {
            if !labels.contains(&label.as_str()) {
                labels.push(label);
            }
        }
        labels
    }

    /// Whether any sample has mailbox waits.
    pub fn has_mailbox_wait(&self) -> bool {
        self.samples.iter().any(|s| s.mailbox_wait.is_some())
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
            engine: None,
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
    fn the_engine_interval_becomes_messages_per_second_and_wait_percentiles() {
        use crate::node_metrics::Buckets;
        let engine = |handled: &[(&str, u64)], waits: &[u64]| EngineInterval {
            handled: handled.iter().map(|(l, n)| (l.to_string(), *n)).collect(),
            waits: Buckets {
                bounds: vec![1_000, 2_000],
                counts: waits.to_vec(),
            },
        };
        let mut series = Series::new("pingpong");
        let mut first = reading(&[0], 0, &[]);
        first.engine = Some(engine(&[("shard 0", 500)], &[1, 0, 0]));
        series.push(ms(0), first, None, None);
        let mut second = reading(&[10], 0, &[]);
        second.engine = Some(engine(
            &[("shard 0", 2_000), ("shard 1", 100)],
            &[0, 100, 0],
        ));
        series.push(ms(100), second, None, None);
        series.push(ms(200), reading(&[20], 0, &[]), None, None);
        let s = &series.samples;
        assert!(
            s[0].messages.is_empty() && s[0].mailbox_wait.is_none(),
            "only the start"
        );
        assert_eq!(
            s[1].messages,
            [("shard 0".into(), 20_000.0), ("shard 1".into(), 1_000.0)]
        );
        assert_eq!(
            s[1].mailbox_wait,
            Some(Waits {
                p50: 1_500,
                p99: 1_990
            })
        );
        assert!(s[2].messages.is_empty(), "no node read");
        assert_eq!(series.engine_shards(), ["shard 0", "shard 1"]);
        assert!(series.has_mailbox_wait());
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
