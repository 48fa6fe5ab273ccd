//! Sends that wait for room (`Context::send_when_ready`,
//! `NodeHandle::send_when_ready`, `ShardHandle::deliver_when_ready`, and
//! its fast path `ShardHandle::try_deliver`).
//!
//! A waiting send goes to the receiver's shard like any delivery. If the
//! receiver's mailbox is full there, the delivery is *parked* on that
//! shard, behind the waiting sends already parked for the same receiver,
//! and goes into the mailbox as soon as the receiver takes a message. The
//! sender learns the outcome once, through a [`Verdict`]: enqueued, or why
//! not (no such worker, the worker stopped).
//!
//! Sends are parked for a receiver only while its mailbox is full: each
//! admission of parked sends goes on until the mailbox is full again or
//! none is left. So the message path looks for parked sends only when a
//! worker takes a message out of a full mailbox, and for a waiting sender
//! only when a delivery fills a mailbox: nothing on the path of mailboxes
//! below capacity.
//!
//! No deadlock: a worker whose own mailbox is full never waits (Pony's rule:
//! an overloaded actor is not muted). Its waiting send goes into the
//! receiver's mailbox past its capacity (*forced*), and a worker that waits
//! and sees its own mailbox fill up stops waiting the same way. Every
//! receiver somebody waits for has a full mailbox, so it does not wait
//! itself: no cycle of waiting workers can form, on one shard or across
//! shards. The price is that two workers that flood each other may both
//! exceed their capacity, by one message per forced send.
//!
//! To a worker of another node, a waiting send is the transport's
//! ([`RemoteRouter::send_when_ready`]): it first tries a plain send, and
//! only if that finds no room on the way does it wait, on this shard, for
//! the link to take it; a worker whose mailbox is full (or fills up while
//! it waits) forces it the same way. The receiving node delivers a forced
//! send at once, past the capacity and behind the sends parked for that
//! worker ([`ShardHandle::deliver_forced`], [`Admission::ForceBehind`]),
//! which keeps the order of the link's sends to that worker.
//!
//! [`RemoteRouter::send_when_ready`]: crate::plugin::RemoteRouter::send_when_ready
//! [`ShardHandle::deliver_forced`]: crate::plugin::ShardHandle::deliver_forced

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::envelope::{Delivery, Packet, Target, Undelivered};
use crate::remote::RemoteRouter;
use crate::slots::Pushed;
use crate::{Address, Error, Message, RemoteAddress, Result, WorkerRef};

use super::Shard;

/// Told exactly once whether a waiting send reached its mailbox.
pub(crate) type Verdict = Box<dyn FnOnce(Result<()>) + Send>;

/// How a waiting send is admitted on its receiver's shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Into the mailbox if it has room, else parked behind the sends parked
    /// there already.
    Wait,
    /// Into the mailbox at once, past its capacity: its sender, a worker of
    /// this node, has a full mailbox itself (and no other send parked).
    Force,
    /// Into the mailbox at once, past its capacity, after the sends parked
    /// there, which go in first: a send forced by another node, whose link
    /// may have parked earlier sends to that worker.
    ForceBehind,
}

/// A waiting send on its way to, or parked on, its receiver's shard.
pub(crate) struct Waiter {
    /// Unique on the node: the sender's shard in the top 16 bits.
    id: u64,
    delivery: Delivery,
    verdict: Verdict,
}

/// One shard's waiting sends: those parked for its workers, and its own
/// workers that wait for a verdict.
#[derive(Default)]
pub(crate) struct Waiting {
    /// Deliveries waiting for room, by receiver, in arrival order.
    parked: RefCell<HashMap<WorkerRef, VecDeque<Waiter>>>,
    /// Workers of this shard suspended in a waiting send, with the waker to
    /// call when their own mailbox fills up.
    senders: RefCell<HashMap<WorkerRef, Waker>>,
    next_id: Cell<u64>,
}

impl Waiting {
    /// Forgets everything (the shard stops): senders that still wait learn
    /// it from their verdict being dropped.
    pub(crate) fn clear(&self) {
        self.parked.borrow_mut().clear();
        self.senders.borrow_mut().clear();
    }
}

