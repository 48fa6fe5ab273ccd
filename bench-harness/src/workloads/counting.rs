//! `counting` (Savina): one producer sends M messages to one counter, then
//! asks it for the count, which must be M.
//!
//! The producer keeps at most two windows of messages in flight: the counter
//! sends `more` after every window it has counted, and each `more` lets the
//! producer send one more window. Mailboxes therefore stay small however
//! large M is, on one shard and across shards alike.

use myriad::{BoxError, Context, Message, Worker, WorkerRef};

use crate::cli::Settings;
use crate::harness::{self, BenchError, Tally};
use crate::progress;
use crate::report::{Outcome, Row};
use crate::workloads::{Placement, Workload};

/// Messages when `--messages` is not given.
const DEFAULT_MESSAGES: u64 = 20_000_000;

/// Messages per window of credit.
const WINDOW: u64 = 8192;

/// Counts messages; answers the ask `count`.
struct Counter {
    count: u64,
}

impl Worker for Counter {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if msg == "count" {
            ctx.reply(harness::decimal(self.count))?;
        } else {
            self.count += 1;
            progress::tick(ctx, 1);
            if self.count % WINDOW == 0 {
                harness::send(ctx, harness::sender(ctx), "more");
            }
        }
        Ok(())
    }
}

/// Sends `go <m>` messages to the counter, a window at a time, then asks
/// for the count and reports it.
struct Producer {
    counter: WorkerRef,
    tally: WorkerRef,
    left: u64,
}

impl Producer {
    async fn send_window(&mut self, ctx: &Context) {
        let k = self.left.min(WINDOW);
        if k == 0 {
            return;
        }
        for _ in 0..k {
            harness::send(ctx, self.counter, "1");
        }
        self.left -= k;
        if self.left == 0 {
            let count = harness::ask(ctx, self.counter, "count").await;
            harness::report(ctx, self.tally, harness::number(&count));
        }
    }
}

impl Worker for Producer {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if let Some(m) = msg.strip_prefix("go ") {
            self.left = harness::number(m);
            self.send_window(ctx).await;
        } else {
            assert_eq!(msg, "more", "unexpected message");
        }
        self.send_window(ctx).await;
        Ok(())
    }
}

/// Runs the workload with the counter placed by `placement`.
pub fn run(settings: &Settings, placement: Placement) -> Result<Row, BenchError> {
    let m = settings.messages_or(DEFAULT_MESSAGES);
    harness::measure(
        settings,
        Workload::Counting,
        placement.label(),
        move |ctx| async move {
            let tally = ctx.spawn(Tally::default());
            let counter = Counter { count: 0 };
            let counter = harness::spawn_at(&ctx, placement.far_shard(), counter).await?;
            let producer = ctx.spawn(Producer {
                counter,
                tally,
                left: 0,
            });
            let order = (producer, format!("go {m}").into());
            let (time, count) = harness::round(&ctx, tally, "counting", m, [order], 1).await?;
            harness::check("messages counted", m, count)?;
            Ok(Outcome {
                workers: 2,
                // m counted, one `more` per window, `go`, the ask, its
                // answer and the report.
                messages: m + m / WINDOW + 4,
                ops: m,
                op: "msgs",
                phases: vec![("counting", time)],
                check: format!("{count} counted"),
                ..Outcome::default()
            })
        },
    )
}
