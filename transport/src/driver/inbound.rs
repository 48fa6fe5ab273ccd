//! What a link does with what its state decodes: sends and asks go to local
//! workers through the engine, answers go to this node's askers, control
//! envelopes are remote operations (`remote_ops.rs`) or gossip, and the
//! peer's reports of this node's sends it could not deliver are counted in
//! this node's dropped messages.
//!
//! A plain send on a flow-controlled connection waits for room in its
//! worker's mailbox (`ShardHandle::try_deliver`, then `deliver_when_ready`)
//! and is settled on the link when it is in (or cannot be): the link gives
//! its window back to the peer, and reports what failed. The reader never
//! waits for a worker, so a slow worker slows down only the sends to itself
//! (its window at the peer fills up), and two busy nodes cannot deadlock.
//! A send that came in the window's reserve was forced by its sender
//! (`flow.rs`): it goes in at once, past the mailbox's capacity, behind the
//! sends waiting there (`ShardHandle::deliver_forced`), so the reserve never
//! waits for a worker.
//!
//! The answer to an ask, or the verdict of a waiting delivery, may come on
//! any shard of this node; it comes back to the link's shard through the
//! shard's completion channel (see [`ShardTransport::complete`]).

use std::rc::Rc;
use std::sync::Arc;

use myriad_engine::plugin::{OnExit, ShardHandle, WireRef};
use myriad_engine::{Address, Error, ExitReason, Key, Message, Replier, Result, WorkerRef};
use myriad_link::link::{Incoming, Receipt};
use myriad_link::remote_error;

use super::link::{Conn, Link};
use super::watched::Opened;
use super::{remote_ops, ShardTransport};
use crate::envelope::{ControlOp, ErrorCode, WorkerAddr};

/// What comes back to link `link` from any shard of this node.
#[derive(Debug)]
pub(crate) struct Completion {
    pub(crate) link: u64,
    pub(crate) done: Done,
}

/// See [`Completion`].
#[derive(Debug)]
pub(crate) enum Done {
    /// The answer to the ask `id` the peer sent on connection `conn`.
    Answer {
        conn: u64,
        id: u64,
        result: Result<Message>,
    },
    /// The verdict of the peer's send to `target` that came with `receipt`.
    Settled {
        receipt: Receipt,
        target: Option<WorkerAddr>,
        result: Result<()>,
    },
    /// The worker that the peer's `watcher` watched under `id` (on
    /// connection `conn`) ended.
    Exited {
        conn: u64,
        id: u64,
        watcher: WireRef,
        who: WireRef,
        reason: ExitReason,
    },
}

/// Settles the peer's send to `target` on `link` with `result`, counting a
/// failure in this node's `undeliverable` as well.
pub(crate) fn settle(
    st: &ShardTransport,
    link: &Link,
    receipt: Receipt,
    target: &Option<WorkerAddr>,
    result: Result<()>,
) {
    if let Err(error) = &result {
        st.shared.counters.undeliverable.bump();
        tracing::debug!(link = link.id, %error, "remote message undeliverable; the peer is told");
    }
    link.settle(
        receipt,
        target,
        result.map_err(|e| remote_error::encode(&e)),
    );
}

/// The receiving end of one connection.
pub(crate) struct Inbound {
    st: Rc<ShardTransport>,
    shard: ShardHandle,
    link: Rc<Link>,
    conn: Rc<Conn>,
    /// The last target name and its engine address (senders often repeat it).
    last_target: Option<(Message, Address)>,
    /// A worker of the peer's node (its senders are its workers), once one
    /// was seen: the others are made like it, without naming the node.
    peer_worker: Option<WorkerRef>,
}

impl Inbound {
    pub(crate) fn new(
        st: Rc<ShardTransport>,
        shard: ShardHandle,
        link: Rc<Link>,
        conn: Rc<Conn>,
    ) -> Self {
        Inbound {
            st,
            shard,
            link,
            conn,
            last_target: None,
            peer_worker: None,
        }
    }

