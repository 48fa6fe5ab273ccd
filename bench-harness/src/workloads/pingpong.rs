//! `pingpong` (Savina): two workers pass a message back and forth for M
//! round trips; the ponger counts the pings it answered and that count is
//! checked. One row on a single shard, one with the two on different shards.

use myriad::{BoxError, Context, Message, Worker, WorkerRef};

use crate::cli::Settings;
use crate::harness::{self, BenchError, Tally};
use crate::progress;
use crate::report::{Outcome, Row};
use crate::workloads::{Placement, Workload};

/// Round trips when `--messages` is not given.
const DEFAULT_ROUND_TRIPS: u64 = 500_000;

/// Sends `ping` on `go <m>` and on every `pong` until m round trips are done.
struct Ping {
    pong: WorkerRef,
    left: u64,
}

impl Worker for Ping {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if let Some(m) = msg.strip_prefix("go ") {
            self.left = harness::number(m);
        } else {
            assert_eq!(msg, "pong", "unexpected message");
            self.left -= 1;
            progress::tick(ctx, 1);
        }
        let next = if self.left == 0 { "done" } else { "ping" };
        harness::send(ctx, self.pong, next);
        Ok(())
    }
}

/// Answers `ping` with `pong`; on `done` reports how many pings it answered.
struct Pong {
    tally: WorkerRef,
    pings: u64,
}

impl Worker for Pong {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if msg == "ping" {
            self.pings += 1;
            harness::send(ctx, harness::sender(ctx), "pong");
        } else {
            assert_eq!(msg, "done", "unexpected message");
            harness::report(ctx, self.tally, self.pings);
        }
        Ok(())
    }
}

/// Runs the workload with the ponger placed by `placement`.
pub fn run(settings: &Settings, placement: Placement) -> Result<Row, BenchError> {
    let m = settings.messages_or(DEFAULT_ROUND_TRIPS);
    harness::measure(
        settings,
        Workload::Pingpong,
        placement.label(),
        move |ctx| async move {
            let tally = ctx.spawn(Tally::default());
            let pong = Pong { tally, pings: 0 };
            let pong = harness::spawn_at(&ctx, placement.far_shard(), pong).await?;
            let ping = ctx.spawn(Ping { pong, left: 0 });
            let order = (ping, format!("go {m}").into());
            let (time, pings) = harness::round(&ctx, tally, "pingpong", m, [order], 1).await?;
            harness::check("pings answered", m, pings)?;
            Ok(Outcome {
                workers: 2,
                // m pings, m pongs, `go`, `done` and the report.
                messages: 2 * m + 3,
                ops: m,
                op: "round trips",
                phases: vec![("pingpong", time)],
                check: format!("{pings} pings answered"),
                ..Outcome::default()
            })
        },
    )
}
