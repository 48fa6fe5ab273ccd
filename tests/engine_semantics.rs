//! The engine's promises, as a user of the library sees them: each test
//! fails if its promise breaks.

mod common;
#[path = "common/sequence.rs"]
mod sequence;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use myriad::{Address, BoxError, Context, Error, Message, Node, Replier, Worker, WorkerRef};
use sequence::{SequenceChecker, SequenceSender};

const LONG: Duration = Duration::from_secs(30);

/// Replies `Hello, <msg>!`.
struct Greeter;

impl Worker for Greeter {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        ctx.reply(format!("Hello, {msg}!"))?;
        Ok(())
    }
}

#[test]
fn main_runs_as_a_worker_and_gets_its_answer() {
    let reply = Node::start(common::config(2), |ctx| async move {
        ctx.start_worker("greeter", Greeter).await?;
        ctx.send_and_receive("greeter", "world", LONG).await
    })
    .unwrap();
    assert_eq!(reply.unwrap(), "Hello, world!");
}

#[test]
fn fifo_per_sender_holds_across_shards_under_load() {
    const N: u64 = 100_000;
    let node = Node::spawn(common::config(2).mailbox_capacity(1 << 20)).unwrap();
    let checker = node
        .start_worker_on(1, "checker", SequenceChecker::default())
        .unwrap();
    // One sender on the other shard, one on the checker's own shard.
    let far = node
        .spawn_on(
            0,
            SequenceSender {
                id: "far",
                target: checker.into(),
            },
        )
        .unwrap();
    let near = node
        .spawn_on(
            1,
            SequenceSender {
                id: "near",
                target: "checker".into(),
            },
        )
        .unwrap();
    node.send(far, format!("go {N}")).unwrap();
    node.send(near, format!("go {N}")).unwrap();
    let report = node
        .send_and_receive("checker", format!("when {}", 2 * N), LONG)
        .unwrap();
    assert_eq!(report, format!("{} 0", 2 * N).as_str());
    node.shutdown();
}

/// Logs `start i` / `end i` around an await on a gate that the test opens.
struct Slow {
    log: Arc<Mutex<Vec<String>>>,
    gate: flume::Receiver<()>,
}

impl Worker for Slow {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        self.log.lock().unwrap().push(format!("start {msg}"));
        self.gate.recv_async().await?;
        self.log.lock().unwrap().push(format!("end {msg}"));
        if ctx.is_ask() {
            ctx.reply("done")?;
        }
        Ok(())
    }
}

/// Logs `fast` and replies.
struct Fast {
    log: Arc<Mutex<Vec<String>>>,
}

impl Worker for Fast {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        self.log.lock().unwrap().push("fast".to_owned());
        ctx.reply("ok")?;
        Ok(())
    }
}

#[test]
fn one_message_at_a_time_while_the_shard_keeps_running_others() {
    let node = common::node(1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let (open, gate) = flume::unbounded();
    let slow = node
        .spawn(Slow {
            log: log.clone(),
            gate,
        })
        .unwrap();
    let fast = node.spawn(Fast { log: log.clone() }).unwrap();
    for i in 0..3 {
        node.send(slow, i.to_string()).unwrap();
    }
    // `slow` cannot finish a message before the gate opens; `fast`, on the
    // same shard, answers meanwhile (or this ask fails, after LONG).
    assert_eq!(node.send_and_receive(fast, "hi", LONG).unwrap(), "ok");
    let seen = log.lock().unwrap().clone();
    assert!(
        seen.iter().all(|e| e == "fast" || e == "start 0"),
        "`slow` went past its first message with the gate shut: {seen:?}"
    );
    for _ in 0..4 {
        open.send(()).unwrap();
    }
    assert_eq!(node.send_and_receive(slow, "3", LONG).unwrap(), "done");
    let log = log.lock().unwrap().clone();
    let slow_events: Vec<_> = log.iter().filter(|e| *e != "fast").cloned().collect();
    let expected: Vec<String> = (0..4)
        .flat_map(|i| [format!("start {i}"), format!("end {i}")])
        .collect();
    assert_eq!(
        slow_events, expected,
        "handlers overlapped or reordered: {log:?}"
    );
    node.shutdown();
}

/// Never answers `hang` in time; answers anything else.
struct Sleepy;

impl Worker for Sleepy {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if msg == "hang" {
            glommio::timer::sleep(Duration::from_secs(3600)).await;
        }
        ctx.reply("awake")?;
        Ok(())
    }
}

