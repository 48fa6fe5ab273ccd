//! The results: what a workload measured ([`Outcome`]), the row it becomes
//! ([`Row`], also the JSON record), latency percentiles ([`Latency`]) and the
//! number formats the table and progress lines share.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};

use crate::workloads::Workload;

/// What one measured run of a workload produced, before the harness adds
/// the node's peak memory.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Workers that took part.
    pub workers: u64,
    /// Every message the workload sent through the engine, confirmations
    /// and replies included.
    pub messages: u64,
    /// How many of the workload's own unit it completed.
    pub ops: u64,
    /// That unit: "round trips", "hops", "workers"...
    pub op: &'static str,
    /// The timed phases, in order; wall time is their sum.
    pub phases: Vec<(&'static str, Duration)>,
    /// Latency percentiles, where the workload measures latency.
    pub latency: Option<Latency>,
    /// Resident bytes per worker above the empty node, where it applies.
    pub bytes_per_worker: Option<f64>,
    /// What was verified, in words ("sum 499999500000").
    pub check: String,
    /// Workload-specific figures.
    pub extra: Vec<(&'static str, f64)>,
}

/// Latency percentiles, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value seen.
    pub max: u64,
}

impl Latency {
    /// The percentiles of `h` (values in ns); `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Latency> {
        (!h.is_empty()).then(|| Latency {
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }
}

/// A histogram for latencies in nanoseconds, 1 ns to 10 minutes, three
/// significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

/// One line of the table and one JSON object of `--json`. The field names
/// are a stable interface, documented in `docs/performance.md`.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The workload's name (`spawn`, `skynet`, ...).
    pub workload: &'static str,
    /// Which variant of it ("same shard", "100000/s across shards"), or "".
    pub variant: String,
    /// Shards of the node.
    pub shards: usize,
    /// Workers that took part.
    pub workers: u64,
    /// Messages sent through the engine, confirmations and replies included.
    pub messages: u64,
    /// Wall time of the measured phases, in seconds.
    pub wall_s: f64,
    /// `messages / wall_s`.
    pub msgs_per_s: f64,
    /// Completed units of the workload's own measure.
    pub ops: u64,
    /// That unit.
    pub op: &'static str,
    /// `ops / wall_s`: the figure DESIGN.md compares.
    pub ops_per_s: f64,
    /// Latency percentiles in ns, or null.
    pub latency_ns: Option<Latency>,
    /// Peak resident memory of the process during the workload, in bytes.
    pub peak_rss_bytes: u64,
    /// Resident bytes per worker above the empty node, or null.
    pub bytes_per_worker: Option<f64>,
    /// Seconds of each timed phase, in the order they ran.
    #[serde(serialize_with = "as_map")]
    pub phases: Vec<(&'static str, f64)>,
    /// What was verified.
    pub check: String,
    /// Workload-specific figures.
    #[serde(serialize_with = "as_map")]
    pub extra: Vec<(&'static str, f64)>,
}

/// Writes pairs as a JSON object, keeping their order.
fn as_map<S: Serializer>(pairs: &[(&'static str, f64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

impl Row {
    /// The row of `outcome`, measured on a node of `shards` shards.
    pub fn new(
        workload: Workload,
        variant: String,
        shards: usize,
        outcome: Outcome,
        peak_rss_bytes: u64,
    ) -> Row {
        let wall: Duration = outcome.phases.iter().map(|(_, t)| *t).sum();
        let per_s = |n: u64| n as f64 / wall.as_secs_f64().max(f64::MIN_POSITIVE);
        Row {
            workload: workload.name(),
            variant,
            shards,
            workers: outcome.workers,
            messages: outcome.messages,
            wall_s: wall.as_secs_f64(),
            msgs_per_s: per_s(outcome.messages),
            ops: outcome.ops,
            op: outcome.op,
            ops_per_s: per_s(outcome.ops),
            latency_ns: outcome.latency,
            peak_rss_bytes,
            bytes_per_worker: outcome.bytes_per_worker,
            phases: outcome
                .phases
                .iter()
                .map(|(name, t)| (*name, t.as_secs_f64()))
                .collect(),
            check: outcome.check,
            extra: outcome.extra,
        }
    }

    /// `workload` and `variant` as one label.
    pub fn label(&self) -> String {
        if self.variant.is_empty() {
            self.workload.to_owned()
        } else {
            format!("{} {}", self.workload, self.variant)
        }
    }
}

/// `1234567.0` as `1.23M`: three significant digits and an SI suffix.
pub fn si(x: f64) -> String {
    let (value, suffix) = match x.abs() {
        a if a >= 1e9 => (x / 1e9, "G"),
        a if a >= 1e6 => (x / 1e6, "M"),
        a if a >= 1e3 => (x / 1e3, "k"),
        _ => (x, ""),
    };
    if suffix.is_empty() && value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{}{suffix}", three_digits(value))
    }
}

/// Nanoseconds in the largest unit that keeps them readable: `850 ns`,
/// `12.3 µs`, `4.56 ms`, `1.20 s`.
pub fn nanos(ns: u64) -> String {
    let ns = ns as f64;
    match ns {
        n if n >= 1e9 => format!("{} s", three_digits(n / 1e9)),
        n if n >= 1e6 => format!("{} ms", three_digits(n / 1e6)),
        n if n >= 1e3 => format!("{} µs", three_digits(n / 1e3)),
        n => format!("{n:.0} ns"),
    }
}

/// `x` with three significant digits (no more decimals than that).
fn three_digits(x: f64) -> String {
    match x.abs() {
        a if a >= 99.95 => format!("{x:.0}"),
        a if a >= 9.995 => format!("{x:.1}"),
        _ => format!("{x:.2}"),
    }
}

/// Bytes in MiB (`812 MiB`) or GiB (`1.4 GiB`).
pub fn bytes(b: u64) -> String {
    let mib = b as f64 / f64::from(1u32 << 20);
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

/// A row of the `ask` workload, for the tests of what shows rows.
#[cfg(test)]
pub fn ask_row() -> Row {
    let outcome = Outcome {
        workers: 2,
        messages: 20,
        ops: 10,
        op: "asks",
        phases: vec![("asks", Duration::from_secs(2))],
        latency: Some(Latency {
            p50: 1,
            p99: 2,
            p999: 3,
            max: 4,
        }),
        check: "10 answered".into(),
        extra: vec![("offered_per_s", 5.0)],
        ..Outcome::default()
    };
    Row::new(Workload::Ask, "saturated".into(), 2, outcome, 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(999.0), "999");
        assert_eq!(si(1234.0), "1.23k");
        assert_eq!(si(15_300_000.0), "15.3M");
        assert_eq!(si(499_999_500_000.0), "500G");
        assert_eq!(nanos(850), "850 ns");
        assert_eq!(nanos(12_345), "12.3 µs");
        assert_eq!(nanos(400_000_000), "400 ms");
        assert_eq!(nanos(9_999_000), "10.0 ms");
        assert_eq!(nanos(1_200_000_000), "1.20 s");
        assert_eq!(bytes(812 << 20), "812 MiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn rates_come_from_the_sum_of_the_phases() {
        let outcome = Outcome {
            workers: 10,
            messages: 300,
            ops: 100,
            op: "hops",
            phases: vec![
                ("first", Duration::from_millis(500)),
                ("second", Duration::from_millis(500)),
            ],
            ..Outcome::default()
        };
        let row = Row::new(Workload::Ring, "same shard".into(), 2, outcome, 1 << 20);
        assert_eq!(row.wall_s, 1.0);
        assert_eq!(row.msgs_per_s, 300.0);
        assert_eq!(row.ops_per_s, 100.0);
        assert_eq!(row.label(), "ring same shard");
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = latency_histogram();
        assert_eq!(Latency::of(&h), None);
        for v in 1..=1000 {
            h.record(v * 1000).unwrap();
        }
        let l = Latency::of(&h).unwrap();
        assert!((499_000..=501_000).contains(&l.p50), "{l:?}");
        assert!((989_000..=991_000).contains(&l.p99), "{l:?}");
        assert!(l.max >= 999_000, "{l:?}");
    }
}