impl Shard {
    /// Sends `msg` from `me` (a worker of this shard, or `None` for outside
    /// the shards) to `to` and waits until it is in the mailbox.
    pub(crate) async fn send_when_ready(
        self: &Rc<Self>,
        me: Option<WorkerRef>,
        to: &Address,
        msg: Message,
    ) -> Result<()> {
        let delivery = Delivery {
            msg,
            from: me,
            reply: None,
        };
        let (shard, target) = match self.placed_target(to) {
            Ok(placed) => placed,
            Err(remote) => return self.send_remote_when_ready(me, &remote, delivery.msg).await,
        };
        let (tx, rx) = flume::bounded(1);
        let id = self.next_waiter_id();
        let verdict: Verdict = Box::new(move |result| {
            // A sender that is gone no longer needs the verdict.
            let _ = tx.send(result);
        });
        let forced = me.is_some_and(|me| self.mailbox_is_full(me));
        let admission = if forced {
            Admission::Force
        } else {
            Admission::Wait
        };
        self.enqueue_when_ready(shard, target, Waiter { id, delivery, verdict }, admission);
        let answer = std::pin::pin!(rx.recv_async());
        let result = match me.filter(|_| !forced) {
            None => answer.await,
            Some(me) => self.await_verdict(me, answer, || self.force_on(shard, id)).await,
        };
        result.unwrap_or(Err(Error::NodeStopped))
    }

    /// Sends `msg` from `me` (a worker of this shard, or `None` for outside
    /// the shards) to the remote worker `to` and waits until the link took
    /// it (see the module doc).
    async fn send_remote_when_ready(
        &self,
        me: Option<WorkerRef>,
        to: &RemoteAddress,
        msg: Message,
    ) -> Result<()> {
        let Some(router) = self.remote.get() else {
            return Err(Error::NoRoute(to.node.to_string()));
        };
        let forced = me.is_some_and(|me| self.mailbox_is_full(me));
        if !forced {
            if let Some(sent) = self.send_remote_at_once(router, to, &msg, me) {
                return sent;
            }
        }
        let (tx, rx) = flume::bounded(1);
        let verdict: Verdict = Box::new(move |result| {
            // A sender that is gone no longer needs the verdict.
            let _ = tx.send(result);
        });
        let waiting = router.send_when_ready(to, msg, me, forced, verdict);
        let answer = std::pin::pin!(rx.recv_async());
        let result = match (me.filter(|_| !forced), waiting) {
            (Some(me), Some(id)) => {
                let force = || router.force_waiting(&to.node, id);
                self.await_verdict(me, answer, force).await
            }
            _ => answer.await,
        };
        let result = result.unwrap_or(Err(Error::NodeStopped));
        if result.is_ok() {
            self.meter.sent_remote();
        }
        result
    }

    /// The plain send that a waiting send to a remote worker tries first:
    /// its outcome, or `None` if it found no room on the way and must wait.
    fn send_remote_at_once(
        &self,
        router: &Rc<dyn RemoteRouter>,
        to: &RemoteAddress,
        msg: &Message,
        from: Option<WorkerRef>,
    ) -> Option<Result<()>> {
        match router.send(to, msg.clone(), from, &mut None) {
            Err(Error::MailboxFull(_)) => None,
            sent => {
                if sent.is_ok() {
                    self.meter.sent_remote();
                }
                Some(sent)
            }
        }
    }

