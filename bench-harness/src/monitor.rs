//! The monitor of a running workload: a thread that reads a
//! [`Source`] every [`sampler::EVERY`], keeps the samples for `--report`,
//! and once a second prints a line on stderr: the phase, percent done and
//! rate, and with `--live` what the running nodes' metrics say of that
//! second (messages handled per second by each shard, the mailbox wait
//! p99), the workload's latency p99 if it measures one, and the resident
//! memory.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::latency_feed;
use crate::node_metrics::{EngineInterval, EngineSource};
use crate::progress::{self, PhaseInfo};
use crate::report::{bytes, nanos, si};
use crate::sampler::{self, Reading, Series, Source};

/// How often a line is printed.
const PRINT_EVERY: Duration = Duration::from_secs(1);

/// What the monitor does.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Print progress lines (off with `--quiet`).
    pub progress: bool,
    /// Print the live view: per-shard rates, latency p99, memory.
    pub live: bool,
    /// Keep the samples (for `--report`).
    pub keep: bool,
}

impl Options {
    /// Whether the monitor needs the latency feed and the nodes' metrics.
    fn feeds(self) -> bool {
        self.keep || (self.progress && self.live)
    }
}

/// What a running monitor is asked.
enum Request {
    /// Take a sample now, then answer.
    Sample(mpsc::Sender<()>),
}

/// Where the running monitor takes requests.
static REQUESTS: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);

/// Has the running monitor, if any, take a sample now and waits until it
/// has. The harness calls it as a variant's node has stopped: its threads
/// have handed over all their latencies, so they go to that variant.
pub fn sample_now() {
    let requests = REQUESTS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(requests) = requests else {
        return;
    };
    let (done, sampled) = mpsc::channel();
    if requests.send(Request::Sample(done)).is_ok() {
        // Answered once sampled, or closed if the monitor ended.
        let _ = sampled.recv();
    }
}

/// A running monitor; [`Monitor::stop`] ends it.
pub struct Monitor {
    thread: JoinHandle<Series>,
    workload: &'static str,
}

impl Monitor {
    /// Starts monitoring `workload` with the harness's own source.
    pub fn start(workload: &'static str, options: Options) -> Monitor {
        latency_feed::set_on(options.feeds());
        let (requests, received) = mpsc::channel();
        *REQUESTS.lock().unwrap_or_else(|p| p.into_inner()) = Some(requests);
        let thread = std::thread::Builder::new()
            .name("bench-monitor".into())
            .spawn(move || {
                let source = sampler::HarnessSource {
                    engine: options.feeds().then(EngineSource::default),
                };
                watch(workload, options, source, &received)
            })
            .expect("a thread for the monitor");
        Monitor { thread, workload }
    }

    /// Takes a last sample and returns the series (empty unless
    /// [`Options::keep`]).
    pub fn stop(self) -> Series {
        REQUESTS.lock().unwrap_or_else(|p| p.into_inner()).take();
        let series = self.thread.join();
        latency_feed::set_on(false);
        // The monitor only reads and prints; its failure must not end the run.
        series.unwrap_or_else(|_| Series::new(self.workload))
    }
}

/// Samples `source` every [`sampler::EVERY`] and when asked, until
/// `requests` is closed.
fn watch(
    workload: &'static str,
    options: Options,
    mut source: impl Source,
    requests: &mpsc::Receiver<Request>,
) -> Series {
    let start = Instant::now();
    let mut series = Series::new(workload);
    let mut printer = Printer::new(workload, start);
    let mut observe = |series: &mut Series, printer: &mut Printer, may_print: bool| {
        let reading = source.read();
        let now = Instant::now();
        let phase = progress::current_phase();
        let variant = progress::current_variant();
        if options.progress && may_print {
            if let Some(line) = printer.next_line(now, &reading, phase.as_ref(), options.live) {
                eprintln!("{line}");
            }
        } else {
            printer.absorb(&reading);
        }
        if options.keep {
            let label = phase.map(|p| p.label);
            series.push(now - start, reading, label, variant.as_deref());
        }
    };
    for ticks in 1.. {
        observe(&mut series, &mut printer, true);
        let next = start + sampler::EVERY * ticks;
        loop {
            match requests.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Err(RecvTimeoutError::Timeout) => break,
                Ok(Request::Sample(done)) => {
                    observe(&mut series, &mut printer, false);
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Disconnected) => {
                    observe(&mut series, &mut printer, false);
                    return series;
                }
            }
        }
    }
    series
}

