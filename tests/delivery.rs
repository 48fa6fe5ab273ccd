//! Delivery under load: every accepted message is handled or reported,
//! exactly, on each path (a thread's `send`, a send to another shard, a
//! waiting send); a flood from threads leaves its shard's other workers
//! served; waiting sends neither lose messages nor deadlock.

mod cluster;
mod common;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use myriad::plugin::{RemoteRouter, ShardHandle};
use myriad::transport::{TransportConfig, Zone};
use myriad::{Address, BoxError, Context, Error, Message, NodeHandle, Worker, WorkerRef};

#[path = "../engine/tests/support/freezer.rs"]
mod freezer;
use freezer::Freezer;

/// Bounds a wait that would otherwise hang a broken test: a failure, never
/// a figure.
const LONG: Duration = Duration::from_secs(60);

/// A small mailbox, so that floods fill it.
const CAPACITY: usize = 16;

/// A worker for these tests. It counts the plain messages it handles, and
/// knows a few commands:
/// * `hold`: waits until its gate opens (its mailbox fills meanwhile);
/// * `sync` (an ask): answered at once, so the answer comes after every
///   message queued before it;
/// * `go` (an ask): sends its flood, answers when done;
/// * `full-target` (an ask): asks its flood's target, whose mailbox must be
///   full: answered once every message it sent there before was taken;
/// * `sync-target` (an ask): `sync` with its flood's target, answered after.
#[derive(Default)]
struct Probe {
    handled: Arc<AtomicU64>,
    gate: Option<flume::Receiver<()>>,
    flood: Option<Flood>,
}

/// What `go` sends.
struct Flood {
    to: Address,
    body: Message,
    count: u64,
    /// `send_when_ready` rather than `send`.
    waiting: bool,
    /// Sends that returned `Ok`.
    accepted: Arc<AtomicU64>,
}

impl Probe {
    /// A probe whose `go` sends `count` messages of `body` to `to` (waiting
    /// sends if `waiting`), and the count of those accepted.
    fn flooding(
        to: impl Into<Address>,
        body: Message,
        count: u64,
        waiting: bool,
    ) -> (Probe, Arc<AtomicU64>) {
        let accepted = Arc::new(AtomicU64::new(0));
        let flood = Flood {
            to: to.into(),
            body,
            count,
            waiting,
            accepted: accepted.clone(),
        };
        let probe = Probe {
            flood: Some(flood),
            ..Probe::default()
        };
        (probe, accepted)
    }
}