    /// Waits for `answer`, the verdict of a waiting send of worker `me`; if
    /// `me`'s own mailbox fills up meanwhile, calls `force` to force the
    /// send (see the module doc).
    async fn await_verdict<F: std::future::Future + Unpin>(
        &self,
        me: WorkerRef,
        mut answer: F,
        force: impl FnOnce(),
    ) -> F::Output {
        let mut force = Some(force);
        let output = poll_fn(|cx| {
            if let Poll::Ready(output) = std::pin::Pin::new(&mut answer).poll(cx) {
                return Poll::Ready(output);
            }
            if force.is_some() {
                if self.mailbox_is_full(me) {
                    self.waiting.senders.borrow_mut().remove(&me);
                    if let Some(force) = force.take() {
                        force();
                    }
                    // The verdict may have come with the forcing.
                    if let Poll::Ready(output) = std::pin::Pin::new(&mut answer).poll(cx) {
                        return Poll::Ready(output);
                    }
                } else {
                    let waker = cx.waker().clone();
                    self.waiting.senders.borrow_mut().insert(me, waker);
                }
            }
            Poll::Pending
        })
        .await;
        self.waiting.senders.borrow_mut().remove(&me);
        output
    }

    /// Delivers `msg` from outside the shards and calls `verdict` once it is
    /// in the mailbox (or with why it cannot be). Never forced: the caller
    /// is not a worker. To another node, once the link took it (see the
    /// module doc). A key goes to its home node if `place`, else to its home
    /// shard here (see [`Shard::route_placed`]).
    pub(crate) fn deliver_when_ready(
        self: &Rc<Self>,
        to: &Address,
        msg: Message,
        from: Option<WorkerRef>,
        verdict: Verdict,
        place: bool,
    ) {
        let target = if place {
            self.placed_target(to)
        } else {
            self.local_target(to)
        };
        match target {
            Ok((shard, target)) => self.deliver_to_shard(shard, target, msg, from, verdict, Admission::Wait),
            Err(remote) => self.deliver_remote_when_ready(&remote, msg, from, verdict),
        }
    }

    /// Delivers `msg` from outside the node to `to`, a worker of this node,
    /// at once even into a full mailbox ([`Admission::ForceBehind`]), and
    /// calls `verdict` once it is in (or with why it cannot be).
    pub(crate) fn deliver_forced(&self, to: &Address, msg: Message, from: Option<WorkerRef>, verdict: Verdict) {
        match self.local_target(to) {
            Ok((shard, target)) => {
                self.deliver_to_shard(shard, target, msg, from, verdict, Admission::ForceBehind)
            }
            Err(_) => verdict(Err(Error::NoSuchWorker(to.to_string()))),
        }
    }

    /// Takes a waiting send of `msg` from `from` to shard `shard`, where it
    /// is admitted as `admission` says.
    fn deliver_to_shard(
        &self,
        shard: usize,
        target: Target,
        msg: Message,
        from: Option<WorkerRef>,
        verdict: Verdict,
        admission: Admission,
    ) {
        let waiter = Waiter {
            id: self.next_waiter_id(),
            delivery: Delivery {
                msg,
                from,
                reply: None,
            },
            verdict,
        };
        self.enqueue_when_ready(shard, target, waiter, admission);
    }

    /// [`deliver_when_ready`](Self::deliver_when_ready) to the remote worker
    /// `to`.
    fn deliver_remote_when_ready(
        self: &Rc<Self>,
        to: &RemoteAddress,
        msg: Message,
        from: Option<WorkerRef>,
        verdict: Verdict,
    ) {
        let Some(router) = self.remote.get() else {
            return verdict(Err(Error::NoRoute(to.node.to_string())));
        };
        if let Some(sent) = self.send_remote_at_once(router, to, &msg, from) {
            return verdict(sent);
        }
        let shard = self.clone();
        let counted = Box::new(move |result: Result<()>| {
            if result.is_ok() {
                shard.meter.sent_remote();
            }
            verdict(result);
        });
        router.send_when_ready(to, msg, from, false, counted);
    }

