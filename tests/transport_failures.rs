//! Links that fail: asks waiting on a dying link, a restarted peer, a peer
//! outside the zone, and raw peers that send garbage, truncated or tampered
//! frames. The node under attack keeps serving its real peers.

mod cluster;

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use cluster::{
    assert_closed_by_node, pair, raw, raw_handshake, start, transport, transport_in,
    wait_for_nodes, wait_until, zone_with, Counter, Greeter, HEARTBEAT_TIMEOUT, LONG,
};
use myriad::metrics::HandshakeFailure;
use myriad::transport::{Envelope, Established, Kind, StaticKeypair, WorkerAddr};
use myriad::{BoxError, Context, Error, Message, Replier, Worker};

/// Answers of `Hold` workers: kept here so that a stopping node cannot
/// drop them (which would answer `NoReply`).
static HELD: Mutex<Vec<Replier>> = Mutex::new(Vec::new());

/// Never answers: keeps every ask's replier.
struct Hold;

impl Worker for Hold {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        let replier = ctx.defer_reply().ok_or("ask me")?;
        HELD.lock().unwrap().push(replier);
        Ok(())
    }
}

#[test]
fn asks_waiting_on_a_link_that_dies_fail_with_connection_lost() {
    let ((a, _za), (b, _zb)) = pair(1);
    b.start_worker("hold", Hold).unwrap();
    let asker = {
        let a = a.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            (
                a.send_and_receive("b/hold", "wait", LONG),
                started.elapsed(),
            )
        })
    };
    wait_until("the ask to reach b", LONG, || {
        !HELD.lock().unwrap().is_empty()
    });
    b.shutdown();
    let (outcome, waited) = asker.join().unwrap();
    assert_eq!(outcome, Err(Error::ConnectionLost("b".into())));
    assert!(waited < LONG, "{waited:?}");
    a.shutdown();
}

