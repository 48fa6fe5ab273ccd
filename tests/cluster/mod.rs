//! Helpers for the transport tests: small zones of in-process nodes on
//! loopback, with short timings, and bounded waiting for conditions.

#![allow(dead_code)] // each test crate uses its own subset

pub mod child;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use myriad::transport::{
    start_node, Envelope, Established, Handshake, Kind, LinkConfig, NodeName, StaticKeypair, Step,
    TransportConfig, Zone, ZoneConfig, ZoneSecret,
};
use myriad::{
    BoxError, Context, ExitReason, Key, Message, NodeConfig, NodeHandle, Worker, WorkerRef,
};

/// The most any single step of a test may take.
pub const LONG: Duration = Duration::from_secs(20);

/// The zone secret of the test zone.
pub const SECRET: &str = "a test zone secret of enough length";

/// The test zone, with `secret`.
pub fn zone_with(secret: &str) -> ZoneConfig {
    ZoneConfig::new("test")
        .unwrap()
        .with_secret(&ZoneSecret::from_bytes(secret).unwrap())
}

/// How long a test link may hear nothing before it is declared dead: short,
/// yet long enough that a test machine starved of CPU (tests of several
/// binaries and builds share two cores) does not kill a live link.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

/// A transport for node `name` of the test zone on an ephemeral loopback
/// port, with short heartbeats and fast gossip and reconnection.
pub fn transport(name: &str) -> TransportConfig {
    transport_in(name, zone_with(SECRET))
}

/// [`transport`], in `zone`.
pub fn transport_in(name: &str, zone: ZoneConfig) -> TransportConfig {
    TransportConfig::new(zone)
        .node_name(name)
        .listen("127.0.0.1:0".parse().unwrap())
        .heartbeat(Duration::from_millis(100), HEARTBEAT_TIMEOUT)
        .gossip_interval(Duration::from_millis(50))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

/// The engine configuration of a test node: `shards` unpinned shards.
pub fn engine(shards: usize) -> NodeConfig {
    let config = NodeConfig::default()
        .shards(shards)
        .pin_shards(false)
        .mailbox_capacity(1 << 20);
    match std::env::var("MYRIAD_TEST_SPIN_US") {
        Ok(us) => config.spin_before_park(Duration::from_micros(us.parse().unwrap())),
        Err(_) => config,
    }
}

/// Starts a node.
pub fn start(shards: usize, transport: TransportConfig) -> (NodeHandle, Zone) {
    start_node(engine(shards), transport).expect("node starts")
}

/// Polls `condition` every few milliseconds until it holds; panics with
/// `what` if it does not within `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `zone` sees every node of `names` as live.
pub fn wait_for_nodes(zone: &Zone, names: &[&str]) {
    let what = format!("{} to see {names:?}", zone.node_name());
    wait_until(&what, LONG, || {
        let live = zone.nodes("");
        names.iter().all(|n| live.iter().any(|l| l == n))
    });
}

/// Whether `zone` knows where `peer` listens (from gossip): until then it
/// cannot dial it.
pub fn knows_address(zone: &Zone, peer: &str) -> bool {
    zone.stats()
        .peers
        .iter()
        .any(|p| p.name == peer && p.address.is_some())
}

/// The first key `kind:<prefix>N` whose home among nodes `a` and `b` is
/// `home`.
pub fn key_homed_on(kind: &str, home: &str, prefix: &str) -> Key {
    (0..)
        .map(|i| Key::new(kind, &format!("{prefix}{i}")))
        .find(|k| k.home_node(&["a", "b"]) == Some(home))
        .expect("some key is homed on each node")
}

/// Asks `key` `msg` from `node`: the answer's text (panics saying who
/// asked what if there is none).
pub fn ask_key(node: &NodeHandle, key: &Key, msg: &str) -> String {
    node.send_and_receive(key, msg.to_owned(), LONG)
        .unwrap_or_else(|e| panic!("ask {key} {msg:?} from {}: {e}", node.name()))
        .to_string()
}

/// Two linked nodes `a` and `b` (`a` seeded with `b`), each with `shards` shards.
pub fn pair(shards: usize) -> ((NodeHandle, Zone), (NodeHandle, Zone)) {
    let b = start(shards, transport("b"));
    let a = start(shards, transport("a").seed(b.1.local_addr().to_string()));
    wait_for_nodes(&a.1, &["b"]);
    wait_for_nodes(&b.1, &["a"]);
    (a, b)
}

/// Replies `Hello, <msg> from <node>!`.
pub struct Greeter;

impl Worker for Greeter {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let text = format!("Hello, {msg} from {}!", ctx.node_name());
        ctx.reply(text)?;
        Ok(())
    }
}