#[test]
fn an_ask_times_out_with_a_timeout_error() {
    let outcome = Node::start(common::config(2), |ctx| async move {
        let sleepy = ctx.spawn(Sleepy);
        let asked = std::time::Instant::now();
        let timed_out = ctx
            .send_and_receive(sleepy, "hang", Duration::from_millis(50))
            .await;
        let waited = asked.elapsed();
        let other = ctx.spawn(Sleepy);
        let answered = ctx.send_and_receive(other, "hi", LONG).await;
        (timed_out, answered, waited)
    })
    .unwrap();
    // Deadlines are kept on a 250 µs tick, but never early.
    assert!(outcome.2 >= Duration::from_millis(50), "{:?}", outcome.2);
    let err = outcome.0.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("timeout"), "{err}");
    assert_eq!(outcome.1.unwrap(), "awake");
}

/// Sleeps with `ctx.sleep` for the milliseconds it is asked, then answers.
struct Napper;

impl Worker for Napper {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let millis: u64 = msg.parse()?;
        ctx.sleep(Duration::from_millis(millis)).await;
        ctx.reply("rested")?;
        Ok(())
    }
}

#[test]
fn ctx_sleep_lasts_its_duration_and_holds_up_only_its_worker() {
    let nap = Duration::from_millis(200);
    let (order, napped) = Node::start(common::config(1), move |ctx| async move {
        let napper = ctx.spawn(Napper);
        let other = ctx.spawn(Sleepy);
        let order = std::cell::RefCell::new(Vec::new());
        let started = std::time::Instant::now();
        let napping = async {
            let answer = ctx.send_and_receive(napper, nap.as_millis().to_string(), LONG);
            assert_eq!(answer.await.unwrap(), "rested");
            order.borrow_mut().push("napper");
            started.elapsed()
        };
        let meanwhile = async {
            // Asked after the napper fell asleep, on the same (only) shard.
            assert_eq!(
                ctx.send_and_receive(other, "hi", LONG).await.unwrap(),
                "awake"
            );
            order.borrow_mut().push("other");
        };
        let (napped, ()) = futures_lite::future::zip(napping, meanwhile).await;
        (order.into_inner(), napped)
    })
    .unwrap();
    assert_eq!(order, ["other", "napper"], "the sleep blocked the shard");
    assert!(napped >= nap, "woke early, after {napped:?}");
}

#[test]
fn unknown_workers_fail_at_once_not_by_timeout() {
    let node = common::node(2);
    for to in ["nobody", "nobody-else", "x"] {
        let err = node.send_and_receive(to, "hello?", LONG).unwrap_err();
        assert!(matches!(err, Error::NoSuchWorker(_)), "{to}: {err:?}");
    }
    let outcome = Node::start(common::config(2), |ctx| async move {
        let by_name = ctx.send_and_receive("ghost", "hi", LONG).await;
        let stale: WorkerRef = "#1.99.99".parse().unwrap();
        let by_ref = ctx.send_and_receive(stale, "hi", LONG).await;
        let send = ctx.send("#0.98.98", "hi");
        (by_name, by_ref, send)
    })
    .unwrap();
    assert!(
        matches!(outcome.0, Err(Error::NoSuchWorker(_))),
        "{:?}",
        outcome.0
    );
    assert!(
        matches!(outcome.1, Err(Error::NoSuchWorker(_))),
        "{:?}",
        outcome.1
    );
    assert!(
        matches!(outcome.2, Err(Error::NoSuchWorker(_))),
        "{:?}",
        outcome.2
    );
    node.shutdown();
}

#[test]
fn names_are_unique_and_validated() {
    let node = common::node(2);
    node.start_worker("dup", Greeter).unwrap();
    let err = node.start_worker("dup", Greeter).unwrap_err();
    assert_eq!(err, Error::NameTaken("dup".into()));
    // Also when the second start asks for another shard explicitly.
    let err = node.start_worker_on(1, "dup", Greeter).unwrap_err();
    assert_eq!(err, Error::NameTaken("dup".into()));
    for bad in ["", "with space", "a/b", "dot.ted", "naïve"] {
        let err = node.start_worker(bad, Greeter).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err:?}");
    }
    let err = node.start_worker_on(7, "fine", Greeter).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoSuchShard {
                shard: 7,
                shards: 2
            }
        ),
        "{err:?}"
    );
    // The original is untouched.
    assert_eq!(
        node.send_and_receive("dup", "you", LONG).unwrap(),
        "Hello, you!"
    );
    node.shutdown();
}

