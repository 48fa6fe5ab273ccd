//! Discovery: seeds (addresses and DNS names), gossip of the member list,
//! `nodes(filter)`, nodes that join later and nodes that die.

mod cluster;

use cluster::{start, transport, wait_for_nodes, wait_until, Greeter, LONG};

#[test]
fn nodes_are_found_through_seeds_and_gossip_and_dropped_when_they_die() {
    let seed = start(1, transport("seed"));
    let seed_addr = seed.1.local_addr().to_string();
    let runner1 = start(1, transport("runner-1").seed(seed_addr.clone()));
    let client = start(2, transport("client").seed(seed_addr.clone()));
    // The client only knows the seed; it hears of runner-1 through gossip.
    wait_for_nodes(&client.1, &["runner-1", "seed"]);
    assert_eq!(client.1.nodes("runner"), ["runner-1"]);
    assert_eq!(client.1.nodes("nobody"), Vec::<String>::new());

    // A node that joins later shows up, and is reachable directly.
    let runner2 = start(1, transport("runner-2").seed(seed_addr));
    runner2.0.start_worker("greeter", Greeter).unwrap();
    wait_until("client to see both runners", LONG, || {
        client.1.nodes("runner") == ["runner-1", "runner-2"]
    });
    let reply = client
        .0
        .send_and_receive("runner-2/greeter", "c", LONG)
        .unwrap();
    assert_eq!(reply, "Hello, c from runner-2!");

    // A node that dies disappears.
    runner1.0.shutdown();
    wait_until("client to drop runner-1", LONG, || {
        client.1.nodes("runner") == ["runner-2"]
    });
    wait_until("runner-2 to drop runner-1", LONG, || {
        runner2.1.nodes("") == ["client", "seed"]
    });
    client.0.shutdown();
    runner2.0.shutdown();
    seed.0.shutdown();
}

#[test]
fn a_seed_may_be_a_dns_name() {
    let b = start(1, transport("b"));
    let port = b.1.local_addr().port();
    // `localhost` may also resolve to ::1, where nothing listens: that
    // address is skipped.
    let a = start(1, transport("a").seed(format!("localhost:{port}")));
    wait_for_nodes(&a.1, &["b"]);
    a.0.shutdown();
    b.0.shutdown();
}
