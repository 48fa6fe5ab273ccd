//! `NodeHandle::metrics`: a scripted scenario in which every counter moves
//! by exactly what the script did.

use std::time::Duration;

use myriad_engine::metrics::{Asks, Sent, ShardMetrics, SAMPLE_EVERY};
use myriad_engine::plugin::home_shard;
use myriad_engine::{
    BoxError, Context, Dropped, Message, Node, NodeConfig, Replier, Worker, WorkerRef,
};

const LONG: Duration = Duration::from_secs(30);

/// Plain sends from the driver to the sink on the other shard.
const SENDS: u64 = 2 * SAMPLE_EVERY;
/// Asks answered by the echo worker.
const ASKS: u64 = 5;
/// Asks that time out (the hoarder never answers).
const TIMEOUTS: u64 = 3;

/// Answers every ask with the message.
struct Echo;

impl Worker for Echo {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if ctx.is_ask() {
            ctx.reply(msg)?;
        }
        Ok(())
    }
}

/// Keeps every ask's replier unanswered, so that its asker times out.
#[derive(Default)]
struct Hoarder(Vec<Replier>);

impl Worker for Hoarder {
    async fn handle_message(&mut self, ctx: &mut Context, _: Message) -> Result<(), BoxError> {
        self.0.extend(ctx.defer_reply());
        Ok(())
    }
}

/// Panics on any message.
struct Bomb;

impl Worker for Bomb {
    async fn handle_message(&mut self, _: &mut Context, _: Message) -> Result<(), BoxError> {
        panic!("bomb");
    }
}

/// Sleeps for an hour on its first message (a pending sleep, a suspended
/// run).
struct Sleeper;

impl Worker for Sleeper {
    async fn handle_message(&mut self, ctx: &mut Context, _: Message) -> Result<(), BoxError> {
        ctx.sleep(Duration::from_secs(3600)).await;
        Ok(())
    }
}

/// Runs the script on `go` and answers when it is done.
struct Driver {
    sink: WorkerRef,
    other: usize,
}

impl Worker for Driver {
    async fn handle_message(&mut self, ctx: &mut Context, _: Message) -> Result<(), BoxError> {
        // Plain sends across shards.
        for i in 0..SENDS {
            ctx.send(self.sink, i.to_string())?;
        }
        // Answered asks, to a worker of this shard.
        let echo = ctx.spawn(Echo);
        for _ in 0..ASKS {
            ctx.send_and_receive(echo, "ping", LONG).await?;
        }
        // Asks that time out.
        let hoarder = ctx.spawn(Hoarder::default());
        for _ in 0..TIMEOUTS {
            let asked = ctx
                .send_and_receive(hoarder, "hello?", Duration::from_millis(1))
                .await;
            assert!(
                matches!(asked, Err(myriad_engine::Error::Timeout { .. })),
                "{asked:?}"
            );
        }
        // One panic, which fails its ask.
        let bomb = ctx.spawn(Bomb);
        assert!(ctx.send_and_receive(bomb, "boom", LONG).await.is_err());
        // One pending sleep.
        let sleeper = ctx.spawn(Sleeper);
        ctx.send(sleeper, "sleep")?;
        // One message accepted for the other shard and dropped there: its
        // receiver is stopping.
        let gone = ctx.spawn_on(self.other, Echo).await?;
        ctx.stop_worker(gone).await?;
        ctx.send(gone, "too late")?;
        // An answered ask across shards: the sink has taken everything
        // above once it answers.
        ctx.send_and_receive(self.sink, "done?", LONG).await?;
        ctx.reply("done")?;
        Ok(())
    }
}

#[test]
fn every_counter_moves_by_what_the_script_did() {
    let config = NodeConfig::default()
        .name("metrics")
        .shards(2)
        .pin_shards(false)
        .stop_timeout(Duration::from_millis(100))
        // The panic's report (a backtrace, with RUST_BACKTRACE) may hold
        // the shard past 10 ms: a true stall, but not this test's.
        .stall_threshold(Duration::from_secs(10));
    let node = Node::spawn(config).unwrap();
    let here = home_shard("driver", 2);
    let other = 1 - here;
    let sink = node.start_worker_on(other, "sink", Echo).unwrap();
    node.start_worker("driver", Driver { sink, other }).unwrap();
    let before = node.metrics().unwrap();
    assert_eq!(before.node, "metrics");
    assert_eq!(before.links, None, "no transport");
    assert_eq!(before.total(|s| s.handled), 0);

    let done = node.send_and_receive("driver", "go", LONG).unwrap();
    assert_eq!(&*done, "done");
    let metrics = node.metrics().unwrap();
    let (driver_shard, sink_shard) = (&metrics.shards[here], &metrics.shards[other]);

    // The driver's shard: `go` (from this thread, routed on the driver's
    // home shard) and every ask and send of the script.
    let expected = ShardMetrics {
        shard: here,
        // go, the echo's asks, the hoarder's.
        handled: 1 + ASKS + TIMEOUTS,
        sent: Sent {
            // go, the asks to echo, hoarder and bomb, the sleep.
            local: 1 + ASKS + TIMEOUTS + 1 + 1,
            // The sends, the dropped one, the last ask.
            cross_shard: SENDS + 1 + 1,
            remote: 0,
        },
        workers_live: 4,
        workers_suspended: 1,
        run_queue: 0,
        asks: Asks {
            in_flight: 0,
            answered: ASKS + 1,
            timed_out: TIMEOUTS,
            failed: 1,
        },
        sleeps_pending: 1,
        dropped: Dropped::default(),
        panics: 1,
        stalls: 0,
        ..driver_shard.clone()
    };
    assert_eq!(driver_shard, &expected);

    // The sink's shard: the sends and the last ask handled, the message to
    // the stopped worker dropped.
    let expected = ShardMetrics {
        shard: other,
        handled: SENDS + 1,
        sent: Sent::default(),
        workers_live: 1,
        workers_suspended: 0,
        run_queue: 0,
        asks: Asks::default(),
        sleeps_pending: 0,
        dropped: Dropped {
            no_such_worker: 1,
            ..Dropped::default()
        },
        panics: 0,
        stalls: 0,
        ..sink_shard.clone()
    };
    assert_eq!(sink_shard, &expected);
    // One push and one take in SAMPLE_EVERY are sampled: the depth and the
    // handler time of each; a wait is followed one at a time.
    let pushes = SENDS + 1;
    assert_eq!(sink_shard.mailbox_depth.count, pushes / SAMPLE_EVERY);
    assert_eq!(sink_shard.handler_time.count, pushes / SAMPLE_EVERY);
    let waits = sink_shard.mailbox_wait.count;
    assert!((1..=pushes / SAMPLE_EVERY).contains(&waits), "{waits}");
    assert!(sink_shard.mailbox_depth_max >= 1);
    let depth = &sink_shard.mailbox_depth;
    assert!(
        depth.min >= 1 && depth.max <= sink_shard.mailbox_depth_max,
        "{depth:?}"
    );
    node.shutdown();
}