/// Decides when to print and what, from the readings it is shown.
struct Printer {
    workload: &'static str,
    /// When the last line was printed (or the workload started), and the
    /// counts then.
    last: (Instant, Vec<u64>),
    /// Latencies since the last line.
    latency: Histogram<u64>,
    /// What the nodes' metrics said since the last line.
    engine: Option<EngineInterval>,
}

impl Printer {
    fn new(workload: &'static str, start: Instant) -> Printer {
        Printer {
            workload,
            last: (start, progress::per_shard()),
            latency: latency_feed::sample_histogram(),
            engine: None,
        }
    }

    /// Keeps the latencies and the nodes' metrics of `reading` for the next
    /// line.
    fn absorb(&mut self, reading: &Reading) {
        self.latency
            .add(&reading.latency)
            .expect("sample histograms share their bounds");
        if let Some(engine) = &reading.engine {
            self.engine.get_or_insert_default().add(engine);
        }
    }

    /// The line to print at `now`, if one is due: once a second while a
    /// phase runs (from a second after it started); with `live`, once a
    /// second whatever runs.
    fn next_line(
        &mut self,
        now: Instant,
        reading: &Reading,
        phase: Option<&PhaseInfo>,
        live: bool,
    ) -> Option<String> {
        self.absorb(reading);
        let since = now.saturating_duration_since(self.last.0);
        let phase_due = phase.is_some_and(|p| now - p.started >= PRINT_EVERY);
        if since < PRINT_EVERY || !(phase_due || live) {
            return None;
        }
        let secs = since.as_secs_f64();
        let per_shard: Vec<f64> = reading
            .per_shard
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let was = self.last.1.get(i).copied().unwrap_or(0);
                n.saturating_sub(was) as f64 / secs
            })
            .collect();
        let all: u64 = reading.per_shard.iter().sum();
        let line = Line {
            label: phase.map_or(self.workload, |p| &p.label),
            progress: phase.map(|p| (p.done(all), p.total)),
            elapsed: now - phase.map_or(self.last.0, |p| p.started),
            rate: per_shard.iter().sum(),
            live: live.then(|| {
                let engine = self.engine.take().unwrap_or_default();
                Live {
                    messages: engine
                        .handled
                        .iter()
                        .map(|(_, n)| *n as f64 / secs)
                        .collect(),
                    wait_p99: engine.waits.quantile(0.99),
                    p99: (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(0.99)),
                    rss: reading.rss,
                }
            }),
        };
        self.last = (now, reading.per_shard.clone());
        self.latency.reset();
        self.engine = None;
        Some(line.to_string())
    }
}

/// One progress line.
#[derive(Debug)]
struct Line<'a> {
    label: &'a str,
    /// Steps done and to do, when a phase runs.
    progress: Option<(u64, u64)>,
    /// Since the phase started (or since the last line, between phases).
    elapsed: Duration,
    /// Steps per second over the last second.
    rate: f64,
    live: Option<Live>,
}

