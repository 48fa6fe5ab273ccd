//! Failures and lifecycles as a user sees them: a panic anywhere in a
//! worker (`on_start`, `on_stop`, after an `.await`, its `Drop`) stops only
//! that worker; calls never block forever; shutdown ends.

mod common;

use std::time::Duration;

use myriad::{
    BoxError, ChildSpec, Context, Error, ExitReason, Message, Node, Strategy, Supervisor, Worker,
};

const LONG: Duration = Duration::from_secs(30);

/// Where a test's worker misbehaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    OnStart,
    OnStop,
    AfterAwait,
    Drop,
}

/// A worker that panics at its `fault`; it tells `events` what it did.
struct Faulty {
    fault: Fault,
    events: flume::Sender<&'static str>,
}

impl Faulty {
    fn new(fault: Fault) -> (Self, flume::Receiver<&'static str>) {
        let (events, rx) = flume::unbounded();
        (Faulty { fault, events }, rx)
    }
}

impl Worker for Faulty {
    async fn on_start(&mut self, _ctx: &mut Context) {
        assert!(self.fault != Fault::OnStart, "on_start fails");
    }

    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        ctx.sleep(Duration::from_millis(1)).await;
        assert!(self.fault != Fault::AfterAwait, "handler fails after await");
        ctx.reply(msg)?;
        Ok(())
    }

    async fn on_stop(&mut self, _ctx: &mut Context) {
        let _ = self.events.send("on_stop");
        assert!(self.fault != Fault::OnStop, "on_stop fails");
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        let _ = self.events.send("drop");
        assert!(self.fault != Fault::Drop, "drop fails");
    }
}

/// Whether shard 0 of a one-shard node still answers every kind of call.
fn assert_serving(node: &myriad::NodeHandle) {
    let greeter = node.spawn_on(0, Fragile).expect("spawn_on answers");
    assert_eq!(
        node.send_and_receive(greeter, "again", LONG).unwrap(),
        "again"
    );
    assert!(node
        .list_workers()
        .expect("list_workers answers")
        .iter()
        .any(|w| w.id == greeter));
    node.stop_worker(greeter).expect("stop_worker answers");
}

#[test]
fn a_panic_in_on_start_stops_only_that_worker() {
    let node = common::node(1);
    let (worker, events) = Faulty::new(Fault::OnStart);
    let faulty = node.spawn_on(0, worker).unwrap();
    assert_eq!(events.recv().unwrap(), "drop");
    let answer = node.send_and_receive(faulty, "hi", LONG);
    assert!(matches!(answer, Err(Error::NoSuchWorker(_))), "{answer:?}");
    assert_serving(&node);
    node.shutdown();
}

#[test]
fn a_panic_after_an_await_in_a_handler_stops_only_that_worker() {
    let node = common::node(1);
    let (worker, events) = Faulty::new(Fault::AfterAwait);
    let faulty = node.spawn_on(0, worker).unwrap();
    let answer = node.send_and_receive(faulty, "hi", LONG);
    assert!(
        matches!(&answer, Err(Error::WorkerFailed { reason, .. }) if reason.contains("after await")),
        "{answer:?}"
    );
    assert_eq!(events.recv().unwrap(), "drop");
    let again = node.send_and_receive(faulty, "hi", LONG);
    assert!(matches!(again, Err(Error::NoSuchWorker(_))), "{again:?}");
    assert_serving(&node);
    node.shutdown();
}

#[test]
fn a_panic_in_on_stop_stops_only_that_worker() {
    let node = common::node(1);
    let (worker, events) = Faulty::new(Fault::OnStop);
    let faulty = node.spawn_on(0, worker).unwrap();
    node.stop_worker(faulty).unwrap();
    assert_eq!(events.recv().unwrap(), "on_stop");
    assert_eq!(events.recv().unwrap(), "drop");
    assert_serving(&node);
    node.shutdown();
}

#[test]
fn a_panicking_drop_leaves_the_node_serving() {
    let node = common::node(1);
    // Dropped after a stop, then after a handler's panic.
    let (worker, events) = Faulty::new(Fault::Drop);
    let stopped = node.spawn_on(0, worker).unwrap();
    node.stop_worker(stopped).unwrap();
    assert_eq!(events.recv().unwrap(), "on_stop");
    assert_eq!(events.recv().unwrap(), "drop");
    assert_serving(&node);

    struct PanicsTwice {
        _dropped: Faulty,
    }
    impl Worker for PanicsTwice {
        async fn handle_message(&mut self, _: &mut Context, _: Message) -> Result<(), BoxError> {
            panic!("handler fails")
        }
    }
    let (worker, events) = Faulty::new(Fault::Drop);
    let failed = node.spawn_on(0, PanicsTwice { _dropped: worker }).unwrap();
    let answer = node.send_and_receive(failed, "hi", LONG);
    assert!(
        matches!(answer, Err(Error::WorkerFailed { .. })),
        "{answer:?}"
    );
    assert_eq!(events.recv().unwrap(), "drop");
    assert_serving(&node);
    node.shutdown();
}

