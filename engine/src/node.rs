//! Starting and stopping a node, and the `NodeHandle` that plain threads use
//! to talk to it.
//!
//! A node is S shard threads, each a glommio `LocalExecutor` pinned to a core,
//! connected by S×(S-1) cross-shard rings. Outside threads reach a shard
//! through one flume channel per shard.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::FutureExt;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::address::home_shard;
use crate::envelope::{Delivery, Packet, ReplyTo};
use crate::inbox::{Inbox, MainWorker};
use crate::doorbell::Doorbell;
use crate::link::{Inbound, Outbox, Ring, RING_CAPACITY};
use crate::liveness::{self, Inboxes, Liveness};
use crate::remote::{self, RemoteRouterFactory, ShardHandle};
use crate::service::ServiceFactory;
use crate::shard::{NodeShared, Shard};
use crate::virtual_workers::placement::ZoneKinds;
use crate::suspended;
use crate::virtual_workers::NodeVirtuals;
use crate::worker::panic_text;
use crate::{
    Address, Context, Dropped, Error, Message, Metrics, NodeConfig, Result, Worker, WorkerRef,
};

/// Packets an outside thread may queue for one shard before `send` reports
/// `MailboxFull`.
const INBOX_CAPACITY: usize = 1 << 16;

/// Entry points that start a node.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Starts a node, runs `main` on shard 0, stops the node when `main`
    /// returns, and returns what `main` returned (or
    /// [`Error::WorkerFailed`] if it panicked).
    ///
    /// `main` is a worker of shard 0 (it is listed by `list_workers`, with
    /// no name) whose handler is a future rather than a method: it may start,
    /// stop and list workers, send, ask and sleep as any handler does, and it
    /// has a real address, `ctx.me()`, that workers see as `ctx.sender()`
    /// and may send to. It takes those messages in arrival order with
    /// [`Context::receive`]. It has no current message: `ctx.reply` fails
    /// with [`Error::NothingToReplyTo`], and an ask sent to `main` is
    /// answered [`Error::NoReply`] at once (its message is still received).
    /// `ctx.stop()` stops only its mailbox: `receive` then returns `None`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use myriad_engine::{BoxError, Context, Message, Node, NodeConfig, Worker};
    ///
    /// struct Greeter;
    /// impl Worker for Greeter {
    ///     async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
    ///         ctx.reply(format!("Hello, {msg}!"))?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let reply = Node::start(NodeConfig::default(), |ctx| async move {
    ///     ctx.start_worker("greeter", Greeter).await?;
    ///     ctx.send_and_receive("greeter", "world", Duration::from_secs(1)).await
    /// }).unwrap();
    /// assert_eq!(reply.unwrap(), "Hello, world!");
    /// ```
    pub fn start<F, Fut, T>(config: NodeConfig, main: F) -> Result<T>
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let node = Node::spawn(config)?;
        let outcome = node.run_main(main);
        node.shutdown();
        outcome
    }

    /// Starts a node in the background and returns a handle to it.
    pub fn spawn(config: NodeConfig) -> Result<NodeHandle> {
        let shards = config.validate()?;
        crate::host::check_memlock().map_err(Error::Startup)?;
        crate::meter::calibrate_clock();
        let (inboxes, mut inbox_receivers): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| flume::bounded(INBOX_CAPACITY)).unzip();
        let liveness = Arc::new(Liveness::new(inbox_receivers.clone()));
        let outside = Inboxes::new(inboxes.clone(), liveness.clone());
        let virtuals = NodeVirtuals::start(&config, shards, &outside)?;
        let shared = Arc::new(NodeShared {
            name: Arc::from(config.name.as_str()),
            shards,
            mailbox_capacity: config.mailbox_capacity,
            default_timeout: config.default_timeout,
            stop_timeout: config.stop_timeout,
            inboxes,
            liveness,
            stopping: AtomicBool::new(false),
            virtuals,
            stall_watches: (0..shards).map(|_| Arc::default()).collect(),
            zone_kinds: Arc::new(ZoneKinds::new(
                Arc::from(config.name.as_str()),
                config.virtual_kind_names().iter().map(|k| Arc::from(k.as_str())).collect(),
            )),
        });
        let mut links = links(shards);
        // Pinned to the CPUs this process may use (a cpuset, `taskset`), in turn.
        let cpus = crate::host::allowed_cpus();
        let (ready_tx, ready_rx) = flume::unbounded::<usize>();
        let mut threads = Vec::with_capacity(shards);
        for (index, inbox) in inbox_receivers.drain(..).enumerate() {
            let placement = if config.pin_shards {
                Placement::Fixed(crate::host::cpu_for(index, &cpus))
            } else {
                Placement::Unbound
            };
            let start = ShardStart {
                index,
                shared: shared.clone(),
                links: links.next(),
                inbox,
                remote: config.remote_factory(),
                services: config.services.clone(),
                ready: ready_tx.clone(),
            };
            let spawned = LocalExecutorBuilder::new(placement)
                .name(&format!("myriad-{index}"))
                .io_memory(config.io_memory)
                .ring_depth(128)
                .spin_before_park(config.spin_before_park)
                .spawn(move || {
                    liveness::watch_this_thread(start.shared.liveness.clone(), start.index);
                    run_shard(start)
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    let node = NodeHandle::from_parts(shared, threads);
                    node.shutdown();
                    return Err(Error::Startup(format!("shard {index}: {e}")));
                }
            }
        }
        drop(ready_tx);
        let node = NodeHandle::from_parts(shared, threads);
        if !config.stall_threshold.is_zero() {
            node.start_watchdog(config.stall_threshold)?;
        }
        for _ in 0..shards {
            if ready_rx.recv().is_err() {
                let reason = node
                    .inner
                    .join_all()
                    .unwrap_or_else(|| "a shard exited".into());
                return Err(Error::Startup(reason));
            }
        }
        Ok(node)
    }
}