impl Worker for Probe {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if msg == "hold" {
            if let Some(gate) = self.gate.take() {
                // The test opens the gate, or is gone.
                let _ = gate.recv_async().await;
            }
        } else if msg == "sync" {
            ctx.reply("synced")?;
        } else if msg == "go" {
            let flood = self.flood.as_ref().ok_or("no flood")?;
            for _ in 0..flood.count {
                let sent = if flood.waiting {
                    ctx.send_when_ready(flood.to.clone(), flood.body.clone())
                        .await
                } else {
                    ctx.send(flood.to.clone(), flood.body.clone())
                };
                match sent {
                    Ok(()) => flood.accepted.fetch_add(1, Ordering::Relaxed),
                    // Refused at once: reported, not accepted.
                    Err(Error::MailboxFull(_) | Error::ConnectionLost(_) | Error::NoRoute(_))
                        if !flood.waiting =>
                    {
                        0
                    }
                    Err(e) => return Err(e.into()),
                };
            }
            ctx.reply("done")?;
        } else if msg == "full-target" {
            let to = self.flood.as_ref().ok_or("no flood")?.to.clone();
            match ctx.send_and_receive(to, "sync", LONG).await {
                Err(Error::MailboxFull(_)) => ctx.reply("full")?,
                other => return Err(format!("the target's mailbox is not full: {other:?}").into()),
            }
        } else if msg == "sync-target" {
            let to = self.flood.as_ref().ok_or("no flood")?.to.clone();
            sync_from_worker(ctx, to).await?;
            ctx.reply("synced")?;
        } else {
            self.handled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Asks `to` for `sync` until its mailbox takes the ask: then every message
/// this worker sent it before has been handled or counted.
async fn sync_from_worker(ctx: &Context, to: Address) -> Result<(), Error> {
    loop {
        match ctx.send_and_receive(to.clone(), "sync", LONG).await {
            Ok(_) => return Ok(()),
            Err(Error::MailboxFull(_)) => ctx.sleep(Duration::from_millis(1)).await,
            Err(e) => return Err(e),
        }
    }
}

/// [`sync_from_worker`] from a plain thread.
fn sync(node: &NodeHandle, to: impl Into<Address>) {
    let to = to.into();
    if let Err(e) = ask_until_taken(node, to.clone(), "sync") {
        panic!("sync with {to}: {e}");
    }
}

/// Asks `to` for `msg` until its mailbox takes the ask (a flood may keep it
/// full for a while), and returns the answer.
fn ask_until_taken(
    node: &NodeHandle,
    to: impl Into<Address>,
    msg: &'static str,
) -> Result<Message, Error> {
    let to = to.into();
    loop {
        match node.send_and_receive(to.clone(), msg, LONG) {
            Err(Error::MailboxFull(_)) => std::thread::yield_now(),
            answer => return answer,
        }
    }
}

/// Starts `sink` on shard 1, a probe held by its first message, `hold`,
/// until the returned sender opens its gate; returns it with its count of
/// handled messages.
fn held_sink(node: &NodeHandle) -> (WorkerRef, Arc<AtomicU64>, flume::Sender<()>) {
    let handled = Arc::new(AtomicU64::new(0));
    let (open, gate) = flume::bounded(1);
    let probe = Probe {
        handled: handled.clone(),
        gate: Some(gate),
        ..Probe::default()
    };
    let sink = node.start_worker_on(1, "sink", probe).unwrap();
    node.send_when_ready(sink, "hold").unwrap();
    (sink, handled, open)
}

/// After a flood into a held sink that took or dropped every message:
/// opens the gate, waits for the sink with `sync`, and checks that every
/// accepted message was handled or counted as dropped for a full mailbox,
/// that nothing was dropped after the gate opened, and that the held
/// mailbox was full.
fn check_held_flood(
    node: &NodeHandle,
    open: flume::Sender<()>,
    sync: impl FnOnce(),
    accepted: &AtomicU64,
    handled: &AtomicU64,
) {
    let while_held = node.dropped().unwrap();
    open.send(()).unwrap();
    sync();
    let dropped = node.dropped().unwrap();
    assert_eq!(
        dropped, while_held,
        "nothing is dropped once the gate opens"
    );
    let (accepted, handled) = (
        accepted.load(Ordering::Relaxed),
        handled.load(Ordering::Relaxed),
    );
    assert_eq!(accepted, handled + dropped.total(), "{dropped:?}");
    assert_eq!(dropped.total(), dropped.mailbox_full, "{dropped:?}");
    assert_eq!(node.dropped_messages().unwrap(), dropped.total());
    assert!(
        handled <= CAPACITY as u64,
        "the held mailbox was full: {handled} handled"
    );
}

fn node(shards: usize) -> NodeHandle {
    myriad::Node::spawn(common::config(shards).mailbox_capacity(CAPACITY)).expect("node starts")
}

#[test]
fn a_thread_flood_into_a_full_mailbox_is_handled_or_counted_exactly() {
    const THREADS: u64 = 4;
    const EACH: u64 = 20_000;
    let node = node(2);
    let (sink, handled, open) = held_sink(&node);
    let accepted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (node, accepted) = (node.clone(), accepted.clone());
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    if node.send(sink, "x").is_ok() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The dropped count itself is read behind every send in the shard's
    // inbox: all were taken or dropped by then.
    check_held_flood(&node, open, || sync(&node, sink), &accepted, &handled);
    node.shutdown();
}

#[test]
fn a_cross_shard_flood_into_a_full_mailbox_is_handled_or_counted_exactly() {
    const COUNT: u64 = 50_000;
    let node = node(2);
    let (sink, handled, open) = held_sink(&node);
    let (flooder, accepted) = Probe::flooding(sink, Message::from_static("x"), COUNT, false);
    let flooder = node.spawn_on(0, flooder).unwrap();
    node.send_and_receive(flooder, "go", LONG).unwrap();
    // Behind every send of the flood: all were taken or dropped.
    node.send_and_receive(flooder, "full-target", LONG).unwrap();
    let sync = || {
        node.send_and_receive(flooder, "sync-target", LONG).unwrap();
    };
    check_held_flood(&node, open, sync, &accepted, &handled);
    node.shutdown();
}

/// Sends itself `tick` until it has handled `until` of them, then says so.
struct Ticker {
    until: u64,
    ticks: u64,
    done: flume::Sender<()>,
}

impl Worker for Ticker {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        self.ticks += 1;
        if self.ticks == self.until {
            self.done.send(())?;
        } else {
            ctx.send(ctx.me(), "tick")?;
        }
        Ok(())
    }
}

#[test]
fn a_flood_from_threads_leaves_the_shards_other_workers_served() {
    const THREADS: usize = 4;
    let node = common::node(1);
    let handled = Arc::new(AtomicU64::new(0));
    let sink = node
        .spawn(Probe {
            handled: handled.clone(),
            ..Probe::default()
        })
        .unwrap();
    let (done_tx, done) = flume::bounded(1);
    let ticker = node
        .spawn(Ticker {
            until: 1_000,
            ticks: 0,
            done: done_tx,
        })
        .unwrap();
    let flooding = Arc::new(AtomicBool::new(true));
    let accepted = Arc::new(AtomicU64::new(0));
    let (started_tx, started) = flume::bounded(THREADS);
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (node, flooding, accepted) = (node.clone(), flooding.clone(), accepted.clone());
            let started = started_tx.clone();
            std::thread::spawn(move || {
                let mut sent = 0u64;
                while flooding.load(Ordering::Relaxed) {
                    if node.send(sink, "x").is_ok() {
                        sent += 1;
                    }
                    if sent == 1_000 {
                        started.send(()).unwrap();
                    }
                }
                accepted.fetch_add(sent, Ordering::Relaxed);
            })
        })
        .collect();
    for _ in 0..THREADS {
        started.recv_timeout(LONG).expect("the flood starts");
    }
    // The first tick joins the flood in the shard's inbox; the others are
    // the ticker's own sends, which only the shard's scheduler runs.
    node.send_when_ready(ticker, "tick").unwrap();
    let served = done.recv_timeout(LONG);
    flooding.store(false, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    served.expect("the ticker handled its 1,000 ticks while the flood went on");
    sync(&node, sink);
    let dropped = node.dropped().unwrap();
    let (accepted, handled) = (
        accepted.load(Ordering::Relaxed),
        handled.load(Ordering::Relaxed),
    );
    assert_eq!(accepted, handled + dropped.total(), "{dropped:?}");
    node.shutdown();
}