/// Panics on `boom`, fails on `bad`, forgets to reply on `mute`.
struct Fragile {
    stopped: Arc<AtomicBool>,
}

impl Worker for Fragile {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        match msg.as_str() {
            "boom" => panic!("boom went the worker"),
            "bad" => Err("bad input".into()),
            "mute" => Ok(()),
            _ => {
                ctx.reply("fine")?;
                Ok(())
            }
        }
    }

    async fn on_stop(&mut self, _ctx: &mut Context) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

#[test]
fn handler_errors_fail_the_ask_but_keep_the_worker() {
    let node = common::node(2);
    let stopped = Arc::new(AtomicBool::new(false));
    node.start_worker("fragile", Fragile { stopped }).unwrap();
    let err = node.send_and_receive("fragile", "bad", LONG).unwrap_err();
    match &err {
        Error::WorkerFailed { worker, reason } => {
            assert_eq!(worker, "fragile");
            assert!(reason.contains("bad input"), "{reason}");
        }
        other => panic!("expected WorkerFailed, got {other:?}"),
    }
    let err = node.send_and_receive("fragile", "mute", LONG).unwrap_err();
    assert!(matches!(err, Error::NoReply(_)), "{err:?}");
    assert_eq!(
        node.send_and_receive("fragile", "ok?", LONG).unwrap(),
        "fine"
    );
    node.shutdown();
}

#[test]
fn a_panic_is_contained_and_fails_waiting_asks() {
    let node = common::node(2);
    let stopped = Arc::new(AtomicBool::new(false));
    node.start_worker(
        "fragile",
        Fragile {
            stopped: stopped.clone(),
        },
    )
    .unwrap();
    node.start_worker("bystander", Greeter).unwrap();
    let err = node.send_and_receive("fragile", "boom", LONG).unwrap_err();
    match &err {
        Error::WorkerFailed { worker, reason } => {
            assert_eq!(worker, "fragile");
            assert!(reason.contains("boom went the worker"), "{reason}");
        }
        other => panic!("expected WorkerFailed, got {other:?}"),
    }
    // The worker is gone (no on_stop after a panic), its name is free again,
    // and the rest of the node is unaffected.
    let err = node.send_and_receive("fragile", "hello", LONG).unwrap_err();
    assert!(matches!(err, Error::NoSuchWorker(_)), "{err:?}");
    assert!(!stopped.load(Ordering::SeqCst));
    assert_eq!(
        node.send_and_receive("bystander", "still", LONG).unwrap(),
        "Hello, still!"
    );
    node.start_worker("fragile", Greeter).unwrap();
    node.shutdown();
}

#[test]
fn asks_queued_behind_a_panic_fail_with_the_reason() {
    let outcome = Node::start(common::config(1), |ctx| async move {
        let stopped = Arc::new(AtomicBool::new(false));
        let fragile = ctx.spawn(Fragile { stopped });
        // Both are queued before the worker runs: the panic on the first
        // must fail the second too, not leave it to time out.
        ctx.send(fragile, "boom").unwrap();
        ctx.send_and_receive(fragile, "after", LONG).await
    })
    .unwrap();
    match outcome {
        Err(Error::WorkerFailed { reason, .. }) => assert!(reason.contains("boom"), "{reason}"),
        other => panic!("expected WorkerFailed, got {other:?}"),
    }
}

