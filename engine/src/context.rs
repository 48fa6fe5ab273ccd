//! `Context`: what a worker (or `main`) can do: send, ask, reply, start and
//! stop workers, list them.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use crate::envelope::{Delivery, ReplyTo};
use crate::inbox::Inbox;
use crate::shard::Shard;
use crate::{Address, Error, Message, Replier, Result, Worker, WorkerInfo, WorkerRef};

/// The handle a worker gets with each message (and `main` gets once).
///
/// It is tied to the shard the worker runs on: it is neither `Send` nor
/// `Sync`, and it is only valid during the call it was given to.
pub struct Context {
    shard: Rc<Shard>,
    me: WorkerRef,
    from: Option<WorkerRef>,
    reply: Option<ReplyTo>,
    /// `main`'s messages (`None` for a worker's context).
    inbox: Option<Rc<Inbox>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("me", &self.me)
            .field("shard", &self.shard.index())
            .field("sender", &self.from)
            .field("is_ask", &self.is_ask())
            .finish()
    }
}

impl Context {
    pub(crate) fn new(
        shard: Rc<Shard>,
        me: WorkerRef,
        from: Option<WorkerRef>,
        reply: Option<ReplyTo>,
    ) -> Self {
        Context {
            shard,
            me,
            from,
            reply,
            inbox: None,
        }
    }

    /// The context of `main`, whose worker `me` queues its messages in
    /// `inbox`.
    pub(crate) fn main(shard: Rc<Shard>, me: WorkerRef, inbox: Rc<Inbox>) -> Self {
        Context {
            inbox: Some(inbox),
            ..Context::new(shard, me, None, None)
        }
    }

    /// Starts handling a message from `from` (answered through `reply`).
    #[inline(always)]
    pub(crate) fn begin(&mut self, from: Option<WorkerRef>, reply: Option<ReplyTo>) {
        self.from = from;
        self.reply = reply;
    }

    /// The shard this context belongs to.
    pub(crate) fn shard_handle(&self) -> &Rc<Shard> {
        &self.shard
    }

    /// This worker's reference.
    pub fn me(&self) -> WorkerRef {
        self.me
    }

    /// Counts the `handled` messages of this context's worker and gives it
    /// its next one, with the worker back (see [`Shard::next_or_park`]).
    pub(crate) fn next_or_park<W: crate::worker::Runnable>(
        &self,
        handled: u64,
        more: bool,
        worker: Box<W>,
    ) -> Option<(Box<W>, crate::envelope::Delivery)> {
        self.shard.next_or_park(&self.me, handled, more, worker)
    }

    /// The worker that sent the current message, if a worker sent it (not
    /// a thread outside the node). A message from a worker of another node
    /// has that worker for its sender ([`WorkerRef::is_remote`]): a plain
    /// `ctx.send(sender, ..)` answers it across the zone.
    pub fn sender(&self) -> Option<WorkerRef> {
        self.from
    }

    /// Whether the current message was sent with `send_and_receive` and
    /// still waits for a reply.
    pub fn is_ask(&self) -> bool {
        self.reply.is_some()
    }

    /// The shard this worker runs on.
    pub fn shard(&self) -> usize {
        self.shard.index()
    }

    /// How many shards the node has.
    pub fn shards(&self) -> usize {
        self.shard.shard_count()
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        self.shard.node_name()
    }

