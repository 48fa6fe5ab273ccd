//! Remote workers used like local ones: send, ask and reply across a link,
//! and remote start / list / stop of workers by registered kind.

mod cluster;

use cluster::{pair, start, transport, wait_for_nodes, wait_until, Counter, Greeter, LONG};
use futures_lite::future::block_on as block;
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

#[test]
fn workers_talk_across_nodes_from_inside_handlers() {
    let b = start(1, transport("b2"));
    b.0.start_worker("greeter", Greeter).unwrap();
    let seed = b.1.local_addr().to_string();
    let (config, zone) =
        myriad::transport::install(cluster::engine(2), transport("a2").seed(seed)).unwrap();
    let reply = Node::start(config, move |ctx| async move {
        while zone.nodes("b2").is_empty() {
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
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
