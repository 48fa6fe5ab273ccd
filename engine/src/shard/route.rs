//! Where a delivery goes: into a mailbox of this shard, into the outbox
//! towards another shard, or to the remote router for another node; and
//! where the answer of an ask goes.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use crate::address::home_shard;
use crate::envelope::{Delivery, Packet, ReplyTo, Target, Undelivered};
use crate::remote::Replier;
use crate::virtual_workers::placement;
use crate::{Address, Dropped, Error, Key, Message, RemoteAddress, Result, WorkerRef};

use super::Shard;

impl Shard {
    /// Sends `delivery` towards `to`, wherever it lives.
    pub(crate) fn route(&self, to: &Address, delivery: Delivery) -> Result<(), Undelivered> {
        // The most common case first: a worker of this very shard.
        if let Address::Worker(r) = to {
            if r.shard() == self.index && !r.is_remote() {
                self.deliver_to(*r, delivery)?;
                self.meter.sent_here_or_across(true);
                return Ok(());
            }
        }
        self.route_placed(to, delivery, true)
    }

    /// Sends `delivery` towards `to`; a key goes to its home node if
    /// `place`, else to its home shard here (a key that another node sent
    /// here: the sender placed it, and this node trusts it, so that two
    /// nodes whose views of the zone differ do not pass it back and forth).
    pub(crate) fn route_placed(
        &self,
        to: &Address,
        delivery: Delivery,
        place: bool,
    ) -> Result<(), Undelivered> {
        let target = if place {
            self.placed_target(to)
        } else {
            self.local_target(to)
        };
        match target {
            Ok((shard, target)) => {
                let routed = self.route_to_shard(shard, target, delivery);
                if routed.is_ok() {
                    self.meter.sent_here_or_across(shard == self.index);
                }
                routed
            }
            Err(remote) => match self.remote.get() {
                Some(router) => {
                    let Delivery { msg, from, reply } = delivery;
                    let mut replier = reply.map(|r| Replier::new(r, self));
                    router
                        .send(&remote, msg, from, &mut replier)
                        .map(|()| self.meter.sent_remote())
                        .map_err(|error| Undelivered {
                            error,
                            delivery: Delivery {
                                msg: Message::default(),
                                from,
                                reply: replier.and_then(Replier::into_reply_to),
                            },
                        })
                }
                None => Err(Undelivered {
                    error: Error::NoRoute(remote.node.to_string()),
                    delivery,
                }),
            },
        }
    }