    /// Whether the node has begun to shut down.
    pub fn node_is_stopping(&self) -> bool {
        self.shard
            .node()
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sends `msg` to `to` and returns at once (fire and forget).
    ///
    /// Fails at once with [`Error::NoSuchWorker`] or [`Error::MailboxFull`]
    /// when the receiver is on this shard; a message to another shard that
    /// turns out undeliverable there is dropped and counted by reason
    /// ([`NodeHandle::dropped`](crate::NodeHandle::dropped)). To wait for
    /// room rather than fail, use [`send_when_ready`](Self::send_when_ready).
    ///
    /// Messages from one sender to one address arrive in the order they
    /// were sent. Sends to one worker by name and by [`WorkerRef`] share
    /// that order when the worker lives on its name's home shard (every
    /// worker started with `start_worker`) or the sender runs on that home
    /// shard. A worker placed elsewhere (`start_worker_on`) is found by name
    /// through its home shard, so a send by name from a third shard may
    /// arrive after a later send by reference.
    pub fn send(&self, to: impl Into<Address>, msg: impl Into<Message>) -> Result<()> {
        let delivery = Delivery {
            msg: msg.into(),
            from: Some(self.me),
            reply: None,
        };
        self.shard.route(&to.into(), delivery).map_err(|u| u.error)
    }

    /// Sends `msg` to `to` and waits until it is in the receiver's mailbox:
    /// where [`send`](Self::send) would fail (or, across shards, drop) with
    /// [`Error::MailboxFull`], this waits for room instead. `Ok` means the
    /// message is enqueued; it fails with [`Error::NoSuchWorker`] if the
    /// receiver does not exist or stops before taking it. Only this worker
    /// waits; its own mailbox keeps filling.
    ///
    /// A worker whose own mailbox is full does not wait: its message goes in
    /// past the receiver's capacity. So two workers that flood each other
    /// never deadlock (a waiting worker is never the one waited for), at the
    /// price of exceeding the capacity by one message per such send.
    ///
    /// To a worker of another node, `Ok` means what it means for
    /// [`send`](Self::send) (the link took it), and this waits where `send`
    /// would fail with `MailboxFull` for want of room on the way (the
    /// worker's delivery window); the same rule keeps a worker whose own
    /// mailbox is full from waiting (see the guide's "Delivery guarantees").
    ///
    /// ```no_run
    /// # use myriad_engine::{BoxError, Context, Message, Worker};
    /// struct Producer;
    ///
    /// impl Worker for Producer {
    ///     async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
    ///         for i in 0..1_000_000 {
    ///             ctx.send_when_ready("consumer", i.to_string()).await?; // never MailboxFull
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub async fn send_when_ready(
        &self,
        to: impl Into<Address>,
        msg: impl Into<Message>,
    ) -> Result<()> {
        self.shard
            .send_when_ready(Some(self.me), &to.into(), msg.into())
            .await
    }

    /// Sends `msg` to `to` and waits for its reply, at most `timeout`.
    ///
    /// Fails with [`Error::Timeout`] (whose text says "timeout"), at once
    /// with [`Error::NoSuchWorker`] for an unknown worker, and with
    /// [`Error::WorkerFailed`] if the worker panics or returns an error.
    ///
    /// The ask is sent when the future is first polled. While it waits, the
    /// future holds the target, the timeout and an entry in the shard's
    /// table of asks: a handler suspended in it keeps about a hundred bytes
    /// for it.
    pub fn send_and_receive(
        &self,
        to: impl Into<Address>,
        msg: impl Into<Message>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Message>> + '_ {
        self.shard.ask(self.me, to.into(), msg.into(), timeout)
    }

    /// [`send_and_receive`](Self::send_and_receive) with the node's default
    /// timeout.
    pub fn ask(
        &self,
        to: impl Into<Address>,
        msg: impl Into<Message>,
    ) -> impl Future<Output = Result<Message>> + '_ {
        self.send_and_receive(to, msg, self.shard.default_timeout())
    }