#[test]
fn traffic_resumes_when_a_peer_restarts_on_its_address() {
    // The name `b` is bound to b's key: the new b keeps it (as a key file would).
    let b_key = StaticKeypair::generate().unwrap();
    let (b, zb) = start(2, transport("b").keypair(b_key.clone()));
    let b_addr = zb.local_addr();
    let (a, za) = start(2, transport("a").seed(b_addr.to_string()));
    wait_for_nodes(&za, &["b"]);
    b.start_worker("greeter", Greeter).unwrap();
    assert_eq!(
        a.send_and_receive("b/greeter", "1", LONG).unwrap(),
        "Hello, 1 from b!"
    );
    b.shutdown();
    wait_until("a to see b go", LONG, || za.nodes("").is_empty());

    let (b, _zb) = start(2, transport("b").listen(b_addr).keypair(b_key));
    b.start_worker("greeter", Greeter).unwrap();
    wait_for_nodes(&za, &["b"]);
    wait_until("an answer from the new b", LONG, || {
        a.send_and_receive("b/greeter", "2", LONG).as_deref() == Ok("Hello, 2 from b!")
    });
    assert!(za.stats().reconnects > 0);
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_peer_with_the_wrong_secret_is_rejected_with_nothing_delivered() {
    let (b, zb) = start(1, transport("b"));
    b.start_worker("counter", Counter::default()).unwrap();
    let other_zone = zone_with("not the zone secret, but long");
    let intruder = transport_in("c", other_zone).seed(zb.local_addr().to_string());
    let (c, zc) = start(1, intruder);
    wait_until("b to reject c", LONG, || {
        zb.stats().links.handshake_failures >= 2
    });
    assert!(zc.stats().links.handshake_failures >= 1);
    // At b, every failure is the one reason "outside the zone".
    let b_failures = zb.stats().links;
    let by_reason = b_failures.handshake_failures_by_reason;
    for (reason, n) in by_reason.iter() {
        match reason {
            HandshakeFailure::Zone => assert!(n >= 2, "{by_reason:?}"),
            _ => assert_eq!(n, 0, "{reason:?} in {by_reason:?}"),
        }
    }
    assert_eq!(by_reason.total(), b_failures.handshake_failures);
    // c was refused after showing its credentials.
    let c_reasons = zc.stats().links.handshake_failures_by_reason;
    assert!(c_reasons.rejected >= 1, "{c_reasons:?}");
    assert!(zb.nodes("").is_empty() && zc.nodes("").is_empty());
    assert_eq!(
        c.send_and_receive("b/counter", "hi", LONG),
        Err(Error::NoRoute("b".into()))
    );
    assert_eq!(b.send_and_receive("counter", "count?", LONG).unwrap(), "0");
    c.shutdown();
    b.shutdown();
}

fn send_to_counter(link: &mut Established, text: &'static str) -> Vec<u8> {
    let envelope = Envelope::new(Kind::Send, Some(WorkerAddr::from("counter")), text);
    link.encoder.push(&envelope).unwrap();
    link.encoder.flush().unwrap().to_vec()
}

#[test]
fn garbage_truncated_and_tampered_frames_close_only_their_link() {
    let ((a, _za), (b, zb)) = pair(1);
    b.start_worker("greeter", Greeter).unwrap();
    b.start_worker("counter", Counter::default()).unwrap();
    let addr = zb.local_addr();

    // Garbage instead of a handshake (framed as a 10-byte message).
    let mut garbage = raw(addr);
    garbage.write_all(&[0, 10]).unwrap();
    garbage.write_all(&[0x5a; 300]).unwrap();
    assert_closed_by_node(garbage);

    // A handshake message cut short, then the end of the stream.
    let mut truncated = raw(addr);
    truncated.write_all(&[0, 48, 1, 2, 3]).unwrap();
    truncated.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed_by_node(truncated);
    wait_until("two failed handshakes", LONG, || {
        zb.stats().links.handshake_failures == 2
    });

    // An authenticated peer: one good message, then a tampered frame.
    let (mut stream, mut link) = raw_handshake(addr, "raw-1");
    stream
        .write_all(&send_to_counter(&mut link, "good"))
        .unwrap();
    let mut tampered = send_to_counter(&mut link, "evil");
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    stream.write_all(&tampered).unwrap();
    assert_closed_by_node(stream);
    wait_until("one decrypt failure", LONG, || {
        zb.stats().links.decrypt_failures == 1
    });

    // An authenticated peer whose data frame is cut short.
    let (mut stream, _link) = raw_handshake(addr, "raw-2");
    stream.write_all(&[0x01, 0x00, 7, 7, 7]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed_by_node(stream);

    // Only the good message was delivered, and the real peer is still served.
    assert_eq!(b.send_and_receive("counter", "count?", LONG).unwrap(), "1");
    assert_eq!(
        a.send_and_receive("b/greeter", "ok", LONG).unwrap(),
        "Hello, ok from b!"
    );
    let stats = zb.stats();
    assert_eq!(stats.links.handshake_failures, 2);
    // The garbage is malformed; the cut-short message ends in a close.
    let by_reason = stats.links.handshake_failures_by_reason;
    assert_eq!(
        (by_reason.malformed, by_reason.closed),
        (1, 1),
        "{by_reason:?}"
    );
    assert_eq!(stats.links.decrypt_failures, 1);
    assert_eq!(stats.connected_peers(), ["a"]);
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_silent_peer_is_declared_dead_within_the_heartbeat_timeout() {
    let (b, zb) = start(1, transport("b"));
    // Taken before the handshake, so before anything `b` receives from `raw`:
    // `b` may declare `raw` dead only a full timeout after that.
    let since = Instant::now();
    let (stream, _link) = raw_handshake(zb.local_addr(), "raw");
    wait_for_nodes(&zb, &["raw"]);
    // `raw` sends nothing at all, not even heartbeats.
    wait_until("b to drop raw", LONG, || zb.nodes("").is_empty());
    let waited = since.elapsed();
    // Never early. (How late is load-dependent: the link core's unit tests
    // check the deadline itself on a fake clock.)
    assert!(
        waited >= HEARTBEAT_TIMEOUT,
        "declared dead after only {waited:?}"
    );
    drop(stream);
    b.shutdown();
}