    /// The peer's worker `from` as this node sees it (a remote reference).
    fn sender(&mut self, from: Option<WireRef>) -> Option<WorkerRef> {
        let from = from?;
        let worker = match self.peer_worker {
            Some(known) => from.on_node_of(known),
            None => {
                let worker = from.on_node(self.conn.peer.name.as_str())?;
                self.peer_worker = Some(worker);
                worker
            }
        };
        Some(worker)
    }

    /// The local address of an envelope's target.
    fn target(&mut self, target: &Option<WorkerAddr>) -> Result<Address> {
        match target {
            Some(WorkerAddr::Name(name)) => {
                if let Some((last, address)) = &self.last_target {
                    if last.as_bytes() == name.as_bytes() {
                        return Ok(address.clone());
                    }
                }
                // No worker name has a `:`: `kind:id` is a key, which the
                // sender placed on this node.
                let address = match name.as_str().parse::<Key>() {
                    Ok(key) => Address::Key(key),
                    _ => Address::Name(Arc::from(name.as_str())),
                };
                self.last_target = Some((name.clone(), address.clone()));
                Ok(address)
            }
            Some(WorkerAddr::Ref(r)) => Ok(Address::Worker(r.local())),
            Some(WorkerAddr::Id(id)) => Err(Error::NoSuchWorker(format!("worker id {id}"))),
            None => Err(Error::NoSuchWorker("(no target)".to_owned())),
        }
    }

    /// Handles one thing from the peer.
    pub(crate) fn dispatch(&mut self, incoming: Incoming<Replier>) {
        match incoming {
            Incoming::Send {
                target,
                from,
                body,
                receipt: Some(receipt),
                forced,
            } => {
                let from = self.sender(from);
                self.deliver(receipt, target, from, body, forced);
            }
            Incoming::Send {
                target,
                from,
                body,
                receipt: None,
                ..
            } => {
                // A version 1 peer cannot be told: counted here only.
                let from = self.sender(from);
                let delivered = self
                    .target(&target)
                    .and_then(|to| self.shard.deliver(&to, body, from, None));
                if let Err(error) = delivered {
                    self.st.shared.counters.undeliverable.bump();
                    tracing::debug!(peer = %self.conn.peer.name, %error, "remote message dropped");
                }
            }
            Incoming::Undeliverable {
                target: _,
                count,
                error,
            } => {
                tracing::debug!(peer = %self.conn.peer.name, count, %error, "sends reported undeliverable");
                for _ in 0..count {
                    self.shard.count_dropped(&error);
                }
            }
            Incoming::Ask {
                id,
                target,
                from,
                body,
            } => {
                let from = self.sender(from);
                self.ask(id, target, from, body);
            }
            Incoming::Watch {
                id,
                target,
                watcher,
            } => self.watch(id, target, watcher),
            Incoming::Unwatch { id } => self.link.watched.close(id, &self.shard),
            Incoming::Malformed { id, why } => {
                tracing::warn!(peer = %self.conn.peer.name, id, why, "malformed watch frame ignored");
            }
            Incoming::Control {
                id,
                op,
                target,
                body,
            } => self.control(id, op, target, body),
            Incoming::Answer(answer) => answer.deliver(),
        }
    }

    /// Gossip updates the member list; a remote operation runs in a task
    /// of its own and its answer goes back on this connection.
    fn control(&self, id: u64, op: ControlOp, target: Option<WorkerAddr>, body: Message) {
        let (st, conn) = (&self.st, &self.conn);
        if op == ControlOp::Members {
            let ip = conn.peer_addr.map(|addr| addr.ip());
            st.shared.membership.merge(&body, &conn.peer.name, ip);
            return;
        }
        let (server, shard, link, seq) =
            (st.clone(), self.shard.clone(), self.link.clone(), conn.seq);
        st.spawn(async move {
            let answer = remote_ops::perform(&server, &shard, op, target, body).await;
            link.reply(seq, id, answer);
        });
    }