#[test]
fn list_workers_shows_names_shards_mailboxes_and_counts() {
    let node = common::node(2);
    let a = node.start_worker_on(0, "alpha", Greeter).unwrap();
    let b = node.start_worker_on(1, "beta", Greeter).unwrap();
    let anon = node.spawn_on(1, Greeter).unwrap();
    for _ in 0..3 {
        node.send_and_receive("alpha", "x", LONG).unwrap();
    }
    node.send_and_receive(anon, "x", LONG).unwrap();
    let mut list = node.list_workers().unwrap();
    list.sort_by_key(|w| w.id);
    assert_eq!(list.len(), 3, "{list:?}");
    let alpha = list.iter().find(|w| w.id == a).unwrap();
    assert_eq!(
        (
            alpha.name.as_deref(),
            alpha.shard,
            alpha.handled,
            alpha.mailbox_len
        ),
        (Some("alpha"), 0, 3, 0)
    );
    let beta = list.iter().find(|w| w.id == b).unwrap();
    assert_eq!(
        (beta.name.as_deref(), beta.shard, beta.handled),
        (Some("beta"), 1, 0)
    );
    let anon_info = list.iter().find(|w| w.id == anon).unwrap();
    assert_eq!(
        (
            anon_info.name.as_deref(),
            anon_info.shard,
            anon_info.handled
        ),
        (None, 1, 1)
    );
    node.shutdown();
}

#[test]
fn list_workers_counts_queued_messages() {
    let node = common::node(1);
    let log = Arc::new(Mutex::new(Vec::new()));
    // Kept shut to the end: `slow` takes at most its first message.
    let (_shut, gate) = flume::unbounded::<()>();
    let slow = node.start_worker("slow", Slow { log, gate }).unwrap();
    for i in 0..5 {
        node.send(slow, i.to_string()).unwrap();
    }
    // The first message may be in hand (waiting on the gate); the rest wait.
    let queued = node
        .list_workers()
        .unwrap()
        .into_iter()
        .find(|w| w.id == slow)
        .unwrap()
        .mailbox_len;
    assert!((4..=5).contains(&queued), "mailbox_len = {queued}");
    node.shutdown();
}

#[test]
fn stop_worker_runs_on_stop_and_frees_the_name() {
    let node = common::node(2);
    let stopped = Arc::new(AtomicBool::new(false));
    node.start_worker(
        "victim",
        Fragile {
            stopped: stopped.clone(),
        },
    )
    .unwrap();
    assert_eq!(node.send_and_receive("victim", "hi", LONG).unwrap(), "fine");
    node.stop_worker("victim").unwrap();
    // Stop is processed before anything sent after it.
    let err = node.send_and_receive("victim", "hi", LONG).unwrap_err();
    assert!(matches!(err, Error::NoSuchWorker(_)), "{err:?}");
    assert!(stopped.load(Ordering::SeqCst), "on_stop did not run");
    assert!(matches!(
        node.stop_worker("victim"),
        Err(Error::NoSuchWorker(_))
    ));
    node.start_worker("victim", Greeter).unwrap();
    assert_eq!(
        node.send_and_receive("victim", "again", LONG).unwrap(),
        "Hello, again!"
    );
    node.shutdown();
}

#[test]
fn a_stopped_name_is_free_as_soon_as_stop_worker_returns() {
    let node = common::node(2);
    for round in 0..200 {
        node.start_worker("phoenix", Greeter).unwrap();
        node.stop_worker("phoenix").unwrap();
        let err = node.send_and_receive("phoenix", "hi", LONG).unwrap_err();
        assert!(
            matches!(err, Error::NoSuchWorker(_)),
            "round {round}: {err:?}"
        );
    }
    node.shutdown();
    // And from inside the node, stopping by reference.
    let restarted = Node::start(common::config(2), |ctx| async move {
        for _ in 0..200 {
            let r = ctx.start_worker("ember", Greeter).await?;
            ctx.stop_worker(r).await?;
        }
        ctx.start_worker("ember", Greeter).await
    })
    .unwrap();
    assert!(restarted.is_ok(), "{restarted:?}");
}

/// Keeps its shard busy: bounces every message (to `partner`, or back to
/// its sender) until `stop` is raised or `MAX_VOLLEYS` were played.
struct Rally {
    partner: Option<WorkerRef>,
    stop: Arc<AtomicBool>,
    volleys: Arc<AtomicUsize>,
}

/// A safety net: the rally ends by itself after this many volleys.
const MAX_VOLLEYS: usize = 50_000_000;

impl Worker for Rally {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        let played = self.volleys.fetch_add(1, Ordering::Relaxed);
        if !self.stop.load(Ordering::Relaxed) && played < MAX_VOLLEYS {
            if let Some(to) = self.partner.or(ctx.sender()) {
                ctx.send(to, "volley")?;
            }
        }
        Ok(())
    }
}

