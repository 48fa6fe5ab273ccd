//! What a link does with each envelope it receives: sends and asks go to
//! local workers through the engine, replies complete this node's asks,
//! control envelopes are remote operations or gossip.
//!
//! The answer to an ask may be produced on any shard of this node; it comes
//! back to the link's shard through the shard's completion channel (see
//! [`ShardTransport::complete`]).

use std::rc::Rc;
use std::sync::Arc;

use myriad_engine::plugin::ShardHandle;
use myriad_engine::{Address, Error, Message, Result};

use super::link::{Conn, Link};
use super::{errors, remote_ops, ShardTransport};
use crate::envelope::{Envelope, ErrorCode, Kind, WorkerAddr};

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
    pub(super) st: Rc<ShardTransport>,
    pub(super) shard: ShardHandle,
    pub(super) link: Rc<Link>,
    pub(super) conn: Rc<Conn>,
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
            Some(WorkerAddr::Id(id)) => Err(Error::NoSuchWorker(format!("worker id {id}"))),
            None => Err(Error::NoSuchWorker("(no target)".to_owned())),
        }
    }

    /// Handles one envelope from the peer.
    pub(crate) fn dispatch(&mut self, envelope: Envelope) {
        let Envelope {
            kind, target, body, ..
        } = envelope;
        match kind {
            Kind::Send => {
                let delivered = self
                    .target(target)
                    .and_then(|to| self.shard.deliver(&to, body, None));
                if let Err(error) = delivered {
                    self.st.shared.counters.undeliverable.bump();
                    tracing::debug!(peer = %self.conn.peer.name, %error, "remote message dropped");
                }
            }
            Kind::Ask { id } => self.ask(id, target, body),
            Kind::ReplyOk { id } => self.link.answered(id, body),
            Kind::ReplyErr { id, code } => self.link.failed(id, code, &body),
            Kind::Heartbeat => {}
            Kind::Control { id, op } => remote_ops::serve(self, id, op, target, body),
        }
    }

    fn ask(&mut self, id: u64, target: Option<WorkerAddr>, body: Message) {
        let to = match self.target(target) {
            Ok(to) => to,
            Err(error) => {
                return self
                    .link
                    .reply(self.conn.seq, id, Err(errors::encode(&error)))
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
        if let Err(error) = self.shard.deliver(&to, body, Some(answer)) {
            self.link
                .reply(self.conn.seq, id, Err(errors::encode(&error)));
        }
    }
}

/// The wire form of an answer.
pub(crate) fn to_wire(result: Result<Message>) -> Result<Message, (ErrorCode, Message)> {
    result.map_err(|error| errors::encode(&error))
}
