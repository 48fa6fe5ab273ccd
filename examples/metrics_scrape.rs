//! Scrapes the metrics endpoint of a node that holds a million idle
//! workers, and reports how long each scrape took and whether any shard
//! stalled for more than 1 ms meanwhile (the node's stall watchdog runs
//! with a 1 ms threshold).
//!
//! ```text
//! cargo run --release --example metrics_scrape [-- WORKERS SCRAPES]
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use myriad::{BoxError, Context, Message, MetricsListen, Node, NodeConfig, Worker};

#[path = "support/logging.rs"]
mod logging;

/// Workers spawned between two yields of the spawner: short enough that
/// spawning is not itself a stall.
const BATCH: u64 = 1_000;
const LONG: Duration = Duration::from_secs(600);

/// A worker that never gets a message.
struct Idle;

impl Worker for Idle {
    async fn handle_message(&mut self, _: &mut Context, _: Message) -> Result<(), BoxError> {
        Ok(())
    }
}

/// On `<n>`, spawns `n` idle workers on its shard, in batches.
struct Spawner;

impl Worker for Spawner {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let n: u64 = msg.parse()?;
        for i in 0..n {
            ctx.spawn(Idle);
            if i % BATCH == BATCH - 1 {
                futures_lite::future::yield_now().await;
            }
        }
        ctx.reply("spawned")?;
        Ok(())
    }
}

/// One `GET /metrics`: how long it took and how many bytes came back.
fn scrape(addr: SocketAddr) -> Result<(Duration, usize), BoxError> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: scrape\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err(format!("scrape failed: {}", String::from_utf8_lossy(&response)).into());
    }
    Ok((start.elapsed(), response.len()))
}

fn main() -> Result<(), BoxError> {
    logging::init("error");
    let mut args = std::env::args().skip(1);
    let workers: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let scrapes: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let (config, addr) = NodeConfig::default()
        .stall_threshold(Duration::from_millis(1))
        .metrics_listen("127.0.0.1:0".parse()?)?;
    let node = Node::spawn(config)?;
    let shards = node.shards() as u64;
    let spawners = (0..node.shards())
        .map(|shard| node.spawn_on(shard, Spawner))
        .collect::<Result<Vec<_>, _>>()?;
    let asked: Vec<_> = spawners
        .iter()
        .map(|&spawner| {
            let node = node.clone();
            let n = workers / shards;
            std::thread::spawn(move || node.send_and_receive(spawner, n.to_string(), LONG))
        })
        .collect();
    for answer in asked {
        answer.join().map_err(|_| "a spawning thread panicked")??;
    }
    let live: u64 = node.metrics()?.total(|s| s.workers_live);
    let stalls_before = node.metrics()?.total(|s| s.stalls);

    let mut times = Vec::with_capacity(scrapes);
    let mut bytes = 0;
    for _ in 0..scrapes {
        let (took, size) = scrape(addr)?;
        times.push(took);
        bytes = size;
    }
    let stalls = node.metrics()?.total(|s| s.stalls) - stalls_before;
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{live} workers on {shards} shards; {scrapes} scrapes of {bytes} bytes: \
         p50 {:?}, p99 {:?}, max {:?}; shard stalls over 1 ms meanwhile: {stalls}",
        at(0.5),
        at(0.99),
        at(1.0),
    );
    node.shutdown();
    Ok(())
}
