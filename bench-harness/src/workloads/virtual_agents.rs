//! `virtual`: virtual workers on the embedded store (redb, in a scratch
//! data directory).
//!
//! - *activate new*: N keys get their first message (nothing stored yet):
//!   clients on shard 0 ask them in closed loops; latency is each first
//!   ask's round trip, activation included.
//! - *deactivate*: every key is told to deactivate; the phase ends when the
//!   store has the last state (a probe's `ctx.save`, queued behind them).
//! - *activate stored*: every key is asked again: each activation reads its
//!   state from the store. Latency as above; the store's size is reported.
//! - With `--stored S` above N: *store beforehand* first stores the other
//!   S - N keys, N at a time (activated new, deactivated), and *activate
//!   stored, n active* last asks up to 100,000 of them while the N stay
//!   active: the activation latency of a node holding S stored and N
//!   active.
//! - *steady, by key* and *steady, by name*: M messages from a producer on
//!   the target's shard to one active virtual worker, and to one plain
//!   named worker, in the same run.

use std::cell::RefCell;
use std::ops::Range;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use myriad::{
    Address, BoxError, Context, Key, Message, NodeConfig, VirtualWorker, Worker, WorkerRef,
    REDB_FILE,
};

use crate::cli::Settings;
use crate::harness::{self, BenchError, Tally};
use crate::progress;
use crate::report::{latency_histogram, nanos, Latency, Outcome, Row};
use crate::workloads::{share, Workload};

/// Messages of the steady rows when `--messages` is not given.
const DEFAULT_MESSAGES: u64 = 5_000_000;

/// Messages per window of credit in the steady rows.
const WINDOW: u64 = 8192;

/// Clients asking keys in closed loops.
const CLIENTS: usize = 64;

/// Keys stored beforehand that are activated while `--actors` others are
/// active (at most; fewer if fewer are stored).
const INACTIVE_SAMPLE: u64 = 100_000;

/// Counts messages; answers `count`; sends `more` to its sender after each
/// window. The plain worker and the virtual one are the same counter.
#[derive(Default)]
struct Count(u64);

impl Count {
    fn on(&mut self, ctx: &mut Context, msg: &Message) -> Result<(), BoxError> {
        if msg == "count" {
            ctx.reply(harness::decimal(self.0))?;
            return Ok(());
        }
        self.0 += 1;
        progress::tick(ctx, 1);
        if self.0 % WINDOW == 0 {
            harness::send(ctx, harness::sender(ctx), "more");
        }
        Ok(())
    }
}

impl Worker for Count {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        self.on(ctx, &msg)
    }
}

/// A virtual counter; on `sleep` it deactivates, on `save` it saves, and
/// each deactivation is reported to the tally.
struct Agent {
    count: Count,
    tally: Arc<OnceLock<WorkerRef>>,
}

impl VirtualWorker for Agent {
    type State = u64;

    fn state(&self) -> &u64 {
        &self.count.0
    }

    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        match &*msg {
            "sleep" => ctx.deactivate()?,
            "save" => {
                ctx.save(&self.count.0).await?;
                ctx.reply("saved")?;
            }
            "hello" => ctx.reply("hi")?,
            _ => self.count.on(ctx, &msg)?,
        }
        Ok(())
    }

    async fn on_deactivate(&mut self, ctx: &mut Context) {
        if let Some(&tally) = self.tally.get() {
            // A million deactivations at once can fill the tally's mailbox:
            // wait for room. When the node shuts down, the tally may be gone
            // and nobody counts: a report that cannot go is not a failure
            // then, and during a phase a lost one would stall its gather.
            let _ = harness::send_or_wait(ctx, tally, harness::decimal(1)).await;
        }
    }
}

/// Sends M messages to `to`, a window at a time (a `more` for each window
/// counted), then asks for the count and reports it.
struct Producer {
    to: Address,
    tally: WorkerRef,
    left: u64,
    reported: bool,
}

impl Worker for Producer {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if let Some(m) = msg.strip_prefix("go ") {
            self.left = harness::number(m);
        }
        let window = self.left.min(WINDOW);
        for _ in 0..window {
            harness::send(ctx, self.to.clone(), "1");
        }
        self.left -= window;
        if self.left == 0 && !self.reported {
            self.reported = true;
            let count = ctx
                .send_and_receive(self.to.clone(), "count", Duration::from_secs(60))
                .await?;
            harness::report(ctx, self.tally, harness::number(&count));
        }
        Ok(())
    }
}

/// Asks keys `from..to` one after the other, each `msg`, recording latency.
struct Client {
    tally: WorkerRef,
    latencies: Rc<RefCell<Histogram<u64>>>,
}