    /// Puts `msg` from outside the shards into `to`'s mailbox if that is
    /// decided on this shard at once: `Ok` with the outcome (in the mailbox,
    /// or why it never will be); the message back if the worker lives on
    /// another shard, its mailbox is full or waiting sends are parked for it
    /// (a [`Shard::deliver_when_ready`] then keeps the order). To another
    /// node: the message back.
    pub(crate) fn try_deliver(
        &self,
        to: &Address,
        msg: Message,
        from: Option<WorkerRef>,
    ) -> Result<Result<()>, Message> {
        let r = match self.local_target(to) {
            Ok((shard, _)) if shard != self.index => return Err(msg),
            // A key may need activating first: the waiting path does that.
            Ok((_, Target::Key(_))) => return Err(msg),
            Ok((_, Target::Worker(r))) => r,
            Ok((_, Target::Name(name))) => match self.state.borrow().directory.lookup(&name) {
                Some(r) => r,
                None => return Ok(Err(Error::NoSuchWorker(name.to_string()))),
            },
            Err(_) => return Err(msg),
        };
        if r.shard() != self.index {
            return Err(msg);
        }
        // Sends wait for `r` only while its mailbox is full (see the module
        // doc), and then the push below fails: the message goes back, to
        // queue behind them.
        let delivery = Delivery {
            msg,
            from,
            reply: None,
        };
        let capacity = self.node.mailbox_capacity;
        let pushed = self.state.borrow_mut().slots.push(r, delivery, capacity);
        match pushed {
            Ok(pushed) => {
                self.pushed(r, pushed);
                Ok(Ok(()))
            }
            Err(Undelivered {
                error: Error::MailboxFull(_),
                delivery,
            }) => Err(delivery.msg),
            Err(Undelivered { error, .. }) => Ok(Err(error)),
        }
    }

    fn next_waiter_id(&self) -> u64 {
        let n = self.waiting.next_id.get().wrapping_add(1) & ((1 << 48) - 1);
        self.waiting.next_id.set(n);
        (u64::from(self.shard_id()) << 48) | n
    }

    /// Takes `waiter` to shard `shard`, where [`Shard::admit`] handles it.
    fn enqueue_when_ready(&self, shard: usize, to: Target, waiter: Waiter, admission: Admission) {
        if shard == self.index {
            return self.admit(to, waiter, admission);
        }
        if let Err(error) = self.check_shard(shard) {
            return (waiter.verdict)(Err(error));
        }
        let job = Packet::Run(Box::new(move |s: &Rc<Shard>| s.admit(to, waiter, admission)));
        // `post` refuses only this shard and shards that do not exist.
        let _ = self.post(shard, job);
    }

    /// On the receiver's shard: puts the waiter's delivery into the mailbox,
    /// or parks it until there is room, as `admission` says.
    fn admit(&self, to: Target, waiter: Waiter, admission: Admission) {
        let r = match to {
            Target::Worker(r) => r,
            Target::Key(key) => match self.virtual_worker(&key) {
                Some(r) => r,
                // Not active: it waits in the key's entry, as any message.
                None => {
                    let delivered = self.deliver_key(&key, waiter.delivery);
                    return (waiter.verdict)(delivered.map_err(|u| u.error));
                }
            },
            Target::Name(name) => {
                let found = self.state.borrow().directory.lookup(&name);
                match found {
                    Some(r) => r,
                    None => return (waiter.verdict)(Err(Error::NoSuchWorker(name.to_string()))),
                }
            }
        };
        if r.shard() != self.index {
            return self.enqueue_when_ready(r.shard(), Target::Worker(r), waiter, admission);
        }
        let Waiter {
            id,
            delivery,
            verdict,
        } = waiter;
        // Sends are parked for `r` only while its mailbox is full (see the
        // module doc): then an unforced push fails and this one queues
        // behind them.
        let capacity = match admission {
            Admission::Wait => self.node.mailbox_capacity,
            Admission::Force => usize::MAX,
            Admission::ForceBehind => {
                self.release_parked(r, true);
                usize::MAX
            }
        };
        let pushed = self.state.borrow_mut().slots.push(r, delivery, capacity);
        let delivery = match pushed {
            Ok(pushed) => return self.admitted(r, pushed, verdict),
            Err(Undelivered {
                error: Error::MailboxFull(_),
                delivery,
            }) => delivery,
            Err(Undelivered { error, .. }) => return verdict(Err(error)),
        };
        let waiter = Waiter {
            id,
            delivery,
            verdict,
        };
        let mut parked = self.waiting.parked.borrow_mut();
        parked.entry(r).or_default().push_back(waiter);
    }

