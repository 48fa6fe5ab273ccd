//! FIFO across address forms: sends to one worker by name and by
//! `WorkerRef`, interleaved, arrive in the order they were sent whenever
//! both take one path (see `Context::send`).

use std::time::Duration;

use myriad_engine::plugin::home_shard;
use myriad_engine::{BoxError, Context, Message, Node, NodeConfig, NodeHandle, Worker, WorkerRef};

const SHARDS: usize = 3;
const MESSAGES: u64 = 20_000;
const LONG: Duration = Duration::from_secs(30);

/// Counts the sequence numbers it receives out of order; answers `report`
/// with `<received> <violations>`.
#[derive(Default)]
struct Checker {
    next: u64,
    received: u64,
    violations: u64,
}

impl Worker for Checker {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if &*msg == "report" {
            ctx.reply(format!("{} {}", self.received, self.violations))?;
            return Ok(());
        }
        let seq: u64 = msg.parse()?;
        if seq != self.next {
            self.violations += 1;
        }
        self.next = seq + 1;
        self.received += 1;
        Ok(())
    }
}

/// On `go <n>`, sends 0..n to the checker, even numbers by name and odd
/// ones by reference, then asks it (by name) for its report and answers
/// with it.
struct Sender {
    name: String,
    target: WorkerRef,
}

impl Worker for Sender {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let n: u64 = msg.strip_prefix("go ").ok_or("expected go <n>")?.parse()?;
        for seq in 0..n {
            if seq % 2 == 0 {
                ctx.send(self.name.as_str(), seq.to_string())?;
            } else {
                ctx.send(self.target, seq.to_string())?;
            }
            if seq % 500 == 499 {
                // Let the outboxes ship, so batches hold both forms.
                futures_lite::future::yield_now().await;
            }
        }
        let report = ctx
            .send_and_receive(self.name.as_str(), "report", LONG)
            .await?;
        ctx.reply(report)?;
        Ok(())
    }
}

fn node() -> NodeHandle {
    let config = NodeConfig::default()
        .name("order")
        .shards(SHARDS)
        .pin_shards(false);
    Node::spawn(config).expect("node starts")
}

/// A worker name whose home is shard `home`.
fn name_at_home(home: usize) -> String {
    (0..)
        .map(|i| format!("checker-{i}"))
        .find(|n| home_shard(n, SHARDS) == home)
        .expect("some name hashes to every shard")
}

fn run_from(node: &NodeHandle, shard: usize, name: String, target: WorkerRef) {
    let sender = node.spawn_on(shard, Sender { name, target }).unwrap();
    let report = node
        .send_and_receive(sender, format!("go {MESSAGES}"), LONG)
        .unwrap();
    assert_eq!(&*report, format!("{MESSAGES} 0"), "from shard {shard}");
}

#[test]
fn name_and_reference_sends_keep_one_order_to_a_worker_on_its_home_shard() {
    let node = node();
    let name = name_at_home(1);
    let target = node.start_worker(&name, Checker::default()).unwrap();
    assert_eq!(target.shard(), 1);
    run_from(&node, 0, name, target);
    // From the receiver's own shard.
    let name = name_at_home(2);
    let target = node.start_worker(&name, Checker::default()).unwrap();
    run_from(&node, 2, name, target);
    node.shutdown();
}

#[test]
fn name_and_reference_sends_keep_one_order_from_the_home_shard() {
    let node = node();
    let name = name_at_home(0);
    let target = node.start_worker_on(1, &name, Checker::default()).unwrap();
    assert_eq!(target.shard(), 1, "placed away from its home shard");
    run_from(&node, 0, name, target);
    node.shutdown();
}