#[test]
fn a_panicking_drop_at_shutdown_does_not_skip_the_other_workers() {
    let node = common::node(1);
    let (first, first_events) = Faulty::new(Fault::Drop);
    let (second, second_events) = Faulty::new(Fault::None);
    node.spawn_on(0, first).unwrap();
    node.spawn_on(0, second).unwrap();
    node.shutdown();
    assert_eq!(
        first_events.try_iter().collect::<Vec<_>>(),
        ["on_stop", "drop"]
    );
    assert_eq!(
        second_events.try_iter().collect::<Vec<_>>(),
        ["on_stop", "drop"]
    );
}

#[test]
fn main_survives_a_worker_whose_drop_panics() {
    let answer = Node::start(common::config(1), |ctx| async move {
        let (worker, _events) = Faulty::new(Fault::Drop);
        let faulty = ctx.spawn(worker);
        ctx.stop_worker(faulty).await?;
        let greeter = ctx.start_worker("greeter", Fragile).await?;
        ctx.send_and_receive(greeter, "main", LONG).await
    })
    .unwrap();
    assert_eq!(answer.unwrap(), "main");
}

/// Makes a blocking `NodeHandle` call from inside its handler.
struct BlockingCaller(myriad::NodeHandle);

impl Worker for BlockingCaller {
    async fn handle_message(&mut self, ctx: &mut Context, _: Message) -> Result<(), BoxError> {
        let listed = self.0.list_workers().map(|_| ());
        let spawned = self.0.spawn_on(0, Fragile).map(|_| ());
        let asked = self.0.send_and_receive("greeter", "x", LONG).map(|_| ());
        ctx.reply(format!("{listed:?} {spawned:?} {asked:?}"))?;
        Ok(())
    }
}

#[test]
fn a_blocking_handle_call_inside_a_shard_fails_instead_of_deadlocking() {
    let node = common::node(1);
    node.start_worker("greeter", Fragile).unwrap();
    let caller = node.spawn_on(0, BlockingCaller(node.clone())).unwrap();
    let answer = node.send_and_receive(caller, "go", LONG).unwrap();
    let refused = Error::BlockingOnShard("list_workers").to_string();
    assert_eq!(answer.matches("BlockingOnShard").count(), 3, "{answer}");
    assert!(refused.contains("shard thread"), "{refused}");
    node.stop_worker(caller).unwrap();
    node.shutdown();
}

/// What a worker's `on_stop` does at shutdown.
enum Stopping {
    /// Tells `events` its label.
    Report,
    /// Sleeps, then reports.
    Sleep(Duration),
    /// Asks `greeter`, then reports the answer.
    Ask,
}

/// A worker whose `on_stop` does `how`, then reports to `events`.
struct StopsBy {
    label: &'static str,
    how: Stopping,
    events: flume::Sender<String>,
}

impl Worker for StopsBy {
    async fn handle_message(&mut self, _: &mut Context, _: Message) -> Result<(), BoxError> {
        Ok(())
    }

    async fn on_stop(&mut self, ctx: &mut Context) {
        let report = match self.how {
            Stopping::Report => self.label.to_owned(),
            Stopping::Sleep(duration) => {
                ctx.sleep(duration).await;
                format!("{} slept", self.label)
            }
            Stopping::Ask => match ctx.send_and_receive("greeter", self.label, LONG).await {
                Ok(answer) => answer.to_string(),
                Err(e) => e.to_string(),
            },
        };
        let _ = self.events.send(report);
    }
}

impl Drop for StopsBy {
    fn drop(&mut self) {
        let _ = self.events.send(format!("{} dropped", self.label));
    }
}

#[test]
fn shutdown_waits_for_on_stops_that_sleep_and_ask() {
    let node = common::node(1);
    let (events, reports) = flume::unbounded();
    node.start_worker("greeter", Fragile).unwrap();
    let how = [
        ("sleeper", Stopping::Sleep(Duration::from_millis(5))),
        ("asker", Stopping::Ask),
    ];
    for (label, how) in how {
        let events = events.clone();
        node.spawn_on(0, StopsBy { label, how, events }).unwrap();
    }
    drop(events);
    node.shutdown();
    let reports: Vec<String> = reports.iter().collect();
    assert_eq!(
        reports,
        ["asker", "asker dropped", "sleeper slept", "sleeper dropped"]
    );
}

