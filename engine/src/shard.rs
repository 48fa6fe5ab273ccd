//! A shard: one core's worth of workers, their mailboxes, and the scheduler
//! that runs them.
//!
//! Everything here lives on one glommio executor thread; state sits in
//! `RefCell`s that are never borrowed across an `.await` or a call into
//! worker code. Workers are slots of a `slab`; a slot keeps the worker's boxed
//! state, a 12-byte mailbox and a few counters. The run queue holds the slots
//! that have work. The scheduler takes them in order and polls each run
//! inline (see `worker.rs`).

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;

use slab::Slab;

use crate::address::{home_shard, validate_name};
use crate::ask::AskTable;
use crate::envelope::{Delivery, Packet, ReplyTo, Target};
use crate::link::{Inbound, Outbox};
use crate::mailbox::{Mailbox, MailboxPool};
use crate::remote::{RemoteRouter, Replier};
use crate::signal::Signal;
use crate::spare::Spares;
use crate::suspended::{self, Suspended};
use crate::worker::Runnable;
use crate::{Address, Error, Message, Result, Worker, WorkerInfo, WorkerRef};

/// How many runs the scheduler starts before it lets other tasks of the
/// shard (ring receivers, flushers) go.
const SCHEDULER_BATCH: usize = 128;

/// How long an idle scheduler watches its rings before it parks.
const RING_SPIN: Duration = Duration::from_micros(20);

/// How soon a shard whose outbox found a full ring tries again.
const FULL_RING_RETRY: Duration = Duration::from_micros(50);