/// Each shard's cross-shard links: its outboxes (one per peer, `None` for
/// itself) and the receiving side of the rings into it.
type Links = (Vec<Option<Outbox>>, Inbound);

/// One ring per ordered pair of shards and one doorbell per shard, handed out
/// shard by shard.
fn links(shards: usize) -> impl Iterator<Item = Links> {
    let doorbells: Vec<Arc<Doorbell>> = (0..shards).map(|_| Arc::default()).collect();
    // rings[from][to]
    let rings: Vec<Vec<Arc<Ring>>> = (0..shards)
        .map(|_| {
            (0..shards)
                .map(|_| Arc::new(Ring::new(RING_CAPACITY)))
                .collect()
        })
        .collect();
    (0..shards).map(move |me| {
        let outboxes = (0..shards)
            .map(|to| (to != me).then(|| Outbox::new(rings[me][to].clone(), doorbells[to].clone())))
            .collect();
        let incoming = (0..shards)
            .filter(|&from| from != me)
            .map(|from| rings[from][me].clone())
            .collect();
        (outboxes, Inbound::new(incoming, doorbells[me].clone()))
    })
}

/// Everything a shard thread needs to start.
struct ShardStart {
    index: usize,
    shared: Arc<NodeShared>,
    links: Option<Links>,
    inbox: flume::Receiver<Packet>,
    remote: Option<RemoteRouterFactory>,
    services: Vec<ServiceFactory>,
    ready: flume::Sender<usize>,
}

async fn run_shard(start: ShardStart) {
    let Some((outboxes, inbound)) = start.links else {
        return;
    };
    let shard = Rc::new(Shard::new(start.index, start.shared, outboxes, inbound));
    remote::enter(shard.clone());
    suspended::enter(shard.clone());
    if let Some(factory) = start.remote {
        shard.install_remote(factory(ShardHandle::new(shard.clone())));
    }
    for factory in &start.services {
        if let Some(service) = factory(ShardHandle::new(shard.clone())) {
            shard.add_service(service);
        }
    }
    // Shard tasks run in the executor's default task queue. A
    // `Latency::Matters(1 ms)` queue makes glommio 0.9.0 preempt often, which
    // hit its park-with-runnable-tasks bug (vendor/glommio/MYRIAD-PATCH.md);
    // the default queue answered wakes from plain threads within 95 µs at
    // worst (200 handle asks to an idle node).
    glommio::spawn_local(shard.clone().schedule()).detach();
    glommio::spawn_local(shard.clone().sweep_asks()).detach();
    glommio::spawn_local(shard.clone().sweep_virtuals()).detach();
    if start.index == 0 {
        glommio::spawn_local(shard.clone().scan_reminders()).detach();
    }
    glommio::spawn_local(drain_inbox(shard.clone(), start.inbox)).detach();
    // The node may already be gone if another shard failed to start.
    let _ = start.ready.send(start.index);
    shard.until_stopped().await;
    suspended::leave();
    remote::leave();
}