impl Worker for Client {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let mut words = msg.split(' ');
        let (Some(from), Some(to)) = (words.next(), words.next()) else {
            return Err("expected `from to`".into());
        };
        let (from, to) = (harness::number(from), harness::number(to));
        for i in from..to {
            let start = Instant::now();
            ctx.send_and_receive(key(i), "hello", Duration::from_secs(60))
                .await?;
            let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.latencies.borrow_mut().saturating_record(nanos);
            progress::tick(ctx, 1);
        }
        harness::report(ctx, self.tally, to - from);
        Ok(())
    }
}

fn key(i: u64) -> Key {
    Key::new("agent", &i.to_string())
}

fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("myriad-bench-virtual-{}", std::process::id()))
}

/// The node: kind `agent` on the embedded store in a fresh directory.
fn config(settings: &Settings, tally: Arc<OnceLock<WorkerRef>>) -> NodeConfig {
    let _ = std::fs::remove_dir_all(scratch_dir());
    harness::config(settings)
        .data_dir(scratch_dir())
        .virtual_kind("agent", move |_, saved: Option<u64>| Agent {
            count: Count(saved.unwrap_or(0)),
            tally: tally.clone(),
        })
}

/// Runs the workload: the activation rows on one node, the steady rows on
/// another.
pub fn run(settings: &Settings) -> Result<Vec<Row>, BenchError> {
    let mut rows = lifecycle(settings)?;
    for by_key in [true, false] {
        rows.push(steady(settings, by_key)?);
    }
    let _ = std::fs::remove_dir_all(scratch_dir());
    Ok(rows)
}

/// Asks keys `keys` through [`CLIENTS`] clients; the time and latencies.
async fn ask_all(
    ctx: &Context,
    tally: WorkerRef,
    label: &str,
    keys: Range<u64>,
) -> Result<(Duration, Option<Latency>), BenchError> {
    let n = keys.end - keys.start;
    let latencies = Rc::new(RefCell::new(latency_histogram()));
    let mut orders = Vec::new();
    let mut from = keys.start;
    for i in 0..CLIENTS {
        let to = from + share(n, CLIENTS, i);
        let client = ctx.spawn(Client {
            tally,
            latencies: latencies.clone(),
        });
        orders.push((client, Message::from(format!("{from} {to}"))));
        from = to;
    }
    let (time, asked) = harness::round(ctx, tally, label, n, orders, CLIENTS).await?;
    harness::check("keys asked", n, asked)?;
    let latency = Latency::of(&latencies.borrow());
    Ok((time, latency))
}

/// Deactivates keys `keys` (a `sleep` each) and waits until the store has
/// their state; the time.
async fn deactivate_all(
    ctx: &Context,
    sleeps: WorkerRef,
    label: &str,
    keys: Range<u64>,
) -> Result<Duration, BenchError> {
    let n = keys.end - keys.start;
    let (time, slept) = harness::timed(label, n, async {
        for i in keys.clone() {
            harness::send_or_wait(ctx, key(i), "sleep").await?;
        }
        let slept = harness::gather(ctx, sleeps, n).await?;
        // Queued behind every deactivation's save: when it is stored, they
        // are. The probe is a key of no range.
        ctx.send_and_receive(key(u64::MAX), "save", Duration::from_secs(600))
            .await?;
        Ok::<_, BenchError>(slept)
    })
    .await;
    harness::check("workers deactivated", n, slept?)?;
    Ok(time)
}

/// Stores keys `keys` beforehand, `at_once` at a time (activated new, then
/// deactivated); the time.
async fn store_beforehand(
    ctx: &Context,
    tally: WorkerRef,
    sleeps: WorkerRef,
    keys: Range<u64>,
    at_once: u64,
) -> Result<Duration, BenchError> {
    let start = Instant::now();
    let mut from = keys.start;
    while from < keys.end {
        let to = keys.end.min(from + at_once);
        ask_all(ctx, tally, "store beforehand: activate", from..to).await?;
        deactivate_all(ctx, sleeps, "store beforehand: deactivate", from..to).await?;
        from = to;
    }
    Ok(start.elapsed())
}

