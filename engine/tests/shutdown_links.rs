//! A worker that calls on another shard while the node stops learns that
//! the shard is gone; it is not left waiting for an answer that never comes.
//!
//! Shards talk through rings between each pair of them. A shard that has
//! stopped reads its rings no more, so what a shard still running put into
//! one after that (a waiting send, a spawn on that shard) sat there with its
//! answer channel open, and the sender waited until its `on_stop` deadline:
//! a million-key bench run logged "on_stop did not finish in time" at every
//! shutdown, its virtual workers' `on_deactivate` stuck in a waiting send to
//! a worker of the shard that had stopped first.
//!
//! In a file of its own: it watches this process's threads for the node's
//! shard threads, and no other test's node may run meanwhile.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/shutdown.rs"]
mod shutdown;
use shutdown::shuts_down_within;

use myriad_engine::{BoxError, Context, Message, Node, NodeConfig, Worker, WorkerRef};

const LONG: Duration = Duration::from_secs(60);

/// What the stopping worker's calls to the stopped shard returned.
type Outcomes = Arc<Mutex<Vec<String>>>;

/// Answers an ask with the id of the thread it runs on.
struct Idle;

impl Worker for Idle {
    async fn handle_message(&mut self, ctx: &mut Context, _: Message) -> Result<(), BoxError> {
        if ctx.is_ask() {
            // `/proc/thread-self` links to `<pid>/task/<tid>`.
            let link = std::fs::read_link("/proc/thread-self")?;
            let tid = link.file_name().ok_or("no thread id")?;
            ctx.reply(tid.to_string_lossy().into_owned())?;
        }
        Ok(())
    }
}

/// On stop, waits until the thread `thread` of shard 0 has ended, then
/// sends to `target` (a worker of shard 0) waiting for room, and spawns a
/// worker on shard 0.
struct CallsTheStoppedShard {
    target: WorkerRef,
    thread: String,
    outcomes: Outcomes,
}

impl Worker for CallsTheStoppedShard {
    async fn handle_message(&mut self, _: &mut Context, _: Message) -> Result<(), BoxError> {
        Ok(())
    }

    async fn on_stop(&mut self, ctx: &mut Context) {
        let deadline = Instant::now() + LONG;
        while thread_alive(&self.thread) && Instant::now() < deadline {
            ctx.sleep(Duration::from_millis(1)).await;
        }
        let sent = ctx.send_when_ready(self.target, "hello").await;
        let spawned = ctx.spawn_on(0, Idle).await;
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        outcomes.push(format!("send_when_ready: {sent:?}"));
        outcomes.push(format!("spawn_on: {spawned:?}"));
    }
}

/// Whether this process's thread `tid` still runs.
fn thread_alive(tid: &str) -> bool {
    std::path::Path::new("/proc/self/task").join(tid).exists()
}

#[test]
fn calls_to_a_shard_that_stopped_first_fail_instead_of_waiting_out_the_stop_deadline() {
    let config = NodeConfig::default()
        .name("stopped-shard")
        .shards(2)
        .pin_shards(false)
        // Longer than the test's patience: a call left unanswered shows as
        // missing outcomes, not as a warning after the deadline.
        .stop_timeout(LONG * 2);
    let node = Node::spawn(config).unwrap();
    let target = node.spawn_on(0, Idle).unwrap();
    let thread = node
        .send_and_receive(target, "tid", LONG)
        .unwrap()
        .to_string();
    assert!(thread_alive(&thread), "shard 0's thread {thread} is seen");
    let outcomes = Outcomes::default();
    node.spawn_on(
        1,
        CallsTheStoppedShard {
            target,
            thread,
            outcomes: outcomes.clone(),
        },
    )
    .unwrap();

    assert!(
        shuts_down_within(node, LONG),
        "the node's shutdown hung: a call to the stopped shard was never answered"
    );
    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(
        outcomes,
        [
            "send_when_ready: Err(NodeStopped)",
            "spawn_on: Err(ShardDown(0))"
        ],
    );
}