/// Most packets from outside threads a shard takes before it lets its other
/// tasks (the scheduler, above all) run: threads that keep the inbox full
/// must not starve the shard's workers.
const INBOX_DRAIN_BUDGET: usize = 1024;

async fn drain_inbox(shard: Rc<Shard>, inbox: flume::Receiver<Packet>) {
    // The stop request itself arrives here, so this task ends with the shard.
    while let Ok(packet) = inbox.recv_async().await {
        shard.accept(packet);
        for packet in inbox.try_iter().take(INBOX_DRAIN_BUDGET - 1) {
            shard.accept(packet);
        }
        if shard.is_closed() {
            break;
        }
        // `recv_async` is ready at once while threads keep the inbox filled:
        // without this yield the task would never give the shard back.
        futures_lite::future::yield_now().await;
    }
}

/// A handle to a running node, for plain threads and tests: `Send + Sync`,
/// cheap to clone. Its methods block the calling thread; inside a worker use
/// [`Context`] instead (on a shard's thread, a call that would wait fails
/// with [`Error::BlockingOnShard`]). A call to a shard whose thread has
/// ended fails with [`Error::ShardDown`].
///
/// The node stops when [`shutdown`](Self::shutdown) is called or the last
/// handle is dropped.
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    shared: Arc<NodeShared>,
    threads: Mutex<Vec<ExecutorJoinHandle<()>>>,
    /// The stall watchdog's thread, and what stops it (dropped).
    watchdog: Mutex<Option<(flume::Sender<()>, std::thread::JoinHandle<()>)>>,
    next_spawn: AtomicUsize,
    /// Set once shutdown begins: every later call fails with `NodeStopped`.
    stopped: AtomicBool,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("name", &self.name())
            .field("shards", &self.shards())
            .field("stopped", &self.inner.stopped.load(Ordering::Relaxed))
            .finish()
    }
}

impl NodeInner {
    fn stop_shards(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.shared.stopping.store(true, Ordering::SeqCst);
        for inbox in &self.shared.inboxes {
            // A shard that is already gone needs no stop request.
            let _ = inbox.send(Packet::Run(Box::new(|s: &Rc<Shard>| s.request_shutdown())));
        }
    }

    /// Stops every shard and waits for the threads; returns the first
    /// failure of a shard thread, if any.
    fn join_all(&self) -> Option<String> {
        self.stop_shards();
        let watchdog = self.watchdog.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, thread)) = watchdog {
            drop(stop);
            // Its only failure would be a panic in logging: nothing to add.
            let _ = thread.join();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let mut failure = None;
        for thread in threads {
            if thread.thread().id() == std::thread::current().id() {
                continue;
            }
            if let Err(e) = thread.join() {
                failure.get_or_insert_with(|| e.to_string());
            }
        }
        // The shards are gone: the store writes what they left and closes.
        if let Some(virtuals) = &self.shared.virtuals {
            virtuals.store.close();
        }
        failure
    }
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        if let Some(failure) = self.join_all() {
            tracing::error!(%failure, "a shard thread failed");
        }
    }
}

