//! A zone nobody else enters, by default: an open zone does not listen beyond
//! loopback unless asked to, names are bound to keys, and unauthenticated
//! connections are bounded.

mod cluster;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use cluster::{
    assert_closed_by_node, engine, pair, raw, raw_handshake, start, transport, transport_in,
    try_raw_handshake, wait_for_nodes, wait_until, zone_with, Greeter, LONG, SECRET,
};
use myriad::transport::{
    start_node, Handshake, LinkConfig, NodeName, StaticKeypair, TransportError, ZoneConfig,
};
use socket2::{Domain, Socket, Type};

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
    // The claim on a's name is an identity failure; the raw end refuses b's
    // own name as soon as it sees it, which b sees as a rejection.
    let by_reason = zb.stats().links.handshake_failures_by_reason;
    assert_eq!(
        (by_reason.identity, by_reason.rejected),
        (1, 1),
        "{by_reason:?}"
    );
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

/// File descriptors open in this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// This process's resident set, in KiB.
fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A connection to `to` from the loopback address `from`, that sends nothing.
fn half_open(from: &str, to: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

/// True once the node closed `stream` (never blocks).
fn closed_by_node(stream: &mut TcpStream) -> bool {
    let mut byte = [0; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

#[test]
fn a_thousand_half_open_connections_leave_a_good_peer_served() {
    const ATTACK: usize = 1000;
    const PER_ADDRESS: usize = 32;
    // Handshakes outlast the test unless the node closes them itself.
    let (b, zb) = start(
        1,
        transport("b")
            .connect_timeout(Duration::from_secs(60))
            .max_handshakes(256, PER_ADDRESS),
    );
    b.start_worker("greeter", Greeter).unwrap();
    let (fds, rss) = (open_fds(), rss_kib());
    let mut attack: Vec<TcpStream> = (0..ATTACK)
        .map(|_| half_open("127.0.0.2", zb.local_addr()))
        .collect();
    for stream in &attack {
        stream.set_nonblocking(true).unwrap();
    }
    // All but the ones holding a handshake slot are closed at once.
    wait_until("b to close the connections over its limit", LONG, || {
        attack.iter_mut().map(closed_by_node).filter(|&c| c).count() >= ATTACK - PER_ADDRESS
    });
    // ... and counted as refused for being busy, each once.
    wait_until("b to count the connections over its limit", LONG, || {
        zb.stats().links.handshake_failures_by_reason.busy == (ATTACK - PER_ADDRESS) as u64
    });
    // b holds at most its limit of them (plus its own few descriptors).
    wait_until("b's descriptors to be bounded", LONG, || {
        open_fds() <= fds + ATTACK + PER_ADDRESS + 8
    });
    // A good peer from another address is served meanwhile.
    let (a, za) = start(1, transport("a").seed(zb.local_addr().to_string()));
    wait_for_nodes(&za, &["b"]);
    assert_eq!(
        a.send_and_receive("b/greeter", "through", LONG).unwrap(),
        "Hello, through from b!"
    );
    let grown = rss_kib().saturating_sub(rss);
    assert!(grown < 64 << 10, "RSS grew by {grown} KiB");
    drop(attack);
    a.shutdown();
    b.shutdown();
}

/// Writes `bytes` to `stream` one every 50 ms, until the node closes it or
/// the test's limit passes.
fn trickle(mut stream: TcpStream, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let started = Instant::now();
        for byte in bytes.iter().cycle() {
            if stream.write_all(&[*byte]).is_err() || started.elapsed() > LONG {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

#[test]
fn a_trickling_connection_is_closed_in_and_after_the_handshake() {
    let (b, zb) = start(
        1,
        transport("b").connect_timeout(Duration::from_millis(500)),
    );
    let addr = zb.local_addr();
    // A handshake sent a byte at a time, far slower than the deadline.
    let stream = raw(addr);
    let first = {
        let config = LinkConfig::new(
            NodeName::new("slow").unwrap(),
            StaticKeypair::generate().unwrap(),
            zone_with(SECRET),
        );
        Handshake::initiator(&config).unwrap().1.to_vec()
    };
    let writer = trickle(stream.try_clone().unwrap(), first);
    assert_closed_by_node(stream);
    writer.join().unwrap();

    // Authenticated, then a frame that never completes (its length says
    // 1,000 bytes; heartbeat timeout 1 s).
    let (stream, _link) = raw_handshake(addr, "trickler");
    let mut frame = vec![0x03, 0xe8];
    frame.extend(std::iter::repeat_n(0x5a, 998));
    let writer = trickle(stream.try_clone().unwrap(), frame);
    assert_closed_by_node(stream);
    writer.join().unwrap();
    assert!(zb.nodes("").is_empty());
    b.shutdown();
}
