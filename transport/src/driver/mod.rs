//! The glommio driver: on every shard, a [`ShardTransport`] owns that
//! shard's links, accepts connections, and is the engine's
//! [`RemoteRouter`] for the shard. Shard 0 also runs discovery and gossip.
//!
//! Everything here is shard-local (`Rc`, `RefCell`): a remote send goes from
//! the sending worker to its own shard's link without crossing cores. Other
//! threads reach a shard through its command channel.

pub(crate) mod admission;
mod connection;
mod discovery;
mod inbound;
mod latch;
mod lifecycle;
mod link;
mod listener;
pub(crate) mod net;
mod outbound;
pub(crate) mod remote_ops;
mod shared;
mod watched;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use myriad_engine::metrics::LinkMetrics;
use myriad_engine::plugin::{RemoteRouter, ShardHandle, WireRef};
use myriad_engine::{Error, Message, RemoteAddress, Replier, Result, WorkerRef};

use myriad_link::link::LinkSettings;
use myriad_link::remote_error::to_wire;

use crate::envelope::ControlOp;
use crate::handshake::LinkConfig;
use crate::zone::NodeName;
use inbound::{Completion, Done};
use link::Link;
pub(crate) use myriad_link::link::LinkError;
pub(crate) use shared::Shared;

/// Work sent to a shard from another thread.
pub(crate) type Command = Box<dyn FnOnce(&Rc<ShardTransport>) + Send>;

thread_local! {
    /// The transports running on this thread (one per node whose shard this is).
    static LOCAL: RefCell<Vec<(u64, Weak<ShardTransport>)>> = const { RefCell::new(Vec::new()) };
}

/// The transport of node `id` on this thread, if this thread is one of its shards.
pub(crate) fn local(id: u64) -> Option<Rc<ShardTransport>> {
    LOCAL.with(|local| {
        local
            .borrow()
            .iter()
            .find(|(node, _)| *node == id)
            .and_then(|(_, st)| st.upgrade())
    })
}

/// One shard's part of the transport.
pub(crate) struct ShardTransport {
    pub(crate) shared: Arc<Shared>,
    pub(crate) index: usize,
    pub(crate) link_config: LinkConfig,
    /// Links this shard dialled, by node name.
    outbound: RefCell<HashMap<Arc<str>, Rc<Link>>>,
    /// Every link of this shard, by id.
    links: RefCell<HashMap<u64, Rc<Link>>>,
    next_id: Cell<u64>,
    /// Where answers to the peers' asks come back to (from any shard).
    pub(crate) completions: flume::Sender<Completion>,
    tasks: lifecycle::Tasks,
}

