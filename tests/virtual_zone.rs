//! Virtual workers across the zone: two nodes on loopback in one process. A
//! key activates on its home node (rendezvous hashing over the live nodes
//! that registered its kind) whichever node sends; concurrent first
//! messages from both nodes make one activation; when the home node is
//! lost, the next message activates the key on the survivor. Every wait is
//! for an answer or for the member list to change (bounded by `LONG`).

mod cluster;

use cluster::{
    ask_key, engine, knows_address, raw_handshake, raw_read, raw_write, transport, wait_for_nodes,
    wait_until, LONG,
};
use myriad::transport::{Envelope, Kind, Zone};
use myriad::{BoxError, Context, Key, MemoryStore, Message, NodeConfig, NodeHandle, VirtualWorker};

/// Counts `inc`s; answers an ask with the count and the node it runs on.
struct Counter {
    count: u64,
}

impl VirtualWorker for Counter {
    type State = u64;

    fn state(&self) -> &u64 {
        &self.count
    }

    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if &*msg == "inc" {
            self.count += 1;
        }
        if ctx.is_ask() {
            ctx.reply(format!("{} on {}", self.count, ctx.node_name()))?;
        }
        Ok(())
    }
}

/// A test node's engine, with the kind `counter` (or none) kept in memory.
fn with_counter(shards: usize, counter: bool) -> NodeConfig {
    let config = engine(shards).state_store(|_| Ok(MemoryStore::default()));
    if counter {
        config.virtual_kind("counter", |_key, saved: Option<u64>| Counter {
            count: saved.unwrap_or(0),
        })
    } else {
        config
    }
}

/// Two linked nodes `a` and `b`, both hosting `counter` if `a_hosts`, else
/// only `b`.
fn pair(a_hosts: bool) -> ((NodeHandle, Zone), (NodeHandle, Zone)) {
    let b = myriad::transport::start_node(with_counter(2, true), transport("b")).expect("b starts");
    let a = myriad::transport::start_node(
        with_counter(2, a_hosts),
        transport("a").seed(b.1.local_addr().to_string()),
    )
    .expect("a starts");
    wait_for_nodes(&a.1, &["b"]);
    wait_for_nodes(&b.1, &["a"]);
    // b learns where a listens from a's gossip: until then it cannot dial a.
    wait_until("b to learn a's address", LONG, || knows_address(&b.1, "a"));
    (a, b)
}

/// The first key `counter:<prefix>N` whose home among a and b is `home`.
fn key_homed_on(home: &str, prefix: &str) -> Key {
    cluster::key_homed_on("counter", home, prefix)
}

fn active(node: &NodeHandle) -> Vec<Key> {
    node.active_keys("counter").unwrap_or_default()
}

#[test]
fn a_key_homed_on_b_and_sent_from_a_activates_on_b_only() {
    let ((a, _za), (b, _zb)) = pair(true);
    let key = key_homed_on("b", "x");
    assert_eq!(ask_key(&a, &key, "inc"), "1 on b");
    assert_eq!(
        ask_key(&a, &key, "inc"),
        "2 on b",
        "later messages reach the same worker"
    );
    assert_eq!(ask_key(&b, &key, "inc"), "3 on b", "b sends to it locally");
    // A plain send by key from a goes there too.
    a.send(&key, "inc").unwrap();
    assert_eq!(ask_key(&a, &key, "get"), "4 on b");
    assert_eq!(active(&b), vec![key.clone()]);
    assert!(active(&a).is_empty(), "nothing activates on a");
    assert_eq!(b.virtual_stats().unwrap().activations, 1);

    // And a key homed on a, sent from b, activates on a.
    let on_a = key_homed_on("a", "y");
    assert_eq!(ask_key(&b, &on_a, "inc"), "1 on a");
    assert_eq!(active(&a), vec![on_a]);
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_node_that_does_not_host_a_kind_sends_its_keys_to_one_that_does() {
    let ((a, _za), (b, _zb)) = pair(false);
    // Whatever the key, its only member is b.
    for key in [key_homed_on("a", "p"), key_homed_on("b", "q")] {
        assert_eq!(ask_key(&a, &key, "inc"), "1 on b", "{key}");
    }
    assert_eq!(b.virtual_stats().unwrap().activations, 2);
    a.shutdown();
    b.shutdown();
}

#[test]
fn concurrent_first_messages_from_both_nodes_make_one_activation() {
    let ((a, _za), (b, _zb)) = pair(true);
    const EACH: u64 = 200;
    let keys: Vec<Key> = vec![key_homed_on("a", "c"), key_homed_on("b", "d")];
    std::thread::scope(|s| {
        for node in [&a, &b] {
            let keys = &keys;
            s.spawn(move || {
                for _ in 0..EACH {
                    for key in keys {
                        node.send(key, "inc").expect("sent");
                    }
                }
            });
        }
    });
    // The sends of each node to one key arrive in order, and an ask from
    // the same node after them; so once both nodes' asks are answered
    // every inc is counted.
    for key in &keys {
        ask_key(&a, key, "get");
        let counted = ask_key(&b, key, "get");
        let home = key.home_node(&["a", "b"]).unwrap();
        assert_eq!(counted, format!("{} on {home}", 2 * EACH), "{key}");
    }
    let (sa, sb) = (a.virtual_stats().unwrap(), b.virtual_stats().unwrap());
    assert_eq!(
        (sa.activations, sb.activations),
        (1, 1),
        "one activation per key, on its home"
    );
    assert_eq!(active(&a), vec![keys[0].clone()]);
    assert_eq!(active(&b), vec![keys[1].clone()]);
    a.shutdown();
    b.shutdown();
}

#[test]
fn when_the_home_node_is_lost_the_next_message_activates_the_key_on_the_survivor() {
    let ((a, za), (b, _zb)) = pair(true);
    let key = key_homed_on("b", "z");
    assert_eq!(ask_key(&a, &key, "inc"), "1 on b");
    b.shutdown();
    wait_until("a to see b lost", LONG, || {
        !za.nodes("").iter().any(|n| n == "b")
    });
    // Each node keeps its state in its own memory here: the key starts
    // afresh on a (a networked store would carry its last saved state).
    assert_eq!(ask_key(&a, &key, "inc"), "1 on a");
    assert_eq!(active(&a), vec![key]);
    a.shutdown();
}

#[test]
fn a_key_that_comes_from_another_node_activates_where_it_was_sent_without_being_placed_again() {
    let ((a, _za), (b, zb)) = pair(true);
    // Whoever sent it placed it on b, though by b's view its home is a: b
    // trusts the sender (so two nodes whose views differ never pass a key
    // back and forth), and activates it.
    let key = key_homed_on("a", "t");
    let (mut stream, mut link) = raw_handshake(zb.local_addr(), "raw");
    let ask = Envelope::new(Kind::Ask { id: 9 }, Some(key.as_str().into()), "inc");
    raw_write(&mut stream, &mut link, &ask);
    let got = raw_read(&mut stream, &mut link, 1);
    assert_eq!(
        (got[0].kind, got[0].body.as_str()),
        (Kind::ReplyOk { id: 9 }, "1 on b")
    );
    assert_eq!(active(&b), vec![key]);
    assert!(active(&a).is_empty(), "not sent on to a");
    drop(stream);
    a.shutdown();
    b.shutdown();
}