#[test]
fn waiting_sends_from_threads_lose_nothing() {
    const THREADS: u64 = 4;
    const EACH: u64 = 5_000;
    let node = node(2);
    let (sink, handled, open) = held_sink(&node);
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let node = node.clone();
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    node.send_when_ready("sink", "x").unwrap();
                }
            })
        })
        .collect();
    open.send(()).unwrap();
    for t in threads {
        t.join().unwrap();
    }
    sync(&node, sink);
    assert_eq!(handled.load(Ordering::Relaxed), THREADS * EACH);
    assert_eq!(node.dropped_messages().unwrap(), 0);
    node.shutdown();
}

/// Has the flooding probes `sides` (a node and the name of a probe of
/// [`Probe::flooding`] on it, each sending `count` waiting sends to the
/// other) flood each other, and checks that neither flood deadlocked and
/// that every message of each was accepted and handled.
fn flood_each_other(
    sides: [(&NodeHandle, &'static str); 2],
    handled: &[Arc<AtomicU64>],
    accepted: &[Arc<AtomicU64>],
    count: u64,
) {
    let floods: Vec<_> = sides
        .iter()
        .map(|&(node, me)| {
            let node = node.clone();
            // The other flood may have filled this worker's mailbox
            // already: the ask is refused until it takes a message.
            std::thread::spawn(move || ask_until_taken(&node, me, "go"))
        })
        .collect();
    for flood in floods {
        let done = flood.join().unwrap();
        assert_eq!(done.expect("the flood ends: no deadlock"), "done");
    }
    // The other flood's last messages may still fill this worker's mailbox.
    for (node, me) in sides {
        ask_until_taken(node, me, "sync-target").unwrap();
    }
    for i in 0..2 {
        assert_eq!(accepted[i].load(Ordering::Relaxed), count);
        assert_eq!(
            handled[1 - i].load(Ordering::Relaxed),
            count,
            "{} lost some",
            sides[1 - i].1
        );
    }
}

/// Two workers on `shards` (one each, or both on shard 0) flood each other
/// with waiting sends while neither handles anything else.
fn two_workers_flood_each_other_with_waiting_sends(shards: usize) {
    const COUNT: u64 = 20_000;
    let node = node(shards);
    let name = ["left", "right"];
    let mut handled = Vec::new();
    let mut accepted = Vec::new();
    for (i, me) in name.iter().enumerate() {
        let (probe, a) = Probe::flooding(name[1 - i], Message::from_static("x"), COUNT, true);
        let h = probe.handled.clone();
        node.start_worker_on(i % shards, me, probe).unwrap();
        handled.push(h);
        accepted.push(a);
    }
    flood_each_other(
        [(&node, name[0]), (&node, name[1])],
        &handled,
        &accepted,
        COUNT,
    );
    assert_eq!(node.dropped_messages().unwrap(), 0);
    node.shutdown();
}

#[test]
fn two_workers_of_one_shard_flooding_each_other_neither_lose_nor_deadlock() {
    two_workers_flood_each_other_with_waiting_sends(1);
}

#[test]
fn two_workers_of_two_shards_flooding_each_other_neither_lose_nor_deadlock() {
    two_workers_flood_each_other_with_waiting_sends(2);
}

#[test]
fn a_waiting_send_to_a_worker_that_stops_is_told_so() {
    let node = node(2);
    let (sink, _handled, open) = held_sink(&node);
    for _ in 0..CAPACITY {
        node.send_when_ready(sink, "x").unwrap();
    }
    let waiting = {
        let node = node.clone();
        std::thread::spawn(move || node.send_when_ready(sink, "one too many"))
    };
    // Stopping marks the worker at once; it goes after `hold`, and the
    // waiting send is failed with it.
    node.stop_worker(sink).unwrap();
    open.send(()).unwrap();
    let err = waiting.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::NoSuchWorker(_)), "{err:?}");
    let err = node.send_when_ready(sink, "late").unwrap_err();
    assert!(matches!(err, Error::NoSuchWorker(_)), "{err:?}");
    node.shutdown();
}

#[test]
fn sends_accepted_while_a_link_connects_are_counted_when_the_attempt_fails() {
    let b = cluster::start(1, cluster::transport("gone"));
    let address = b.1.local_addr();
    let a = cluster::start(
        1,
        cluster::transport("left-behind")
            .seed(address.to_string())
            .connect_timeout(Duration::from_millis(300)),
    );
    cluster::wait_for_nodes(&a.1, &["gone"]);
    b.0.shutdown();
    // No link is up any more: what a send hands a link now waits for a
    // connection (sends written to a link that was up are another matter:
    // the protocol has no acknowledgements).
    cluster::wait_until("the link to go down", LONG, || a.1.nodes("gone").is_empty());
    // The address now takes connections and never answers a handshake: each
    // redial stays connecting until it times out, and takes sends meanwhile.
    let mut silent = None;
    cluster::wait_until("the address to be free", LONG, || {
        silent = std::net::TcpListener::bind(address).ok();
        silent.is_some()
    });
    let (flooder, accepted) = Probe::flooding("gone/sink", Message::from_static("x"), 1_000, false);
    let flooder = a.0.spawn(flooder).unwrap();
    cluster::wait_until("sends accepted by a connecting link", LONG, || {
        a.0.send_and_receive(flooder, "go", LONG).unwrap();
        accepted.load(Ordering::Relaxed) >= 100
    });
    let accepted = accepted.load(Ordering::Relaxed);
    cluster::wait_until("the attempt to fail", LONG, || {
        a.0.dropped().unwrap().no_route >= accepted
    });
    let dropped = a.0.dropped().unwrap();
    assert_eq!(dropped.no_route, accepted, "{dropped:?}");
    assert_eq!(dropped.total(), accepted, "{dropped:?}");
    assert_eq!(a.1.stats().undeliverable, accepted);
    drop(silent);
    a.0.shutdown();
}

