//! The `Worker` trait, and how a shard runs a worker without a task per
//! worker.
//!
//! An idle worker is only its boxed state in a slot of its shard. When its
//! mailbox gets a message, the shard's scheduler builds a *run*: one future
//! that owns the worker, handles up to [`RUN_BUDGET`] messages one at a time,
//! and gives the worker back to its slot. The scheduler polls the run inline;
//! only a run that suspends (a sleep, an ask) is kept, in the shard's table
//! of suspended runs (`suspended.rs`), and only until it finishes.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{self, Poll};

use futures_lite::FutureExt;

use crate::envelope::{Delivery, ReplyTo};
use crate::shard::Shard;
use crate::spare::Run;
use crate::{BoxError, Context, Error, ExitReason, Message, WorkerRef};

/// How many messages one run handles before the worker goes to the back of
/// the run queue, so that one busy worker cannot starve the others.
pub(crate) const RUN_BUDGET: usize = 256;

/// A worker: private state plus behaviour, handling one message at a time.
///
/// Implement it with `async fn`s; the state is the struct itself.
///
/// ```
/// use myriad_engine::{BoxError, Context, Message, Worker};
///
/// struct Greeter;
///
/// impl Worker for Greeter {
///     async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
///         ctx.reply(format!("Hello, {msg}!"))?;
///         Ok(())
///     }
/// }
/// ```
///
/// A handler may `.await` (a timer, another worker's answer): only this worker
/// waits, its mailbox keeps filling, the shard keeps running other workers.
/// A panic is caught: the worker is stopped, asks waiting on it fail with
/// [`Error::WorkerFailed`](crate::Error::WorkerFailed), the node goes on.
/// Returning an error fails the current ask the same way but keeps the
/// worker running.
pub trait Worker: 'static {
    /// Handles one message. Use `ctx.reply` to answer an ask.
    fn handle_message(
        &mut self,
        ctx: &mut Context,
        msg: Message,
    ) -> impl Future<Output = Result<(), BoxError>>;

    /// Runs once, before the first message.
    fn on_start(&mut self, ctx: &mut Context) -> impl Future<Output = ()> {
        let _ = ctx;
        async {}
    }

    /// Runs when a worker this one watches ([`Context::watch`]) has
    /// terminated: once per watch, in this worker's mailbox order, with the
    /// reason. A panic here stops this worker as a handler's would.
    fn on_terminated(
        &mut self,
        ctx: &mut Context,
        who: WorkerRef,
        reason: ExitReason,
    ) -> impl Future<Output = ()> {
        let _ = (ctx, who, reason);
        async {}
    }

    /// Runs once when the worker is stopped (not after a panic), also when
    /// the node shuts down, within the node's stop deadline
    /// ([`NodeConfig::stop_timeout`](crate::NodeConfig::stop_timeout)).
    fn on_stop(&mut self, ctx: &mut Context) -> impl Future<Output = ()> {
        let _ = ctx;
        async {}
    }
}

/// A worker with its type erased, as stored in a shard's slot.
pub(crate) trait Runnable: 'static {
    /// Starts a run that handles the worker's queued messages and polls it
    /// once, in one of the shard's spare blocks; returns the run if it
    /// suspended. `me` is the worker's reference as
    /// [`WorkerRef::to_bits`]: a reference (12 bytes) given to this dynamic
    /// call went through memory, written in narrow pieces and read back in
    /// wider ones, which stalled each run on store forwarding.
    fn run(
        self: Box<Self>,
        shard: &Rc<Shard>,
        me: u64,
        first: bool,
        cx: &mut task::Context<'_>,
    ) -> Option<Run>;
    /// Starts the run that stops the worker (`on_stop`, then its slot is
    /// freed) and polls it once in a spare block; returns it if it
    /// suspended.
    fn stop(
        self: Box<Self>,
        shard: &Rc<Shard>,
        me: WorkerRef,
        cx: &mut task::Context<'_>,
    ) -> Option<Run>;

    /// Builds the future that stops the worker as [`Runnable::stop`] does,
    /// to be awaited rather than run by the scheduler (the node is
    /// stopping).
    fn shut_down(self: Box<Self>, shard: Rc<Shard>, me: WorkerRef) -> Run;
}

impl<W: Worker> Runnable for W {
    fn run(
        self: Box<Self>,
        shard: &Rc<Shard>,
        me: u64,
        first: bool,
        cx: &mut task::Context<'_>,
    ) -> Option<Run> {
        let run = || run_worker(self, shard.clone(), me, first);
        shard.spares().poll_in_place(run, cx)
    }

    fn stop(
        self: Box<Self>,
        shard: &Rc<Shard>,
        me: WorkerRef,
        cx: &mut task::Context<'_>,
    ) -> Option<Run> {
        let run = || stop_worker(self, shard.clone(), me);
        shard.spares().poll_in_place(run, cx)
    }

    fn shut_down(self: Box<Self>, shard: Rc<Shard>, me: WorkerRef) -> Run {
        Box::pin(stop_worker(self, shard, me))
    }
}

/// Runs a worker's `on_stop`, drops it and frees its slot.
async fn stop_worker<W: Worker>(worker: Box<W>, shard: Rc<Shard>, me: WorkerRef) {
    let (shard, panic) = on_stop(worker, shard, me).await;
    let exit = match panic {
        Some(text) => ExitReason::Panicked(Arc::from(text)),
        None => ExitReason::Stopped,
    };
    shard.remove_worker(me, || Error::NoSuchWorker(format!("{me} (stopped)")), exit);
}

