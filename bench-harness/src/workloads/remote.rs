//! `remote`: two nodes of one zone on loopback, one shard each, joined by
//! one Noise link. One-way 64-byte messages, one-way 64 KiB messages, and
//! ask round trips with latency percentiles; every count is checked.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use myriad::transport::{start_node, TransportConfig, Zone, ZoneConfig, ZoneSecret};
use myriad::{Address, BoxError, Context, Error, Message, NodeConfig, NodeHandle, Replier, Worker};

use crate::cli::Settings;
use crate::harness::{self, BenchError};
use crate::latency_feed;
use crate::memory;
use crate::monitor;
use crate::node_metrics;
use crate::progress;
use crate::report::{latency_histogram, Latency, Outcome, Row};
use crate::workloads::Workload;

/// 64-byte messages when `--messages` is not given.
const DEFAULT_SMALL: u64 = 2_000_000;
/// Bytes of the bulk messages.
const BULK_SIZE: usize = 64 << 10;
/// Concurrent askers.
const ASKERS: u64 = 8;
/// The longest any step may take.
const LONG: Duration = Duration::from_secs(120);

/// Counts messages; answers `when <n>` once `n` arrived.
#[derive(Default)]
struct Sink {
    received: u64,
    waiting: Option<(u64, Replier)>,
}

impl Worker for Sink {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        match msg.strip_prefix("when ") {
            Some(n) if ctx.is_ask() => {
                let replier = ctx.defer_reply().ok_or("`when` must be asked")?;
                self.waiting = Some((harness::number(n), replier));
            }
            _ => {
                self.received += 1;
                progress::tick(ctx, 1);
            }
        }
        if matches!(&self.waiting, Some((n, _)) if self.received >= *n) {
            if let Some((_, replier)) = self.waiting.take() {
                replier.complete(Ok(harness::decimal(self.received)));
            }
        }
        Ok(())
    }
}

/// On `<n> <size>`, sends `n` messages of `size` bytes to `to`, pausing
/// while the link's buffer is full (a sender that only yielded would keep
/// its shard from writing to the socket).
struct Blaster {
    to: Address,
}

impl Worker for Blaster {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let (n, size) = msg.split_once(' ').ok_or("<n> <size>")?;
        let (n, size) = (harness::number(n), harness::number(size) as usize);
        let body = Message::from("x".repeat(size));
        let mut sent = 0;
        while sent < n {
            match ctx.send(&self.to, body.clone()) {
                Ok(()) => sent += 1,
                Err(Error::MailboxFull(_)) => {
                    glommio::timer::sleep(Duration::from_micros(50)).await
                }
                Err(e) => return Err(e.into()),
            }
            if sent % 4096 == 0 {
                futures_lite::future::yield_now().await;
            }
        }
        Ok(())
    }
}

/// On `<n>`, asks `b/echo` n times in sequence; replies with the latencies
/// in nanoseconds, space-separated.
struct Asker;

impl Worker for Asker {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let n = harness::number(&msg);
        let mut latencies = String::new();
        for _ in 0..n {
            let start = Instant::now();
            ctx.send_and_receive("b/echo", "ping", LONG).await?;
            let nanos = start.elapsed().as_nanos();
            latency_feed::feed_in(u64::try_from(nanos).unwrap_or(u64::MAX));
            progress::tick(ctx, 1);
            latencies.push_str(&format!("{nanos} "));
        }
        ctx.reply(latencies)?;
        Ok(())
    }
}

/// Answers with the message.
struct Echo;

impl Worker for Echo {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        ctx.reply(msg)?;
        Ok(())
    }
}

/// Node `name` of the bench zone on an ephemeral loopback port.
fn node(name: &str, seed: Option<String>) -> Result<(NodeHandle, Zone), BenchError> {
    let setup = |e: &dyn std::fmt::Display| BenchError::Engine(Error::Startup(e.to_string()));
    let secret = ZoneSecret::from_bytes("bench-harness zone secret, loopback only")
        .map_err(|e| setup(&e))?;
    let zone = ZoneConfig::new("bench")
        .map_err(|e| setup(&e))?
        .with_secret(&secret);
    let mut transport = TransportConfig::new(zone)
        .node_name(name)
        .listen(([127, 0, 0, 1], 0).into());
    if let Some(seed) = seed {
        transport = transport.seed(seed);
    }
    // Two nodes in one process: pinned, both shards 0 would share core 0.
    let engine = NodeConfig::default()
        .shards(1)
        .pin_shards(false)
        .mailbox_capacity(1 << 20)
        // As in `harness::run`: bulk loops in one handler are the workload.
        .stall_threshold(Duration::ZERO);
    start_node(engine, transport).map_err(|e| setup(&e))
}

