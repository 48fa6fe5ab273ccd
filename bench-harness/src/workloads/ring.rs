//! `ring` (Savina thread ring): 1,000 workers (fewer if `--actors` is
//! smaller) in a ring pass one token for M hops, rounded up to whole laps.
//! The head counts laps; at the end a census message goes once around the
//! ring adding up the tokens each worker saw, and that total is checked.
//!
//! On one shard, or spread over all shards in contiguous blocks so that the
//! token crosses every shard boundary once per lap.

use myriad::{BoxError, Context, Message, Worker, WorkerRef};

use crate::cli::Settings;
use crate::harness::{self, BenchError, Tally};
use crate::progress;
use crate::report::{Outcome, Row};
use crate::workloads::{Placement, Workload};

/// Workers in the ring, as in Savina.
const RING_SIZE: u64 = 1000;

/// Hops when `--messages` is not given.
const DEFAULT_HOPS: u64 = 10_000_000;

/// What the head of the ring knows besides its neighbour.
struct Head {
    tally: WorkerRef,
    ring_size: u64,
    laps_left: u64,
}

/// A worker of the ring: forwards the token to `next`.
struct Link {
    next: Option<WorkerRef>,
    seen: u64,
    head: Option<Head>,
}

impl Link {
    fn next(&self) -> WorkerRef {
        self.next
            .expect("the ring is closed before the token starts")
    }
}

impl Worker for Link {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if msg == "token" {
            self.seen += 1;
            if let Some(head) = &mut self.head {
                head.laps_left -= 1;
                progress::tick(ctx, head.ring_size);
                if head.laps_left == 0 {
                    harness::send(ctx, self.next(), format!("census {}", self.seen));
                    return Ok(());
                }
            }
            harness::send(ctx, self.next(), "token");
        } else if let Some(total) = msg.strip_prefix("census ") {
            let total = harness::number(total);
            match &self.head {
                Some(head) => harness::report(ctx, head.tally, total),
                None => harness::send(ctx, self.next(), format!("census {}", total + self.seen)),
            }
        } else if let Some(laps) = msg.strip_prefix("go ") {
            let head = self.head.as_mut().expect("`go` goes to the head");
            head.laps_left = harness::number(laps);
            harness::send(ctx, self.next(), "token");
        } else {
            let next = msg.strip_prefix("link ").expect("unexpected message");
            self.next = Some(next.parse()?);
            ctx.reply("linked")?;
        }
        Ok(())
    }
}

/// Runs the workload with the ring placed by `placement`.
pub fn run(settings: &Settings, placement: Placement) -> Result<Row, BenchError> {
    let size = settings.actors.min(RING_SIZE);
    let laps = settings.messages_or(DEFAULT_HOPS).div_ceil(size);
    let hops = laps * size;
    let shards = match placement {
        Placement::SameShard => 1,
        Placement::AcrossShards => settings.shards as u64,
    };
    harness::measure(
        settings,
        Workload::Ring,
        placement.label(),
        move |ctx| async move {
            let tally = ctx.spawn(Tally::default());
            // Built backwards so that each worker starts knowing its next;
            // the last one is linked to the head once the head exists.
            let mut next = None;
            let mut last = None;
            for i in (0..size).rev() {
                let head = (i == 0).then_some(Head {
                    tally,
                    ring_size: size,
                    laps_left: 0,
                });
                let link = Link {
                    next,
                    seen: 0,
                    head,
                };
                let shard = (i * shards / size) as usize;
                let link = harness::spawn_at(&ctx, shard, link).await?;
                last.get_or_insert(link);
                next = Some(link);
            }
            let (head, last) = next.zip(last).expect("the ring has a worker");
            harness::ask(&ctx, last, format!("link {head}")).await;
            let order = (head, format!("go {laps}").into());
            let (time, seen) = harness::round(&ctx, tally, "ring", hops, [order], 1).await?;
            harness::check("tokens seen", hops, seen)?;
            Ok(Outcome {
                workers: size,
                // The hops, the census lap, `go`, the link ask and its
                // answer, and the report.
                messages: hops + size + 4,
                ops: hops,
                op: "hops",
                phases: vec![("ring", time)],
                check: format!("{seen} tokens seen in {laps} laps"),
                ..Outcome::default()
            })
        },
    )
}