    /// As [`local_target`](Self::local_target), but a key whose home node
    /// (see `virtual_workers/placement.rs`) is another node is that node's:
    /// `node/kind:id`.
    pub(crate) fn placed_target<'a>(
        &self,
        to: &'a Address,
    ) -> Result<(usize, Target), Cow<'a, RemoteAddress>> {
        if let Address::Key(key) = to {
            if let Some(node) = self.home_node(key) {
                return Err(Cow::Owned(RemoteAddress {
                    node,
                    worker: key.text().clone(),
                }));
            }
        }
        self.local_target(to)
    }

    /// The home node of `key` if it is another node of the zone; `None` if
    /// it is this one, or no node registered its kind (this node then
    /// refuses the message), or the node has no transport.
    pub(super) fn home_node(&self, key: &Key) -> Option<Arc<str>> {
        self.remote.get()?;
        let zone = &self.node.zone_kinds;
        let mut view = self.zone_view.borrow_mut();
        if view.0 != zone.version() {
            *view = zone.snapshot();
        }
        let home = placement::home_node(key, view.1.members(key.kind())?)?;
        (**home != **zone.me()).then(|| home.clone())
    }

    /// The shard that first takes a delivery for `to`, and what it looks
    /// for there; or the remote address, if `to` is on another node (a
    /// reference to a remote worker becomes `node/#shard.index.generation`).
    pub(crate) fn local_target<'a>(
        &self,
        to: &'a Address,
    ) -> Result<(usize, Target), Cow<'a, RemoteAddress>> {
        match to {
            Address::Worker(r) if !r.is_remote() => Ok((r.shard(), Target::Worker(*r))),
            Address::Worker(r) => {
                // A number always has its name (the table never forgets).
                let remote = r.remote_address().unwrap_or_else(|| RemoteAddress {
                    node: Arc::from("?"),
                    worker: Arc::from(r.on_its_node().to_string()),
                });
                if *remote.node == *self.node.name {
                    return Ok((r.shard(), Target::Worker(r.on_its_node())));
                }
                Err(Cow::Owned(remote))
            }
            Address::Name(name) => {
                let home = home_shard(name, self.node.shards);
                Ok((home, Target::Name(name.clone())))
            }
            Address::Remote(remote) if *remote.node == *self.node.name => {
                // `node/#shard.index.generation`: a reference (no name has `#`).
                if remote.worker.starts_with('#') {
                    if let Ok(r) = remote.worker.parse::<crate::WorkerRef>() {
                        return Ok((r.shard(), Target::Worker(r)));
                    }
                }
                let home = home_shard(&remote.worker, self.node.shards);
                Ok((home, Target::Name(remote.worker.clone())))
            }
            Address::Remote(remote) => Err(Cow::Borrowed(remote)),
            Address::Key(key) => Ok((key.home_shard(self.node.shards), Target::Key(key.clone()))),
        }
    }

    fn route_to_shard(
        &self,
        shard: usize,
        to: Target,
        delivery: Delivery,
    ) -> Result<(), Undelivered> {
        if shard == self.index {
            return self.deliver_here(to, delivery);
        }
        let Some(outbox) = self.outbox(shard) else {
            let error = Error::NoSuchWorker(describe_target(&to));
            return Err(Undelivered { error, delivery });
        };
        outbox
            .push_delivery(Packet::Deliver { to, delivery })
            .map(|was_empty| {
                if was_empty {
                    self.work.notify();
                }
            })
            .map_err(|packet| match packet {
                Packet::Deliver { to, delivery } => Undelivered {
                    error: Error::MailboxFull(describe_target(&to)),
                    delivery,
                },
                // push_delivery gives back exactly the packet it was given.
                _ => unreachable!("outbox returned a different packet"),
            })
    }

    /// Puts `delivery` into a mailbox of this shard (or forwards a name to
    /// the shard its worker was explicitly placed on).
    pub(super) fn deliver_here(&self, to: Target, delivery: Delivery) -> Result<(), Undelivered> {
        let r = match to {
            Target::Worker(r) => r,
            Target::Key(key) => return self.deliver_key(&key, delivery),
            Target::Name(name) => {
                let found = self.state.borrow().directory.lookup(&name);
                let Some(r) = found else {
                    let error = Error::NoSuchWorker(name.to_string());
                    return Err(Undelivered { error, delivery });
                };
                r
            }
        };
        if r.shard() != self.index {
            return self.route_to_shard(r.shard(), Target::Worker(r), delivery);
        }
        self.deliver_to(r, delivery)
    }

    /// Puts `delivery` into the mailbox of `r`, a worker of this shard.
    #[inline(always)]
    pub(super) fn deliver_to(&self, r: WorkerRef, delivery: Delivery) -> Result<(), Undelivered> {
        let pushed = self
            .state
            .borrow_mut()
            .slots
            .push(r, delivery, self.node.mailbox_capacity)?;
        self.pushed(r, pushed);
        Ok(())
    }

    /// Handles a packet from another shard or from outside the node.
    pub(crate) fn accept(self: &Rc<Self>, packet: Packet) {
        match packet {
            Packet::Deliver { to, delivery } => {
                if let Err(undelivered) = self.deliver_here(to, delivery) {
                    self.reject(undelivered);
                }
            }
            Packet::Reply {
                slot,
                generation,
                result,
            } => self.asks.fulfil(slot, generation, result),
            Packet::Run(job) => job(self),
        }
    }

    /// A delivery that cannot be made: an ask learns why at once; a plain
    /// message is dropped and counted.
    pub(crate) fn reject(&self, undelivered: Undelivered) {
        let Undelivered { error, delivery } = undelivered;
        match delivery.reply {
            Some(reply) => self.complete(reply, Err(error)),
            None => self.count_dropped(&error),
        }
    }

    /// Counts a plain message that was accepted and then dropped.
    pub(crate) fn count_dropped(&self, why: &Error) {
        let mut dropped = self.dropped.get();
        dropped.count(why);
        self.dropped.set(dropped);
        tracing::debug!(shard = self.index, error = %why, "message dropped");
    }

    /// Counts `sends` plain messages whose fate is unknown (a link closed
    /// before they were settled).
    pub(crate) fn count_in_doubt(&self, sends: u64) {
        let mut dropped = self.dropped.get();
        dropped.count_in_doubt(sends);
        self.dropped.set(dropped);
        tracing::debug!(shard = self.index, sends, "messages in doubt");
    }

    /// Plain messages dropped on this shard, by reason.
    pub(crate) fn dropped(&self) -> Dropped {
        self.dropped.get()
    }

    /// Sends the answer of an ask to whoever waits for it.
    pub(crate) fn complete(&self, reply: ReplyTo, result: Result<Message>) {
        match reply {
            ReplyTo::Shard {
                shard,
                slot,
                generation,
            } => {
                let packet = Packet::Reply {
                    slot,
                    generation,
                    result,
                };
                if let Err(Packet::Reply { result, .. }) = self.post(usize::from(shard), packet) {
                    self.asks.fulfil(slot, generation, result);
                }
            }
            ReplyTo::Callback(callback) => callback(result),
            // A notice whose watcher is gone: nobody to tell.
            ReplyTo::Notice(_) => {}
        }
    }
}

fn describe_target(to: &Target) -> String {
    match to {
        Target::Worker(r) => r.to_string(),
        Target::Name(name) => name.to_string(),
        Target::Key(key) => key.to_string(),
    }
}
