//! A zone nobody else enters, by default: an open zone does not listen beyond
//! loopback unless asked to, names are bound to keys, and unauthenticated
//! connections are bounded.

mod cluster;

use cluster::{engine, pair, transport_in, try_raw_handshake, wait_until, Greeter, LONG};
use myriad::transport::{start_node, TransportError, ZoneConfig};

#[test]
fn an_open_zone_does_not_listen_beyond_loopback_by_default() {
    let open = || transport_in("open", ZoneConfig::new("open").unwrap());
    let refused = start_node(engine(1), open().listen("0.0.0.0:0".parse().unwrap()));
    match refused {
        Err(TransportError::Config(text)) => {
            assert!(text.contains("allow_open_zone"), "{text}")
        }
        other => panic!("an open zone on 0.0.0.0 started: {:?}", other.map(|_| ())),
    }
    let (node, zone) = start_node(
        engine(1),
        open()
            .listen("0.0.0.0:0".parse().unwrap())
            .allow_open_zone(true),
    )
    .expect("an explicit opt-in starts");
    assert!(zone.local_addr().ip().is_unspecified());
    node.shutdown();
}

#[test]
fn a_peer_claiming_a_members_name_or_the_nodes_own_is_refused() {
    let ((a, za), (b, zb)) = pair(1);
    b.start_worker("greeter", Greeter).unwrap();
    let addr = zb.local_addr();
    // Another key claims `a`, whose name b bound to a's key: b closes the
    // connection instead of confirming.
    let taken = try_raw_handshake(addr, "a").map(|_| ());
    assert!(taken.is_err(), "a second key for `a` got a link");
    wait_until("b to count the refusal", LONG, || {
        zb.stats().links.handshake_failures == 1
    });
    // A peer claiming b's own name never gets a link either (both ends check
    // the other's name against their own; here the raw end gives up first).
    let own = try_raw_handshake(addr, "b").map(|_| ());
    assert!(own.is_err(), "a handshake claiming b's own name succeeded");
    wait_until("b to count the second refusal", LONG, || {
        zb.stats().links.handshake_failures == 2
    });
    // The real a is still the one b serves.
    assert_eq!(zb.nodes(""), ["a"]);
    assert_eq!(
        a.send_and_receive("b/greeter", "still me", LONG).unwrap(),
        "Hello, still me from b!"
    );
    assert_eq!(za.nodes(""), ["b"]);
    a.shutdown();
    b.shutdown();
}