/// Runs a worker's `on_stop` and drops the worker (a panic in either is
/// logged); gives the shard back, with the text of the first panic.
async fn on_stop<W: Worker>(
    mut worker: Box<W>,
    shard: Rc<Shard>,
    me: WorkerRef,
) -> (Rc<Shard>, Option<String>) {
    let mut ctx = Context::new(shard, me, None, None);
    let mut panicked = None;
    if let Err(panic) = AssertUnwindSafe(worker.on_stop(&mut ctx))
        .catch_unwind()
        .await
    {
        let reason = panic_text(&panic);
        tracing::error!(worker = %me, %reason, "on_stop panicked");
        panicked = Some(reason);
    }
    let dropped = drop_contained(worker, me);
    (ctx.shard_handle().clone(), panicked.or(dropped))
}

/// Drops `value` (a worker, or a run that owns one) with a panic in its
/// `Drop` caught and logged: a worker's destructor must not take its shard
/// down. Returns the panic's text, if it panicked.
pub(crate) fn drop_contained<T>(value: T, me: impl std::fmt::Display) -> Option<String> {
    let panic = std::panic::catch_unwind(AssertUnwindSafe(move || drop(value))).err()?;
    let reason = panic_text(&panic);
    tracing::error!(worker = %me, %reason, "a worker's Drop panicked");
    Some(reason)
}

/// A worker's run: `on_start` first if `first`, then its messages one at a
/// time until its mailbox is empty or [`RUN_BUDGET`] is spent.
///
/// Not an `async fn`: an `async fn` keeps its arguments for its whole life
/// beside the locals they are moved into, and a run that suspends keeps
/// all of it (rust-lang/rust#62958); an `async` block uses what it
/// captures in place.
///
/// Its captures are written into the run's block just before its first
/// poll reads them, so they are what can be written and read back whole: the
/// worker's reference as its bits (see [`Runnable::run`]), and the context
/// made in the block. Made outside and captured, the context was assembled
/// on the stack and copied into the block with wide moves straddling its
/// fields' fresh narrow stores: a store-forwarding stall per run.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice (see above)"
)]
fn run_worker<W: Worker>(
    mut worker: Box<W>,
    shard: Rc<Shard>,
    me: u64,
    first: bool,
) -> impl Future<Output = ()> {
    async move {
        // One context serves the whole run; each message sets its sender and
        // reply channel. The worker's reference is read from it from here
        // on: a copy kept in the run would be read back whole right after
        // its pieces were written (the stall above).
        let index = shard.index();
        let mut ctx = Context::new(shard, WorkerRef::from_bits(me, index), None, None);
        if first {
            if let Err(panic) = AssertUnwindSafe(worker.on_start(&mut ctx))
                .catch_unwind()
                .await
            {
                ctx.shard_handle().worker_panicked(ctx.me(), panic_text(&panic));
                drop_contained(worker, ctx.me());
                return;
            }
        }
        let mut handled = 0;
        let mut budget = RUN_BUDGET;
        loop {
            // The next delivery is taken apart, and its handler's call made,
            // in a block of its own: what it binds ends before the `.await`,
            // so the delivery is not kept in the run's state (written there
            // field by field and read straight back whole to move the
            // message into the call: a store-forwarding stall per message),
            // nor copied in and out of it.
            let handling = {
                let Some((back, Delivery { msg, from, reply })) =
                    ctx.next_or_park(handled, budget > 0, worker)
                else {
                    return;
                };
                worker = back;
                handled = 1;
                budget -= 1;
                // The reply channel goes into the context before any
                // `.await`, so that it is not also kept in the run's state.
                match reply {
                    Some(ReplyTo::Notice(reason)) => {
                        ctx.begin(None, None);
                        // A notice always names who terminated.
                        let who = from.unwrap_or(ctx.me());
                        let (worker, ctx) = (&mut *worker, &mut ctx);
                        Handling::Notice {
                            call: async move {
                                worker.on_terminated(ctx, who, reason).await;
                                Ok(())
                            },
                        }
                    }
                    reply => {
                        tracing::trace!(size = msg.len(), ask = reply.is_some(), "handle");
                        ctx.begin(from, reply);
                        Handling::Message {
                            call: worker.handle_message(&mut ctx, msg),
                        }
                    }
                }
            };
            let outcome = AssertUnwindSafe(handling).catch_unwind().await;
            match outcome {
                Ok(Ok(())) => ctx.finish(),
                Ok(Err(error)) => {
                    tracing::warn!(worker = %ctx.me(), %error, "handler returned an error");
                    ctx.fail(error.to_string());
                }
                Err(panic) => {
                    let reason = panic_text(&panic);
                    ctx.fail(reason.clone());
                    ctx.shard_handle().worker_panicked(ctx.me(), reason);
                    drop_contained(worker, ctx.me());
                    return;
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The call that handles one delivery: a message's or a notice's.
    #[project = HandlingProj]
    enum Handling<M, N> {
        Message { #[pin] call: M },
        Notice { #[pin] call: N },
    }
}

impl<M: Future, N: Future<Output = M::Output>> Future for Handling<M, N> {
    type Output = M::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<M::Output> {
        match self.project() {
            HandlingProj::Message { call } => call.poll(cx),
            HandlingProj::Notice { call } => call.poll(cx),
        }
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_text(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}
