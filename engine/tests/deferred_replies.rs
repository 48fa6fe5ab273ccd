//! A deferred reply (`Context::defer_reply`) completed off its node's
//! shards never blocks the thread that completes it for ever, and loses
//! nothing while the asker's shard is alive.
//!
//! The answer goes into the asker's shard's inbox, which is bounded (65,536
//! packets) and drained only by that shard. A blocking post into a full
//! inbox waited for ever when that shard was down (nobody drains it), and
//! stopped a shard thread of another node while that shard was busy. Each
//! test makes more asks than an inbox holds and completes their replies
//! while nobody drains the asker's inbox.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use myriad_engine::{BoxError, Context, Message, Node, NodeConfig, NodeHandle, Replier, Worker};

/// More asks than a shard's inbox holds (`INBOX_CAPACITY`, 65,536).
#[path = "support/freezer.rs"]
mod freezer;
use freezer::Freezer;

const ASKS: u64 = (1 << 16) + 64;

const LONG: Duration = Duration::from_secs(60);

/// Hands the reply of every ask it gets to the test.
struct Deferrer(flume::Sender<Replier>);

impl Worker for Deferrer {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        let replier = ctx.defer_reply().ok_or("not an ask")?;
        self.0.send(replier).map_err(|_| "the test is gone")?;
        Ok(())
    }
}

/// Asks the deferrer once, and counts the answer.
struct Asker(Arc<AtomicU64>);

impl Worker for Asker {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        if ctx.send_and_receive("deferrer", "?", LONG).await.is_ok() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// On `go`, spawns `ASKS` askers on its shard and starts each; answers once
/// all asked (their asks are then in the deferrer's mailbox or handled).
struct Spawner(Arc<AtomicU64>);

impl Worker for Spawner {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        for _ in 0..ASKS {
            let asker = ctx.spawn(Asker(self.0.clone()));
            ctx.send(asker, "ask")?;
        }
        ctx.reply("started")?;
        Ok(())
    }
}

/// Completes the replies it is handed, on its shard's thread, on `go`.
struct Completer(flume::Receiver<Replier>);

impl Worker for Completer {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        for replier in self.0.try_iter() {
            replier.complete(Ok(Message::from("late")));
        }
        ctx.reply("completed")?;
        Ok(())
    }
}

fn node(name: &str) -> NodeHandle {
    let config = NodeConfig::default()
        .name(name)
        .shards(1)
        .pin_shards(false)
        .stop_timeout(Duration::from_millis(200))
        .mailbox_capacity(1 << 17);
    Node::spawn(config).unwrap()
}

/// A node with `ASKS` asks waiting in its shard for a deferred reply;
/// returns it, the replies, and the count of answered asks.
fn asks_waiting(name: &str) -> (NodeHandle, Vec<Replier>, Arc<AtomicU64>) {
    let node = node(name);
    let (tx, rx) = flume::unbounded();
    node.start_worker("deferrer", Deferrer(tx)).unwrap();
    let answered = Arc::new(AtomicU64::new(0));
    let spawner = node.spawn(Spawner(answered.clone())).unwrap();
    node.send_and_receive(spawner, "go", LONG).unwrap();
    let repliers: Vec<Replier> = (0..ASKS)
        .map(|_| rx.recv_timeout(LONG).expect("every ask deferred"))
        .collect();
    (node, repliers, answered)
}

#[test]
fn replies_completed_by_a_thread_after_the_askers_shard_stopped_do_not_block_it() {
    let (node, repliers, _answered) = asks_waiting("stopped-asker");
    node.shutdown();
    let (done_tx, done) = flume::bounded(1);
    std::thread::spawn(move || {
        for replier in repliers {
            replier.complete(Ok(Message::from("late")));
        }
        let _ = done_tx.send(());
    });
    done.recv_timeout(LONG)
        .expect("completing replies for a stopped shard does not block");
}

#[test]
fn a_shard_completing_replies_for_a_busy_node_is_not_blocked_and_nothing_is_lost() {
    let (asking, repliers, answered) = asks_waiting("busy-asker");
    // Made before the gate, so dropped after it: a failure below opens the
    // gate (its sender is dropped) before this node's shutdown waits for
    // its shard, which a blocking post would hold until the gate opens.
    let other = node("completer");
    let (frozen_tx, frozen) = flume::bounded(1);
    let (open, gate) = flume::bounded(1);
    let freezer = asking
        .spawn(Freezer {
            frozen: frozen_tx,
            gate,
        })
        .unwrap();
    asking.send(freezer, "freeze").unwrap();
    frozen.recv_timeout(LONG).expect("the asking node freezes");

    // Another node's shard thread completes more replies than the frozen
    // shard's inbox holds, and goes on serving.
    let (tx, rx) = flume::unbounded();
    for replier in repliers {
        tx.send(replier).unwrap();
    }
    let completer = other.spawn(Completer(rx)).unwrap();
    let done = other.send_and_receive(completer, "go", LONG);
    assert_eq!(
        done.expect("the completing shard is not blocked"),
        "completed"
    );

    open.send(()).unwrap();
    let deadline = std::time::Instant::now() + LONG;
    while answered.load(Ordering::Relaxed) < ASKS {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {ASKS} asks answered",
            answered.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    other.shutdown();
    asking.shutdown();
}
