//! What every workload shares: a fresh node to run on ([`measure`]), a
//! [`Tally`] worker that gathers the reports of the workload's own workers,
//! timed phases ([`round`], [`timed`]) and the check that turns a wrong count
//! into an error ([`check`]).
//!
//! The harness's workers treat anything unexpected (a send that fails, a
//! malformed number) as a bug and panic. The engine contains the panic, the
//! hook installed by [`install_panic_hook`] records it, and the phase waiting
//! in [`gather`] fails with its text instead of hanging.

use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use myriad::{
    Address, BoxError, Context, Error, Message, Node, NodeConfig, Replier, Worker, WorkerRef,
};

use crate::cli::Settings;
use crate::memory;
use crate::monitor;
use crate::node_metrics;
use crate::progress;
use crate::report::{Outcome, Row};
use crate::workloads::Workload;

/// The longest any one phase may take before it is an error.
const PATIENCE: Duration = Duration::from_secs(600);

/// How often a waiting phase looks for a recorded panic or a stall.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// A phase whose progress count does not move for this long has stalled.
pub const STALL: Duration = Duration::from_secs(60);

/// Mailbox capacity of the nodes: the workloads bound their own queues.
const MAILBOX_CAPACITY: usize = 1 << 24;

/// The first panic of a worker since the current workload started.
static PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Why a workload produced no figure.
#[derive(Debug)]
pub enum BenchError {
    /// The engine refused something: start-up, a send, an ask.
    Engine(myriad::Error),
    /// A worker of the workload panicked.
    WorkerPanicked(String),
    /// The workload made no progress for a while ([`STALL`]).
    Stalled {
        /// Steps done when it stopped moving.
        done: u64,
        /// How long it did not move.
        after: Duration,
    },
    /// Something the workload needs could not be set up (e.g. a child
    /// process).
    Setup(String),
    /// The workload's result is wrong, so its timing means nothing.
    Mismatch {
        /// What was counted.
        what: &'static str,
        /// The right value.
        expected: u64,
        /// The value the run produced.
        got: u64,
    },
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Engine(e) => write!(f, "engine error: {e}"),
            BenchError::WorkerPanicked(why) => write!(f, "a worker failed: {why}"),
            BenchError::Setup(why) => write!(f, "cannot set up: {why}"),
            BenchError::Stalled { done, after } => {
                write!(f, "stalled: no progress for {after:?} after {done} steps")
            }
            BenchError::Mismatch {
                what,
                expected,
                got,
            } => write!(f, "wrong result: {what} is {got}, expected {expected}"),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<myriad::Error> for BenchError {
    fn from(e: myriad::Error) -> Self {
        BenchError::Engine(e)
    }
}

/// `Ok` if `got == expected`, else a [`BenchError::Mismatch`].
pub fn check(what: &'static str, expected: u64, got: u64) -> Result<(), BenchError> {
    if got == expected {
        Ok(())
    } else {
        Err(BenchError::Mismatch {
            what,
            expected,
            got,
        })
    }
}

/// Records the first panic of each workload, then prints it as usual.
pub fn install_panic_hook() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let mut first = PANIC.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| info.to_string());
        drop(first);
        print(info);
    }));
}

