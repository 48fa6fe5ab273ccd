//! A measurement, not a test: two nodes on loopback, one shard each, one
//! link. Ignored by default; run it in release mode:
//!
//! ```text
//! cargo test --release -p myriad --test transport_bench -- --ignored --nocapture
//! ```
//!
//! It prints one-way messages per second for 64-byte messages, MB/s for
//! 64 KiB messages, and ask round trips per second with latency percentiles.
//! `MYRIAD_BENCH=small|bulk|ask` runs one part only; `MYRIAD_TEST_SPIN_US`
//! sets the nodes' `spin_before_park` (see `cluster::engine`).

mod cluster;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cluster::{pair, LONG};
use futures_lite::future::yield_now;
use myriad::{Address, BoxError, Context, Error, Message, NodeHandle, Replier, Worker};

/// Counts messages; answers `when <n>` once `n` arrived.
#[derive(Default)]
struct Sink {
    received: u64,
    waiting: Option<(u64, Replier)>,
}

impl Worker for Sink {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if ctx.is_ask() {
            let n = msg.strip_prefix("when ").ok_or("when <n>")?.parse()?;
            self.waiting = Some((n, ctx.defer_reply().ok_or("ask")?));
        } else {
            self.received += 1;
        }
        if matches!(&self.waiting, Some((n, _)) if self.received >= *n) {
            if let Some((_, replier)) = self.waiting.take() {
                replier.complete(Ok(Message::from("done")));
            }
        }
        Ok(())
    }
}

/// On `<n> <size>`, sends `n` messages of `size` bytes to `b/sink`, yielding
/// now and then, and pausing briefly whenever the link's buffer is full (a
/// sender that only yields would keep its shard from polling the socket).
struct Blaster {
    sink: Address,
}

impl Worker for Blaster {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let (n, size) = msg.split_once(' ').ok_or("<n> <size>")?;
        let (n, size): (u64, usize) = (n.parse()?, size.parse()?);
        let body = Message::from("x".repeat(size));
        let mut sent = 0;
        while sent < n {
            match ctx.send(&self.sink, body.clone()) {
                Ok(()) => sent += 1,
                Err(Error::MailboxFull(_)) => {
                    glommio::timer::sleep(Duration::from_micros(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
            if sent % 4096 == 0 {
                yield_now().await;
            }
        }
        ctx.reply("sent")?;
        Ok(())
    }
}

/// On `<n>`, asks `b/echo` `n` times in sequence; replies with the
/// latencies in nanoseconds, space-separated.
struct Asker;

impl Worker for Asker {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let n: usize = msg.parse()?;
        let mut latencies = String::new();
        for _ in 0..n {
            let start = Instant::now();
            ctx.send_and_receive("b/echo", "ping", LONG).await?;
            latencies.push_str(&format!("{} ", start.elapsed().as_nanos()));
        }
        ctx.reply(latencies)?;
        Ok(())
    }
}

/// Replies with the message.
struct Echo;

impl Worker for Echo {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        ctx.reply(msg)?;
        Ok(())
    }
}

fn one_way(a: &NodeHandle, b: &NodeHandle, n: u64, size: usize) -> Duration {
    // A fresh name each time: a stopped worker's name is freed a moment later.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let sink = format!("sink-{}", RUNS.fetch_add(1, Ordering::Relaxed));
    b.start_worker(&sink, Sink::default()).unwrap();
    let blaster = a
        .spawn(Blaster {
            sink: Address::remote("b", sink.as_str()),
        })
        .unwrap();
    let start = Instant::now();
    let sent = std::thread::spawn({
        let a = a.clone();
        move || {
            a.send_and_receive(blaster, format!("{n} {size}"), Duration::from_secs(120))
                .unwrap();
            start.elapsed()
        }
    });
    b.send_and_receive(sink.as_str(), format!("when {n}"), Duration::from_secs(120))
        .unwrap();
    let took = start.elapsed();
    println!("  (sender done after {:.2?})", sent.join().unwrap());
    b.stop_worker(sink.as_str()).unwrap();
    took
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    Duration::from_nanos(sorted[i])
}

fn asks(a: &NodeHandle, askers: usize, each: usize) {
    let handles: Vec<_> = (0..askers).map(|_| a.spawn(Asker).unwrap()).collect();
    let start = Instant::now();
    let threads: Vec<_> = handles
        .into_iter()
        .map(|asker| {
            let a = a.clone();
            std::thread::spawn(move || {
                a.send_and_receive(asker, each.to_string(), Duration::from_secs(120))
                    .unwrap()
            })
        })
        .collect();
    let mut all: Vec<u64> = Vec::new();
    for t in threads {
        let text = t.join().unwrap();
        all.extend(text.split_whitespace().map(|n| n.parse::<u64>().unwrap()));
    }
    let took = start.elapsed();
    all.sort_unstable();
    println!(
        "ask round trips, {askers} concurrent askers: {:.0} k/s; p50 {:?}, p99 {:?}, p99.9 {:?}",
        all.len() as f64 / took.as_secs_f64() / 1e3,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
    );
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn remote_link_throughput_and_latency() {
    let ((a, _za), (b, _zb)) = match std::env::var("MYRIAD_BENCH_SOCKBUF") {
        Ok(v) => {
            let size: usize = v.parse().unwrap();
            let b = cluster::start(1, cluster::transport("b").socket_buffer(size));
            let seed = b.1.local_addr().to_string();
            let a = cluster::start(1, cluster::transport("a").socket_buffer(size).seed(seed));
            cluster::wait_for_nodes(&a.1, &["b"]);
            cluster::wait_for_nodes(&b.1, &["a"]);
            (a, b)
        }
        Err(_) => pair(1),
    };
    b.start_worker("echo", Echo).unwrap();
    // Warm up the link.
    one_way(&a, &b, 100_000, 64);

    let only = std::env::var("MYRIAD_BENCH").unwrap_or_default();
    if only.is_empty() || only == "small" {
        let n = 5_000_000;
        let took = one_way(&a, &b, n, 64);
        println!(
            "one-way, 64-byte messages: {n} in {took:.2?} = {:.2} M msg/s",
            n as f64 / took.as_secs_f64() / 1e6
        );
    }
    if only.is_empty() || only == "bulk" {
        let n = 40_000;
        let took = one_way(&a, &b, n, 64 << 10);
        println!(
            "one-way, 64 KiB messages: {n} in {took:.2?} = {:.0} MB/s",
            (n * (64 << 10)) as f64 / took.as_secs_f64() / 1e6
        );
    }
    if only.is_empty() || only == "ask" {
        asks(&a, 1, 50_000);
        asks(&a, 8, 20_000);
    }
    a.shutdown();
    b.shutdown();
}