/// How many deliveries the fake link below lets wait for room at once
/// before it stops reading.
const LINK_WINDOW: usize = 8;

/// What a transport's inbound path does with `deliver_when_ready`: it hands
/// each message over and reads on while fewer than [`LINK_WINDOW`] wait for
/// room; at the window it stops reading until a verdict comes, so a fast
/// sender is slowed down instead of losing messages. `wire` stands for the
/// connection; what failed is counted in `refused`; `finished` is told
/// when the wire is closed and every verdict came.
async fn fake_inbound_link(
    shard: ShardHandle,
    wire: flume::Receiver<Message>,
    refused: Arc<AtomicU64>,
    finished: flume::Sender<()>,
) {
    let (verdict_tx, verdicts) = flume::unbounded::<myriad::Result<()>>();
    let mut waiting = 0;
    let to = Address::from("sink");
    let settle = |verdict: Result<Result<(), Error>, flume::RecvError>| {
        if !matches!(verdict, Ok(Ok(()))) {
            refused.fetch_add(1, Ordering::Relaxed);
        }
    };
    while let Ok(msg) = wire.recv_async().await {
        if waiting == LINK_WINDOW {
            settle(verdicts.recv_async().await);
            waiting -= 1;
        }
        let tx = verdict_tx.clone();
        shard.deliver_when_ready(&to, msg, None, Box::new(move |r| drop(tx.send(r))));
        waiting += 1;
    }
    for _ in 0..waiting {
        settle(verdicts.recv_async().await);
    }
    let _ = finished.send(());
}

/// Refuses everything: the fake link above is this test's whole transport.
struct NoRoutes;

impl RemoteRouter for NoRoutes {
    fn send(
        &self,
        to: &myriad::RemoteAddress,
        _msg: Message,
        _from: Option<myriad::WorkerRef>,
        _reply: &mut Option<myriad::Replier>,
    ) -> myriad::Result<()> {
        Err(Error::NoRoute(to.node.to_string()))
    }
}

#[test]
fn an_inbound_link_that_waits_for_room_loses_nothing_into_a_slow_worker() {
    const COUNT: u64 = 20_000;
    let (wire_tx, wire) = flume::unbounded::<Message>();
    let (finished_tx, finished) = flume::bounded(1);
    let refused = Arc::new(AtomicU64::new(0));
    let link = Arc::new(std::sync::Mutex::new(Some((wire, finished_tx))));
    let link_refused = refused.clone();
    let config = common::config(2)
        .mailbox_capacity(CAPACITY)
        .remote_router(Arc::new(
            move |shard: ShardHandle| -> Rc<dyn RemoteRouter> {
                // The link runs on shard 0; its sink lives on the other shard.
                if shard.index() == 0 {
                    let (wire, finished) = link.lock().unwrap().take().expect("one shard 0");
                    let task = fake_inbound_link(shard, wire, link_refused.clone(), finished);
                    glommio::spawn_local(task).detach();
                }
                Rc::new(NoRoutes)
            },
        ));
    let node = myriad::Node::spawn(config).unwrap();
    let (sink, handled, open) = held_sink(&node);
    for _ in 0..COUNT {
        wire_tx.send(Message::from("x")).unwrap();
    }
    drop(wire_tx);
    open.send(()).unwrap();
    finished
        .recv_timeout(LONG)
        .expect("the link delivers everything");
    sync(&node, sink);
    assert_eq!(refused.load(Ordering::Relaxed), 0);
    assert_eq!(handled.load(Ordering::Relaxed), COUNT);
    assert_eq!(node.dropped_messages().unwrap(), 0);
    node.shutdown();
}

// ----- remote sends: delivery flow control ------------------------------------

/// Two linked nodes of the test zone with small mailboxes: `a` with
/// `a_shards` shards, seeded with `b`, which has `b_shards`.
fn remote_pair(a_shards: usize, b_shards: usize) -> ((NodeHandle, Zone), (NodeHandle, Zone)) {
    remote_pair_with(a_shards, b_shards, |t| t, |t| t)
}

/// [`remote_pair`], with each node's transport configuration changed by
/// `a_transport` and `b_transport`.
fn remote_pair_with(
    a_shards: usize,
    b_shards: usize,
    a_transport: impl FnOnce(TransportConfig) -> TransportConfig,
    b_transport: impl FnOnce(TransportConfig) -> TransportConfig,
) -> ((NodeHandle, Zone), (NodeHandle, Zone)) {
    let start = |shards, transport| {
        let engine = cluster::engine(shards).mailbox_capacity(CAPACITY);
        myriad::transport::start_node(engine, transport).expect("node starts")
    };
    let b = start(b_shards, b_transport(cluster::transport("b")));
    let a = start(
        a_shards,
        a_transport(cluster::transport("a").seed(b.1.local_addr().to_string())),
    );
    cluster::wait_for_nodes(&a.1, &["b"]);
    cluster::wait_for_nodes(&b.1, &["a"]);
    wait_for_route(&a.0, "b");
    wait_for_route(&b.0, "a");
    (a, b)
}