/// Counts plain messages; answers an ask with the count so far.
#[derive(Default)]
pub struct Counter {
    pub seen: u64,
}

impl Worker for Counter {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        if ctx.is_ask() {
            ctx.reply(self.seen.to_string())?;
        } else {
            self.seen += 1;
        }
        Ok(())
    }
}

/// A raw connection to `addr`, with a read timeout.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    stream
}

/// Completes a handshake as node `name` (with a fresh key) of the test zone
/// over a plain socket.
pub fn raw_handshake(addr: SocketAddr, name: &str) -> (TcpStream, Box<Established>) {
    try_raw_handshake(addr, name).expect("the node completes the handshake")
}

/// [`raw_handshake`], or why it failed (the node closed the connection, or
/// this end refused the node).
pub fn try_raw_handshake(
    addr: SocketAddr,
    name: &str,
) -> Result<(TcpStream, Box<Established>), String> {
    let config = LinkConfig::new(
        NodeName::new(name).unwrap(),
        StaticKeypair::generate().unwrap(),
        zone_with(SECRET),
    );
    let mut stream = raw(addr);
    let (mut handshake, first) = Handshake::initiator(&config).unwrap();
    stream.write_all(&first).unwrap();
    let mut buf = [0; 4096];
    loop {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(handshake.peer_closed().to_string());
        }
        match handshake.feed(&buf[..n]).map_err(|e| e.to_string())? {
            Step::Send(bytes) => stream.write_all(&bytes).unwrap(),
            Step::Wait => {}
            Step::Done(established) => return Ok((stream, established)),
        }
    }
}

/// Encodes `envelope` for the node and writes it.
pub fn raw_write(stream: &mut TcpStream, link: &mut Established, envelope: &Envelope) {
    link.encoder.push(envelope).unwrap();
    stream.write_all(&link.encoder.flush().unwrap()).unwrap();
}

/// Reads from the node until it has sent `n` envelopes other than heartbeats.
pub fn raw_read(stream: &mut TcpStream, link: &mut Established, n: usize) -> Vec<Envelope> {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    while got.len() < n {
        while let Some(envelope) = link.decoder.next_envelope().unwrap() {
            if envelope.kind != Kind::Heartbeat {
                got.push(envelope);
            }
        }
        if got.len() < n {
            let read = stream.read(&mut buf).expect("the node answers");
            assert_ne!(read, 0, "the node closed the link");
            link.decoder.feed(&buf[..read]);
        }
    }
    got
}

/// Reads until the node closes the connection; panics if it does not.
pub fn assert_closed_by_node(mut stream: TcpStream) {
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the node kept the connection open: {e}"),
        }
    }
}

/// What a watcher is told: who ended, and why.
pub type Notice = (WorkerRef, ExitReason);

/// Watches and unwatches on request, and passes on every notice.
///
/// Asks: `watch ADDR` (answers the watched worker's reference, or
/// `error ...`), `unwatch ADDR` (`true` or `false`), `race PREFIX N`
/// (watches then unwatches `PREFIX0` .. `PREFIX{N-1}`, answers one line
/// each: the reference and what unwatch said, or `-` if the watch failed).
pub struct Watcher {
    pub told: flume::Sender<Notice>,
}

impl Worker for Watcher {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let (verb, rest) = msg.split_once(' ').ok_or("verb and argument")?;
        let answer = match verb {
            "watch" => match ctx.watch(rest).await {
                Ok(r) => r.to_string(),
                Err(e) => format!("error {e:?}"),
            },
            "unwatch" => ctx.unwatch(rest).await?.to_string(),
            "race" => {
                let (prefix, n) = rest.split_once(' ').ok_or("prefix and count")?;
                let mut lines = Vec::new();
                for i in 0..n.parse::<usize>()? {
                    let line = match ctx.watch(format!("{prefix}{i}")).await {
                        Ok(r) => format!("{r} {}", ctx.unwatch(r).await?),
                        Err(e) => format!("- {e}"),
                    };
                    lines.push(line);
                }
                lines.join("\n")
            }
            _ => return Err("unknown verb".into()),
        };
        ctx.reply(answer)?;
        Ok(())
    }

    async fn on_terminated(&mut self, _: &mut Context, who: WorkerRef, reason: ExitReason) {
        let _ = self.told.send((who, reason));
    }
}

/// Starts a watcher called `name` on `node`; returns what it is told.
pub fn watcher(node: &NodeHandle, name: &str) -> flume::Receiver<Notice> {
    let (told, notices) = flume::unbounded();
    node.start_worker(name, Watcher { told }).unwrap();
    notices
}