#[test]
fn shutdown_stops_workers_newest_first() {
    let node = common::node(1);
    let (events, reports) = flume::unbounded();
    for label in ["first", "second", "third"] {
        let events = events.clone();
        let how = Stopping::Report;
        node.spawn_on(0, StopsBy { label, how, events }).unwrap();
    }
    drop(events);
    node.shutdown();
    let stops: Vec<String> = reports.iter().filter(|r| !r.ends_with("dropped")).collect();
    assert_eq!(stops, ["third", "second", "first"]);
}

#[test]
fn shutdown_ends_an_on_stop_that_outlives_the_deadline() {
    let node = Node::spawn(common::config(1).stop_timeout(Duration::from_millis(20))).unwrap();
    let (events, reports) = flume::unbounded();
    let how = Stopping::Sleep(Duration::from_secs(3600));
    node.spawn_on(
        0,
        StopsBy {
            label: "sloth",
            how,
            events,
        },
    )
    .unwrap();
    node.shutdown();
    assert_eq!(reports.iter().collect::<Vec<_>>(), ["sloth dropped"]);
}

/// Watches `target` on "watch", unwatches on "unwatch" (answering whether
/// the watch was removed), answers anything else (a barrier); reports each
/// notice to `notices` as `<who> <reason>`.
struct Watcher {
    target: myriad::Address,
    notices: flume::Sender<String>,
}

impl Watcher {
    fn new(target: impl Into<myriad::Address>) -> (Self, flume::Receiver<String>) {
        let (notices, rx) = flume::unbounded();
        let target = target.into();
        (Watcher { target, notices }, rx)
    }
}

impl Worker for Watcher {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let answer = match msg.as_str() {
            "watch" => ctx.watch(self.target.clone()).await?.to_string(),
            "unwatch" => ctx.unwatch(self.target.clone()).await?.to_string(),
            _ => "here".to_owned(),
        };
        ctx.reply(answer)?;
        Ok(())
    }

    async fn on_terminated(&mut self, _: &mut Context, who: myriad::WorkerRef, reason: ExitReason) {
        let _ = self.notices.send(format!("{who} {reason:?}"));
    }
}

/// Panics on "panic", answers anything else.
struct Fragile;

impl Worker for Fragile {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        assert!(msg != "panic", "asked to panic");
        ctx.reply(msg)?;
        Ok(())
    }
}

/// Everything `notices` holds once `watcher` has handled all that was
/// queued before (its mailbox is FIFO).
fn notices_after_barrier(
    node: &myriad::NodeHandle,
    watcher: myriad::WorkerRef,
    notices: &flume::Receiver<String>,
) -> Vec<String> {
    node.send_and_receive(watcher, "barrier", LONG).unwrap();
    notices.try_iter().collect()
}

/// Asks `target` to panic and checks that the ask failed because it did
/// (not, say, because no worker had that name yet).
fn crash(node: &myriad::NodeHandle, target: impl Into<myriad::Address>) {
    match node.send_and_receive(target, "panic", LONG) {
        Err(Error::WorkerFailed { reason, .. }) => assert!(reason.contains("panic"), "{reason}"),
        other => panic!("the ask should fail with the worker's panic: {other:?}"),
    }
}

/// How a test ends a target worker.
type Terminate = fn(&myriad::NodeHandle, myriad::WorkerRef);

#[test]
fn a_watch_fires_once_for_each_reason() {
    let node = common::node(2);
    let cases: [(&str, Terminate); 2] = [
        ("Stopped", |node, target| node.stop_worker(target).unwrap()),
        ("Panicked", |node, target| crash(node, target)),
    ];
    // The target on the watcher's shard, then on another.
    for (shard, (reason, terminate)) in [0, 1].into_iter().zip(cases) {
        let target = node.spawn_on(shard, Fragile).unwrap();
        let (watcher, notices) = Watcher::new(target);
        let watcher = node.spawn_on(0, watcher).unwrap();
        // Two watches of one pair are one watch.
        for _ in 0..2 {
            let watched = node.send_and_receive(watcher, "watch", LONG).unwrap();
            assert_eq!(watched, target.to_string().as_str());
        }
        terminate(&node, target);
        let notice = notices.recv_timeout(LONG).expect("a notice");
        assert!(notice.starts_with(&target.to_string()), "{notice}");
        assert!(notice.contains(reason), "{notice}");
        assert!(
            notices_after_barrier(&node, watcher, &notices).is_empty(),
            "one notice only"
        );
    }
    node.shutdown();
}

