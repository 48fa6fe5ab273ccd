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
    let near = Node::spawn(config(2, "near").remote_router(Arc::new(
        move |_shard: ShardHandle| -> Rc<dyn RemoteRouter> {
            Rc::new(LoopbackRouter {
                far: router_far.clone(),
            })
        },
    )))
    .unwrap();
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
