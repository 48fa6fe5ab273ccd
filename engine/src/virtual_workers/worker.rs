//! [`VirtualWorker`], and the host that runs one as an ordinary worker of
//! its shard: its activation and deactivation hooks are the host's
//! `on_start` and `on_stop`, and on the way out it hands its state to the
//! registry to be saved.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;

use super::{Key, Persistent};
use crate::worker::{panic_text, Runnable};
use crate::{BoxError, Context, ExitReason, Message, Worker, WorkerRef};

/// A worker addressed by a [`Key`], activated on demand and deactivated
/// when idle, whose state outlives its activations.
///
/// Register its kind with
/// [`NodeConfig::virtual_kind`](crate::NodeConfig::virtual_kind), with a
/// factory that builds it from its key and its saved state (`None` the
/// first time). Messages sent to its key activate it; after the kind's idle
/// time, on [`Context::deactivate`], when the node's cap of active workers
/// evicts it, or when the node stops, [`on_deactivate`](Self::on_deactivate)
/// runs and [`state`](Self::state) is saved.
///
/// ```
/// use myriad_engine::{BoxError, Context, Message, VirtualWorker};
///
/// struct Counter { count: u64 }
///
/// impl VirtualWorker for Counter {
///     type State = u64;
///     fn state(&self) -> &u64 { &self.count }
///     async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
///         self.count += 1;
///         ctx.reply(self.count.to_string())?;
///         Ok(())
///     }
/// }
/// ```
pub trait VirtualWorker: 'static {
    /// What is saved between activations.
    type State: Persistent;

    /// The state to save now (at deactivation; `Context::save` takes it
    /// explicitly).
    fn state(&self) -> &Self::State;

    /// Handles one message, as [`Worker::handle_message`] does.
    fn handle_message(
        &mut self,
        ctx: &mut Context,
        msg: Message,
    ) -> impl Future<Output = Result<(), BoxError>>;

    /// Runs at each activation, after the factory and before the first
    /// message.
    fn on_activate(&mut self, ctx: &mut Context) -> impl Future<Output = ()> {
        let _ = ctx;
        async {}
    }

    /// Runs at each deactivation, before the state is saved.
    fn on_deactivate(&mut self, ctx: &mut Context) -> impl Future<Output = ()> {
        let _ = ctx;
        async {}
    }
}

/// Builds the workers of one kind from a key and stored state bytes.
pub(crate) trait Factory: Send + Sync {
    /// The worker for `key` from its stored state, as a shard's slot holds
    /// it; an error says why the state could not be used.
    fn build(&self, key: &Key, state: Option<&[u8]>) -> Result<Box<dyn Runnable>, String>;
}

/// A [`Factory`] from the user's closure, which makes `W`s.
pub(crate) struct Typed<W, F>(pub(crate) F, pub(crate) PhantomData<fn() -> W>);

impl<W, F> Factory for Typed<W, F>
where
    W: VirtualWorker,
    F: Fn(&Key, Option<W::State>) -> W + Send + Sync,
{
    fn build(&self, key: &Key, state: Option<&[u8]>) -> Result<Box<dyn Runnable>, String> {
        let state = match state {
            Some(bytes) => Some(
                W::State::from_bytes(bytes)
                    .map_err(|e| format!("the stored state of {key} is corrupt: {e}"))?,
            ),
            None => None,
        };
        let built = std::panic::catch_unwind(AssertUnwindSafe(|| (self.0)(key, state)));
        let worker = built.map_err(|panic| format!("the factory of {key} {}", panic_text(&panic)))?;
        Ok(Box::new(Host { worker, owing: true }))
    }
}

/// A virtual worker as a shard runs it.
struct Host<W> {
    worker: W,
    /// Whether it may still owe messages that waited for its activation:
    /// until it owes none, it tells the registry of each message it
    /// handles, and a deactivation from outside waits for it.
    owing: bool,
}

impl<W> Host<W> {
    /// One message (or notice) was handled.
    fn handled(&mut self, ctx: &Context) {
        if self.owing {
            self.owing = ctx.shard_handle().virtual_handled_owed(ctx.me());
        }
    }
}

impl<W: VirtualWorker> Worker for Host<W> {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let handled = self.worker.handle_message(ctx, msg).await;
        self.handled(ctx);
        handled
    }

    async fn on_terminated(&mut self, ctx: &mut Context, _who: WorkerRef, _reason: ExitReason) {
        self.handled(ctx);
    }

    async fn on_start(&mut self, ctx: &mut Context) {
        self.worker.on_activate(ctx).await;
    }

    async fn on_stop(&mut self, ctx: &mut Context) {
        self.worker.on_deactivate(ctx).await;
        let state = self.worker.state().to_bytes().map_err(|e| e.to_string());
        ctx.shard_handle().virtual_stopped(ctx.me(), state);
    }
}