#[test]
fn a_panicking_on_stop_or_drop_is_reported_as_a_panic() {
    let node = common::node(2);
    for fault in [Fault::OnStop, Fault::Drop] {
        let (worker, _events) = Faulty::new(fault);
        let target = node.spawn_on(1, worker).unwrap();
        let (watcher, notices) = Watcher::new(target);
        let watcher = node.spawn_on(0, watcher).unwrap();
        node.send_and_receive(watcher, "watch", LONG).unwrap();
        node.stop_worker(target).unwrap();
        let notice = notices.recv_timeout(LONG).expect("a notice");
        assert!(
            notice.contains("Panicked") && notice.contains("fails"),
            "{notice}"
        );
    }
    node.shutdown();
}

#[test]
fn watching_a_worker_already_gone_answers_at_once() {
    let node = common::node(2);
    let target = node.spawn_on(1, Fragile).unwrap();
    node.stop_worker(target).unwrap();
    // The stop is done once a later message on its shard is handled.
    let barrier = node.spawn_on(1, Fragile).unwrap();
    node.send_and_receive(barrier, "x", LONG).unwrap();
    let (watcher, notices) = Watcher::new(target);
    let watcher = node.spawn_on(0, watcher).unwrap();
    node.send_and_receive(watcher, "watch", LONG).unwrap();
    let notices = notices_after_barrier(&node, watcher, &notices);
    assert_eq!(notices, [format!("{target} NoSuchWorker")]);
    // A name bound to no worker is an error, not a notice.
    let (by_name, _) = Watcher::new("nobody");
    let by_name = node.spawn_on(0, by_name).unwrap();
    let answer = node.send_and_receive(by_name, "watch", LONG);
    assert!(
        matches!(answer, Err(Error::WorkerFailed { ref reason, .. }) if reason.contains("no such worker")),
        "{answer:?}"
    );
    node.shutdown();
}

#[test]
fn an_unwatch_either_removes_the_watch_or_its_notice_comes() {
    let node = common::node(2);
    let mut outcomes = [0, 0];
    for _ in 0..50 {
        let target = node.spawn_on(1, Fragile).unwrap();
        let (watcher, notices) = Watcher::new(target);
        let watcher = node.spawn_on(0, watcher).unwrap();
        node.send_and_receive(watcher, "watch", LONG).unwrap();
        let racer = {
            let node = node.clone();
            std::thread::spawn(move || node.stop_worker(target).unwrap())
        };
        let removed = node.send_and_receive(watcher, "unwatch", LONG).unwrap();
        racer.join().unwrap();
        if removed == "true" {
            outcomes[0] += 1;
            // The stop is done once a later message on its shard is handled.
            let barrier = node.spawn_on(1, Fragile).unwrap();
            node.send_and_receive(barrier, "x", LONG).unwrap();
            assert!(notices_after_barrier(&node, watcher, &notices).is_empty());
            node.stop_worker(barrier).unwrap();
        } else {
            outcomes[1] += 1;
            let notice = notices
                .recv_timeout(LONG)
                .expect("the notice of a fired watch");
            assert!(notice.ends_with("Stopped"), "{notice}");
            assert!(notices_after_barrier(&node, watcher, &notices).is_empty());
        }
        node.stop_worker(watcher).unwrap();
    }
    eprintln!(
        "unwatch removed the watch {} times, came too late {} times",
        outcomes[0], outcomes[1]
    );
    node.shutdown();
}

/// A supervised child: answers its label, panics on "panic", reports its
/// stops.
struct Child {
    label: &'static str,
    events: flume::Sender<String>,
}

impl Worker for Child {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        assert!(msg != "panic", "child {} asked to panic", self.label);
        ctx.reply(self.label)?;
        Ok(())
    }

    async fn on_stop(&mut self, _: &mut Context) {
        let _ = self.events.send(format!("stop {}", self.label));
    }
}

/// A spec whose factory reports each start of `label` to `events`.
fn child_spec(
    label: &'static str,
    name: Option<&str>,
    events: &flume::Sender<String>,
) -> ChildSpec {
    let events = events.clone();
    let make = move || {
        let _ = events.send(format!("start {label}"));
        Child {
            label,
            events: events.clone(),
        }
    };
    match name {
        Some(name) => ChildSpec::named(name, make),
        None => ChildSpec::anonymous(make),
    }
}

/// The supervisor's children, once it has handled what came before.
fn children_of(node: &myriad::NodeHandle, supervisor: &str) -> Vec<String> {
    let answer = node.send_and_receive(supervisor, "children", LONG).unwrap();
    answer.as_str().split(' ').map(str::to_owned).collect()
}

