//! Micro-benchmarks of the engine's hot paths, with criterion:
//!
//! - `local_send`: a send to a worker of the same shard, and its handling;
//! - `ring_batch`: a batch of 256 messages through the cross-shard ring;
//! - `ask`: one `send_and_receive` round trip, same shard and across shards;
//! - `spawn`: one `ctx.spawn` of a small worker;
//! - `restart`: a supervised child panics and its supervisor restarts it
//!   (the panic's unwinding, the notice, a new worker, its watch, and the
//!   two asks that drive it; the panic hook is silenced).
//!
//! Every measurement runs inside the node: a driver worker on shard 0 gets
//! `<op> <iterations>`, times the loop itself and answers the nanoseconds,
//! so the cost of reaching the node from the benchmark thread is not in the
//! figures. Sends wait for a `sync` ask every 16,384 messages (its cost is
//! included, spread over them). Run with
//! `cargo bench -p myriad-engine --bench engine`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use myriad_engine::{
    BoxError, ChildSpec, Context, Message, Node, NodeConfig, NodeHandle, Strategy, Supervisor,
    Worker, WorkerRef,
};

/// Messages per batch in `ring_batch`.
const BATCH: u64 = 256;

/// Messages a driver sends before it waits for them to be handled, so that
/// mailboxes stay bounded however many iterations criterion asks for.
const SYNC_EVERY: u64 = 16_384;

/// The longest a driver's loop may take.
const LONG: Duration = Duration::from_secs(60);

/// Counts what it gets, answers `sync`, stops on `stop`.
struct Sink;

impl Worker for Sink {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        match msg.as_str() {
            "sync" => ctx.reply("synced")?,
            "stop" => ctx.stop(),
            _ => {}
        }
        Ok(())
    }
}

/// Answers every ask with its message.
struct Echo;

impl Worker for Echo {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        ctx.reply(msg)?;
        Ok(())
    }
}

/// Panics on every message.
struct Crasher;

impl Worker for Crasher {
    async fn handle_message(&mut self, _: &mut Context, _: Message) -> Result<(), BoxError> {
        panic!("crash")
    }
}

/// Runs `<op> <n>` loops against its peers and answers the nanoseconds the
/// loop took.
struct Driver {
    near: WorkerRef,
    far: WorkerRef,
    near_echo: WorkerRef,
    far_echo: WorkerRef,
    /// Supervises one `Crasher`, restarting it without limit.
    supervisor: WorkerRef,
}

impl Driver {
    async fn run(&self, ctx: &Context, op: &str, n: u64) -> Result<Duration, BoxError> {
        let start = Instant::now();
        match op {
            "local" => {
                for i in 1..=n {
                    ctx.send(self.near, "m")?;
                    if i % SYNC_EVERY == 0 || i == n {
                        ctx.send_and_receive(self.near, "sync", LONG).await?;
                    }
                }
            }
            "batch" => {
                for i in 1..=n {
                    for _ in 0..BATCH {
                        ctx.send(self.far, "m")?;
                    }
                    // Let the flusher ship this batch as one ring entry.
                    futures_lite::future::yield_now().await;
                    if i % (SYNC_EVERY / BATCH) == 0 || i == n {
                        ctx.send_and_receive(self.far, "sync", LONG).await?;
                    }
                }
            }
            "ask" | "ask-far" => {
                let echo = if op == "ask" {
                    self.near_echo
                } else {
                    self.far_echo
                };
                for _ in 0..n {
                    ctx.send_and_receive(echo, "q", LONG).await?;
                }
            }
            "spawn" => {
                let spawned: Vec<WorkerRef> = (0..n).map(|_| ctx.spawn(Sink)).collect();
                let elapsed = start.elapsed();
                for worker in spawned {
                    ctx.send(worker, "stop")?;
                }
                return Ok(elapsed);
            }
            "restart" => {
                for _ in 0..n {
                    // The supervisor answers its child, after any restart
                    // whose notice came before this ask.
                    let child = ctx.send_and_receive(self.supervisor, "", LONG).await?;
                    let child: WorkerRef = child.as_str().parse()?;
                    // Fails: the child panics.
                    let _ = ctx.send_and_receive(child, "crash", LONG).await;
                }
            }
            other => return Err(format!("unknown op {other}").into()),
        }
        Ok(start.elapsed())
    }
}

impl Worker for Driver {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let (op, n) = msg.split_once(' ').ok_or("<op> <n>")?;
        let elapsed = self.run(ctx, op, n.parse()?).await?;
        ctx.reply(elapsed.as_nanos().to_string())?;
        Ok(())
    }
}

/// A two-shard node and its driver.
struct Bench {
    node: NodeHandle,
    driver: WorkerRef,
}

impl Bench {
    fn start() -> Bench {
        let node = Node::spawn(NodeConfig::default().name("bench").shards(2)).expect("node starts");
        let driver = Driver {
            near: node.spawn_on(0, Sink).expect("spawn"),
            far: node.spawn_on(1, Sink).expect("spawn"),
            near_echo: node.spawn_on(0, Echo).expect("spawn"),
            far_echo: node.spawn_on(1, Echo).expect("spawn"),
            supervisor: node
                .spawn_on(
                    0,
                    Supervisor::new(Strategy::OneForOne)
                        .intensity(usize::MAX, Duration::from_secs(1))
                        .child(ChildSpec::anonymous(|| Crasher)),
                )
                .expect("spawn"),
        };
        let driver = node.spawn_on(0, driver).expect("spawn");
        Bench { node, driver }
    }

    /// Times `iters` iterations of `op` inside the node.
    fn time(&self, op: &str, iters: u64) -> Duration {
        let nanos = self
            .node
            .send_and_receive(self.driver, format!("{op} {iters}"), LONG)
            .expect("the driver answers");
        Duration::from_nanos(nanos.parse().expect("nanoseconds"))
    }

    /// A criterion benchmark of `op`, `elements` messages per iteration.
    fn bench(&self, c: &mut Criterion, name: &str, op: &str, elements: u64) {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(elements));
        group.bench_function(op, |b| b.iter_custom(|iters| self.time(op, iters)));
        group.finish();
    }
}

fn main() {
    let bench = Bench::start();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    bench.bench(&mut c, "local_send", "local", 1);
    bench.bench(&mut c, "ring_batch", "batch", BATCH);
    bench.bench(&mut c, "ask_round_trip", "ask", 1);
    bench.bench(&mut c, "ask_round_trip", "ask-far", 1);
    bench.bench(&mut c, "spawn", "spawn", 1);
    // Thousands of panics: their default report to stderr would be most
    // of what is measured.
    std::panic::set_hook(Box::new(|_| {}));
    bench.bench(&mut c, "restart", "restart", 1);
    c.final_summary();
    bench.node.shutdown();
}
