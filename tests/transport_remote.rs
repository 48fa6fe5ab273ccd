//! Remote workers used like local ones: send, ask and reply across a link,
//! and remote start / list / stop of workers by registered kind.

mod cluster;

use cluster::{pair, start, transport, wait_for_nodes, wait_until, Counter, Greeter, LONG};
use futures_lite::future::block_on as block;
use myriad::transport::Zone;
use myriad::{Error, Node};

#[test]
fn a_remote_worker_answers_asks_and_receives_sends() {
    let ((a, _za), (b, _zb)) = pair(2);
    b.start_worker("greeter", Greeter).unwrap();
    b.start_worker("counter", Counter::default()).unwrap();

    let reply = a.send_and_receive("b/greeter", "world", LONG).unwrap();
    assert_eq!(reply, "Hello, world from b!");

    for _ in 0..10 {
        a.send("b/counter", "tick").unwrap();
    }
    wait_until("10 ticks at b", LONG, || {
        a.send_and_receive("b/counter", "count?", LONG).unwrap() == "10"
    });

    // And from inside a worker of `a` (main runs on a's shard 0).
    let err = a.send_and_receive("b/nobody", "hi", LONG).unwrap_err();
    assert_eq!(err, Error::NoSuchWorker("b/nobody".into()));
    let err = a
        .send_and_receive("nowhere/greeter", "hi", LONG)
        .unwrap_err();
    assert_eq!(err, Error::NoRoute("nowhere".into()));
    a.shutdown();
    b.shutdown();
}

/// The configuration of a node `name` with `shards` shards that joins the
/// zone of `seed`, to be started with `Node::start`, and its zone handle.
fn joining(name: &str, shards: usize, seed: &Zone) -> (myriad::NodeConfig, Zone) {
    let seed = seed.local_addr().to_string();
    myriad::transport::install(cluster::engine(shards), transport(name).seed(seed)).unwrap()
}

/// Waits, inside a node, until `zone` has a live link to node `name`.
async fn linked(zone: &Zone, name: &str) {
    while zone.nodes(name).is_empty() {
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[test]
fn workers_talk_across_nodes_from_inside_handlers() {
    let b = start(1, transport("b2"));
    b.0.start_worker("greeter", Greeter).unwrap();
    let (config, zone) = joining("a2", 2, &b.1);
    let reply = Node::start(config, move |ctx| async move {
        linked(&zone, "b2").await;
        ctx.send_and_receive("b2/greeter", "main", LONG).await
    })
    .unwrap();
    assert_eq!(reply.unwrap(), "Hello, main from b2!");
    b.0.shutdown();
}

#[test]
fn workers_are_started_listed_and_stopped_remotely_by_kind() {
    let b = start(2, transport("rb").worker_kind("greeter", |_| Greeter));
    let a = start(1, transport("ra").seed(b.1.local_addr().to_string()));
    wait_for_nodes(&a.1, &["rb"]);
    let zone = a.1.clone();

    block(zone.start_worker("rb", "hello", "greeter")).unwrap();
    assert_eq!(
        a.0.send_and_receive("rb/hello", "you", LONG).unwrap(),
        "Hello, you from rb!"
    );
    let listed = block(zone.list_workers("rb")).unwrap();
    let hello = listed.iter().find(|w| w.name == "hello").expect("listed");
    assert_eq!(hello.handled, 1);

    let taken = block(zone.start_worker("rb", "hello", "greeter")).unwrap_err();
    assert_eq!(taken, Error::NameTaken("rb/hello".into()));
    let unknown = block(zone.start_worker("rb", "x", "no-such-kind")).unwrap_err();
    assert!(unknown.to_string().contains("no worker kind"), "{unknown}");
    let invalid = block(zone.start_worker("rb", "bad name", "greeter")).unwrap_err();
    assert!(matches!(invalid, Error::InvalidName { .. }), "{invalid}");

    block(zone.stop_worker("rb", "hello")).unwrap();
    let listed = block(zone.list_workers("rb")).unwrap();
    assert!(listed.iter().all(|w| w.name != "hello"), "{listed:?}");
    let gone = a.0.send_and_receive("rb/hello", "you", LONG).unwrap_err();
    assert_eq!(gone, Error::NoSuchWorker("rb/hello".into()));
    a.0.shutdown();
    b.0.shutdown();
}

/// Never answers: every message waits an hour.
struct Mute;

impl myriad::Worker for Mute {
    async fn handle_message(
        &mut self,
        _ctx: &mut myriad::Context,
        _msg: myriad::Message,
    ) -> Result<(), myriad::BoxError> {
        glommio::timer::sleep(std::time::Duration::from_secs(3600)).await;
        Ok(())
    }
}

#[test]
fn a_link_forgets_a_remote_ask_whose_asker_timed_out() {
    let b = start(1, transport("mb"));
    b.0.start_worker("mute", Mute).unwrap();
    let (config, zone) = joining("ma", 1, &b.1);
    let (timed_out, forgotten) = Node::start(config, move |ctx| async move {
        linked(&zone, "mb").await;
        let short = std::time::Duration::from_millis(50);
        let timed_out = ctx.send_and_receive("mb/mute", "hang", short).await;
        // The link forgets it at one of its next heartbeat ticks (100 ms).
        let deadline = std::time::Instant::now() + LONG;
        while zone.stats().abandoned_asks == 0 && std::time::Instant::now() < deadline {
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        (timed_out, zone.stats().abandoned_asks)
    })
    .unwrap();
    assert!(
        matches!(timed_out, Err(Error::Timeout { .. })),
        "{timed_out:?}"
    );
    assert_eq!(forgotten, 1, "the link kept the unanswered ask");
    b.0.shutdown();
}
