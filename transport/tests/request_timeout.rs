//! The driver's one timer per link, end to end: a remote operation that the
//! peer never answers fails with `Timeout` once the request timeout passes.
//! The peer is hand-made: it completes the handshake, then reads and never
//! answers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use myriad_engine::{Error, NodeConfig};
use myriad_transport::{
    start_node, Handshake, LinkConfig, NodeName, StaticKeypair, Step, TransportConfig, ZoneConfig,
};

/// The most the test waits for anything.
const LONG: Duration = Duration::from_secs(20);

/// A peer called `mute` that accepts one connection, completes the
/// handshake as the responder and then reads everything, answering nothing.
fn mute_peer(zone: ZoneConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = LinkConfig::new(
        NodeName::new("mute").unwrap(),
        StaticKeypair::generate().unwrap(),
        zone,
    );
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut handshake = Handshake::responder(&config).unwrap();
        let mut buf = vec![0; 64 << 10];
        let mut established = loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the node closed the handshake");
            match handshake.feed(&buf[..n]).unwrap() {
                Step::Send(bytes) => stream.write_all(&bytes).unwrap(),
                Step::Wait => {}
                Step::Done(established) => break established,
            }
        };
        let confirmation = established.encoder.flush().unwrap();
        stream.write_all(&confirmation).unwrap();
        drain(stream);
    });
    addr
}

/// Reads until the other side closes.
fn drain(mut stream: TcpStream) {
    let mut buf = vec![0; 64 << 10];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

#[test]
fn a_request_the_peer_never_answers_times_out() {
    let zone = ZoneConfig::new("timeouts").unwrap();
    let mute = mute_peer(zone.clone());
    let after = Duration::from_millis(300);
    let transport = TransportConfig::new(zone)
        .node_name("asker")
        .listen("127.0.0.1:0".parse().unwrap())
        .seed(mute.to_string())
        .gossip_interval(Duration::from_millis(20))
        .request_timeout(after);
    let engine = NodeConfig::default().shards(1).pin_shards(false);
    let (node, zone) = start_node(engine, transport).unwrap();

    let deadline = std::time::Instant::now() + LONG;
    while !zone.nodes("").iter().any(|n| n == "mute") {
        assert!(std::time::Instant::now() < deadline, "mute never joined");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let listed = futures_lite::future::block_on(zone.list_workers("mute"));
        let _ = done.send(listed);
    });
    let listed = result
        .recv_timeout(LONG)
        .expect("the request neither answered nor timed out");
    let timeout = Error::Timeout {
        worker: "mute/".to_owned(),
        after,
    };
    assert_eq!(listed, Err(timeout));
    node.shutdown();
}
