//! What a link does with what its state decodes: sends and asks go to local
//! workers through the engine, answers go to this node's askers, control
//! envelopes are remote operations (`remote_ops.rs`) or gossip.
//!
//! The answer to an ask may be produced on any shard of this node; it comes
//! back to the link's shard through the shard's completion channel (see
//! [`ShardTransport::complete`]).

use std::rc::Rc;
use std::sync::Arc;

use myriad_engine::plugin::ShardHandle;
use myriad_engine::{Address, Error, Message, Replier, Result};
use myriad_link::link::Incoming;
use myriad_link::remote_error;

use super::link::{Conn, Link};
use super::{remote_ops, ShardTransport};
use crate::envelope::{ControlOp, WorkerAddr};

/// The answer to an ask that a peer sent on link `link`, connection `conn`.
#[derive(Debug)]
pub(crate) struct Completion {
    pub(crate) link: u64,
    pub(crate) conn: u64,
    pub(crate) id: u64,
    pub(crate) result: Result<Message>,
}

/// The receiving end of one connection.
pub(crate) struct Inbound {
    st: Rc<ShardTransport>,
    shard: ShardHandle,
    link: Rc<Link>,
    conn: Rc<Conn>,
    /// The last target name and its engine address (senders often repeat it).
    last_target: Option<(Message, Address)>,
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
        }
    }

    /// The local address of an envelope's target.
    fn target(&mut self, target: Option<WorkerAddr>) -> Result<Address> {
        match target {
            Some(WorkerAddr::Name(name)) => {
                if let Some((last, address)) = &self.last_target {
                    if last.as_bytes() == name.as_bytes() {
                        return Ok(address.clone());
                    }
                }
                let address = Address::Name(Arc::from(name.as_str()));
                self.last_target = Some((name, address.clone()));
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
            Incoming::Send { target, body } => {
                let delivered = self
                    .target(target)
                    .and_then(|to| self.shard.deliver(&to, body, None, None));
                if let Err(error) = delivered {
                    self.st.shared.counters.undeliverable.bump();
                    tracing::debug!(peer = %self.conn.peer.name, %error, "remote message dropped");
                }
            }
            Incoming::Ask { id, target, body } => self.ask(id, target, body),
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

    fn ask(&mut self, id: u64, target: Option<WorkerAddr>, body: Message) {
        let to = match self.target(target) {
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
            // The shard is gone only when the node stops.
            let _ = completions.send(Completion {
                link,
                conn,
                id,
                result,
            });
        });
        if let Err(error) = self.shard.deliver(&to, body, None, Some(answer)) {
            self.link
                .reply(self.conn.seq, id, Err(remote_error::encode(&error)));
        }
    }
}
