//! `ask`: request-reply latency. Clients on shard 0 ask an echo worker (on
//! shard 0, or on shard 1 across the ring) and record each round trip in an
//! HDR histogram.
//!
//! - At a fixed offered rate, a pacer fires asks at clients on a fixed
//!   schedule (every 100 µs, the asks due by then) whether or not earlier
//!   ones were answered (open loop), and latency runs from the moment the
//!   pacer fired: time spent queued behind a slow answer counts.
//! - At saturation, a few clients each ask again as soon as they have an
//!   answer (closed loop): throughput is the figure, latency includes the
//!   queueing at the echo worker.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use myriad::{BoxError, Context, Message, Worker, WorkerRef};

use crate::cli::Settings;
use crate::harness::{self, BenchError, Tally};
use crate::latency_feed;
use crate::progress;
use crate::report::{latency_histogram, si, Latency, Outcome, Row};
use crate::workloads::{share, Placement, Workload};

/// Asks per row when `--messages` is not given.
const DEFAULT_ASKS: u64 = 200_000;

/// The fixed offered rate, in asks per second.
const OFFERED_RATE: u64 = 100_000;

/// How often the pacer fires the asks that have come due.
const PACER_TICK: Duration = Duration::from_micros(100);

/// Clients the pacer fires at: enough that a client is rarely still busy.
const PACED_CLIENTS: usize = 64;

/// Clients asking in a closed loop at saturation.
const SATURATING_CLIENTS: usize = 16;

/// How asks are offered.
#[derive(Clone, Copy)]
enum Load {
    /// Open loop at this many asks per second.
    Rate(u64),
    /// Closed loop with this many clients.
    Saturated(usize),
}

impl Load {
    fn clients(self) -> usize {
        match self {
            Load::Rate(_) => PACED_CLIENTS,
            Load::Saturated(clients) => clients,
        }
    }

    fn label(self, placement: Placement) -> String {
        match self {
            Load::Rate(rate) => format!("{} at {}/s", placement.label(), si(rate as f64)),
            Load::Saturated(c) => format!("{} saturated, {c} in flight", placement.label()),
        }
    }
}

/// Answers every ask with its own message.
struct Echo;

impl Worker for Echo {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        ctx.reply(msg)?;
        Ok(())
    }
}

/// Asks the echo worker: once per `fire <ns>` (latency from that instant
/// after `epoch`), or `loop <n>` times in a row; `flush` or the end of the
/// loop reports how many asks were answered.
struct Client {
    echo: WorkerRef,
    tally: WorkerRef,
    epoch: Instant,
    latencies: Rc<RefCell<Histogram<u64>>>,
    answered: u64,
}

impl Client {
    async fn ask(&mut self, ctx: &Context, since: Instant) {
        harness::ask(ctx, self.echo, "q").await;
        let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        latency_feed::record(&mut self.latencies.borrow_mut(), nanos);
        self.answered += 1;
        progress::tick(ctx, 1);
    }
}

impl Worker for Client {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if let Some(fired) = msg.strip_prefix("fire ") {
            let fired = self.epoch + Duration::from_nanos(harness::number(fired));
            self.ask(ctx, fired).await;
        } else if let Some(n) = msg.strip_prefix("loop ") {
            for _ in 0..harness::number(n) {
                self.ask(ctx, Instant::now()).await;
            }
            harness::report(ctx, self.tally, self.answered);
        } else {
            assert_eq!(msg, "flush", "unexpected message");
            harness::report(ctx, self.tally, self.answered);
        }
        Ok(())
    }
}

/// On `go`, fires `total` asks at the clients in turn, `rate` per second,
/// then tells each client to `flush`. It wakes every [`PACER_TICK`] and
/// fires the asks that have come due since, so asks arrive in small bursts
/// the way requests arrive from a network.
struct Pacer {
    clients: Vec<WorkerRef>,
    epoch: Instant,
    rate: u64,
    total: u64,
}

impl Worker for Pacer {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        let start = Instant::now();
        let mut fired = 0;
        while fired < self.total {
            glommio::timer::sleep(PACER_TICK).await;
            let due = start.elapsed().as_nanos() * u128::from(self.rate) / 1_000_000_000;
            let due = self.total.min(u64::try_from(due).unwrap_or(u64::MAX));
            for i in fired..due {
                let client = self.clients[i as usize % self.clients.len()];
                let now = self.epoch.elapsed().as_nanos();
                harness::send(ctx, client, format!("fire {now}"));
            }
            fired = fired.max(due);
        }
        for &client in &self.clients {
            harness::send(ctx, client, "flush");
        }
        Ok(())
    }
}

/// Runs the workload: a row per placement and load.
pub fn run(settings: &Settings) -> Result<Vec<Row>, BenchError> {
    let asks = settings.messages_or(DEFAULT_ASKS);
    let mut rows = Vec::new();
    for placement in Placement::all(settings.shards) {
        for load in [
            Load::Rate(OFFERED_RATE),
            Load::Saturated(SATURATING_CLIENTS),
        ] {
            rows.push(run_one(settings, placement, load, asks)?);
        }
    }
    Ok(rows)
}

fn run_one(
    settings: &Settings,
    placement: Placement,
    load: Load,
    asks: u64,
) -> Result<Row, BenchError> {
    let label = load.label(placement);
    harness::measure(settings, Workload::Ask, label, move |ctx| async move {
        let tally = ctx.spawn(Tally::default());
        let echo = harness::spawn_at(&ctx, placement.far_shard(), Echo).await?;
        let latencies = Rc::new(RefCell::new(latency_histogram()));
        let epoch = Instant::now();
        let clients: Vec<WorkerRef> = (0..load.clients())
            .map(|_| {
                ctx.spawn(Client {
                    echo,
                    tally,
                    epoch,
                    latencies: latencies.clone(),
                    answered: 0,
                })
            })
            .collect();
        // The orders that start the load, and the messages besides the
        // asks and their answers: orders and reports, plus one `fire` per
        // ask and a `flush` per client at a fixed rate.
        let (orders, overhead): (Vec<(WorkerRef, Message)>, u64) = match load {
            Load::Rate(rate) => {
                let pacer = ctx.spawn(Pacer {
                    clients: clients.clone(),
                    epoch,
                    rate,
                    total: asks,
                });
                let c = clients.len() as u64;
                (vec![(pacer, "go".into())], 1 + asks + 2 * c)
            }
            Load::Saturated(c) => {
                let orders = clients.iter().enumerate().map(|(i, &client)| {
                    let n = share(asks, c, i);
                    (client, format!("loop {n}").into())
                });
                (orders.collect(), 2 * c as u64)
            }
        };
        let reports = clients.len();
        let (time, answered) = harness::round(&ctx, tally, "asks", asks, orders, reports).await?;
        harness::check("asks answered", asks, answered)?;
        let extra = match load {
            Load::Rate(rate) => ("offered_per_s", rate as f64),
            Load::Saturated(c) => ("in_flight", c as f64),
        };
        let latency = Latency::of(&latencies.borrow());
        Ok(Outcome {
            workers: load.clients() as u64 + 1,
            messages: 2 * asks + overhead,
            ops: asks,
            op: "asks",
            phases: vec![("asks", time)],
            latency,
            check: format!("{answered} answered"),
            extra: vec![extra],
            ..Outcome::default()
        })
    })
}
