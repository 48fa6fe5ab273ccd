//! `fanout`: N receivers spread over the shards; every shard's driver sends
//! each of its receivers K messages (K = M / N, default 10), one round of
//! one message per receiver at a time. Each receiver confirms once it has
//! all K, and the drivers' confirmed totals are checked.
//!
//! After each round the driver asks its last receiver `sync`: receivers run
//! in the order their mailboxes filled, so the answer means the round has
//! been handled and the queues stay one round deep.

use std::time::Duration;

use myriad::{BoxError, Context, Message, Worker, WorkerRef};

use crate::cli::Settings;
use crate::harness::{self, BenchError, Tally};
use crate::memory;
use crate::progress;
use crate::report::{Outcome, Row};
use crate::workloads::{share, Workload};

/// Messages per receiver when `--messages` is not given.
const DEFAULT_PER_WORKER: u64 = 10;

/// Time given to the shards to go idle before memory is read.
const SETTLE: Duration = Duration::from_millis(50);

/// Counts messages; says `done` to the driver at the K-th.
struct Receiver {
    expected: u64,
    got: u64,
}

impl Worker for Receiver {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if msg == "sync" {
            ctx.reply("synced")?;
            return Ok(());
        }
        self.got += 1;
        progress::tick(ctx, 1);
        if self.got == self.expected {
            harness::send(ctx, harness::sender(ctx), "done");
        }
        Ok(())
    }
}

/// Starts its shard's receivers (`spawn <n> <k>`), sends them K rounds
/// (`go`), and reports `n * k` once every receiver said `done`.
struct Driver {
    tally: WorkerRef,
    receivers: Vec<WorkerRef>,
    per_receiver: u64,
    done: u64,
}

impl Worker for Driver {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if let Some(args) = msg.strip_prefix("spawn ") {
            let (n, k) = args.split_once(' ').expect("spawn <n> <k>");
            let (n, k) = (harness::number(n), harness::number(k));
            self.per_receiver = k;
            self.receivers = (0..n)
                .map(|_| {
                    progress::tick(ctx, 1);
                    ctx.spawn(Receiver {
                        expected: k,
                        got: 0,
                    })
                })
                .collect();
            harness::report(ctx, self.tally, n);
        } else if msg == "go" {
            for _ in 0..self.per_receiver {
                for &receiver in &self.receivers {
                    harness::send(ctx, receiver, "m");
                }
                if let Some(&last) = self.receivers.last() {
                    harness::ask(ctx, last, "sync").await;
                }
            }
            if self.receivers.is_empty() {
                harness::report(ctx, self.tally, 0);
            }
        } else {
            assert_eq!(msg, "done", "unexpected message");
            self.done += 1;
            if self.done == self.receivers.len() as u64 {
                harness::report(ctx, self.tally, self.done * self.per_receiver);
            }
        }
        Ok(())
    }
}

/// Runs the workload: one row.
pub fn run(settings: &Settings) -> Result<Vec<Row>, BenchError> {
    let (n, shards) = (settings.actors, settings.shards);
    let k = settings
        .messages
        .map_or(DEFAULT_PER_WORKER, |m| (m / n).max(1));
    let row = harness::measure(settings, Workload::Fanout, "", move |ctx| async move {
        let tally = ctx.spawn(Tally::default());
        let mut drivers = Vec::with_capacity(shards);
        for shard in 0..shards {
            let driver = Driver {
                tally,
                receivers: Vec::new(),
                per_receiver: 0,
                done: 0,
            };
            drivers.push(harness::spawn_at(&ctx, shard, driver).await?);
        }
        glommio::timer::sleep(SETTLE).await;
        let empty = memory::resident();
        let orders = drivers.iter().enumerate().map(|(i, &d)| {
            let order = format!("spawn {} {k}", share(n, shards, i));
            (d, order.into())
        });
        let (spawn, spawned) =
            harness::round(&ctx, tally, "fanout spawn", n, orders, shards).await?;
        harness::check("receivers spawned", n, spawned)?;
        glommio::timer::sleep(SETTLE).await;
        let idle = memory::resident();
        let orders = drivers.iter().map(|&d| (d, "go".into()));
        let (time, received) = harness::round(&ctx, tally, "fanout", n * k, orders, shards).await?;
        harness::check("messages received", n * k, received)?;
        let s = shards as u64;
        Ok(Outcome {
            workers: n,
            // The fan-out, one `done` per receiver, a sync ask and answer
            // per round and shard, and each driver's `go` and report.
            messages: n * k + n + 2 * k * s + 2 * s,
            ops: n * k,
            op: "msgs",
            phases: vec![("fanout", time)],
            bytes_per_worker: Some(idle.saturating_sub(empty) as f64 / n as f64),
            check: format!("{received} received"),
            extra: vec![("spawn_s", spawn.as_secs_f64()), ("per_worker", k as f64)],
            ..Outcome::default()
        })
    })?;
    Ok(vec![row])
}