fn take_panic() -> Option<String> {
    PANIC.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Runs `main` on a fresh node of `settings.shards` shards and turns its
/// [`Outcome`] into a result row, with the peak memory of the run.
pub fn measure<F, Fut>(
    settings: &Settings,
    workload: Workload,
    variant: impl Into<String>,
    main: F,
) -> Result<Row, BenchError>
where
    F: FnOnce(Context) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Outcome, BenchError>> + 'static,
{
    measure_on(settings, config(settings), workload, variant, main)
}

/// The configuration of the node a workload runs on. Workloads loop in one
/// handler on purpose (`main` spawning a million workers): such a stall is
/// the workload, not news, so no stall watchdog.
pub fn config(settings: &Settings) -> NodeConfig {
    NodeConfig::default()
        .name("bench")
        .shards(settings.shards)
        .mailbox_capacity(MAILBOX_CAPACITY)
        .stall_threshold(Duration::ZERO)
}

/// [`measure`] on a node of configuration `config` (made from
/// [`config`]).
pub fn measure_on<F, Fut>(
    settings: &Settings,
    config: NodeConfig,
    workload: Workload,
    variant: impl Into<String>,
    main: F,
) -> Result<Row, BenchError>
where
    F: FnOnce(Context) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Outcome, BenchError>> + 'static,
{
    let variant = variant.into();
    let _variant = progress::Variant::start(&variant);
    take_panic();
    memory::release_free_heap();
    memory::reset_peak();
    let node = Node::spawn(config)?;
    let watched = node_metrics::watch(&node);
    let outcome = node.run_main(main);
    // The node's last metrics, while it still runs.
    monitor::sample_now();
    drop(watched);
    node.shutdown();
    // The node's threads have ended and handed over their latencies.
    monitor::sample_now();
    let outcome = outcome??;
    Ok(Row::new(
        workload,
        variant,
        settings.shards,
        outcome,
        memory::peak(),
    ))
}

/// Runs `work` as a phase named `label` of `total` steps: shows progress
/// while it runs longer than a second and returns how long it took.
pub async fn timed<T>(label: &str, total: u64, work: impl Future<Output = T>) -> (Duration, T) {
    let _progress = progress::Phase::start(label, total);
    let start = Instant::now();
    let out = work.await;
    (start.elapsed(), out)
}

/// One timed round of a workload: the orders are sent (fire and forget) and
/// the round ends when `reports` reports have reached `tally`. Returns the
/// time and the sum of the reports.
pub async fn round(
    ctx: &Context,
    tally: WorkerRef,
    label: &str,
    total: u64,
    orders: impl IntoIterator<Item = (WorkerRef, Message)>,
    reports: usize,
) -> Result<(Duration, u64), BenchError> {
    let (time, sum) = timed(label, total, async {
        for (to, order) in orders {
            ctx.send(to, order)?;
        }
        gather(ctx, tally, reports as u64).await
    })
    .await;
    Ok((time, sum?))
}

/// Waits until `tally` has `reports` reports and returns their sum; fails
/// at once when a worker panics, and when the phase's progress count (see
/// [`progress::tick`]) has not moved for [`STALL`].
pub async fn gather(ctx: &Context, tally: WorkerRef, reports: u64) -> Result<u64, BenchError> {
    gather_within(ctx, tally, reports, STALL).await
}

/// [`gather`], with `stall` as the limit for a progress count that does
/// not move.
async fn gather_within(
    ctx: &Context,
    tally: WorkerRef,
    reports: u64,
    stall: Duration,
) -> Result<u64, BenchError> {
    let answer = async {
        let sum = ctx
            .send_and_receive(tally, format!("expect {reports}"), PATIENCE)
            .await?;
        Ok(number(&sum))
    };
    let watch = async {
        let mut moved = (progress::done(), Instant::now());
        loop {
            glommio::timer::sleep(WATCH_EVERY).await;
            if let Some(why) = take_panic() {
                return Err(BenchError::WorkerPanicked(why));
            }
            let done = progress::done();
            if done != moved.0 {
                moved = (done, Instant::now());
            } else if moved.1.elapsed() >= stall {
                return Err(BenchError::Stalled { done, after: stall });
            }
        }
    };
    futures_lite::future::or(answer, watch).await
}

/// Starts `worker` on `shard`: a plain local spawn when that is this
/// worker's own shard.
pub async fn spawn_at<W: Worker + Send>(
    ctx: &Context,
    shard: usize,
    worker: W,
) -> Result<WorkerRef, BenchError> {
    if shard == ctx.shard() {
        Ok(ctx.spawn(worker))
    } else {
        Ok(ctx.spawn_on(shard, worker).await?)
    }
}

/// Sends `msg` to `to`; a refused send is a bug of the workload.
pub fn send(ctx: &Context, to: impl Into<Address>, msg: impl Into<Message>) {
    if let Err(e) = ctx.send(to, msg) {
        panic!("send refused: {e}");
    }
}

/// Sends `msg` to `to`, waiting for room only when the way there is full
/// (a burst bigger than a mailbox or a ring between shards): a plain send
/// while it goes, [`Context::send_when_ready`] when it is refused as full.
pub async fn send_or_wait(
    ctx: &Context,
    to: impl Into<Address>,
    msg: impl Into<Message>,
) -> Result<(), BenchError> {
    let (to, msg) = (to.into(), msg.into());
    match ctx.send(&to, msg.clone()) {
        Err(Error::MailboxFull(_)) => Ok(ctx.send_when_ready(to, msg).await?),
        sent => Ok(sent?),
    }
}

/// Asks `to` and waits for the answer; a failed ask is a bug of the workload.
///
/// Neither an `async fn` nor an `async` block, which would keep the ask's
/// future twice (as an argument or capture, and as what they await): the
/// agents workload counts the bytes a handler suspended in an ask keeps.
pub fn ask<'a>(
    ctx: &'a Context,
    to: WorkerRef,
    msg: impl Into<Message>,
) -> impl Future<Output = Message> + 'a {
    let mut answer = ctx.send_and_receive(to, msg, PATIENCE);
    std::future::poll_fn(move |cx| {
        std::pin::Pin::new(&mut answer)
            .poll(cx)
            .map(|answer| answer.unwrap_or_else(|e| panic!("ask failed: {e}")))
    })
}

