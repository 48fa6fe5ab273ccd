//! `spawn`: N workers that each hold a `u64`, started from inside the
//! shards (one spawner per shard starts its share with `ctx.spawn`); then
//! every worker is sent one message and confirms it to its spawner.
//!
//! Reports the spawn time, the delivery time and the resident bytes per
//! worker above the empty node, measured once everything is delivered and
//! the spawners have dropped their lists of references.

use std::time::Duration;

use myriad::{BoxError, Context, Message, Worker, WorkerRef};

use crate::cli::Settings;
use crate::harness::{self, BenchError, Tally};
use crate::memory;
use crate::progress;
use crate::report::{Outcome, Row};
use crate::workloads::{share, Workload};

/// Time given to the shards to go idle (and trim their message pools)
/// before memory is read.
const SETTLE: Duration = Duration::from_millis(50);

/// The measured worker: a `u64` of state and nothing else.
struct Cell {
    value: u64,
}

impl Worker for Cell {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        self.value += harness::number(&msg);
        harness::send(ctx, harness::sender(ctx), "ack");
        Ok(())
    }
}

/// Starts its shard's share of cells (`spawn <k>`), sends each one message
/// (`deliver`), and reports to the tally after each step.
struct Spawner {
    tally: WorkerRef,
    cells: Vec<WorkerRef>,
    acks: u64,
}

impl Worker for Spawner {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if let Some(k) = msg.strip_prefix("spawn ") {
            let k = harness::number(k);
            self.cells.reserve_exact(k as usize);
            for value in 0..k {
                self.cells.push(ctx.spawn(Cell { value }));
                progress::tick(ctx, 1);
            }
            harness::report(ctx, self.tally, k);
        } else if msg == "deliver" {
            for &cell in &self.cells {
                harness::send(ctx, cell, "1");
            }
        } else {
            assert_eq!(msg, "ack", "unexpected message");
            self.acks += 1;
            progress::tick(ctx, 1);
            if self.acks == self.cells.len() as u64 {
                harness::report(ctx, self.tally, self.acks);
                self.cells = Vec::new();
            }
        }
        Ok(())
    }
}

/// Runs the workload: one row.
pub fn run(settings: &Settings) -> Result<Vec<Row>, BenchError> {
    let (n, shards) = (settings.actors, settings.shards);
    let row = harness::measure(settings, Workload::Spawn, "", move |ctx| async move {
        let tally = ctx.spawn(Tally::default());
        let mut spawners = Vec::with_capacity(shards);
        for shard in 0..shards {
            let spawner = Spawner {
                tally,
                cells: Vec::new(),
                acks: 0,
            };
            spawners.push(harness::spawn_at(&ctx, shard, spawner).await?);
        }
        glommio::timer::sleep(SETTLE).await;
        let empty = memory::resident();
        let orders = spawners
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, format!("spawn {}", share(n, shards, i)).into()));
        let (spawn, spawned) = harness::round(&ctx, tally, "spawn", n, orders, shards).await?;
        harness::check("workers spawned", n, spawned)?;
        let orders = spawners.iter().map(|&s| (s, "deliver".into()));
        let (deliver, confirmed) =
            harness::round(&ctx, tally, "deliver", n, orders, shards).await?;
        harness::check("messages confirmed", n, confirmed)?;
        glommio::timer::sleep(SETTLE).await;
        let full = memory::resident();
        Ok(Outcome {
            workers: n,
            messages: 2 * n,
            ops: n,
            op: "workers",
            phases: vec![("spawn", spawn), ("deliver", deliver)],
            bytes_per_worker: Some(full.saturating_sub(empty) as f64 / n as f64),
            check: format!("{n} spawned, {confirmed} confirmed"),
            ..Outcome::default()
        })
    })?;
    Ok(vec![row])
}
