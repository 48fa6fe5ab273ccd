//! The engine's only view of the network: a [`RemoteRouter`] that the
//! transport installs on every shard, and the [`ShardHandle`] through which
//! the transport hands inbound messages to local workers.
//!
//! Until a router is installed, a message to `node/name` on another node
//! fails with [`Error::NoRoute`].

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use crate::envelope::{Delivery, Packet, ReplyTo};
use crate::liveness;
use crate::metrics::{LinkMetrics, Metrics};
use crate::shard::{NodeShared, Shard};
use crate::exit::OnExit;
use crate::{
    Address, Error, ExitReason, Message, RemoteAddress, Result, Worker, WorkerInfo, WorkerRef,
};

thread_local! {
    /// The shard that runs on this thread, if any: a [`Replier`] may be
    /// completed or dropped on any thread, and finds its way from there.
    static CURRENT: RefCell<Option<Rc<Shard>>> = const { RefCell::new(None) };
}

/// Makes `shard` this thread's shard (for repliers and
/// [`ShardHandle::current`]), until [`leave`].
pub(crate) fn enter(shard: Rc<Shard>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(shard));
}

/// Undoes [`enter`] (the shard stops).
pub(crate) fn leave() {
    CURRENT.with(|c| c.borrow_mut().take());
}

/// Carries messages to workers of other nodes; one per shard.
pub trait RemoteRouter: 'static {
    /// Sends `msg` to the remote worker `to`.
    ///
    /// For an ask, `reply` holds the [`Replier`] for the answer: take it
    /// (`reply.take()`) when the message is accepted and complete it exactly
    /// once, with the answer or with an error such as
    /// [`Error::ConnectionLost`]. When refusing the message, return the error
    /// and leave `reply` in place: the engine answers the asker.
    fn send(
        &self,
        to: &RemoteAddress,
        msg: Message,
        from: Option<WorkerRef>,
        reply: &mut Option<Replier>,
    ) -> Result<()>;

    /// Sends the plain message `msg` to the remote worker `to` as
    /// [`send`](Self::send) does, but where `send` would refuse it for want
    /// of room on the way ([`Error::MailboxFull`]: the transport's flow
    /// control), keeps it until there is room. `verdict` is called exactly
    /// once, on this shard, possibly before this returns: `Ok` when the
    /// message is on its way (what an `Ok` of `send` means), or why it
    /// cannot go. Returns an id while the message waits, for
    /// [`force_waiting`](Self::force_waiting).
    ///
    /// `forced` says that the sender must not wait: a worker whose own
    /// mailbox is full (see `Context::send_when_ready`). Waiting on it could
    /// deadlock two nodes whose workers flood each other, so its message
    /// goes even where the receiver has no room for it, as far as the
    /// transport can bound that.
    ///
    /// The default sends at once, as `send`.
    fn send_when_ready(
        &self,
        to: &RemoteAddress,
        msg: Message,
        from: Option<WorkerRef>,
        forced: bool,
        verdict: Box<dyn FnOnce(Result<()>)>,
    ) -> Option<u64> {
        let _ = forced;
        verdict(self.send(to, msg, from, &mut None));
        None
    }

    /// The sender of the message that waits as `id` (from
    /// [`send_when_ready`](Self::send_when_ready) to node `node`) must not
    /// wait any more: its own mailbox filled up meanwhile. Send it as a
    /// forced one. Nothing happens if it no longer waits.
    fn force_waiting(&self, node: &str, id: u64) {
        let _ = (node, id);
    }

    /// What the transport counts of the node's links, for
    /// [`NodeHandle::metrics`](crate::NodeHandle::metrics); asked of one
    /// shard's router. `None` (the default) leaves the snapshot's `links`
    /// empty.
    fn link_metrics(&self) -> Option<LinkMetrics> {
        None
    }

    /// Makes `watcher`, a worker of this shard, watch the remote worker
    /// `target` (see `Context::watch`): resolves to the watched worker's
    /// reference, or fails as a local watch would ([`Error::NoSuchWorker`]
    /// for a name bound to no worker) or with why the node cannot be asked.
    /// Afterwards the router tells the watcher exactly once
    /// ([`ShardHandle::notify_terminated`]) when that worker ends or the
    /// router loses its way to the worker's node
    /// ([`ExitReason::NodeLost`](crate::ExitReason::NodeLost)), unless
    /// [`unwatch`](Self::unwatch) came first.
    ///
    /// Without this method a remote watch fails with [`Error::NoRoute`].
    fn watch(
        &self,
        watcher: WorkerRef,
        target: &RemoteAddress,
    ) -> Pin<Box<dyn Future<Output = Result<WorkerRef>> + '_>> {
        let _ = watcher;
        let node = target.node.to_string();
        Box::pin(async move { Err(Error::NoRoute(node)) })
    }

    /// Removes `watcher`'s watch of the remote worker `target` (its name
    /// or its reference, `node/#shard.index.generation`); `true` if it was
    /// removed before it fired, so no notice will come.
    fn unwatch(&self, watcher: WorkerRef, target: &RemoteAddress) -> bool {
        let _ = (watcher, target);
        false
    }

    /// Called once when the shard stops, after its idle workers ran
    /// `on_stop`: close links and listeners and end the router's tasks (the
    /// shard's executor does not drop tasks that are still waiting).
    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(async {})
    }
}