impl NodeHandle {
    fn from_parts(shared: Arc<NodeShared>, threads: Vec<ExecutorJoinHandle<()>>) -> Self {
        NodeHandle {
            inner: Arc::new(NodeInner {
                shared,
                threads: Mutex::new(threads),
                watchdog: Mutex::new(None),
                next_spawn: AtomicUsize::new(0),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    /// Starts the thread that watches the shards for stalls (`stall.rs`);
    /// a shard whose stall ended logs it, on its own thread.
    fn start_watchdog(&self, threshold: Duration) -> Result<()> {
        let shared = self.inner.shared.clone();
        let watches = shared.stall_watches.clone();
        let (stop, stopped) = flume::bounded(1);
        let thread = std::thread::Builder::new()
            .name("myriad-watchdog".to_owned())
            .spawn(move || {
                crate::stall::watch(watches, threshold, stopped, |stall| {
                    let report = Packet::Run(Box::new(move |s: &Rc<Shard>| s.stall_ended(stall)));
                    // A full or closed inbox loses the report, not the count.
                    let _ = shared.inboxes[stall.shard].try_send(report);
                });
            })
            .map_err(|e| Error::Startup(format!("the stall watchdog: {e}")))?;
        *self.inner.watchdog.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop, thread));
        Ok(())
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.inner.shared.shards
    }

    /// The node's virtual workers' kinds and store, if it hosts any.
    pub(crate) fn virtuals(&self) -> Option<&Arc<NodeVirtuals>> {
        self.inner.shared.virtuals.as_ref()
    }

    fn inbox(&self, shard: usize) -> Result<&flume::Sender<Packet>> {
        if self.inner.stopped.load(Ordering::SeqCst) {
            return Err(Error::NodeStopped);
        }
        let inbox = self
            .inner
            .shared
            .inboxes
            .get(shard)
            .ok_or(Error::NoSuchShard {
                shard,
                shards: self.shards(),
            })?;
        if self.inner.shared.liveness.is_down(shard) {
            return Err(Error::ShardDown(shard));
        }
        Ok(inbox)
    }

    /// Queues `packet` for `shard`, whose answer the caller then waits for
    /// (as `call`): fails on a shard thread, where the wait would block the
    /// shard that must answer, and makes sure that a packet for a shard that
    /// is down is dropped, so the wait ends.
    fn post_for_answer(&self, call: &'static str, shard: usize, packet: Packet) -> Result<()> {
        if liveness::on_shard_thread() {
            return Err(Error::BlockingOnShard(call));
        }
        self.inbox(shard)?
            .send(packet)
            .map_err(|_| Error::NodeStopped)?;
        self.inner.shared.liveness.settle(shard);
        Ok(())
    }

    /// The error of a wait on `shard` whose answer channel closed.
    fn unanswered(&self, shard: usize) -> Error {
        if self.inner.shared.liveness.is_down(shard) {
            Error::ShardDown(shard)
        } else {
            Error::NodeStopped
        }
    }

    /// Runs `job` on `shard` and waits for its result.
    pub(crate) fn call<R: Send + 'static>(
        &self,
        call: &'static str,
        shard: usize,
        job: impl FnOnce(&Rc<Shard>) -> R + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = flume::bounded(1);
        let packet = Packet::Run(Box::new(move |s| {
            let _ = tx.send(job(s));
        }));
        self.post_for_answer(call, shard, packet)?;
        rx.recv().map_err(|_| self.unanswered(shard))
    }

    /// Runs the future made by `make` on `shard` and waits for its output.
    fn call_async<R, Fut>(
        &self,
        call: &'static str,
        shard: usize,
        make: impl FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    ) -> Result<R>
    where
        R: Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let (tx, rx) = flume::bounded(1);
        let packet = Packet::Run(Box::new(move |s: &Rc<Shard>| {
            let future = make(s.clone());
            glommio::spawn_local(async move {
                let _ = tx.send(future.await);
            })
            .detach();
        }));
        self.post_for_answer(call, shard, packet)?;
        rx.recv().map_err(|_| self.unanswered(shard))
    }

    /// The shard that first handles a message for `to`.
    fn entry_shard(&self, to: &Address) -> usize {
        match to {
            Address::Worker(r) if !r.is_remote() => r.shard(),
            Address::Worker(_) => 0,
            Address::Name(name) => home_shard(name, self.shards()),
            Address::Remote(remote) if *remote.node == *self.name() => {
                home_shard(&remote.worker, self.shards())
            }
            Address::Remote(_) => 0,
            Address::Key(key) => key.home_shard(self.shards()),
        }
    }

    /// Queues a message for `to` and returns (fire and forget).
    ///
    /// `Ok` means the node accepted the message, not that it reached the
    /// mailbox: the receiver's mailbox is checked later, on its shard, and a
    /// message that turns out undeliverable there (mailbox full, no such
    /// worker) is dropped and counted by reason in [`dropped`](Self::dropped).
    /// Fails at once with `MailboxFull` if the node's inbox from outside
    /// threads is full. A thread that must not lose messages uses
    /// [`send_when_ready`](Self::send_when_ready), which blocks until the
    /// message is in the mailbox.
    pub fn send(&self, to: impl Into<Address>, msg: impl Into<Message>) -> Result<()> {
        let to = to.into();
        let delivery = Delivery {
            msg: msg.into(),
            from: None,
            reply: None,
        };
        let shard = self.entry_shard(&to);
        let packet = Packet::Run(Box::new(move |s: &Rc<Shard>| {
            if let Err(undelivered) = s.route(&to, delivery) {
                s.reject(undelivered);
            }
        }));
        self.inbox(shard)?.try_send(packet).map_err(|e| match e {
            flume::TrySendError::Full(_) => Error::MailboxFull("node inbox".into()),
            flume::TrySendError::Disconnected(_) => Error::NodeStopped,
        })
    }

