//! The engine's network hook, exercised without a network: a router that
//! "delivers remotely" by handing messages to a second node in the same
//! process proves that `node/name` addresses, asks and replies go through
//! `RemoteRouter` and `Replier` exactly as the transport will use them.

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use myriad::plugin::{RemoteRouter, ShardHandle};
use myriad::{
    Address, BoxError, Context, Error, Message, Node, NodeConfig, NodeHandle, RemoteAddress,
    Replier, Result, Worker, WorkerRef,
};

const LONG: Duration = Duration::from_secs(30);

fn config(shards: usize, name: &str) -> NodeConfig {
    NodeConfig::default()
        .name(name)
        .shards(shards)
        .pin_shards(false)
}

struct Greeter;

impl Worker for Greeter {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        ctx.reply(format!("Hello from {}, {msg}!", ctx.node_name()))?;
        Ok(())
    }
}

/// Node `near`, of two shards, each with the router `router` makes.
fn near_with<R: RemoteRouter>(router: impl Fn() -> R + Send + Sync + 'static) -> NodeHandle {
    let factory = move |_shard: ShardHandle| -> Rc<dyn RemoteRouter> { Rc::new(router()) };
    Node::spawn(config(2, "near").remote_router(Arc::new(factory))).unwrap()
}

/// Forwards everything for node `far` to that node's handle, on a plain
/// thread (as a network link would, asynchronously).
struct LoopbackRouter {
    far: Arc<Mutex<Option<NodeHandle>>>,
}

impl RemoteRouter for LoopbackRouter {
    fn send(
        &self,
        to: &RemoteAddress,
        msg: Message,
        _from: Option<WorkerRef>,
        reply: &mut Option<Replier>,
    ) -> Result<()> {
        if &*to.node != "far" {
            return Err(Error::NoRoute(to.node.to_string()));
        }
        let far = self
            .far
            .lock()
            .unwrap()
            .clone()
            .ok_or(Error::ConnectionLost("far".into()))?;
        let target = Address::Name(to.worker.clone());
        match reply.take() {
            Some(replier) => {
                std::thread::spawn(move || {
                    replier.complete(far.send_and_receive(target, msg, LONG));
                });
            }
            None => far.send(target, msg)?,
        }
        Ok(())
    }
}

#[test]
fn remote_addresses_go_through_the_installed_router() {
    let far_slot: Arc<Mutex<Option<NodeHandle>>> = Arc::new(Mutex::new(None));
    let router_far = far_slot.clone();
    let near = near_with(move || LoopbackRouter {
        far: router_far.clone(),
    });
    let far = Node::spawn(config(1, "far")).unwrap();
    far.start_worker("greeter", Greeter).unwrap();
    *far_slot.lock().unwrap() = Some(far.clone());

    // From a plain thread and from a worker, by "node/name".
    let reply = near
        .send_and_receive("far/greeter", "handle", LONG)
        .unwrap();
    assert_eq!(reply, "Hello from far, handle!");
    struct Asker;
    impl Worker for Asker {
        async fn handle_message(
            &mut self,
            ctx: &mut Context,
            msg: Message,
        ) -> Result<(), BoxError> {
            let answer = ctx.send_and_receive("far/greeter", msg, LONG).await?;
            ctx.reply(answer)?;
            Ok(())
        }
    }
    let asker = near.spawn(Asker).unwrap();
    assert_eq!(
        near.send_and_receive(asker, "worker", LONG).unwrap(),
        "Hello from far, worker!"
    );

    // Errors from the far side travel back through the Replier.
    let err = near.send_and_receive("far/nobody", "hi", LONG).unwrap_err();
    assert!(matches!(err, Error::NoSuchWorker(_)), "{err:?}");
    // A router refusal reaches the caller at once.
    let err = near
        .send_and_receive("elsewhere/greeter", "hi", LONG)
        .unwrap_err();
    assert_eq!(err, Error::NoRoute("elsewhere".into()));
    *far_slot.lock().unwrap() = None;
    far.shutdown();
    near.shutdown();
}

/// Records what it is asked to send; sends nothing.
/// What a [`RecordingRouter`] was asked to send: to whom, from whom.
type Sent = Arc<Mutex<Vec<(RemoteAddress, Option<WorkerRef>)>>>;

struct RecordingRouter {
    sent: Sent,
}

impl RemoteRouter for RecordingRouter {
    fn send(
        &self,
        to: &RemoteAddress,
        _msg: Message,
        from: Option<WorkerRef>,
        _reply: &mut Option<Replier>,
    ) -> Result<()> {
        self.sent.lock().unwrap().push((to.clone(), from));
        Ok(())
    }
}