/// Builds the router of each shard, on that shard's thread, when the node
/// starts. It may spawn glommio tasks (listeners, links).
pub type RemoteRouterFactory = Arc<dyn Fn(ShardHandle) -> Rc<dyn RemoteRouter> + Send + Sync>;

/// The answer channel of one ask: held by a router for an ask that left the
/// node, or by a worker that answers later (`Context::defer_reply`).
///
/// It is `Send`: it may be completed on any thread. Dropping it unanswered
/// tells the asker at once ([`Error::NoReply`]). Completing it off the
/// asker's node's shards queues the answer in the asker's shard's inbox: a
/// plain thread waits while that inbox is full (never for a shard that has
/// stopped: the answer is then dropped, nobody is left to take it); a shard
/// thread, of another node, never waits.
pub struct Replier {
    reply: Option<ReplyTo>,
    node: Arc<NodeShared>,
}

impl std::fmt::Debug for Replier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let asker = match &self.reply {
            Some(ReplyTo::Shard { shard, .. }) => format!("a worker of shard {shard}"),
            Some(ReplyTo::Callback(_)) => "a thread or link outside the shards".to_owned(),
            Some(ReplyTo::Notice(_)) => "nobody (a notice)".to_owned(),
            None => "nobody (answered)".to_owned(),
        };
        f.debug_struct("Replier")
            .field("node", &self.node.name)
            .field("asker", &asker)
            .finish()
    }
}

impl Replier {
    pub(crate) fn new(reply: ReplyTo, shard: &Shard) -> Self {
        Replier {
            reply: Some(reply),
            node: shard.node().clone(),
        }
    }

    fn send(&self, reply: ReplyTo, result: Result<Message>) {
        let on_our_shard = CURRENT.with(|c| {
            c.borrow()
                .clone()
                .filter(|s| Arc::ptr_eq(s.node(), &self.node))
        });
        match (on_our_shard, reply) {
            (Some(shard), reply) => shard.complete(reply, result),
            (None, ReplyTo::Callback(callback)) => callback(result),
            // A replier never holds a notice (it is no ask).
            (None, ReplyTo::Notice(_)) => {}
            (
                None,
                ReplyTo::Shard {
                    shard,
                    slot,
                    generation,
                },
            ) => {
                let packet = Packet::Reply {
                    slot,
                    generation,
                    result,
                };
                let (inboxes, liveness) = (&self.node.inboxes, &self.node.liveness);
                if liveness::on_shard_thread() {
                    // Another node's shard, or this node's after it stopped
                    // being one: it must not wait for an inbox.
                    liveness::post_without_waiting(inboxes, liveness, usize::from(shard), packet);
                } else {
                    liveness::post(inboxes, liveness, usize::from(shard), packet);
                }
            }
        }
    }

    pub(crate) fn into_reply_to(mut self) -> Option<ReplyTo> {
        self.reply.take()
    }

    /// Whether the asker is known to have stopped waiting (its ask timed out
    /// or was cancelled), so that the answer would be discarded: a router
    /// may then forget the ask. Only an ask from a worker of the shard this
    /// is called on can be told; for any other it returns `false`.
    pub fn is_abandoned(&self) -> bool {
        let Some(ReplyTo::Shard {
            shard,
            slot,
            generation,
        }) = &self.reply
        else {
            return false;
        };
        CURRENT.with(|c| {
            c.borrow().as_ref().is_some_and(|s| {
                Arc::ptr_eq(s.node(), &self.node)
                    && s.index() == usize::from(*shard)
                    && !s.ask_is_waiting(*slot, *generation)
            })
        })
    }