impl ShardTransport {
    /// A fresh id for a link or a connection.
    pub(crate) fn next_seq(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// A new link, registered by id, with its timer running.
    pub(crate) fn new_link(self: &Rc<Self>, peer: Option<NodeName>) -> Rc<Link> {
        let config = &self.shared.config;
        let settings = LinkSettings {
            buffer_limit: config.outbound_buffer,
            max_message_size: config.max_message_size,
            heartbeat_interval: config.heartbeat_interval,
            heartbeat_timeout: config.heartbeat_timeout,
            request_timeout: config.request_timeout,
        };
        let link = Rc::new(Link::new(self.next_seq(), peer, settings));
        self.links.borrow_mut().insert(link.id, link.clone());
        self.spawn(link::keep_time(self.clone(), link.clone()));
        link
    }

    /// Unregisters a link that is over.
    pub(crate) fn remove_link(&self, id: u64) {
        if let Some(link) = self.links.borrow_mut().remove(&id) {
            link.retire();
        }
    }

    /// Ends `link`'s connection or connection attempt (see
    /// [`Link::disconnected`]), counting the sends it left unsettled in the
    /// engine's dropped messages of this node, whose workers (or threads)
    /// sent them (`NodeHandle::dropped`): those that never left as lost
    /// (and in the transport's `undeliverable`), those in flight as in doubt.
    pub(crate) fn drop_unsent(&self, link: &Link, next: link::Phase) {
        let unsettled = link.disconnected(next);
        let lost = Error::ConnectionLost(format!("link {}", link.id));
        self.count_unsent((0..unsettled.unsent).map(|_| lost.clone()));
        if unsettled.in_doubt > 0 {
            tracing::debug!(
                link = link.id,
                sends = unsettled.in_doubt,
                "sends in doubt: the link closed before they were settled"
            );
            // Called on this shard's thread, which is always a shard.
            if let Some(shard) = ShardHandle::current() {
                shard.count_in_doubt(unsettled.in_doubt);
            }
        }
    }

    /// Counts accepted plain sends that never left this node, each with why:
    /// in the transport's `undeliverable`, and in the engine's dropped
    /// messages.
    pub(crate) fn count_unsent(&self, unsent: impl IntoIterator<Item = Error>) {
        let shard = ShardHandle::current();
        for why in unsent {
            self.shared.counters.undeliverable.bump();
            if let Some(shard) = &shard {
                shard.count_dropped(&why);
            }
        }
    }

    /// The link's waiting send `id` (to `node`) must not wait any more.
    fn force_waiting(&self, node: &str, id: u64) {
        let link = self.outbound.borrow().get(node).cloned();
        if let Some(link) = link {
            link.force(id);
        }
    }

    /// Drops the outbound link to a node that was forgotten.
    pub(crate) fn forget(&self, name: &NodeName, link: &Rc<Link>) {
        let mut outbound = self.outbound.borrow_mut();
        if outbound
            .get(name.as_str())
            .is_some_and(|l| Rc::ptr_eq(l, link))
        {
            outbound.remove(name.as_str());
        }
        drop(outbound);
        self.remove_link(link.id);
    }

    /// The outbound links of this shard.
    pub(crate) fn outbound_links(&self) -> Vec<Rc<Link>> {
        self.outbound.borrow().values().cloned().collect()
    }

    /// The outbound link to `node`, created (and dialled) if there is none.
    /// Fails with `NoRoute` for a node that is not in the member list.
    pub(crate) fn link_to(self: &Rc<Self>, node: &str) -> Result<Rc<Link>> {
        if let Some(link) = self.outbound.borrow().get(node) {
            return Ok(link.clone());
        }
        if self.is_stopping() {
            return Err(Error::NodeStopped);
        }
        let no_route = || Error::NoRoute(node.to_owned());
        let name = NodeName::new(node).map_err(|_| no_route())?;
        if self.shared.membership.address_of(&name).is_none() {
            return Err(no_route());
        }
        let shard = ShardHandle::current().ok_or(Error::NodeStopped)?;
        Ok(self.spawn_outbound(&shard, name, None))
    }

    /// Registers an outbound link to `name` and starts its supervisor.
    fn spawn_outbound(
        self: &Rc<Self>,
        shard: &ShardHandle,
        name: NodeName,
        first: Option<outbound::Connected>,
    ) -> Rc<Link> {
        let link = self.new_link(Some(name.clone()));
        self.outbound
            .borrow_mut()
            .insert(Arc::from(name.as_str()), link.clone());
        self.spawn(outbound::supervise(
            self.clone(),
            shard.clone(),
            link.clone(),
            name,
            first,
        ));
        link
    }

    /// Uses a connection that discovery made to `name` as its outbound link,
    /// unless there already is one.
    pub(crate) fn adopt(
        self: &Rc<Self>,
        shard: &ShardHandle,
        name: NodeName,
        connected: outbound::Connected,
    ) {
        if !self.outbound.borrow().contains_key(name.as_str()) {
            self.spawn_outbound(shard, name, Some(connected));
        }
    }

    /// Sends remote operation `op` to `node`; its answer (or failure) goes to `reply`.
    pub(crate) fn request(
        self: &Rc<Self>,
        node: &str,
        op: ControlOp,
        worker: Option<&str>,
        body: Message,
        reply: flume::Sender<Result<Message>>,
    ) {
        let sent = self
            .link_to(node)
            .and_then(|link| link.request(op, worker, body, reply.clone()));
        if let Err(error) = sent {
            let _ = reply.send(Err(error));
        }
    }

    /// Routes the answer to a peer's ask, the verdict of its send, or the
    /// end of a worker it watched, back onto its link.
    fn complete(&self, completion: Completion) {
        let link = self.links.borrow().get(&completion.link).cloned();
        let Some(link) = link else {
            return;
        };
        match completion.done {
            Done::Answer { conn, id, result } => link.reply(conn, id, to_wire(result)),
            Done::Settled {
                receipt,
                target,
                result,
            } => inbound::settle(self, &link, receipt, &target, result),
            Done::Exited {
                conn,
                id,
                watcher,
                who,
                reason,
            } => {
                if link.watched.fired(id) {
                    link.exited(conn, id, watcher, who, &reason);
                }
            }
        }
    }
}

/// The engine's view of one shard's transport.
struct Router {
    st: Rc<ShardTransport>,
    /// The last node sent to and its link: senders tend to repeat themselves.
    last: RefCell<Option<(Arc<str>, Rc<Link>)>>,
}

impl Router {
    fn link(&self, node: &Arc<str>) -> Result<Rc<Link>> {
        if let Some((last, link)) = &*self.last.borrow() {
            if (Arc::ptr_eq(last, node) || **last == **node) && link.phase() != link::Phase::Closed
            {
                return Ok(link.clone());
            }
        }
        let link = self.st.link_to(node)?;
        *self.last.borrow_mut() = Some((node.clone(), link.clone()));
        Ok(link)
    }
}

impl RemoteRouter for Router {
    fn send(
        &self,
        to: &RemoteAddress,
        msg: Message,
        from: Option<WorkerRef>,
        reply: &mut Option<Replier>,
    ) -> Result<()> {
        let from = from.filter(|r| !r.is_remote()).map(WireRef::of);
        self.link(&to.node)?.send(to, msg, from, reply)
    }