/// What every shard of a node knows about the node.
pub(crate) struct NodeShared {
    pub name: Arc<str>,
    pub shards: usize,
    pub mailbox_capacity: usize,
    pub default_timeout: Duration,
    /// Each shard's channel from outside its thread.
    pub inboxes: Vec<flume::Sender<Packet>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RunState {
    /// In its slot, nothing to do.
    Idle,
    /// In its slot and in the run queue.
    Queued,
    /// Taken out by a run.
    Running,
}

struct Slot {
    worker: Option<Box<dyn Runnable>>,
    mailbox: Mailbox,
    generation: u32,
    handled: u64,
    run: RunState,
    started: bool,
    stopping: bool,
    /// Whether `State::names` has an entry for this slot.
    named: bool,
}

/// What the scheduler does next with a worker taken from the run queue.
enum Next {
    /// Handle its messages.
    Run {
        worker: Box<dyn Runnable>,
        me: WorkerRef,
        first: bool,
    },
    /// Run its `on_stop`, then free its slot.
    Stop {
        worker: Box<dyn Runnable>,
        me: WorkerRef,
    },
}

/// The directory entry of a name whose home is this shard.
enum Binding {
    /// A start is in progress.
    Reserved,
    Bound(WorkerRef),
}

#[derive(Default)]
struct State {
    slots: Slab<Slot>,
    pool: MailboxPool,
    run_queue: VecDeque<(u32, u32)>,
    /// Names whose home is this shard.
    directory: HashMap<Arc<str>, Binding>,
    /// Names of the named workers that live on this shard, by slot.
    names: HashMap<u32, Arc<str>>,
    next_generation: u32,
    dropped: u64,
}

/// A message that could not be delivered, with the reason.
pub(crate) struct Undelivered {
    pub error: Error,
    pub delivery: Delivery,
}

/// One shard of a node.
pub(crate) struct Shard {
    index: usize,
    node: Arc<NodeShared>,
    state: RefCell<State>,
    asks: AskTable,
    outboxes: Vec<Option<Outbox>>,
    inbound: Inbound,
    remote: OnceCell<Rc<dyn RemoteRouter>>,
    spares: Spares,
    suspended: Suspended,
    work: Signal,
    stop: Signal,
    closed: Cell<bool>,
}

impl Shard {
    /// A shard with its outboxes (indexed by peer shard; `None` for itself)
    /// and its incoming rings.
    pub(crate) fn new(
        index: usize,
        node: Arc<NodeShared>,
        outboxes: Vec<Option<Outbox>>,
        inbound: Inbound,
    ) -> Self {
        let suspended = Suspended::new(inbound.doorbell().clone());
        Shard {
            index,
            node,
            state: RefCell::default(),
            asks: AskTable::default(),
            outboxes,
            inbound,
            remote: OnceCell::new(),
            spares: Spares::default(),
            suspended,
            work: Signal::default(),
            stop: Signal::default(),
            closed: Cell::new(false),
        }
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn node(&self) -> &Arc<NodeShared> {
        &self.node
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.node.shards
    }

    pub(crate) fn node_name(&self) -> &str {
        &self.node.name
    }

    pub(crate) fn default_timeout(&self) -> Duration {
        self.node.default_timeout
    }

    /// The memory this shard's runs are polled in.
    pub(crate) fn spares(&self) -> &Spares {
        &self.spares
    }

    /// The outbox towards `peer` (another shard of this node).
    fn outbox(&self, peer: usize) -> Option<&Outbox> {
        self.outboxes.get(peer).and_then(Option::as_ref)
    }

    /// Queues a reply or control packet for shard `peer` (never refused).
    /// Returns the packet if `peer` is this shard or does not exist.
    fn post(&self, peer: usize, packet: Packet) -> Result<(), Packet> {
        let Some(outbox) = self.outbox(peer) else {
            return Err(packet);
        };
        if outbox.push(packet) {
            self.work.notify();
        }
        Ok(())
    }

    pub(crate) fn install_remote(&self, router: Rc<dyn RemoteRouter>) {
        // Installed once at shard start; a second call is a programming error
        // of the node builder and is ignored.
        let _ = self.remote.set(router);
    }

    fn shard_id(&self) -> u16 {
        // The node refuses more than u16::MAX shards at start-up.
        self.index as u16
    }

    fn check_shard(&self, shard: usize) -> Result<()> {
        if shard < self.node.shards {
            Ok(())
        } else {
            Err(Error::NoSuchShard {
                shard,
                shards: self.node.shards,
            })
        }
    }

    // ----- delivery -------------------------------------------------------

    /// Sends `delivery` towards `to`, wherever it lives.
    pub(crate) fn route(&self, to: &Address, delivery: Delivery) -> Result<(), Undelivered> {
        match to {
            Address::Worker(r) => self.route_to_shard(r.shard(), Target::Worker(*r), delivery),
            Address::Name(name) => {
                let home = home_shard(name, self.node.shards);
                self.route_to_shard(home, Target::Name(name.clone()), delivery)
            }
            Address::Remote(remote) if *remote.node == *self.node.name => {
                let home = home_shard(&remote.worker, self.node.shards);
                self.route_to_shard(home, Target::Name(remote.worker.clone()), delivery)
            }
            Address::Remote(remote) => match self.remote.get() {
                Some(router) => {
                    let Delivery { msg, from, reply } = delivery;
                    let mut replier = reply.map(|r| Replier::new(r, self));
                    router
                        .send(remote, msg, from, &mut replier)
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
    fn deliver_here(&self, to: Target, delivery: Delivery) -> Result<(), Undelivered> {
        let mut state = self.state.borrow_mut();
        let r = match to {
            Target::Worker(r) => r,
            Target::Name(name) => match state.directory.get(&name) {
                Some(Binding::Bound(r)) => *r,
                _ => {
                    let error = Error::NoSuchWorker(name.to_string());
                    return Err(Undelivered { error, delivery });
                }
            },
        };
        if r.shard() != self.index {
            drop(state);
            return self.route_to_shard(r.shard(), Target::Worker(r), delivery);
        }
        let capacity = self.node.mailbox_capacity;
        let State {
            slots,
            pool,
            run_queue,
            names,
            ..
        } = &mut *state;
        let slot = match slots.get_mut(r.index as usize) {
            Some(slot) if slot.generation == r.generation && !slot.stopping => slot,
            _ => {
                let error = Error::NoSuchWorker(r.to_string());
                return Err(Undelivered { error, delivery });
            }
        };
        if slot.mailbox.len() >= capacity {
            let error = Error::MailboxFull(describe(names, r));
            return Err(Undelivered { error, delivery });
        }
        pool.push(&mut slot.mailbox, delivery);
        if slot.run == RunState::Idle {
            slot.run = RunState::Queued;
            run_queue.push_back((r.index, r.generation));
            self.work.notify();
        }
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
            None => {
                self.state.borrow_mut().dropped += 1;
                tracing::debug!(shard = self.index, %error, "message dropped");
            }
        }
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
        }
    }

    /// `send_and_receive` from a worker of this shard.
    pub(crate) async fn ask(
        &self,
        me: WorkerRef,
        to: Address,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message> {
        let pending = self.asks.open(timeout);
        let delivery = Delivery {
            msg,
            from: Some(me),
            reply: Some(ReplyTo::Shard {
                shard: self.shard_id(),
                slot: pending.slot,
                generation: pending.generation,
            }),
        };
        self.route(&to, delivery).map_err(|u| u.error)?;
        pending.answer().await.unwrap_or_else(|| {
            Err(Error::Timeout {
                worker: to.to_string(),
                after: timeout,
            })
        })
    }

    /// Waits `duration` on this shard's deadline wheel (see `ask.rs`): a
    /// sleep is an ask that nobody answers.
    pub(crate) async fn sleep_for(&self, duration: Duration) {
        let wait = self.asks.open(duration);
        // Only expiry or a stopping node can end it; both mean "time is up".
        let _ = wait.answer().await;
    }

    /// Whether this shard's ask `slot`/`generation` still waits.
    pub(crate) fn ask_is_waiting(&self, slot: u32, generation: u32) -> bool {
        self.asks.is_waiting(slot, generation)
    }

    /// Expires this shard's asks on time, until the shard stops.
    pub(crate) async fn sweep_asks(self: Rc<Self>) {
        self.asks.sweep(|| self.closed.get()).await;
    }

    // ----- workers --------------------------------------------------------

    /// Adds a worker to this shard. An active worker is queued at once so its
    /// `on_start` runs; an inactive one waits for [`Shard::activate`].
    pub(crate) fn insert_worker(
        &self,
        worker: Box<dyn Runnable>,
        name: Option<Arc<str>>,
        active: bool,
    ) -> WorkerRef {
        let mut state = self.state.borrow_mut();
        state.next_generation = state.next_generation.wrapping_add(1);
        let generation = state.next_generation;
        let key = state.slots.insert(Slot {
            worker: Some(worker),
            mailbox: Mailbox::new(),
            generation,
            handled: 0,
            run: RunState::Idle,
            started: false,
            stopping: false,
            named: name.is_some(),
        });
        let index = u32::try_from(key).expect("more than 2^32 workers on one shard");
        if let Some(name) = name {
            state.names.insert(index, name);
        }
        let r = WorkerRef {
            index,
            generation,
            shard: self.shard_id(),
        };
        drop(state);
        if active {
            self.activate(r);
        }
        r
    }

    /// Lets a worker inserted inactive start running.
    pub(crate) fn activate(&self, r: WorkerRef) {
        let mut state = self.state.borrow_mut();
        let State {
            slots, run_queue, ..
        } = &mut *state;
        if let Some(slot) = slots.get_mut(r.index as usize) {
            if slot.generation == r.generation && slot.run == RunState::Idle {
                slot.run = RunState::Queued;
                run_queue.push_back((r.index, r.generation));
                self.work.notify();
            }
        }
    }

    /// Counts the messages a running worker just handled and gives it its
    /// next one, with the worker. When the mailbox is empty, the run's budget
    /// is spent (`more` is false) or the worker is being stopped, puts the
    /// worker back in its slot instead (queued again if it still has work)
    /// and returns `None`. One borrow per message.
    pub(crate) fn next_or_park<W: Runnable>(
        &self,
        me: WorkerRef,
        handled: u64,
        more: bool,
        worker: Box<W>,
    ) -> Option<(Box<W>, Delivery)> {
        let mut state = self.state.borrow_mut();
        let State {
            slots,
            pool,
            run_queue,
            ..
        } = &mut *state;
        let slot = slots.get_mut(me.index as usize)?;
        slot.handled += handled;
        if more && !slot.stopping {
            if let Some(delivery) = pool.pop(&mut slot.mailbox) {
                return Some((worker, delivery));
            }
        }
        slot.worker = Some(worker);
        if slot.stopping || !slot.mailbox.is_empty() {
            slot.run = RunState::Queued;
            run_queue.push_back((me.index, me.generation));
            self.work.notify();
        } else {
            slot.run = RunState::Idle;
        }
        None
    }

    /// Marks a worker of this shard to stop after its current message.
    pub(crate) fn request_stop(&self, me: WorkerRef) -> bool {
        let mut state = self.state.borrow_mut();
        let State {
            slots, run_queue, ..
        } = &mut *state;
        match slots.get_mut(me.index as usize) {
            Some(slot) if slot.generation == me.generation && !slot.stopping => {
                slot.stopping = true;
                if slot.run == RunState::Idle {
                    slot.run = RunState::Queued;
                    run_queue.push_back((me.index, me.generation));
                    self.work.notify();
                }
                true
            }
            _ => false,
        }
    }

    /// Stops a worker after a panic; asks queued for it fail with the reason.
    pub(crate) fn worker_panicked(self: &Rc<Self>, me: WorkerRef, reason: String) {
        let worker = self.describe(me);
        tracing::error!(%worker, %reason, "worker panicked and was stopped");
        self.remove_worker(me, Error::WorkerFailed { worker, reason });
    }

    /// Frees a worker's slot and name; its queued messages are rejected
    /// with `why`.
    pub(crate) fn remove_worker(self: &Rc<Self>, me: WorkerRef, why: Error) {
        let mut state = self.state.borrow_mut();
        let index = me.index as usize;
        if state
            .slots
            .get(index)
            .is_none_or(|s| s.generation != me.generation)
        {
            return;
        }
        let mut slot = state.slots.remove(index);
        let mut orphans = Vec::new();
        while let Some(delivery) = state.pool.pop(&mut slot.mailbox) {
            orphans.push(delivery);
        }
        let name = if slot.named {
            state.names.remove(&me.index)
        } else {
            None
        };
        drop(state);
        for delivery in orphans {
            self.reject(Undelivered {
                error: why.clone(),
                delivery,
            });
        }
        if let Some(name) = name {
            self.unbind(name, me);
        }
    }

    fn unbind(&self, name: Arc<str>, r: WorkerRef) {
        let home = home_shard(&name, self.node.shards);
        let job = move |shard: &Rc<Shard>| shard.release_name(&name, r);
        if let Err(Packet::Run(job)) = self.post(home, Packet::Run(Box::new(job))) {
            job(&self.rc());
        }
    }

    /// Removes `name` from this (its home) shard's directory if it is still
    /// bound to `r` (a newer worker may have taken it since).
    fn release_name(&self, name: &Arc<str>, r: WorkerRef) {
        let mut state = self.state.borrow_mut();
        if matches!(state.directory.get(name), Some(Binding::Bound(b)) if *b == r) {
            state.directory.remove(name);
        }
    }

    /// `name` if the worker has one, else its reference.
    pub(crate) fn describe(&self, r: WorkerRef) -> String {
        describe(&self.state.borrow().names, r)
    }

    // ----- control across shards -----------------------------------------

    /// Runs `job` on shard `shard` and returns its result (Seastar's
    /// `submit_to`). On this shard it runs at once.
    pub(crate) async fn submit<R, F>(&self, shard: usize, job: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Rc<Shard>) -> R + Send + 'static,
    {
        self.check_shard(shard)?;
        if shard == self.index {
            return Ok(job(&self.rc()));
        }
        let (tx, rx) = flume::bounded(1);
        let packet = Packet::Run(Box::new(move |s: &Rc<Shard>| {
            // The asker may have gone away (node stopping): nothing to do.
            let _ = tx.send(job(s));
        }));
        self.post(shard, packet).map_err(|_| Error::NodeStopped)?;
        rx.recv_async().await.map_err(|_| Error::NodeStopped)
    }

    pub(crate) fn rc(&self) -> Rc<Shard> {
        CURRENT.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|s| std::ptr::eq(Rc::as_ptr(s), self))
                .cloned()
                .expect("a shard is only used on its own thread")
        })
    }

    /// Starts an anonymous worker on any shard of this node.
    pub(crate) async fn spawn_on<W: Worker + Send>(
        &self,
        shard: usize,
        worker: W,
    ) -> Result<WorkerRef> {
        self.submit(shard, move |s| {
            s.insert_worker(Box::new(worker), None, true)
        })
        .await
    }

    /// Starts a named worker: reserve the name on its home shard, create the
    /// worker (inactive) on its shard, bind the name, then let it run.
    pub(crate) async fn start_named<W: Worker + Send>(
        &self,
        name: &str,
        placement: Option<usize>,
        worker: W,
    ) -> Result<WorkerRef> {
        validate_name(name)?;
        let shards = self.node.shards;
        let home = home_shard(name, shards);
        let target = placement.unwrap_or(home);
        self.check_shard(target)?;
        let name: Arc<str> = Arc::from(name);
        let reserve = name.clone();
        self.submit(home, move |s| s.reserve(reserve)).await??;
        let named = name.clone();
        let created = self
            .submit(target, move |s| {
                s.insert_worker(Box::new(worker), Some(named), false)
            })
            .await;
        let bind = name.clone();
        let bound = self
            .submit(home, move |s| s.bind(bind, created.ok()))
            .await?;
        let r = bound.ok_or(Error::NodeStopped)?;
        self.submit(target, move |s| s.activate(r)).await?;
        Ok(r)
    }

    fn reserve(&self, name: Arc<str>) -> Result<()> {
        let mut state = self.state.borrow_mut();
        if state.directory.contains_key(&name) {
            return Err(Error::NameTaken(name.to_string()));
        }
        state.directory.insert(name, Binding::Reserved);
        Ok(())
    }

    fn bind(&self, name: Arc<str>, r: Option<WorkerRef>) -> Option<WorkerRef> {
        let mut state = self.state.borrow_mut();
        match r {
            Some(r) => {
                state.directory.insert(name, Binding::Bound(r));
                Some(r)
            }
            None => {
                state.directory.remove(&name);
                None
            }
        }
    }

    /// Finds which worker an address means, asking its home shard for names.
    async fn resolve(&self, who: &Address) -> Result<WorkerRef> {
        let name = match who {
            Address::Worker(r) => return Ok(*r),
            Address::Name(name) => name.clone(),
            Address::Remote(remote) if *remote.node == *self.node.name => remote.worker.clone(),
            Address::Remote(remote) => return Err(Error::NoRoute(remote.node.to_string())),
        };
        let home = home_shard(&name, self.node.shards);
        let lookup = name.clone();
        let found = self
            .submit(home, move |s| {
                match s.state.borrow().directory.get(&lookup) {
                    Some(Binding::Bound(r)) => Some(*r),
                    _ => None,
                }
            })
            .await?;
        found.ok_or_else(|| Error::NoSuchWorker(name.to_string()))
    }

    /// Stops the worker `who` (see `Context::stop_worker`).
    ///
    /// Returns once the worker is marked to stop and its name, if any, is
    /// free: the worker finishes its current message and runs `on_stop` on
    /// its own, so a worker may stop another (or itself) without waiting
    /// on it, while the name can be taken again at once.
    pub(crate) async fn stop_worker(&self, who: Address) -> Result<()> {
        let r = self.resolve(&who).await?;
        self.check_shard(r.shard())?;
        let stopping = self
            .submit(r.shard(), move |s| {
                s.request_stop(r)
                    .then(|| s.state.borrow().names.get(&r.index).cloned())
            })
            .await?;
        let Some(name) = stopping else {
            return Err(Error::NoSuchWorker(who.to_string()));
        };
        if let Some(name) = name {
            let home = home_shard(&name, self.node.shards);
            self.submit(home, move |s| s.release_name(&name, r)).await?;
        }
        Ok(())
    }

    /// The workers of this shard.
    pub(crate) fn list_here(&self) -> Vec<WorkerInfo> {
        let state = self.state.borrow();
        state
            .slots
            .iter()
            .filter(|(_, slot)| !slot.stopping)
            .map(|(index, slot)| {
                let index = index as u32;
                WorkerInfo {
                    id: WorkerRef {
                        index,
                        generation: slot.generation,
                        shard: self.shard_id(),
                    },
                    name: state.names.get(&index).map(|n| n.to_string()),
                    shard: self.index,
                    mailbox_len: slot.mailbox.len(),
                    handled: slot.handled,
                }
            })
            .collect()
    }

    /// The workers of every shard of the node.
    pub(crate) async fn list_all(&self) -> Vec<WorkerInfo> {
        let mut all = Vec::new();
        for shard in 0..self.node.shards {
            if let Ok(mut some) = self.submit(shard, |s| s.list_here()).await {
                all.append(&mut some);
            }
        }
        all
    }

    /// Messages dropped on this shard because nobody could take them.
    pub(crate) fn dropped(&self) -> u64 {
        self.state.borrow().dropped
    }

    // ----- scheduling -----------------------------------------------------

    /// Takes the next queued worker out of its slot.
    fn next_run(self: &Rc<Self>) -> Option<Next> {
        let mut state = self.state.borrow_mut();
        loop {
            let (index, generation) = state.run_queue.pop_front()?;
            let Some(slot) = state.slots.get_mut(index as usize) else {
                continue;
            };
            if slot.generation != generation || slot.run != RunState::Queued {
                continue;
            }
            let Some(worker) = slot.worker.take() else {
                continue;
            };
            slot.run = RunState::Running;
            let me = WorkerRef {
                index,
                generation,
                shard: self.shard_id(),
            };
            if slot.stopping {
                return Some(Next::Stop { worker, me });
            }
            let first = !std::mem::replace(&mut slot.started, true);
            return Some(Next::Run { worker, me, first });
        }
    }

    /// The shard's main loop: takes cross-shard batches, runs queued workers
    /// (each run polled inline; one that suspends becomes a task), ships
    /// outboxes, and when there is nothing to do spins briefly on its rings
    /// before it parks.
    pub(crate) async fn schedule(self: Rc<Self>) {
        while !self.closed.get() {
            // Everything a notification can stand for is looked at below.
            self.work.clear();
            let received = self.inbound.drain(|packet| self.accept(packet));
            let resumed = self.suspended.poll_ready();
            let ran = self.run_some();
            let shipped = self.flush_outboxes();
            if received + resumed + ran > 0 {
                futures_lite::future::yield_now().await;
            } else if !self.spin_for_work().await {
                self.state.borrow_mut().pool.trim();
                self.sleep(shipped).await;
            }
        }
    }

    /// Starts up to [`SCHEDULER_BATCH`] runs; returns how many. Each is
    /// polled once here, with the waker it keeps if it suspends; one that
    /// suspends goes to the shard's table of suspended runs.
    fn run_some(self: &Rc<Self>) -> usize {
        let mut ran = 0;
        // Made when the first run needs it (most passes of a busy
        // scheduler have no run), and again after a run was kept.
        let mut waker: Option<std::task::Waker> = None;
        while ran < SCHEDULER_BATCH {
            let Some(next) = self.next_run() else {
                break;
            };
            ran += 1;
            let waker = waker.get_or_insert_with(|| self.suspended.next_waker());
            let mut cx = std::task::Context::from_waker(waker);
            let suspended = match next {
                Next::Run { worker, me, first } => worker.run(self, me, first, &mut cx),
                Next::Stop { worker, me } => worker.stop(self, me, &mut cx),
            };
            if let Some(run) = suspended {
                self.suspended.keep(run);
                *waker = self.suspended.next_waker();
            }
        }
        ran
    }

    /// On this shard's thread: queues the suspended run `key` of `table`
    /// if that table is this shard's, and tells the scheduler.
    pub(crate) fn wake_suspended(&self, table: &Arc<suspended::Shared>, key: u32) -> bool {
        let queued = self.suspended.wake_local(table, key);
        if queued {
            self.work.notify();
        }
        queued
    }

    /// Ships every outbox; `false` if a ring was full and something waits.
    fn flush_outboxes(&self) -> bool {
        let mut all_shipped = true;
        for outbox in self.outboxes.iter().flatten() {
            // Flush every outbox, even after one found its ring full.
            all_shipped &= outbox.flush();
        }
        all_shipped
    }

    /// Spins up to [`RING_SPIN`], watching for incoming batches and local
    /// work; `true` as soon as there is some. It spins by yielding, so the
    /// shard's other tasks (suspended handlers, the inbox) run first and an
    /// otherwise idle executor comes straight back here. It is short because
    /// glommio handles no timer while a task stays runnable; the executor's
    /// own spin (`NodeConfig::spin_before_park`) follows, and handles timers
    /// and doorbell wake-ups.
    async fn spin_for_work(&self) -> bool {
        let has_work =
            || self.work.is_set() || self.inbound.pending() || self.suspended.has_ready();
        let deadline = Instant::now() + RING_SPIN;
        loop {
            if has_work() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            futures_lite::future::yield_now().await;
        }
    }

    /// Sleeps until local work is signalled or another shard rings the
    /// doorbell; if a ring was full (`shipped` is false), retries soon.
    async fn sleep(&self, shipped: bool) {
        let woken = poll_fn(|cx| {
            if self.work.poll_wait(cx).is_ready() {
                return Poll::Ready(());
            }
            let doorbell = self.inbound.doorbell();
            doorbell.arm(cx.waker());
            if self.inbound.pending() || self.suspended.has_foreign_ready() {
                return Poll::Ready(());
            }
            Poll::Pending
        });
        if shipped {
            woken.await;
        } else {
            futures_lite::future::or(woken, async {
                glommio::timer::sleep(FULL_RING_RETRY).await;
            })
            .await;
        }
        self.inbound.doorbell().disarm();
    }

    /// Asks the shard to stop.
    pub(crate) fn request_shutdown(&self) {
        self.closed.set(true);
        self.asks.wake_sweeper();
        self.work.notify();
        self.stop.notify();
    }

    /// Waits until the shard is asked to stop, then runs `on_stop` of every
    /// idle worker and shuts the remote router down.
    pub(crate) async fn until_stopped(self: &Rc<Self>) {
        self.stop.wait().await;
        let idle: Vec<(WorkerRef, Box<dyn Runnable>)> = {
            let mut state = self.state.borrow_mut();
            let shard = self.shard_id();
            state
                .slots
                .iter_mut()
                .filter_map(|(index, slot)| {
                    let worker = slot.worker.take()?;
                    let me = WorkerRef {
                        index: index as u32,
                        generation: slot.generation,
                        shard,
                    };
                    Some((me, worker))
                })
                .collect()
        };
        for (me, worker) in idle {
            worker.shut_down(self.clone(), me).await;
        }
        let router = self.remote.get().cloned();
        if let Some(router) = router {
            router.shutdown().await;
        }
        // Handlers still suspended end here (their workers do not run
        // `on_stop`, as they are in the middle of a message).
        drop(self.suspended.take_all());
        // Free every worker and queued message now: glommio does not drop
        // tasks still pending when its executor ends, and a handler suspended
        // at shutdown keeps this shard alive through its `Rc`.
        let state = std::mem::take(&mut *self.state.borrow_mut());
        drop(state);
    }

    /// Whether the shard has been asked to stop.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }
}

thread_local! {
    /// The shard that runs on this thread, if any.
    pub(crate) static CURRENT: RefCell<Option<Rc<Shard>>> = const { RefCell::new(None) };
}

fn describe(names: &HashMap<u32, Arc<str>>, r: WorkerRef) -> String {
    match names.get(&r.index) {
        Some(name) => name.to_string(),
        None => r.to_string(),
    }
}

fn describe_target(to: &Target) -> String {
    match to {
        Target::Worker(r) => r.to_string(),
        Target::Name(name) => name.to_string(),
    }
}