    /// Hands the answer (or the failure) to the asker.
    pub fn complete(mut self, result: Result<Message>) {
        if let Some(reply) = self.reply.take() {
            self.send(reply, result);
        }
    }
}

impl Drop for Replier {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            let error = Error::NoReply("a deferred reply was dropped".to_owned());
            self.send(reply, Err(error));
        }
    }
}

/// A shard of this node, as the transport sees it (valid on its own thread).
#[derive(Clone)]
pub struct ShardHandle {
    shard: Rc<Shard>,
}

impl std::fmt::Debug for ShardHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardHandle")
            .field("node", &self.node_name())
            .field("index", &self.index())
            .field("shards", &self.shards())
            .finish()
    }
}

impl ShardHandle {
    pub(crate) fn new(shard: Rc<Shard>) -> Self {
        ShardHandle { shard }
    }

    /// The shard running on this thread, if this thread is a shard.
    pub fn current() -> Option<ShardHandle> {
        CURRENT.with(|c| c.borrow().clone().map(ShardHandle::new))
    }

    /// This shard's index.
    pub fn index(&self) -> usize {
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

    /// Starts a named worker on the node (on the shard its name hashes to),
    /// as `Context::start_worker` does.
    pub async fn start_worker<W: Worker + Send>(&self, name: &str, worker: W) -> Result<WorkerRef> {
        self.shard.start_named(name, None, worker).await
    }

    /// Stops a worker of the node, as `Context::stop_worker` does.
    pub async fn stop_worker(&self, who: &Address) -> Result<()> {
        self.shard.stop_worker(who.clone()).await
    }

    /// Lists the workers of the whole node.
    pub async fn list_workers(&self) -> Vec<WorkerInfo> {
        self.shard.list_all().await
    }

    /// The node's metrics (every shard's, gathered through the control
    /// path, and the links'), as [`NodeHandle::metrics`](crate::NodeHandle::metrics).
    pub async fn metrics(&self) -> Result<Metrics> {
        self.shard.metrics_all().await
    }

    /// Delivers a message that came from outside the node to a local worker.
    ///
    /// `from` is the worker that sent it, if any (a reference to a worker
    /// of another node, see [`WireRef::on_node`](crate::plugin::WireRef::on_node)):
    /// the receiver's `ctx.sender()`. `reply` receives the answer of an ask
    /// (or why it failed); for a plain send it is `None`. Errors found on
    /// this shard are returned at once; errors found on another shard go to
    /// `reply` (or drop the message).
    pub fn deliver(
        &self,
        to: &Address,
        msg: Message,
        from: Option<WorkerRef>,
        reply: Option<Box<dyn FnOnce(Result<Message>) + Send>>,
    ) -> Result<()> {
        self.check_local(to)?;
        let delivery = Delivery {
            msg,
            from,
            reply: reply.map(ReplyTo::Callback),
        };
        // A key comes here from the node that placed it: not placed again.
        self.shard.route_placed(to, delivery, false).map_err(|u| u.error)
    }

    /// Delivers a plain message that came from outside the node to a local
    /// worker, waiting for room if its mailbox is full: `verdict` is called
    /// exactly once, with `Ok` when the message is in the mailbox or with
    /// why it never will be ([`Error::NoSuchWorker`]; dropped unanswered if
    /// the node stops). A transport uses it to apply backpressure: it stops
    /// reading that worker's traffic until the verdict comes. `verdict` may
    /// run on another shard of this node, or before this call returns.
    /// `from` is the sender the receiver sees (a worker of another node).
    pub fn deliver_when_ready(
        &self,
        to: &Address,
        msg: Message,
        from: Option<WorkerRef>,
        verdict: Box<dyn FnOnce(Result<()>) + Send>,
    ) {
        if let Err(error) = self.check_local(to) {
            return verdict(Err(error));
        }
        self.shard.deliver_when_ready(to, msg, from, verdict, false);
    }

    /// Delivers a plain message that came from outside the node if that is
    /// decided on this shard at once, without allocating: `Ok` with the
    /// outcome — in the mailbox, or why it never will be
    /// ([`Error::NoSuchWorker`]) — or the message back if the worker lives on
    /// another shard, its mailbox is full or sends wait for room there.
    /// Hand it then to [`deliver_when_ready`](Self::deliver_when_ready),
    /// which keeps the order: the two together are a waiting delivery whose
    /// common case costs no verdict. `from` is the sender the receiver sees.
    pub fn try_deliver(
        &self,
        to: &Address,
        msg: Message,
        from: Option<WorkerRef>,
    ) -> Result<Result<()>, Message> {
        if let Err(error) = self.check_local(to) {
            return Ok(Err(error));
        }
        self.shard.try_deliver(to, msg, from)
    }

    /// Delivers a plain message that came from outside the node to a local
    /// worker at once, even into a full mailbox: past its capacity, after
    /// the messages waiting for room there (which go in with it, in their
    /// order). `verdict` is called exactly once, as for
    /// [`deliver_when_ready`](Self::deliver_when_ready).
    ///
    /// A transport uses it for a message whose sender must not wait (a
    /// worker whose own mailbox is full, see
    /// [`RemoteRouter::send_when_ready`]): waiting for room could deadlock
    /// two nodes whose workers flood each other.
    pub fn deliver_forced(
        &self,
        to: &Address,
        msg: Message,
        from: Option<WorkerRef>,
        verdict: Box<dyn FnOnce(Result<()>) + Send>,
    ) {
        // The shard's forced delivery takes only workers of this node.
        self.shard.deliver_forced(to, msg, from, verdict);
    }

    /// `NoSuchWorker` unless `to` is a worker of this node: what comes from
    /// outside is never sent on.
    fn check_local(&self, to: &Address) -> Result<()> {
        match self.shard.local_target(to) {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::NoSuchWorker(to.to_string())),
        }
    }