/// Waits for `n` events and returns them.
fn events(rx: &flume::Receiver<String>, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| rx.recv_timeout(LONG).expect("an event"))
        .collect()
}

#[test]
fn rest_for_one_and_one_for_all_restart_in_order() {
    for (strategy, stops, starts) in [
        (
            Strategy::RestForOne,
            vec!["stop c"],
            vec!["start b", "start c"],
        ),
        (
            Strategy::OneForAll,
            vec!["stop c", "stop a"],
            vec!["start a", "start b", "start c"],
        ),
        (Strategy::OneForOne, vec![], vec!["start b"]),
    ] {
        let node = common::node(1);
        let (tx, rx) = flume::unbounded();
        let supervisor = Supervisor::new(strategy)
            .child(child_spec("a", None, &tx))
            .child(child_spec("b", None, &tx))
            .child(child_spec("c", None, &tx));
        node.start_worker("sup", supervisor).unwrap();
        assert_eq!(events(&rx, 3), ["start a", "start b", "start c"]);
        let before = children_of(&node, "sup");
        let b: myriad::WorkerRef = node
            .list_workers()
            .unwrap()
            .into_iter()
            .find(|w| w.id.to_string() == before[1])
            .unwrap()
            .id;
        crash(&node, b);
        let restarted = events(&rx, stops.len() + starts.len());
        let (got_stops, got_starts): (Vec<_>, Vec<_>) =
            restarted.iter().partition(|e| e.starts_with("stop"));
        assert_eq!(got_starts, starts, "{strategy:?}");
        assert_eq!(got_stops, stops, "{strategy:?}: newest first");
        let after = children_of(&node, "sup");
        for (i, label) in ["a", "b", "c"].into_iter().enumerate() {
            let restarted = starts.contains(&format!("start {label}").as_str());
            assert_eq!(after[i] != before[i], restarted, "{strategy:?} {label}");
        }
        node.shutdown();
    }
}

#[test]
fn a_named_child_is_restarted_under_its_name_until_the_intensity_escalates() {
    let node = common::node(2);
    let (tx, rx) = flume::unbounded();
    let inner_events = tx.clone();
    let inner = move || {
        Supervisor::new(Strategy::OneForOne)
            .intensity(2, Duration::from_secs(3600))
            .child(child_spec("crash", Some("crash"), &inner_events))
    };
    let outer = Supervisor::new(Strategy::OneForOne)
        .intensity(10, Duration::from_secs(3600))
        .child(ChildSpec::named("inner", inner));
    node.start_worker("outer", outer).unwrap();
    assert_eq!(events(&rx, 1), ["start crash"]);
    let first_inner = children_of(&node, "outer");
    // Once inner answers, its `on_start` has started (and named) the child.
    children_of(&node, "inner");
    let (watcher, notices) = Watcher::new("inner");
    let watcher = node.spawn_on(0, watcher).unwrap();
    node.send_and_receive(watcher, "watch", LONG).unwrap();
    for _ in 0..2 {
        crash(&node, "crash");
        assert_eq!(events(&rx, 1), ["start crash"]);
        children_of(&node, "inner");
        // The restarted child answers under its name.
        assert_eq!(node.send_and_receive("crash", "hi", LONG).unwrap(), "crash");
    }
    // The third failure is one too many: inner stops its child and fails,
    // outer restarts inner, which starts a new child.
    crash(&node, "crash");
    let notice = notices.recv_timeout(LONG).expect("inner's end");
    assert!(
        notice.contains("Panicked") && notice.contains("more than 2 restarts"),
        "{notice}"
    );
    assert_eq!(events(&rx, 1), ["start crash"]);
    assert_ne!(children_of(&node, "outer"), first_inner);
    children_of(&node, "inner");
    assert_eq!(node.send_and_receive("crash", "hi", LONG).unwrap(), "crash");
    node.shutdown();
}

#[test]
fn a_stopped_supervisor_stops_its_children_newest_first_and_restarts_none() {
    let node = common::node(1);
    let (tx, rx) = flume::unbounded();
    let supervisor = Supervisor::new(Strategy::OneForOne)
        .child(child_spec("a", None, &tx))
        .child(child_spec("b", Some("b"), &tx));
    node.start_worker("sup", supervisor).unwrap();
    assert_eq!(events(&rx, 2), ["start a", "start b"]);
    node.stop_worker("sup").unwrap();
    assert_eq!(events(&rx, 2), ["stop b", "stop a"]);
    drop(tx);
    node.shutdown();
    assert!(rx.try_iter().next().is_none(), "nothing restarted");
}