    /// Sends `msg` to `to` and blocks until it is in the receiver's
    /// mailbox, waiting for room if the mailbox is full: `Ok` means enqueued.
    /// Fails with [`Error::NoSuchWorker`] if the receiver does not exist or
    /// stops first, and with [`Error::NodeStopped`] if the node stops first.
    /// To a worker of another node, `Ok` means that the link to it took the
    /// message, as for [`send`](Self::send), after waiting for room in that
    /// worker's delivery window if it was full.
    pub fn send_when_ready(&self, to: impl Into<Address>, msg: impl Into<Message>) -> Result<()> {
        let to = to.into();
        let msg = msg.into();
        let (tx, rx) = flume::bounded(1);
        let shard = self.entry_shard(&to);
        let packet = Packet::Run(Box::new(move |s: &Rc<Shard>| {
            let verdict = Box::new(move |result| {
                // A caller that is gone no longer needs the verdict.
                let _ = tx.send(result);
            });
            s.deliver_when_ready(&to, msg, None, verdict, true);
        }));
        self.inbox(shard)?
            .send(packet)
            .map_err(|_| Error::NodeStopped)?;
        rx.recv().map_err(|_| Error::NodeStopped)?
    }

    /// Sends `msg` to `to` and blocks until the reply arrives or `timeout`
    /// passes.
    pub fn send_and_receive(
        &self,
        to: impl Into<Address>,
        msg: impl Into<Message>,
        timeout: Duration,
    ) -> Result<Message> {
        let to = to.into();
        let (tx, rx) = flume::bounded(1);
        let delivery = Delivery {
            msg: msg.into(),
            from: None,
            reply: Some(ReplyTo::Callback(Box::new(move |result| {
                let _ = tx.send(result);
            }))),
        };
        let shard = self.entry_shard(&to);
        let worker = to.to_string();
        let packet = Packet::Run(Box::new(move |s: &Rc<Shard>| {
            if let Err(undelivered) = s.route(&to, delivery) {
                s.reject(undelivered);
            }
        }));
        self.post_for_answer("send_and_receive", shard, packet)?;
        match rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(flume::RecvTimeoutError::Timeout) => Err(Error::Timeout {
                worker,
                after: timeout,
            }),
            Err(flume::RecvTimeoutError::Disconnected) => Err(self.unanswered(shard)),
        }
    }

    /// Starts a worker with a unique name on the shard its name hashes to.
    pub fn start_worker<W: Worker + Send>(&self, name: &str, worker: W) -> Result<WorkerRef> {
        let name = name.to_owned();
        self.call_async("start_worker", 0, move |s| async move {
            s.start_named(&name, None, worker).await
        })?
    }

    /// Starts a worker with a unique name on an explicit shard.
    pub fn start_worker_on<W: Worker + Send>(
        &self,
        shard: usize,
        name: &str,
        worker: W,
    ) -> Result<WorkerRef> {
        let name = name.to_owned();
        self.call_async("start_worker_on", 0, move |s| async move {
            s.start_named(&name, Some(shard), worker).await
        })?
    }

    /// Starts an anonymous worker; shards are used in turn.
    pub fn spawn<W: Worker + Send>(&self, worker: W) -> Result<WorkerRef> {
        let shard = self.inner.next_spawn.fetch_add(1, Ordering::Relaxed) % self.shards();
        self.spawn_on(shard, worker)
    }

    /// Starts an anonymous worker on shard `shard`.
    pub fn spawn_on<W: Worker + Send>(&self, shard: usize, worker: W) -> Result<WorkerRef> {
        self.call("spawn_on", shard, move |s| {
            s.insert_worker(Box::new(worker), None, true)
        })
    }

    /// Stops a worker (see [`Context::stop_worker`]).
    pub fn stop_worker(&self, who: impl Into<Address>) -> Result<()> {
        let who = who.into();
        self.call_async("stop_worker", 0, move |s| async move {
            s.stop_worker(who).await
        })?
    }

    /// Lists the workers of every shard: name or id, shard, mailbox length,
    /// messages handled.
    pub fn list_workers(&self) -> Result<Vec<WorkerInfo>> {
        let mut all = Vec::new();
        for shard in 0..self.shards() {
            all.append(&mut self.call("list_workers", shard, |s| s.list_here())?);
        }
        Ok(all)
    }

    /// Plain messages dropped so far, all reasons together (see
    /// [`dropped`](Self::dropped)).
    pub fn dropped_messages(&self) -> Result<u64> {
        Ok(self.dropped()?.total())
    }

    /// Plain messages (asks get the error instead) that were accepted with
    /// `Ok` and then dropped, by reason: their receiver's mailbox was full,
    /// it did not exist, or another node could not take them. Every accepted
    /// plain send is either handled or counted here.
    pub fn dropped(&self) -> Result<Dropped> {
        let mut total = Dropped::default();
        for shard in 0..self.shards() {
            total += self.call("dropped_messages", shard, |s| s.dropped())?;
        }
        Ok(total)
    }

    /// The node's metrics now: every shard's counters, gauges and sampled
    /// histograms, read on each shard's own thread, and the transport's
    /// link counters if one is installed. See `docs/operations.md` for what
    /// each figure means.
    pub fn metrics(&self) -> Result<Metrics> {
        let mut shards = Vec::with_capacity(self.shards());
        for shard in 0..self.shards() {
            shards.push(self.call("metrics", shard, |s| s.metrics_here())?);
        }
        let links = self.call("metrics", 0, |s| s.link_metrics())?;
        Ok(Metrics {
            node: self.name().to_owned(),
            shards,
            links,
        })
    }

    /// Runs `main` on shard 0 as [`Node::start`] does, on this running
    /// node, and returns what it returned (or [`Error::WorkerFailed`] if it
    /// panicked); the node keeps running. This lets a thread hold the
    /// node's handle (to read [`metrics`](Self::metrics), say) while `main`
    /// runs. Fails with [`Error::BlockingOnShard`] on a shard thread.
    pub fn run_main<F, Fut, T>(&self, main: F) -> Result<T>
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let outcome = self.call_async("run_main", 0, move |shard| async move {
            let inbox = Rc::new(Inbox::default());
            let me = shard.insert_worker(Box::new(MainWorker(inbox.clone())), None, true);
            let ctx = Context::main(shard, me, inbox);
            AssertUnwindSafe(main(ctx))
                .catch_unwind()
                .await
                .map_err(|panic| panic_text(&panic))
        });
        outcome?.map_err(|reason| Error::WorkerFailed {
            worker: "main".to_owned(),
            reason,
        })
    }

    /// Stops every shard (idle workers run `on_stop`) and waits for them.
    pub fn shutdown(self) {
        if let Some(failure) = self.inner.join_all() {
            tracing::error!(%failure, "a shard thread failed");
        }
    }
}