    /// Tells `watcher`, a worker of this node that watches the remote
    /// worker `who` ([`RemoteRouter::watch`]), that `who` ended and why:
    /// its [`Worker::on_terminated`](crate::Worker::on_terminated) runs.
    pub fn notify_terminated(&self, watcher: WorkerRef, who: WorkerRef, reason: ExitReason) {
        self.shard.notify_watcher(watcher, who, reason);
    }

    /// Watches the worker of this node that `target` means for someone
    /// outside the node (a watcher on another node): `notify` is called
    /// exactly once, on any shard, when that worker ends, unless
    /// [`unwatch_with`](Self::unwatch_with) removes the watch first. A
    /// reference to a worker already gone is told at once
    /// ([`ExitReason::NoSuchWorker`]); a name bound to no worker fails with
    /// [`Error::NoSuchWorker`] (and `notify` is dropped uncalled).
    pub async fn watch_with(&self, target: &Address, notify: OnExit) -> Result<CallbackWatch> {
        self.check_local(target)?;
        let (target, key) = self.shard.watch_callback(target.clone(), notify).await?;
        Ok(CallbackWatch { target, key })
    }

    /// Removes a watch [`watch_with`](Self::watch_with) made, without
    /// waiting; its callback is then not called (unless it was already).
    pub fn unwatch_with(&self, watch: CallbackWatch) {
        self.shard.unwatch_callback(watch.target, watch.key);
    }

    /// Tells the node that peer `node` of its zone is live and registered
    /// the virtual kinds `kinds` (all it registered: this replaces what
    /// was said before): keys of these kinds whose home (rendezvous
    /// hashing over the members of the kind) is `node` are sent there from
    /// now on. The transport calls it when the peer's first link comes up.
    pub fn zone_member_up(&self, node: &str, kinds: &[String]) {
        let kinds: Vec<Arc<str>> = kinds.iter().map(|k| Arc::from(k.as_str())).collect();
        self.shard.node().zone_kinds.member_up(node, &kinds);
    }

    /// Tells the node that peer `node` is no longer live (its last link
    /// went down): its keys are placed on the other members from now on.
    pub fn zone_member_down(&self, node: &str) {
        self.shard.node().zone_kinds.member_down(node);
    }

    /// Counts, by the reason `why`, a plain message that this node sent and
    /// that was dropped after it was accepted (a remote node reported that
    /// it could not deliver it): it then shows in
    /// [`NodeHandle::dropped`](crate::NodeHandle::dropped).
    pub fn count_dropped(&self, why: &Error) {
        self.shard.count_dropped(why);
    }

    /// Counts `sends` plain messages that this node sent to another node
    /// and whose fate is unknown: the link closed before that node settled
    /// them. They show in [`NodeHandle::dropped`](crate::NodeHandle::dropped)
    /// as `in_doubt`.
    pub fn count_in_doubt(&self, sends: u64) {
        self.shard.count_in_doubt(sends);
    }
}

/// A watch that [`ShardHandle::watch_with`] keeps for someone outside the
/// node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackWatch {
    target: WorkerRef,
    key: u64,
}

impl CallbackWatch {
    /// The watched worker.
    pub fn target(&self) -> WorkerRef {
        self.target
    }
}