    /// Puts the peer's send into its worker's mailbox, waiting for room if
    /// need be (unless `forced`), and settles it on the link when it is in
    /// or cannot be.
    fn deliver(
        &mut self,
        receipt: Receipt,
        target: Option<WorkerAddr>,
        from: Option<WorkerRef>,
        body: Message,
        forced: bool,
    ) {
        let to = match self.target(&target) {
            Ok(to) => to,
            Err(error) => return settle(&self.st, &self.link, receipt, &target, Err(error)),
        };
        let body = match self.shard.try_deliver(&to, body, from) {
            Ok(result) => return settle(&self.st, &self.link, receipt, &target, result),
            Err(body) => body,
        };
        let completions = self.st.completions.clone();
        let link = self.link.id;
        let verdict = Box::new(move |result| {
            let done = Done::Settled {
                receipt,
                target,
                result,
            };
            // The shard is gone only when the node stops.
            let _ = completions.send(Completion { link, done });
        });
        if forced {
            self.shard.deliver_forced(&to, body, from, verdict);
        } else {
            self.shard.deliver_when_ready(&to, body, from, verdict);
        }
    }

    /// Watches the worker `target` means for the peer's worker `watcher`,
    /// in a task of its own: the answer, then the worker's end, go back on
    /// this connection (see `watched.rs`).
    fn watch(&mut self, id: u64, target: WorkerAddr, watcher: WireRef) {
        let (link, conn) = (self.link.clone(), self.conn.seq);
        if let Opened::Refuse(why) = link.watched.open(id) {
            let refusal = (ErrorCode::InvalidMessage, Message::from_static(why));
            return link.reply(conn, id, Err(refusal));
        }
        let target = match self.target(&Some(target)) {
            Ok(target) => target,
            Err(error) => {
                link.watched.failed(id);
                return link.reply(conn, id, Err(remote_error::encode(&error)));
            }
        };
        let completions = self.st.completions.clone();
        let link_id = link.id;
        let notify: OnExit = Box::new(move |who, reason| {
            let done = Done::Exited {
                conn,
                id,
                watcher,
                who: WireRef::of(who),
                reason,
            };
            // The shard is gone only when the node stops.
            let _ = completions.send(Completion {
                link: link_id,
                done,
            });
        });
        let shard = self.shard.clone();
        self.st.spawn(async move {
            match shard.watch_with(&target, notify).await {
                Ok(watch) => {
                    let answer = Message::from(watch.target().to_string());
                    if let Some(unwanted) = link.watched.resolved(id, watch) {
                        shard.unwatch_with(unwanted);
                    }
                    link.reply(conn, id, Ok(answer));
                }
                Err(error) => {
                    link.watched.failed(id);
                    link.reply(conn, id, Err(remote_error::encode(&error)));
                }
            }
        });
    }

    fn ask(&mut self, id: u64, target: Option<WorkerAddr>, from: Option<WorkerRef>, body: Message) {
        let to = match self.target(&target) {
            Ok(to) => to,
            Err(error) => {
                return self
                    .link
                    .reply(self.conn.seq, id, Err(remote_error::encode(&error)))
            }
        };
        // On an error the engine returns it here and drops `answer` unused;
        // an ask it drops later (the node stops) ends with the link.
        let completions = self.st.completions.clone();
        let (link, conn) = (self.link.id, self.conn.seq);
        let answer = Box::new(move |result| {
            let done = Done::Answer { conn, id, result };
            // The shard is gone only when the node stops.
            let _ = completions.send(Completion { link, done });
        });
        if let Err(error) = self.shard.deliver(&to, body, from, Some(answer)) {
            self.link
                .reply(self.conn.seq, id, Err(remote_error::encode(&error)));
        }
    }
}