/// The worker that sent the current message.
pub fn sender(ctx: &Context) -> WorkerRef {
    ctx.sender()
        .expect("workload messages come from workers of the node")
}

/// Reports `n` to `tally`.
pub fn report(ctx: &Context, tally: WorkerRef, n: u64) {
    send(ctx, tally, decimal(n));
}

/// `n` as a message, formatted without growing a string on the way.
pub fn decimal(n: u64) -> Message {
    use std::fmt::Write;
    let mut text = String::with_capacity(20);
    // Writing to a String cannot fail.
    let _ = write!(text, "{n}");
    text.into()
}

/// The number a message carries; anything else is a bug of the workload.
pub fn number(msg: &str) -> u64 {
    msg.trim()
        .parse()
        .unwrap_or_else(|_| panic!("expected a number, got {msg:?}"))
}

/// Adds up the numbers workers report to it and answers the ask
/// `expect <n>` with the sum once `n` reports have arrived; then starts over.
#[derive(Default)]
pub struct Tally {
    reports: u64,
    sum: u64,
    waiting: Option<(u64, Replier)>,
}

impl Worker for Tally {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if let Some(n) = msg.strip_prefix("expect ") {
            let replier = ctx.defer_reply().ok_or("`expect` must be asked")?;
            self.waiting = Some((number(n), replier));
        } else {
            self.sum += number(&msg);
            self.reports += 1;
        }
        if matches!(&self.waiting, Some((n, _)) if self.reports >= *n) {
            if let Some((_, replier)) = self.waiting.take() {
                replier.complete(Ok(decimal(self.sum)));
                (self.reports, self.sum) = (0, 0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_sum_is_an_error_not_a_figure() {
        assert!(check("sum", 499_999_500_000, 499_999_500_000).is_ok());
        let err = check("sum", 499_999_500_000, 499_999_499_999).unwrap_err();
        assert!(matches!(
            err,
            BenchError::Mismatch {
                what: "sum",
                expected: 499_999_500_000,
                got: 499_999_499_999
            }
        ));
        assert_eq!(
            err.to_string(),
            "wrong result: sum is 499999499999, expected 499999500000"
        );
    }

    #[test]
    fn a_phase_that_stops_moving_fails_as_stalled() {
        let config = NodeConfig::default().shards(1).pin_shards(false);
        let outcome = Node::start(config, |ctx| async move {
            let tally = ctx.spawn(Tally::default());
            report(&ctx, tally, 1);
            // The second report never comes.
            gather_within(&ctx, tally, 2, Duration::from_millis(200)).await
        })
        .unwrap();
        let err = outcome.unwrap_err();
        assert!(matches!(err, BenchError::Stalled { .. }), "{err}");
        assert!(err.to_string().starts_with("stalled: no progress"), "{err}");
    }

    #[test]
    fn a_tally_answers_with_the_sum_of_its_reports() {
        let config = NodeConfig::default().shards(1).pin_shards(false);
        let sum = Node::start(config, |ctx| async move {
            let tally = ctx.spawn(Tally::default());
            for n in [1, 2, 39] {
                report(&ctx, tally, n);
            }
            gather(&ctx, tally, 3).await
        })
        .unwrap();
        assert_eq!(sum.unwrap(), 42);
    }

    #[test]
    fn numbers_are_read_strictly() {
        assert_eq!(number(" 42"), 42);
        assert!(std::panic::catch_unwind(|| number("4x2")).is_err());
    }
}