/// Answers `far` once it has started a worker on shard 1.
struct FarSpawner;

impl Worker for FarSpawner {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        let far = ctx.spawn_on(1, Greeter).await?;
        ctx.reply(far.shard().to_string())?;
        Ok(())
    }
}

#[test]
fn a_cross_shard_operation_completes_while_its_shard_stays_busy() {
    let stop = Arc::new(AtomicBool::new(false));
    let volleys = Arc::new(AtomicUsize::new(0));
    let (answer, played) = Node::start(common::config(2), move |ctx| async move {
        let rally = |partner| Rally {
            partner,
            stop: stop.clone(),
            volleys: volleys.clone(),
        };
        let a = ctx.spawn_on(0, rally(None)).await.unwrap();
        let b = ctx.spawn_on(0, rally(Some(a))).await.unwrap();
        let spawner = ctx.spawn_on(0, FarSpawner).await.unwrap();
        ctx.send(b, "serve").unwrap();
        // Shard 0 is now never idle; the spawner needs shard 1's answer.
        let answer = ctx.send_and_receive(spawner, "far", LONG).await;
        let played = volleys.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        (answer, played)
    })
    .unwrap();
    assert_eq!(answer.unwrap(), "1");
    assert!(
        played < MAX_VOLLEYS,
        "the answer waited for the busy shard to go idle ({played} volleys)"
    );
}

/// Says when it has taken a message, then never finishes it, so its mailbox
/// fills.
struct Blocked {
    took: flume::Sender<()>,
}

impl Worker for Blocked {
    async fn handle_message(&mut self, _ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        self.took.send(())?;
        std::future::pending::<()>().await;
        Ok(())
    }
}

#[test]
fn a_full_mailbox_refuses_at_once_without_blocking() {
    let outcome = Node::start(common::config(1).mailbox_capacity(4), |ctx| async move {
        let (took, taken) = flume::unbounded();
        let blocked = ctx.spawn(Blocked { took });
        let mut results = Vec::new();
        for i in 0..10 {
            results.push(ctx.send(blocked, i.to_string()));
            if i == 0 {
                // The worker takes the first message and blocks on it.
                let _ = taken.recv_async().await;
            }
        }
        let full_ask = ctx.send_and_receive(blocked, "ask", LONG).await;
        let responsive = ctx.send_and_receive(ctx.spawn(Greeter), "me", LONG).await;
        (results, full_ask, responsive)
    })
    .unwrap();
    let (results, full_ask, responsive) = outcome;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(accepted, 5, "one in hand + four queued: {results:?}");
    assert!(
        results[5..]
            .iter()
            .all(|r| matches!(r, Err(Error::MailboxFull(_)))),
        "{results:?}"
    );
    assert!(
        matches!(full_ask, Err(Error::MailboxFull(_))),
        "{full_ask:?}"
    );
    assert_eq!(responsive.unwrap(), "Hello, me!");
}

#[test]
fn reply_outside_an_ask_is_a_clear_error() {
    struct Replies;
    impl Worker for Replies {
        async fn handle_message(
            &mut self,
            ctx: &mut Context,
            _msg: Message,
        ) -> Result<(), BoxError> {
            let first = ctx.reply("one");
            let second = ctx.reply("two");
            match (first, second) {
                (Ok(()), Err(Error::NothingToReplyTo)) => Ok(()),
                (Err(Error::NothingToReplyTo), Err(Error::NothingToReplyTo)) => Ok(()),
                other => Err(format!("unexpected {other:?}").into()),
            }
        }
    }
    let node = common::node(1);
    let w = node.spawn(Replies).unwrap();
    assert_eq!(node.send_and_receive(w, "x", LONG).unwrap(), "one");
    node.send(w, "plain send").unwrap();
    // The worker is still fine after the plain send (its error would have
    // been logged, not fatal).
    assert_eq!(node.send_and_receive(w, "x", LONG).unwrap(), "one");
    node.shutdown();
}

/// Spawns `n` leaves on its own shard and sends each a message; every leaf
/// reports to the tally.
struct Spawner {
    tally: WorkerRef,
}

struct Leaf {
    tally: WorkerRef,
    value: u64,
}

impl Worker for Leaf {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        self.value += 1;
        ctx.send(self.tally, "1")?;
        Ok(())
    }
}