/// Sends `n` messages of `size` bytes from `a` to a fresh sink on `b`;
/// returns the time until the sink counted them all.
fn one_way(
    a: &NodeHandle,
    b: &NodeHandle,
    sink: &str,
    n: u64,
    size: usize,
) -> Result<Duration, BenchError> {
    b.start_worker(sink, Sink::default())?;
    let blaster = a.spawn(Blaster {
        to: Address::remote("b", sink),
    })?;
    let start = Instant::now();
    a.send(blaster, format!("{n} {size}"))?;
    let received = b.send_and_receive(sink, format!("when {n}"), LONG)?;
    let took = start.elapsed();
    harness::check("messages received", n, harness::number(&received))?;
    Ok(took)
}

/// `ASKERS` workers on `a` ask `b/echo` `each` times; returns the time and
/// the latency histogram.
fn asks(a: &NodeHandle, each: u64) -> Result<(Duration, Histogram<u64>), BenchError> {
    let askers = (0..ASKERS)
        .map(|_| a.spawn(Asker))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let threads: Vec<_> = askers
        .into_iter()
        .map(|asker| {
            let a = a.clone();
            std::thread::spawn(move || a.send_and_receive(asker, each.to_string(), LONG))
        })
        .collect();
    let mut histogram = latency_histogram();
    for thread in threads {
        let answer = thread
            .join()
            .map_err(|_| BenchError::WorkerPanicked("an asker thread".into()))??;
        for ns in answer.split_whitespace() {
            histogram.saturating_record(harness::number(ns));
        }
    }
    let took = start.elapsed();
    harness::check("asks answered", ASKERS * each, histogram.len())?;
    Ok((took, histogram))
}

/// The three measurements, one row each.
const VARIANTS: [&str; 3] = ["64 B one-way", "64 KiB one-way", "ask, 8 in flight"];

/// Runs `measurement` as variant `label` (for the progress lines and the
/// report).
fn variant<T>(label: &str, measurement: impl FnOnce() -> T) -> T {
    let _variant = progress::Variant::start(label);
    let out = measurement();
    monitor::sample_now();
    out
}

/// Runs the three measurements; one row each.
pub fn run(settings: &Settings) -> Result<Vec<Row>, BenchError> {
    let small = settings.messages_or(DEFAULT_SMALL);
    let bulk = (small / 100).max(100);
    let each = (small / 40 / ASKERS).max(100);
    memory::release_free_heap();
    memory::reset_peak();
    let (b, b_zone) = node("b", None)?;
    let (a, a_zone) = node("a", Some(b_zone.local_addr().to_string()))?;
    let deadline = Instant::now() + LONG;
    while a_zone.nodes("b").is_empty() {
        if Instant::now() > deadline {
            return Err(BenchError::Engine(Error::NoRoute("b".into())));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    b.start_worker("echo", Echo)?;
    let watched = [node_metrics::watch(&b), node_metrics::watch(&a)];
    one_way(&a, &b, "warm-up", 10_000, 64)?;
    let row = |variant: &str, outcome: Outcome| {
        Row::new(Workload::Remote, variant.into(), 1, outcome, memory::peak())
    };
    let [small_label, bulk_label, ask_label] = VARIANTS;
    let small_time = variant(small_label, || one_way(&a, &b, "sink-small", small, 64))?;
    let bulk_time = variant(bulk_label, || one_way(&a, &b, "sink-bulk", bulk, BULK_SIZE))?;
    let (ask_time, latencies) = variant(ask_label, || asks(&a, each))?;
    let rows = vec![
        row(
            small_label,
            Outcome {
                workers: 2,
                messages: small + 2,
                ops: small,
                op: "messages",
                phases: vec![("send", small_time)],
                check: format!("{small} received"),
                ..Outcome::default()
            },
        ),
        row(
            bulk_label,
            Outcome {
                workers: 2,
                messages: bulk + 2,
                ops: bulk * BULK_SIZE as u64 / 1_000_000,
                op: "MB",
                phases: vec![("send", bulk_time)],
                check: format!("{bulk} received"),
                ..Outcome::default()
            },
        ),
        row(
            ask_label,
            Outcome {
                workers: ASKERS + 1,
                messages: 2 * ASKERS * each,
                ops: ASKERS * each,
                op: "round trips",
                phases: vec![("ask", ask_time)],
                latency: Latency::of(&latencies),
                check: format!("{} answered", ASKERS * each),
                ..Outcome::default()
            },
        ),
    ];
    drop(watched);
    a.shutdown();
    b.shutdown();
    Ok(rows)
}
