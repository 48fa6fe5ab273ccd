//! `skynet`: the classic tree benchmark. The root covers the numbers
//! `0..N`; every worker splits its range into (up to) 10 children until a
//! child covers one number, which it sends to its parent; each parent sends
//! the sum of its children up and stops. With N = 1,000,000 the tree is the
//! classic one (1,111,111 workers) and the sum is 499,999,500,000.
//!
//! The root places its children on the shards in turn; below that every
//! worker starts its children on its own shard.

use myriad::{BoxError, Context, Message, Replier, Worker, WorkerRef};

use crate::cli::Settings;
use crate::harness::{self, BenchError};
use crate::progress;
use crate::report::{Outcome, Row};
use crate::workloads::Workload;

/// Children per worker.
const BRANCHING: u64 = 10;

/// One worker of the tree, covering `first..first + size`.
struct Skynet {
    first: u64,
    size: u64,
    /// `None` for the root, which answers the ask `result` instead.
    parent: Option<WorkerRef>,
    pending: u64,
    sum: u64,
    asked: Option<Replier>,
}

impl Skynet {
    fn new(first: u64, size: u64, parent: Option<WorkerRef>) -> Self {
        Skynet {
            first,
            size,
            parent,
            pending: 0,
            sum: 0,
            asked: None,
        }
    }

    /// Sends the sum up once every child has answered.
    fn finish_if_done(&mut self, ctx: &Context) {
        if self.pending > 0 {
            return;
        }
        match self.parent {
            Some(parent) => {
                harness::send(ctx, parent, harness::decimal(self.sum));
                ctx.stop();
            }
            None => {
                if let Some(asked) = self.asked.take() {
                    asked.complete(Ok(harness::decimal(self.sum)));
                }
            }
        }
    }
}

impl Worker for Skynet {
    async fn on_start(&mut self, ctx: &mut Context) {
        if self.size == 1 {
            self.sum = self.first;
            progress::tick(ctx, 1);
        } else {
            let children = self.size.min(BRANCHING);
            let me = Some(ctx.me());
            for i in 0..children {
                let start = self.first + self.size * i / children;
                let end = self.first + self.size * (i + 1) / children;
                let child = Skynet::new(start, end - start, me);
                if self.parent.is_none() {
                    let shard = i as usize % ctx.shards();
                    if let Err(e) = harness::spawn_at(ctx, shard, child).await {
                        panic!("cannot start a skynet child: {e}");
                    }
                } else {
                    ctx.spawn(child);
                }
            }
            self.pending = children;
        }
        self.finish_if_done(ctx);
    }

    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if msg == "result" {
            self.asked = ctx.defer_reply();
        } else {
            self.sum += harness::number(&msg);
            self.pending -= 1;
        }
        self.finish_if_done(ctx);
        Ok(())
    }
}

/// Workers in a tree over `leaves` leaves.
fn tree_size(leaves: u64) -> u64 {
    if leaves == 1 {
        return 1;
    }
    let children = leaves.min(BRANCHING);
    1 + (0..children)
        .map(|i| tree_size(leaves * (i + 1) / children - leaves * i / children))
        .sum::<u64>()
}

/// `0 + 1 + ... + (n - 1)`.
pub fn expected_sum(n: u64) -> u64 {
    n * (n - 1) / 2
}

/// Runs the workload: one row.
pub fn run(settings: &Settings) -> Result<Vec<Row>, BenchError> {
    let n = settings.actors;
    let row = harness::measure(settings, Workload::Skynet, "", move |ctx| async move {
        let (time, sum) = harness::timed("skynet", n, async {
            let root = ctx.spawn(Skynet::new(0, n, None));
            harness::ask(&ctx, root, "result").await
        })
        .await;
        let sum = harness::number(&sum);
        harness::check("skynet sum", expected_sum(n), sum)?;
        let workers = tree_size(n);
        Ok(Outcome {
            workers,
            // One sum from every worker but the root, plus the ask and its answer.
            messages: workers + 1,
            ops: n,
            op: "leaves",
            phases: vec![("skynet", time)],
            check: format!("sum {sum}"),
            ..Outcome::default()
        })
    })?;
    Ok(vec![row])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_tree() {
        assert_eq!(tree_size(1_000_000), 1_111_111);
        assert_eq!(expected_sum(1_000_000), 499_999_500_000);
        assert_eq!(tree_size(1), 1);
        assert_eq!(tree_size(25), 1 + 10 + 25);
    }
}