    /// A waiting send went into `r`'s mailbox: tells the scheduler and the
    /// sender.
    fn admitted(&self, r: WorkerRef, pushed: Pushed, verdict: Verdict) {
        self.pushed(r, pushed);
        verdict(Ok(()));
    }

    /// Asks shard `shard` to force waiting send `id` into its mailbox.
    fn force_on(&self, shard: usize, id: u64) {
        if shard == self.index {
            return self.force(id);
        }
        // A shard that does not exist has parked nothing.
        let _ = self.post(shard, Packet::Run(Box::new(move |s: &Rc<Shard>| s.force(id))));
    }

    /// Puts parked send `id`, if it still waits, into its mailbox past the
    /// capacity.
    fn force(&self, id: u64) {
        let found = {
            let mut parked = self.waiting.parked.borrow_mut();
            let found = parked.iter_mut().find_map(|(r, queue)| {
                let at = queue.iter().position(|w| w.id == id)?;
                Some((*r, queue.remove(at)))
            });
            if let Some((r, _)) = found {
                if parked.get(&r).is_some_and(VecDeque::is_empty) {
                    parked.remove(&r);
                }
            }
            found
        };
        if let Some((r, Some(waiter))) = found {
            let pushed = self.state.borrow_mut().slots.push(r, waiter.delivery, usize::MAX);
            match pushed {
                Ok(pushed) => self.admitted(r, pushed, waiter.verdict),
                Err(undelivered) => (waiter.verdict)(Err(undelivered.error)),
            }
        }
    }

    /// Worker `r` took a message from its full mailbox: parked sends for it
    /// go in while its mailbox has room.
    pub(crate) fn room_made(&self, r: WorkerRef) {
        self.release_parked(r, false);
    }

    /// Parked sends for `r` go into its mailbox, oldest first: all of them,
    /// past its capacity, if `all`, else while it has room.
    fn release_parked(&self, r: WorkerRef, all: bool) {
        loop {
            let next = {
                let mut parked = self.waiting.parked.borrow_mut();
                let Some(queue) = parked.get_mut(&r) else {
                    return;
                };
                if !all && self.mailbox_is_full(r) {
                    return;
                }
                let next = queue.pop_front();
                if queue.is_empty() {
                    parked.remove(&r);
                }
                next
            };
            let Some(waiter) = next else {
                return;
            };
            let pushed = self.state.borrow_mut().slots.push(r, waiter.delivery, usize::MAX);
            match pushed {
                Ok(pushed) => self.admitted(r, pushed, waiter.verdict),
                Err(undelivered) => (waiter.verdict)(Err(undelivered.error)),
            }
        }
    }

    /// Worker `r` is gone: the sends parked for it fail with the error
    /// `why` makes.
    pub(crate) fn fail_parked(&self, r: WorkerRef, why: impl Fn() -> Error) {
        let parked = self.waiting.parked.borrow_mut().remove(&r);
        for waiter in parked.into_iter().flatten() {
            (waiter.verdict)(Err(why()));
        }
    }

    /// A message went into `r`'s mailbox: tells the scheduler if `r` was
    /// queued; if `r` waits in a waiting send and its mailbox is now full,
    /// it must stop waiting (see the module doc).
    #[inline(always)]
    pub(crate) fn pushed(&self, r: WorkerRef, pushed: Pushed) {
        if pushed.queued {
            self.work.notify();
        }
        self.meter.pushed(r, pushed.len);
        if pushed.len >= self.node.mailbox_capacity {
            self.mailbox_filled(r);
        }
    }

    /// `r`'s mailbox is full: `r` stops waiting, if it waits.
    fn mailbox_filled(&self, r: WorkerRef) {
        if self.waiting.senders.borrow().is_empty() {
            return;
        }
        let waker = self.waiting.senders.borrow_mut().remove(&r);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether worker `r` of this shard holds a full mailbox.
    fn mailbox_is_full(&self, r: WorkerRef) -> bool {
        let len = self.state.borrow().slots.mailbox_len(r);
        len.is_some_and(|len| len >= self.node.mailbox_capacity)
    }
}
