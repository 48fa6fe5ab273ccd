//! A zone nobody else enters, by default: an open zone does not listen beyond
//! loopback unless asked to, names are bound to keys, and unauthenticated
//! connections are bounded.

mod cluster;

use cluster::{engine, transport_in};
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