/// Sends each message's text, as an address, a message of its own.
struct Forwarder;

impl Worker for Forwarder {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let to: WorkerRef = msg.parse()?;
        ctx.send(to, "forwarded")?;
        Ok(())
    }
}

#[test]
fn a_reference_to_a_worker_of_another_node_is_sent_through_the_router_with_its_sender() {
    let sent: Sent = Arc::default();
    let recorded = sent.clone();
    let near = near_with(move || RecordingRouter {
        sent: recorded.clone(),
    });
    let forwarder = near.spawn(Forwarder).unwrap();
    let far: WorkerRef = "far/#1.5.9".parse().unwrap();
    assert!(far.is_remote());
    assert_eq!(far.node().as_deref(), Some("far"));
    near.send_when_ready(forwarder, far.to_string()).unwrap();
    let want = RemoteAddress {
        node: "far".into(),
        worker: "#1.5.9".into(),
    };
    let deadline = std::time::Instant::now() + LONG;
    while sent.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing reached the router"
        );
        std::thread::yield_now();
    }
    assert_eq!(*sent.lock().unwrap(), [(want, Some(forwarder))]);

    // A reference that names this node, as another node would print it, is
    // this node's worker.
    let greeter = near.spawn(Greeter).unwrap();
    let as_seen_elsewhere: WorkerRef = format!("near/{greeter}").parse().unwrap();
    assert!(as_seen_elsewhere.is_remote());
    let reply = near
        .send_and_receive(as_seen_elsewhere, "me", LONG)
        .unwrap();
    assert_eq!(reply, "Hello from near, me!");
    let by_address = near
        .send_and_receive(format!("near/{greeter}"), "you", LONG)
        .unwrap();
    assert_eq!(by_address, "Hello from near, you!");
    near.shutdown();
}

/// Panics on its first message.
struct Fragile;

impl Worker for Fragile {
    async fn handle_message(&mut self, _: &mut Context, _: Message) -> Result<(), BoxError> {
        panic!("fragile broke");
    }
}

#[test]
fn a_callback_watch_is_called_once_when_its_worker_ends() {
    use myriad::ExitReason;
    let told = Node::start(config(2, "watched"), |ctx| async move {
        let shard = ShardHandle::current().expect("main runs on a shard");
        let (tx, rx) = flume::unbounded();
        let tell = |label: &'static str| -> myriad::plugin::OnExit {
            let tx = tx.clone();
            Box::new(move |who, reason| drop(tx.send((label, who, reason))))
        };
        let stopped = ctx.spawn_on(1, Greeter).await?;
        let panics = ctx.start_worker("fragile", Fragile).await?;
        let unwatched = ctx.spawn(Greeter);
        let watch = shard.watch_with(&stopped.into(), tell("stop")).await?;
        assert_eq!(watch.target(), stopped);
        shard.watch_with(&"fragile".into(), tell("panic")).await?;
        let removed = shard
            .watch_with(&unwatched.into(), tell("unwatched"))
            .await?;
        shard.unwatch_with(removed);
        let unknown = shard.watch_with(&"nobody".into(), tell("unknown")).await;
        assert!(
            matches!(unknown, Err(Error::NoSuchWorker(_))),
            "{unknown:?}"
        );
        let remote = shard.watch_with(&"far/greeter".into(), tell("far")).await;
        assert!(matches!(remote, Err(Error::NoSuchWorker(_))), "{remote:?}");

        ctx.stop_worker(stopped).await?;
        ctx.send(panics, "break")?;
        ctx.stop_worker(unwatched).await?;
        let mut told = vec![rx.recv_async().await?, rx.recv_async().await?];
        // Already gone: told at once.
        shard.watch_with(&stopped.into(), tell("gone")).await?;
        told.push(rx.recv_async().await?);
        told.sort_by_key(|t| t.0);
        // A last sentinel: nothing else (the unwatched, the refused) came before it.
        tx.send(("end", stopped, ExitReason::Stopped))?;
        assert_eq!(rx.recv_async().await?.0, "end");
        Ok::<_, BoxError>((told, stopped, panics))
    })
    .unwrap()
    .unwrap();
    let (told, stopped, panics) = told;
    assert_eq!(
        told,
        [
            ("gone", stopped, ExitReason::NoSuchWorker),
            (
                "panic",
                panics,
                ExitReason::Panicked("panicked: fragile broke".into())
            ),
            ("stop", stopped, ExitReason::Stopped),
        ]
    );
}