/// What the live view adds.
#[derive(Debug)]
struct Live {
    /// Messages handled per second by each shard (the nodes' metrics).
    messages: Vec<f64>,
    /// The mailbox wait p99 of the nodes' sampled waits.
    wait_p99: Option<u64>,
    /// The workload's own latency p99, if it measures one.
    p99: Option<u64>,
    rss: u64,
}

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "  {}: ", self.label)?;
        if let Some((done, total)) = self.progress {
            write!(
                f,
                "{:>3}% ({}/{}) ",
                progress::percent(done, total),
                si(done as f64),
                si(total as f64)
            )?;
        }
        write!(f, "{}/s", si(self.rate))?;
        if self.progress.is_some() {
            write!(f, ", {:.0} s", self.elapsed.as_secs_f64())?;
        }
        if let Some(live) = &self.live {
            if live.messages.is_empty() {
                f.write_str(" | per shard - msgs/s")?;
            } else {
                let shards: Vec<String> = live.messages.iter().map(|r| si(*r)).collect();
                write!(f, " | per shard {} msgs/s", shards.join(" "))?;
            }
            match live.wait_p99 {
                Some(p99) => write!(f, " | mailbox wait p99 {}", nanos(p99))?,
                None => f.write_str(" | mailbox wait p99 -")?,
            }
            if let Some(p99) = live.p99 {
                write!(f, " | latency p99 {}", nanos(p99))?;
            }
            write!(f, " | RSS {}", bytes(live.rss))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn reading(per_shard: &[u64], latencies: &[u64]) -> Reading {
        let mut latency = latency_feed::sample_histogram();
        for &ns in latencies {
            latency.record(ns).unwrap();
        }
        Reading {
            per_shard: per_shard.to_vec(),
            rss: 96 << 20,
            latency,
            engine: None,
        }
    }

    /// What the nodes' metrics say of an interval: messages handled per
    /// shard, and mailbox waits per bucket of 1 µs and 2 µs (and above).
    fn engine(handled: &[u64], waits: [u64; 3]) -> EngineInterval {
        EngineInterval {
            handled: handled
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("shard {i}"), *n))
                .collect(),
            waits: crate::node_metrics::Buckets {
                bounds: vec![1_000, 2_000],
                counts: waits.to_vec(),
            },
        }
    }

    #[test]
    fn a_progress_line_has_the_phase_percent_and_rate() {
        let line = Line {
            label: "counting (same shard)",
            progress: Some((9_000_000, 20_000_000)),
            elapsed: Duration::from_millis(1_200),
            rate: 15_100_000.0,
            live: None,
        };
        assert_eq!(
            line.to_string(),
            "  counting (same shard):  45% (9.00M/20.0M) 15.1M/s, 1 s"
        );
    }

    #[test]
    fn the_live_view_adds_shards_waits_p99_and_memory() {
        let mut line = Line {
            label: "remote",
            progress: None,
            elapsed: Duration::from_secs(1),
            rate: 3_000.0,
            live: Some(Live {
                messages: vec![1_000.0, 2_000.0],
                wait_p99: Some(4_500),
                p99: Some(12_300),
                rss: 96 << 20,
            }),
        };
        assert_eq!(
            line.to_string(),
            "  remote: 3.00k/s | per shard 1.00k 2.00k msgs/s | mailbox wait p99 4.50 µs \
             | latency p99 12.3 µs | RSS 96 MiB"
        );
        line.live = Some(Live {
            messages: Vec::new(),
            wait_p99: None,
            p99: None,
            rss: 96 << 20,
        });
        assert_eq!(
            line.to_string(),
            "  remote: 3.00k/s | per shard - msgs/s | mailbox wait p99 - | RSS 96 MiB",
            "no node read, no latency measured"
        );
    }

    #[test]
    fn lines_come_once_a_second_and_only_in_a_phase_unless_live() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut printer = Printer {
            workload: "counting",
            last: (start, vec![0, 0]),
            latency: latency_feed::sample_histogram(),
            engine: None,
        };
        let phase = PhaseInfo {
            label: Arc::from("counting"),
            total: 4_000,
            base: 0,
            started: start,
        };
        let r = reading(&[500, 500], &[]);
        assert_eq!(printer.next_line(at(500), &r, Some(&phase), false), None);
        assert_eq!(printer.next_line(at(1_000), &r, None, false), None);
        let line = printer.next_line(at(1_000), &r, Some(&phase), false);
        assert_eq!(
            line.as_deref(),
            Some("  counting:  25% (1.00k/4.00k) 1.00k/s, 1 s")
        );
        let mut r = reading(&[1_000, 1_500], &[50, 100]);
        r.engine = Some(engine(&[400, 1_000], [98, 0, 0]));
        assert_eq!(printer.next_line(at(1_500), &r, Some(&phase), true), None);
        let mut r = reading(&[1_000, 1_500], &[]);
        r.engine = Some(engine(&[100, 1_000], [0, 2, 0]));
        let line = printer.next_line(at(2_000), &r, None, true).unwrap();
        assert_eq!(
            line,
            "  counting: 1.50k/s | per shard 500 2.00k msgs/s | mailbox wait p99 1.50 µs \
             | latency p99 100 ns | RSS 96 MiB",
            "latencies, messages and waits of the whole second, steps since the last line"
        );
    }

    /// A source whose counts grow by 10 per reading on one shard.
    struct Counting(u64);

    impl Source for Counting {
        fn read(&mut self) -> Reading {
            self.0 += 10;
            reading(&[self.0], &[])
        }
    }

    #[test]
    fn a_kept_series_starts_and_ends_with_a_sample() {
        let (stop, stopped) = mpsc::channel();
        drop(stop);
        let options = Options {
            progress: false,
            live: false,
            keep: true,
        };
        let series = watch("spawn", options, Counting(0), &stopped);
        assert_eq!(series.samples.len(), 2, "{series:?}");
        let (first, last) = (&series.samples[0], &series.samples[1]);
        assert_eq!(first.per_shard, [0.0], "the first sets where counts start");
        assert!(first.t <= last.t && last.per_shard[0] >= 0.0);
        let options = Options {
            keep: false,
            ..options
        };
        let series = watch("spawn", options, Counting(0), &stopped);
        assert!(series.samples.is_empty(), "nothing kept without --report");
    }
}