impl Worker for Spawner {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let n: u64 = msg.parse()?;
        for _ in 0..n {
            let leaf = ctx.spawn(Leaf {
                tally: self.tally,
                value: 0,
            });
            ctx.send(leaf, "go")?;
        }
        ctx.reply("spawned")?;
        Ok(())
    }
}

/// Counts messages; `when <n>` is answered once n have arrived.
#[derive(Default)]
struct Tally {
    count: u64,
    waiting: Option<(u64, Replier)>,
}

impl Worker for Tally {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if let Some(n) = msg.strip_prefix("when ") {
            let replier = ctx.defer_reply().ok_or("`when` must be asked")?;
            self.waiting = Some((n.parse()?, replier));
        } else {
            self.count += 1;
        }
        if matches!(&self.waiting, Some((n, _)) if self.count >= *n) {
            if let Some((_, replier)) = self.waiting.take() {
                replier.complete(Ok(self.count.to_string().into()));
            }
        }
        Ok(())
    }
}

#[test]
fn a_million_anonymous_workers_each_receive_a_message() {
    const PER_SHARD: u64 = 500_000;
    let node = Node::spawn(common::config(2).mailbox_capacity(1 << 21)).unwrap();
    let mut tallies = Vec::new();
    for shard in 0..2 {
        let tally = node.spawn_on(shard, Tally::default()).unwrap();
        let spawner = node.spawn_on(shard, Spawner { tally }).unwrap();
        tallies.push(tally);
        node.send(spawner, PER_SHARD.to_string()).unwrap();
    }
    for tally in tallies {
        let count =
            node.send_and_receive(tally, format!("when {PER_SHARD}"), Duration::from_secs(120));
        assert_eq!(count.unwrap(), PER_SHARD.to_string().as_str());
    }
    let workers = node.list_workers().unwrap();
    assert_eq!(workers.len() as u64, 2 * PER_SHARD + 4);
    let handled: u64 = workers.iter().filter(|w| w.handled == 1).count() as u64;
    assert!(
        handled >= 2 * PER_SHARD,
        "only {handled} leaves handled their message"
    );
    node.shutdown();
}

#[test]
fn a_plain_thread_handle_drives_a_node() {
    let node = common::node(2);
    let counter = Arc::new(AtomicUsize::new(0));
    struct Count(Arc<AtomicUsize>);
    impl Worker for Count {
        async fn handle_message(
            &mut self,
            ctx: &mut Context,
            msg: Message,
        ) -> Result<(), BoxError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if msg == "sync" {
                ctx.reply("synced")?;
            }
            Ok(())
        }
    }
    let w = node.spawn(Count(counter.clone())).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let node = node.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    node.send(w, "tick").unwrap();
                }
                node.send_and_receive(w, "sync", LONG).unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), "synced");
    }
    // Each thread's sync came after its own 100 ticks (FIFO per sender).
    assert!(counter.load(Ordering::SeqCst) >= 404 - 3);
    assert_eq!(counter.load(Ordering::SeqCst), 404);
    node.shutdown();
}

#[test]
fn remote_addresses_fail_with_no_route_until_a_router_is_installed() {
    let node = common::node(1);
    let err = node
        .send_and_receive("elsewhere/greeter", "hi", LONG)
        .unwrap_err();
    assert_eq!(err, Error::NoRoute("elsewhere".into()));
    // An address naming this very node is local.
    node.start_worker("greeter", Greeter).unwrap();
    let reply = node
        .send_and_receive(Address::remote("test", "greeter"), "me", LONG)
        .unwrap();
    assert_eq!(reply, "Hello, me!");
    node.shutdown();
}

#[test]
fn a_panicking_main_is_reported_not_propagated() {
    let outcome: Result<(), Error> = Node::start(common::config(1), |_ctx| async move {
        panic!("main gave up");
    });
    let err = outcome.unwrap_err();
    match err {
        Error::WorkerFailed { worker, reason } => {
            assert_eq!(worker, "main");
            assert!(reason.contains("main gave up"), "{reason}");
        }
        other => panic!("expected WorkerFailed, got {other:?}"),
    }
}

/// Bounces a message back to its sender until `left` reaches zero, then
/// answers the ask that started it.
struct Bouncer {
    left: u64,
    done: Option<Replier>,
}