    fn send_when_ready(
        &self,
        to: &RemoteAddress,
        msg: Message,
        from: Option<WorkerRef>,
        forced: bool,
        verdict: Box<dyn FnOnce(Result<()>)>,
    ) -> Option<u64> {
        let from = from.filter(|r| !r.is_remote()).map(WireRef::of);
        match self.link(&to.node) {
            Ok(link) => link.send_when_ready(to, msg, from, forced, verdict),
            Err(error) => {
                verdict(Err(error));
                None
            }
        }
    }

    fn force_waiting(&self, node: &str, id: u64) {
        self.st.force_waiting(node, id);
    }

    fn watch(
        &self,
        watcher: WorkerRef,
        target: &RemoteAddress,
    ) -> Pin<Box<dyn Future<Output = Result<WorkerRef>> + '_>> {
        let target = target.clone();
        Box::pin(async move {
            let (tx, rx) = flume::bounded(1);
            self.link(&target.node)?.watch(watcher, &target, tx)?;
            let answer = rx.recv_async().await.map_err(|_| Error::NodeStopped)??;
            // The link checked that the answer is a reference.
            let who: WorkerRef = answer.parse()?;
            WireRef::of(who).on_node(&target.node).ok_or_else(|| {
                Error::NoRoute(format!("{} (too many nodes to number)", target.node))
            })
        })
    }

    fn unwatch(&self, watcher: WorkerRef, target: &RemoteAddress) -> bool {
        let link = self.st.outbound.borrow().get(&*target.node).cloned();
        link.is_some_and(|link| link.unwatch(watcher, target))
    }

    fn link_metrics(&self) -> Option<LinkMetrics> {
        Some(crate::handle::stats_of(&self.st.shared).into())
    }

    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(self.st.stop())
    }
}

/// What a shard needs from the node to start its transport.
pub(crate) struct ShardStart {
    pub(crate) listener: std::net::TcpListener,
    pub(crate) commands: flume::Receiver<Command>,
}

/// Starts the transport of `shard` (on its thread) and returns its router.
pub(crate) fn start_shard(
    shared: &Arc<Shared>,
    shard: ShardHandle,
    start: Option<ShardStart>,
) -> Rc<dyn RemoteRouter> {
    let (completions, answers) = flume::unbounded();
    let link_config = shared
        .link
        .clone()
        .with_shard(shard_u16(shard.index()), shard_u16(shard.shards()));
    let st = Rc::new(ShardTransport {
        shared: shared.clone(),
        index: shard.index(),
        link_config,
        outbound: RefCell::default(),
        links: RefCell::default(),
        next_id: Cell::new(1),
        completions,
        tasks: lifecycle::Tasks::default(),
    });
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        local.retain(|(_, st)| st.strong_count() > 0);
        local.push((shared.id, Rc::downgrade(&st)));
    });
    match start {
        Some(ShardStart { listener, commands }) => {
            let listener = net::glommio_listener(listener);
            st.spawn(listener::accept_loop(st.clone(), shard.clone(), listener));
            let commands_st = st.clone();
            st.spawn(async move {
                while let Ok(command) = commands.recv_async().await {
                    command(&commands_st);
                }
            });
        }
        None => tracing::error!(
            shard = shard.index(),
            "this transport configuration was already used by another node: no listener"
        ),
    }
    let answers_st = st.clone();
    st.spawn(async move {
        while let Ok(completion) = answers.recv_async().await {
            answers_st.complete(completion);
            for completion in answers.try_iter().take(1024) {
                answers_st.complete(completion);
            }
        }
    });
    if shard.index() == 0 {
        st.spawn(discovery::run(st.clone(), shard.clone()));
    }
    Rc::new(Router {
        st,
        last: RefCell::new(None),
    })
}

/// A shard index or count as the handshake carries it (the engine allows at
/// most 65,535 shards).
fn shard_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}