    /// Waits `duration` without holding up the shard: only this worker
    /// waits (its mailbox keeps filling).
    ///
    /// Cheaper than `glommio::timer::sleep` when many workers sleep at once
    /// (an agent simulation): a sleep costs O(1) with no allocation in the
    /// shard's deadline wheel, where a glommio timer is a B-tree entry. It
    /// never ends early and has a granularity of 250 µs. The wait starts
    /// when the future is first polled; a handler suspended in it keeps
    /// 32 bytes for it, and the shard a 48-byte entry.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use myriad_engine::{BoxError, Context, Message, Worker};
    /// struct Agent;
    ///
    /// impl Worker for Agent {
    ///     async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
    ///         ctx.sleep(Duration::from_millis(800)).await; // "thinking"
    ///         ctx.reply(format!("thought about {msg}"))?;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + '_ {
        self.shard.sleep_for(duration)
    }

    /// Answers the current ask. Fails with [`Error::NothingToReplyTo`] if the
    /// message was not an ask or was already answered.
    pub fn reply(&mut self, msg: impl Into<Message>) -> Result<()> {
        let reply = self.reply.take().ok_or(Error::NothingToReplyTo)?;
        self.shard.complete(reply, Ok(msg.into()));
        Ok(())
    }

    /// Takes the current ask's answer channel, to answer it later (from a
    /// later message, after other work). Returns `None` if the message is not
    /// an ask. Dropping the [`Replier`] unanswered fails the ask with
    /// [`Error::NoReply`].
    pub fn defer_reply(&mut self) -> Option<Replier> {
        let reply = self.reply.take()?;
        Some(Replier::new(reply, &self.shard))
    }

    /// Starts an anonymous worker on this shard and returns its reference.
    pub fn spawn<W: Worker>(&self, worker: W) -> WorkerRef {
        self.shard.insert_worker(Box::new(worker), None, true)
    }

    /// Starts an anonymous worker on shard `shard`.
    pub async fn spawn_on<W: Worker + Send>(&self, shard: usize, worker: W) -> Result<WorkerRef> {
        self.shard.spawn_on(shard, worker).await
    }

    /// Starts a worker with a unique name, on the shard its name hashes to.
    pub async fn start_worker<W: Worker + Send>(&self, name: &str, worker: W) -> Result<WorkerRef> {
        self.shard.start_named(name, None, worker).await
    }

    /// Starts a worker with a unique name on an explicit shard.
    pub async fn start_worker_on<W: Worker + Send>(
        &self,
        shard: usize,
        name: &str,
        worker: W,
    ) -> Result<WorkerRef> {
        self.shard.start_named(name, Some(shard), worker).await
    }

    /// Stops a worker: it finishes its current message, runs `on_stop`, and
    /// is gone; messages still queued for it are dropped (asks fail).
    ///
    /// Returns once the worker is marked to stop and its name is free: a
    /// `start_worker` with the same name right after succeeds, and sends by
    /// name fail with [`Error::NoSuchWorker`]. It does not wait for the
    /// worker's current message or `on_stop`, so two workers may stop each
    /// other without deadlock.
    pub async fn stop_worker(&self, who: impl Into<Address>) -> Result<()> {
        self.shard.stop_worker(who.into()).await
    }

    /// Watches the worker `target` means: when it terminates (stops,
    /// panics), this worker's [`Worker::on_terminated`] runs once, with its
    /// reference and the [`ExitReason`](crate::ExitReason). Watching a
    /// worker twice is one watch. A reference to a worker already gone is
    /// answered at once with [`ExitReason::NoSuchWorker`](crate::ExitReason::NoSuchWorker);
    /// a name bound to no worker fails with [`Error::NoSuchWorker`]. Returns
    /// the watched worker's reference (a name is resolved once: a worker
    /// started later under the same name is not watched).
    ///
    /// A worker of another node (`node/name`, or a remote reference such as
    /// a remote `ctx.sender()`) is watched the same way, through the
    /// transport; besides its stop or panic, the watch also fires, once,
    /// with [`ExitReason::NodeLost`](crate::ExitReason::NodeLost) when the
    /// link to that node is lost (a new link does not bring the watch back:
    /// watch again). Without a transport it fails with [`Error::NoRoute`].
    ///
    /// A watch costs nothing on the message path: it is an entry kept with
    /// the watched worker until it fires or [`unwatch`](Self::unwatch)
    /// removes it.
    pub async fn watch(&self, target: impl Into<Address>) -> Result<WorkerRef> {
        self.shard.watch(self.me, target.into()).await
    }

    /// Removes this worker's watch of `target`. `Ok(true)` if the watch was
    /// removed before it fired: no notice will come. `Ok(false)` if there
    /// was no watch, or it has fired already (its notice may still be on
    /// its way to this worker's mailbox).
    pub async fn unwatch(&self, target: impl Into<Address>) -> Result<bool> {
        self.shard.unwatch(self.me, target.into()).await
    }

    /// In `main` (`Node::start`): waits for the next message sent to
    /// `ctx.me()`, in arrival order. `None` once `main`'s worker was
    /// stopped (`ctx.stop()`, `stop_worker`) and every message received,
    /// and at once in a worker's context: a worker receives through
    /// `handle_message`. An ask sent to `main` is answered
    /// [`Error::NoReply`] at once; its message still arrives here.
    pub async fn receive(&self) -> Option<Message> {
        self.inbox.as_ref()?.receive().await
    }

    /// Stops this worker once the current message is handled.
    pub fn stop(&self) {
        self.shard.request_stop(self.me);
    }

    /// Lists the workers of the node.
    pub async fn list_workers(&self) -> Vec<WorkerInfo> {
        self.shard.list_all().await
    }

    /// Called when a handler returned `Ok`: an unanswered ask learns at once
    /// that no answer is coming.
    pub(crate) fn finish(&mut self) {
        if let Some(reply) = self.reply.take() {
            let who = self.shard.describe(self.me);
            self.shard.complete(reply, Err(Error::NoReply(who)));
        }
    }

    /// Called when a handler failed: an unanswered ask gets the reason.
    pub(crate) fn fail(&mut self, reason: String) {
        if let Some(reply) = self.reply.take() {
            let worker = self.shard.describe(self.me);
            self.shard
                .complete(reply, Err(Error::WorkerFailed { worker, reason }));
        }
    }
}