/// A worker that mostly waits: it naps before counting each plain message.
/// Answers `sync` at once.
struct Sleeper {
    handled: Arc<AtomicU64>,
    nap: Duration,
}

impl Worker for Sleeper {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if msg == "sync" {
            ctx.reply("synced")?;
        } else {
            ctx.sleep(self.nap).await;
            self.handled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Counts of a [`RemoteFlood`].
#[derive(Default)]
struct FloodCounts {
    /// Sends to the target that returned `Ok`.
    accepted: AtomicU64,
    /// Sends to the target refused at once (`MailboxFull`: no window).
    refused: AtomicU64,
    /// Sends to the worker that does not exist that returned `Ok`.
    to_ghost: AtomicU64,
}

/// On `go` (an ask), floods `to` with bodies of `body` for `rounds` rounds:
/// each round sends until a send is refused (or, `waiting`, that many
/// waiting sends), and one message to `ghost`, then naps 1 ms. On
/// `sync-target` (an ask), waits until `to` takes an ask, which is then
/// behind every send of the flood.
struct RemoteFlood {
    to: Address,
    ghost: Address,
    body: Message,
    rounds: u64,
    waiting: Option<u64>,
    counts: Arc<FloodCounts>,
}

impl Worker for RemoteFlood {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if msg == "sync-target" {
            sync_from_worker(ctx, self.to.clone()).await?;
            ctx.reply("synced")?;
            return Ok(());
        }
        let counts = &self.counts;
        for _ in 0..self.rounds {
            if let Some(sends) = self.waiting {
                for _ in 0..sends {
                    ctx.send_when_ready(self.to.clone(), self.body.clone())
                        .await?;
                    counts.accepted.fetch_add(1, Ordering::Relaxed);
                }
                ctx.send_when_ready(self.ghost.clone(), "boo").await?;
                counts.to_ghost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            loop {
                match ctx.send(self.to.clone(), self.body.clone()) {
                    Ok(()) => counts.accepted.fetch_add(1, Ordering::Relaxed),
                    Err(Error::MailboxFull(_)) => {
                        counts.refused.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
            }
            ctx.send(self.ghost.clone(), "boo")?;
            counts.to_ghost.fetch_add(1, Ordering::Relaxed);
            ctx.sleep(Duration::from_millis(1)).await;
        }
        ctx.reply("done")?;
        Ok(())
    }
}

/// A body of 16 KiB: a worker's delivery window holds about 250.
fn bulk() -> Message {
    Message::from("x".repeat(16 << 10))
}

/// A flood of 16 KiB messages from a new worker of `from` towards
/// `node/target`, and one message a round to `node/ghost`, which does not
/// exist: plain sends until refused, or `waiting` sends a round.
fn start_flood_of(
    from: &NodeHandle,
    node: &str,
    target: &str,
    rounds: u64,
    waiting: Option<u64>,
) -> (WorkerRef, Arc<FloodCounts>) {
    let counts = Arc::new(FloodCounts::default());
    let flood = RemoteFlood {
        to: Address::remote(node, target),
        ghost: Address::remote(node, "ghost"),
        body: bulk(),
        rounds,
        waiting,
        counts: counts.clone(),
    };
    (from.spawn(flood).unwrap(), counts)
}

/// [`start_flood_of`] plain sends.
fn start_flood(
    from: &NodeHandle,
    node: &str,
    target: &str,
    rounds: u64,
) -> (WorkerRef, Arc<FloodCounts>) {
    start_flood_of(from, node, target, rounds, None)
}

fn start_sleeper(node: &NodeHandle) -> Arc<AtomicU64> {
    let handled = Arc::new(AtomicU64::new(0));
    let sleeper = Sleeper {
        handled: handled.clone(),
        nap: Duration::from_micros(200),
    };
    node.start_worker("slow", sleeper).unwrap();
    handled
}

/// After floods of `from` into a worker that counted `handled`, the last
/// by `flooder`: each of the `accepted` sends was handled, or reported at
/// `from` (only those to the ghost — `ghosts` of them — as
/// `no_such_worker`), exactly; nothing was dropped for a full mailbox.
fn check_remote_flood(
    from: &NodeHandle,
    flooder: WorkerRef,
    accepted: u64,
    handled: &AtomicU64,
    ghosts: u64,
) {
    from.send_and_receive(flooder, "sync-target", LONG).unwrap();
    assert_eq!(handled.load(Ordering::Relaxed), accepted, "all handled");
    // The ghost's reports may be on their way from the other shard.
    cluster::wait_until("the ghost's reports", LONG, || {
        from.dropped().unwrap().total() >= ghosts
    });
    let dropped = from.dropped().unwrap();
    let expected = myriad::Dropped {
        no_such_worker: ghosts,
        ..myriad::Dropped::default()
    };
    assert_eq!(dropped, expected);
}

/// Checks that `nodes` dropped no message, then shuts them down.
fn stop_having_dropped_nothing(nodes: [NodeHandle; 2]) {
    for node in &nodes {
        assert_eq!(node.dropped_messages().unwrap(), 0, "{}", node.name());
    }
    for node in nodes {
        node.shutdown();
    }
}

/// Waits until `node` knows how to reach `other` (the member list has its
/// address): an ask for a worker it does not have fails with `NoSuchWorker`.
fn wait_for_route(node: &NodeHandle, other: &str) {
    let nobody = Address::remote(other, "nobody");
    cluster::wait_until("a route", LONG, || {
        matches!(
            node.send_and_receive(nobody.clone(), "x", LONG),
            Err(Error::NoSuchWorker(_))
        )
    });
}

fn a_fast_remote_sender_into_a_slow_worker_loses_nothing_unreported(shards: usize) {
    let ((a, _za), (b, zb)) = remote_pair(shards, shards);
    let handled = start_sleeper(&b);
    let (flooder, counts) = start_flood(&a, "b", "slow", 100);
    a.send_and_receive(flooder, "go", LONG).unwrap();
    let (accepted, ghosts) = (
        counts.accepted.load(Ordering::Relaxed),
        counts.to_ghost.load(Ordering::Relaxed),
    );
    assert!(
        counts.refused.load(Ordering::Relaxed) > 0,
        "the window filled up"
    );
    check_remote_flood(&a, flooder, accepted, &handled, ghosts);
    assert_eq!(
        b.dropped_messages().unwrap(),
        0,
        "the receiver dropped none"
    );
    assert_eq!(
        zb.stats().undeliverable,
        counts.to_ghost.load(Ordering::Relaxed)
    );
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_fast_remote_sender_into_a_slow_worker_loses_nothing_unreported_one_shard() {
    a_fast_remote_sender_into_a_slow_worker_loses_nothing_unreported(1);
}

#[test]
fn a_fast_remote_sender_into_a_slow_worker_loses_nothing_unreported_two_shards() {
    a_fast_remote_sender_into_a_slow_worker_loses_nothing_unreported(2);
}

#[test]
fn two_nodes_flooding_each_others_slow_workers_do_not_deadlock() {
    let ((a, _za), (b, _zb)) = remote_pair(2, 2);
    let handled = [&a, &b].map(start_sleeper);
    let floods = [(&a, "b"), (&b, "a")].map(|(from, to)| start_flood(from, to, "slow", 100));
    let running = [(&a, floods[0].0), (&b, floods[1].0)].map(|(node, flooder)| {
        let node = node.clone();
        std::thread::spawn(move || node.send_and_receive(flooder, "go", LONG))
    });
    for flood in running {
        let done = flood.join().unwrap();
        assert_eq!(done.expect("the flood ends: no deadlock"), "done");
    }
    for (i, (node, (flooder, counts))) in [&a, &b].into_iter().zip(&floods).enumerate() {
        let accepted = counts.accepted.load(Ordering::Relaxed);
        let ghosts = counts.to_ghost.load(Ordering::Relaxed);
        assert!(
            counts.refused.load(Ordering::Relaxed) > 0,
            "the window filled up"
        );
        check_remote_flood(node, *flooder, accepted, &handled[1 - i], ghosts);
    }
    a.shutdown();
    b.shutdown();
}

#[test]
fn the_other_workers_of_a_link_are_served_while_one_holds_its_window() {
    const OTHERS: u64 = 1_000;
    // One shard on `a`: every send below takes the same link.
    let ((a, _za), (b, _zb)) = remote_pair(1, 2);
    let (_sink, sink_handled, open) = held_sink(&b);
    let (flooder, counts) = start_flood(&a, "b", "sink", 1);
    a.send_and_receive(flooder, "go", LONG).unwrap();
    assert_eq!(
        counts.refused.load(Ordering::Relaxed),
        1,
        "the window is full"
    );

    // Meanwhile another worker of `b`, over the same link, takes all.
    let fast = Arc::new(AtomicU64::new(0));
    let probe = Probe {
        handled: fast.clone(),
        ..Probe::default()
    };
    b.start_worker("fast", probe).unwrap();
    let to = Address::remote("b", "fast");
    let (sender, accepted) = Probe::flooding(to, Message::from_static("x"), OTHERS, false);
    let sender = a.spawn(sender).unwrap();
    a.send_and_receive(sender, "go", LONG).unwrap();
    a.send_and_receive(sender, "sync-target", LONG).unwrap();
    assert_eq!(accepted.load(Ordering::Relaxed), OTHERS);
    assert_eq!(fast.load(Ordering::Relaxed), OTHERS);

    // The held sink still holds its window, but for the sends that went
    // into its mailbox (their credits may have come back since).
    let (again, again_counts) = start_flood(&a, "b", "sink", 1);
    a.send_and_receive(again, "go", LONG).unwrap();
    let again_accepted = again_counts.accepted.load(Ordering::Relaxed);
    assert!(again_accepted <= CAPACITY as u64, "{again_accepted}");
    assert_eq!(sink_handled.load(Ordering::Relaxed), 0, "still held");

    open.send(()).unwrap();
    let accepted = counts.accepted.load(Ordering::Relaxed) + again_accepted;
    check_remote_flood(&a, again, accepted, &sink_handled, 2);
    a.shutdown();
    b.shutdown();
}

#[test]
fn sends_waiting_for_a_remote_worker_that_stops_are_reported_to_the_sender() {
    let ((a, _za), (b, _zb)) = remote_pair(1, 2);
    let (sink, handled, open) = held_sink(&b);
    let (flooder, counts) = start_flood(&a, "b", "sink", 1);
    a.send_and_receive(flooder, "go", LONG).unwrap();
    let accepted = counts.accepted.load(Ordering::Relaxed);
    let ghosts = counts.to_ghost.load(Ordering::Relaxed);
    assert!(
        accepted > CAPACITY as u64,
        "sends wait for room: {accepted}"
    );
    // Stopping marks the worker at once; it goes after `hold`. The sends
    // waiting for room are reported to `a`; those already in its mailbox
    // are dropped, and counted, at `b`.
    b.stop_worker(sink).unwrap();
    open.send(()).unwrap();
    let settled = || {
        let handled = handled.load(Ordering::Relaxed);
        handled + a.dropped().unwrap().total() + b.dropped().unwrap().total()
    };
    cluster::wait_until("every send settled", LONG, || {
        settled() >= accepted + ghosts
    });
    assert_eq!(settled(), accepted + ghosts);
    let (at_a, at_b) = (a.dropped().unwrap(), b.dropped().unwrap());
    assert_eq!(at_a.total(), at_a.no_such_worker, "{at_a:?}");
    assert!(at_a.no_such_worker > ghosts, "waiting sends were reported");
    assert!(at_b.total() <= CAPACITY as u64, "{at_b:?}");
    a.shutdown();
    b.shutdown();
}

// ----- remote sends that wait for room -----------------------------------------

fn a_waiting_remote_flood_into_a_slow_worker_loses_nothing(shards: usize) {
    const ROUNDS: u64 = 8;
    const EACH: u64 = 100;
    let ((a, _za), (b, _zb)) = remote_pair(shards, shards);
    let handled = start_sleeper(&b);
    let (flooder, counts) = start_flood_of(&a, "b", "slow", ROUNDS, Some(EACH));
    a.send_and_receive(flooder, "go", LONG).unwrap();
    let accepted = counts.accepted.load(Ordering::Relaxed);
    assert_eq!(accepted, ROUNDS * EACH, "a waiting send is never refused");
    // A worker's delivery window holds 4 MiB.
    assert!(
        accepted * (bulk().len() as u64) > 2 * (4 << 20),
        "the window filled up"
    );
    check_remote_flood(&a, flooder, accepted, &handled, ROUNDS);
    assert_eq!(b.dropped_messages().unwrap(), 0);
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_waiting_remote_flood_into_a_slow_worker_loses_nothing_one_shard() {
    a_waiting_remote_flood_into_a_slow_worker_loses_nothing(1);
}

#[test]
fn a_waiting_remote_flood_into_a_slow_worker_loses_nothing_two_shards() {
    a_waiting_remote_flood_into_a_slow_worker_loses_nothing(2);
}

#[test]
fn waiting_remote_sends_from_threads_lose_nothing() {
    const THREADS: u64 = 4;
    const EACH: u64 = 200;
    let ((a, _za), (b, _zb)) = remote_pair(2, 1);
    let handled = start_sleeper(&b);
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    a.send_when_ready(Address::remote("b", "slow"), bulk())
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Behind every send, on the same link (shard 0's, as threads' sends to
    // another node take).
    sync(&a, Address::remote("b", "slow"));
    assert_eq!(handled.load(Ordering::Relaxed), THREADS * EACH);
    stop_having_dropped_nothing([a, b]);
}

#[test]
fn two_nodes_whose_workers_flood_each_other_with_waiting_sends_neither_lose_nor_deadlock() {
    // Enough 16 KiB sends to fill a worker's window many times over: each
    // worker's mailbox fills with the other's sends while it floods, so
    // both must force theirs (the link's reserve) or wait for ever.
    const COUNT: u64 = 1_500;
    let ((a, _za), (b, _zb)) = remote_pair(2, 2);
    let nodes = [(&a, "left", "b/right"), (&b, "right", "a/left")];
    let mut handled = Vec::new();
    let mut accepted = Vec::new();
    for (node, me, to) in nodes {
        let (probe, acc) = Probe::flooding(to, bulk(), COUNT, true);
        let h = probe.handled.clone();
        node.start_worker(me, probe).unwrap();
        handled.push(h);
        accepted.push(acc);
    }
    let sides = nodes.map(|(node, me, _)| (node, me));
    flood_each_other(sides, &handled, &accepted, COUNT);
    stop_having_dropped_nothing([a, b]);
}

#[test]
fn sends_unsettled_when_a_link_closes_are_counted_in_doubt() {
    const SETTLED: u64 = 100;
    let ((a, za), (b, _zb)) = remote_pair(1, 1);
    let fast = Arc::new(AtomicU64::new(0));
    let probe = Probe {
        handled: fast.clone(),
        ..Probe::default()
    };
    b.start_worker("fast", probe).unwrap();
    // Sends that are settled: handled, and credited before the answer.
    let (sender, accepted) = Probe::flooding("b/fast", bulk(), SETTLED, true);
    let sender = a.spawn(sender).unwrap();
    a.send_and_receive(sender, "go", LONG).unwrap();
    a.send_and_receive(sender, "sync-target", LONG).unwrap();
    assert_eq!(accepted.load(Ordering::Relaxed), SETTLED);
    assert_eq!(fast.load(Ordering::Relaxed), SETTLED);

    // `b` stops reading: what `a` sends now is never settled, until the
    // link closes for want of heartbeats.
    let (frozen_tx, frozen) = flume::bounded(1);
    let (open, gate) = flume::bounded(1);
    let freezer = b
        .spawn(Freezer {
            frozen: frozen_tx,
            gate,
        })
        .unwrap();
    b.send(freezer, "freeze").unwrap();
    frozen.recv_timeout(LONG).expect("b freezes");
    let (flooder, counts) = start_flood(&a, "b", "fast", 1);
    a.send_and_receive(flooder, "go", LONG).unwrap();
    let unsettled =
        counts.accepted.load(Ordering::Relaxed) + counts.to_ghost.load(Ordering::Relaxed);
    assert!(unsettled > 1, "{unsettled}");
    cluster::wait_until("the link to close", LONG, || {
        a.dropped().unwrap().in_doubt > 0
    });
    let expected = myriad::Dropped {
        in_doubt: unsettled,
        ..myriad::Dropped::default()
    };
    assert_eq!(a.dropped().unwrap(), expected);
    assert_eq!(a.dropped_messages().unwrap(), unsettled);
    assert_eq!(za.stats().undeliverable, 0, "none is known undelivered");
    let metrics = a.metrics().unwrap();
    let in_doubt = metrics.total(|s| s.dropped.in_doubt);
    assert_eq!(in_doubt, unsettled);
    open.send(()).unwrap();
    a.shutdown();
    b.shutdown();
}

/// On an ask, sends each of its bodies to `to` at once (the first creates
/// this shard's link to that node, and none waits for it), and answers.
struct Burst {
    to: Address,
    bodies: Vec<Message>,
}

impl Worker for Burst {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        for body in &self.bodies {
            ctx.send(self.to.clone(), body.clone())?;
        }
        ctx.reply("sent")?;
        Ok(())
    }
}

#[test]
fn sends_kept_while_a_link_connects_and_refused_when_it_is_up_are_counted() {
    let limit = 1024;
    let ((a, za), (b, _zb)) = remote_pair_with(2, 1, |t| t, |t| t.max_message_size(limit));
    let sink = Arc::new(AtomicU64::new(0));
    let probe = Probe {
        handled: sink.clone(),
        ..Probe::default()
    };
    b.start_worker("sink", probe).unwrap();
    // Shard 1 of `a` has no link to `b` yet: these wait for one, under
    // `a`'s own limit, and meet `b`'s when it is up.
    let big = Message::from("b".repeat(2 * limit as usize));
    let burst = Burst {
        to: Address::remote("b", "sink"),
        bodies: vec![big.clone(), Message::from("small"), big.clone(), big],
    };
    let burst = a.spawn_on(1, burst).unwrap();
    a.send_and_receive(burst, "go", LONG).unwrap();
    cluster::wait_until("the refusals counted", LONG, || {
        a.dropped().unwrap().other >= 3
    });
    cluster::wait_until("the small one handled", LONG, || {
        sink.load(Ordering::Relaxed) >= 1
    });
    let expected = myriad::Dropped {
        other: 3,
        ..myriad::Dropped::default()
    };
    assert_eq!(a.dropped().unwrap(), expected);
    assert_eq!(za.stats().undeliverable, 3);
    assert_eq!(sink.load(Ordering::Relaxed), 1);
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_worker_waiting_for_a_remote_window_holds_up_neither_its_shard_nor_its_link() {
    const WAITING: u64 = 400;
    const OTHERS: u64 = 1_000;
    // One shard on `a`: both senders share it and its one link to `b`.
    let ((a, _za), (b, _zb)) = remote_pair(1, 2);
    let (_sink, sink_handled, open) = held_sink(&b);
    let (waiter, waiting_accepted) = Probe::flooding("b/sink", bulk(), WAITING, true);
    let waiter = a.spawn(waiter).unwrap();
    let flood = {
        let a = a.clone();
        std::thread::spawn(move || a.send_and_receive(waiter, "go", LONG))
    };
    // More than the held sink's window and mailbox take: the waiter waits.
    cluster::wait_until("the window to fill", LONG, || {
        waiting_accepted.load(Ordering::Relaxed) * (bulk().len() as u64) > (4 << 20) - (1 << 20)
    });
    assert!(waiting_accepted.load(Ordering::Relaxed) < WAITING);

    // Meanwhile another worker of the same shard sends over the same link.
    let fast = Arc::new(AtomicU64::new(0));
    b.start_worker(
        "fast",
        Probe {
            handled: fast.clone(),
            ..Probe::default()
        },
    )
    .unwrap();
    let (sender, accepted) = Probe::flooding("b/fast", Message::from_static("x"), OTHERS, true);
    let sender = a.spawn(sender).unwrap();
    a.send_and_receive(sender, "go", LONG).unwrap();
    a.send_and_receive(sender, "sync-target", LONG).unwrap();
    assert_eq!(accepted.load(Ordering::Relaxed), OTHERS);
    assert_eq!(fast.load(Ordering::Relaxed), OTHERS);
    assert_eq!(sink_handled.load(Ordering::Relaxed), 0, "still held");

    open.send(()).unwrap();
    let done = flood.join().unwrap();
    assert_eq!(done.expect("the waiting flood ends"), "done");
    a.send_and_receive(waiter, "sync-target", LONG).unwrap();
    assert_eq!(sink_handled.load(Ordering::Relaxed), WAITING);
    stop_having_dropped_nothing([a, b]);
}