/// A worker as listed by `list_workers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The worker's reference.
    pub id: WorkerRef,
    /// Its name, if it was started with one.
    pub name: Option<String>,
    /// The shard it lives on.
    pub shard: usize,
    /// Messages waiting in its mailbox.
    pub mailbox_len: usize,
    /// Messages it has handled.
    pub handled: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Idle;

    impl Worker for Idle {
        async fn handle_message(&mut self, _: &mut Context, _: Message) -> crate::Result<(), crate::BoxError> {
            Ok(())
        }
    }

    fn one_shard() -> NodeHandle {
        Node::spawn(NodeConfig::default().shards(1).pin_shards(false)).expect("node starts")
    }

    #[test]
    fn calls_to_a_shard_whose_thread_died_fail_instead_of_blocking() {
        let node = one_shard();
        // An engine failure that escapes every containment: it ends the
        // shard's thread.
        let killer = Packet::Run(Box::new(|_: &Rc<Shard>| panic!("the shard thread dies")));
        node.inbox(0).unwrap().send(killer).unwrap();
        // Whichever of these reaches the inbox before the thread's end is
        // dropped by the thread's guard; later ones are refused.
        let listed = node.list_workers();
        assert!(matches!(listed, Err(Error::ShardDown(0))), "{listed:?}");
        let spawned = node.spawn_on(0, Idle);
        assert!(matches!(spawned, Err(Error::ShardDown(0))), "{spawned:?}");
        let asked = node.send_and_receive("nobody", "hi", Duration::from_secs(30));
        assert!(matches!(asked, Err(Error::ShardDown(0))), "{asked:?}");
    }
}