fn lifecycle(settings: &Settings) -> Result<Vec<Row>, BenchError> {
    let n = settings.actors;
    let stored = settings.stored;
    let deactivated = Arc::new(OnceLock::new());
    let config = config(settings, deactivated.clone());
    let row = harness::measure_on(
        settings,
        config,
        Workload::Virtual,
        "lifecycle",
        move |ctx| async move {
            let tally = ctx.spawn(Tally::default());
            let _ = deactivated.set(ctx.spawn(Tally::default()));
            let sleeps = deactivated
                .get()
                .copied()
                .ok_or(BenchError::Setup("no tally of deactivations".into()))?;
            // Keys `n..stored` are stored first; `0..n` go through the
            // lifecycle; then a sample of `n..stored` is activated while
            // `0..n` stay active.
            let before = store_beforehand(&ctx, tally, sleeps, n..stored, n).await?;
            let (new_time, new_latency) = ask_all(&ctx, tally, "activate new", 0..n).await?;
            let sleep_time = deactivate_all(&ctx, sleeps, "deactivate", 0..n).await?;
            let (stored_time, stored_latency) =
                ask_all(&ctx, tally, "activate stored", 0..n).await?;
            let sample = n..stored.min(n + INACTIVE_SAMPLE);
            let (inactive_time, inactive_latency) = if sample.is_empty() {
                (Duration::ZERO, None)
            } else {
                ask_all(&ctx, tally, "activate stored, n active", sample.clone()).await?
            };
            let store_bytes =
                std::fs::metadata(scratch_dir().join(REDB_FILE)).map_or(0, |m| m.len());
            let mut phases = vec![
                ("activate new", new_time),
                ("deactivate", sleep_time),
                ("activate stored", stored_time),
            ];
            let mut check = format!("{n} keys activated, deactivated, activated from the store");
            if !sample.is_empty() {
                phases.insert(0, ("store beforehand", before));
                phases.push(("activate stored, n active", inactive_time));
                check += &format!(
                    "; {} more stored beforehand, {} of them activated with {n} active",
                    stored - n,
                    sample.end - sample.start
                );
                if let Some(l) = inactive_latency {
                    check += &format!(" (p50 {}, p99 {})", nanos(l.p50), nanos(l.p99));
                }
            }
            let sampled = sample.end - sample.start;
            Ok(Outcome {
                workers: n + sampled,
                messages: 3 * n + sampled,
                // n new activations, n deactivations, n from the store, and
                // the sample's activations (the keys stored beforehand are
                // set-up, not counted).
                ops: 3 * n + sampled,
                op: "lifecycle steps",
                phases,
                latency: stored_latency,
                check,
                extra: vec![
                    ("stored_keys", stored as f64),
                    (
                        "activation_with_n_active_p50_ns",
                        inactive_latency.map_or(0.0, |l| l.p50 as f64),
                    ),
                    (
                        "activation_with_n_active_p99_ns",
                        inactive_latency.map_or(0.0, |l| l.p99 as f64),
                    ),
                    ("new_activations_per_s", n as f64 / new_time.as_secs_f64()),
                    (
                        "new_activation_p50_ns",
                        new_latency.map_or(0.0, |l| l.p50 as f64),
                    ),
                    (
                        "new_activation_p99_ns",
                        new_latency.map_or(0.0, |l| l.p99 as f64),
                    ),
                    ("deactivations_per_s", n as f64 / sleep_time.as_secs_f64()),
                    (
                        "stored_activations_per_s",
                        n as f64 / stored_time.as_secs_f64(),
                    ),
                    ("store_bytes", store_bytes as f64),
                ],
                ..Outcome::default()
            })
        },
    )?;
    Ok(vec![row])
}

fn steady(settings: &Settings, by_key: bool) -> Result<Row, BenchError> {
    let m = settings.messages_or(DEFAULT_MESSAGES);
    let config = config(settings, Arc::default());
    let variant = if by_key {
        "steady, by key"
    } else {
        "steady, by name"
    };
    let shards = settings.shards;
    harness::measure_on(
        settings,
        config,
        Workload::Virtual,
        variant,
        move |ctx| async move {
            let tally = ctx.spawn(Tally::default());
            let (to, home): (Address, usize) = if by_key {
                let k = key(0);
                ctx.send_and_receive(&k, "hello", Duration::from_secs(10))
                    .await?; // active before timing
                let home = k.home_shard(shards);
                (k.into(), home)
            } else {
                let home = myriad::plugin::home_shard("counter", shards);
                ctx.start_worker("counter", Count::default()).await?;
                ("counter".into(), home)
            };
            let producer = harness::spawn_at(
                &ctx,
                home,
                Producer {
                    to,
                    tally,
                    left: 0,
                    reported: false,
                },
            )
            .await?;
            let order = (producer, Message::from(format!("go {m}")));
            let (time, count) = harness::round(&ctx, tally, "steady", m, [order], 1).await?;
            harness::check("messages counted", m, count)?;
            Ok(Outcome {
                workers: 2,
                messages: m + m / WINDOW + 3,
                ops: m,
                op: "msgs",
                phases: vec![("steady", time)],
                check: format!("{count} counted"),
                ..Outcome::default()
            })
        },
    )
}