impl Worker for Bouncer {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if let Some(rest) = msg.strip_prefix("start ") {
            let (count, peer) = rest.split_once(' ').ok_or("start <n> <peer>")?;
            self.left = count.parse()?;
            self.done = ctx.defer_reply();
            let peer: WorkerRef = peer.parse()?;
            ctx.send(peer, "ball")?;
            return Ok(());
        }
        let from = ctx.sender().ok_or("the ball comes from a worker")?;
        if self.done.is_none() {
            ctx.send(from, "ball")?; // the partner just returns it
            return Ok(());
        }
        self.left -= 1;
        if self.left == 0 {
            if let Some(done) = self.done.take() {
                done.complete(Ok("done".into()));
            }
        } else {
            ctx.send(from, "ball")?;
        }
        Ok(())
    }
}

#[test]
fn strict_ping_pong_across_shards_never_stalls() {
    let node = common::node(2);
    let partner = node
        .spawn_on(
            1,
            Bouncer {
                left: 0,
                done: None,
            },
        )
        .unwrap();
    let starter = node
        .spawn_on(
            0,
            Bouncer {
                left: 0,
                done: None,
            },
        )
        .unwrap();
    let outcome = node.send_and_receive(starter, format!("start 20000 {partner}"), LONG);
    assert_eq!(outcome.unwrap(), "done", "{:?}", node.list_workers());
    node.shutdown();
}

#[test]
fn a_named_worker_placed_away_from_its_home_shard_is_reached_by_name() {
    let node = common::node(2);
    // A name whose home is shard 0, placed on shard 1: sends by name go to
    // the home shard's directory and are forwarded.
    let name = (0..)
        .map(|i| format!("away{i}"))
        .find(|n| myriad::plugin::home_shard(n, 2) == 0)
        .unwrap();
    let r = node.start_worker_on(1, &name, Greeter).unwrap();
    assert_eq!(r.shard(), 1);
    assert_eq!(
        node.send_and_receive(name.as_str(), "there", LONG).unwrap(),
        "Hello, there!"
    );
    node.stop_worker(name.as_str()).unwrap();
    let err = node
        .send_and_receive(name.as_str(), "gone?", LONG)
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchWorker(_)), "{err:?}");
    node.start_worker_on(0, &name, Greeter).unwrap();
    node.shutdown();
}

#[test]
fn a_worker_can_stop_itself() {
    struct Quitter(Arc<AtomicBool>);
    impl Worker for Quitter {
        async fn handle_message(
            &mut self,
            ctx: &mut Context,
            _msg: Message,
        ) -> Result<(), BoxError> {
            ctx.reply("bye")?;
            ctx.stop();
            Ok(())
        }
        async fn on_stop(&mut self, _ctx: &mut Context) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let node = common::node(1);
    let stopped = Arc::new(AtomicBool::new(false));
    let q = node.spawn(Quitter(stopped.clone())).unwrap();
    assert_eq!(node.send_and_receive(q, "leave", LONG).unwrap(), "bye");
    let err = node.send_and_receive(q, "still there?", LONG).unwrap_err();
    assert!(matches!(err, Error::NoSuchWorker(_)), "{err:?}");
    assert!(stopped.load(Ordering::SeqCst), "on_stop did not run");
    node.shutdown();
}

#[test]
fn shutdown_runs_on_stop_of_idle_workers_and_later_calls_fail_cleanly() {
    let node = common::node(2);
    let stopped = Arc::new(AtomicUsize::new(0));
    struct Tracked(Arc<AtomicUsize>);
    impl Worker for Tracked {
        async fn handle_message(
            &mut self,
            ctx: &mut Context,
            _msg: Message,
        ) -> Result<(), BoxError> {
            ctx.reply("ok")?;
            Ok(())
        }
        async fn on_stop(&mut self, _ctx: &mut Context) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    for shard in 0..2 {
        let w = node.spawn_on(shard, Tracked(stopped.clone())).unwrap();
        assert_eq!(node.send_and_receive(w, "ping", LONG).unwrap(), "ok");
    }
    let late = node.clone();
    node.shutdown();
    assert_eq!(stopped.load(Ordering::SeqCst), 2);
    assert_eq!(late.send("anyone", "hello?"), Err(Error::NodeStopped));
    let err = late.send_and_receive("anyone", "hello?", LONG).unwrap_err();
    assert_eq!(err, Error::NodeStopped);
}
