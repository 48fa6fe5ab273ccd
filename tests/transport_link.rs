//! What a link carries: FIFO order under load, messages larger than a frame,
//! the maximum message size, and the statistics it keeps.

mod cluster;
#[path = "common/sequence.rs"]
mod sequence;

use cluster::{pair, start, transport, wait_for_nodes, wait_until, Greeter, LONG};
use myriad::{Address, BoxError, Context, Error, Message, Worker};
use sequence::{SequenceChecker, SequenceSender};

#[test]
fn fifo_per_sender_holds_across_a_link_under_load() {
    const N: u64 = 100_000;
    let ((a, _za), (b, _zb)) = pair(2);
    b.start_worker("checker", SequenceChecker::default())
        .unwrap();
    let target = Address::remote("b", "checker");
    let senders = [("s0", 0), ("s1", 1)].map(|(id, shard)| {
        let sender = SequenceSender {
            id,
            target: target.clone(),
        };
        a.spawn_on(shard, sender).unwrap()
    });
    let senders = senders.map(|sender| {
        let a = a.clone();
        std::thread::spawn(move || a.send_and_receive(sender, format!("go {N}"), LONG))
    });
    for sender in senders {
        assert_eq!(sender.join().unwrap().unwrap(), "sent");
    }
    let report = b
        .send_and_receive("checker", format!("when {}", 2 * N), LONG)
        .unwrap();
    assert_eq!(report, format!("{} 0", 2 * N).as_str());
    a.shutdown();
    b.shutdown();
}

/// Replies with the message itself.
struct Echo;

impl Worker for Echo {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        ctx.reply(msg)?;
        Ok(())
    }
}

#[test]
fn a_message_larger_than_a_frame_arrives_whole() {
    let ((a, _za), (b, _zb)) = pair(1);
    b.start_worker("echo", Echo).unwrap();
    let big: String = (0..1 << 20)
        .map(|i: u32| char::from(b'a' + (i % 26) as u8))
        .collect();
    let back = a.send_and_receive("b/echo", big.clone(), LONG).unwrap();
    assert_eq!(back.len(), big.len());
    assert!(back == big.as_str(), "the body changed on the way");
    // A multi-byte character split across frames survives too.
    let wide = "é".repeat(70_000);
    assert_eq!(
        a.send_and_receive("b/echo", wide.clone(), LONG).unwrap(),
        wide.as_str()
    );
    a.shutdown();
    b.shutdown();
}

/// Sends what it is asked to `small/greeter`; replies with the outcome.
struct TrySend;

impl Worker for TrySend {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let outcome = match ctx.send("small/greeter", msg) {
            Ok(()) => "sent".to_owned(),
            Err(error) => error.to_string(),
        };
        ctx.reply(outcome)?;
        Ok(())
    }
}

#[test]
fn an_oversized_message_is_refused_at_the_sender_and_the_link_stays_up() {
    // `small` accepts at most 1,000 bytes; `big` up to 64 KiB.
    let small = start(1, transport("small").max_message_size(1_000));
    let big = start(
        1,
        transport("big")
            .max_message_size(64 << 10)
            .seed(small.1.local_addr().to_string()),
    );
    wait_for_nodes(&big.1, &["small"]);
    small.0.start_worker("greeter", Greeter).unwrap();

    // A plain send from a worker fails at once...
    let sender = big.0.spawn(TrySend).unwrap();
    let outcome = big
        .0
        .send_and_receive(sender, "x".repeat(1_001), LONG)
        .unwrap();
    let expected = Error::MessageTooLarge {
        size: 1_001,
        max: 1_000,
    };
    assert_eq!(outcome, expected.to_string().as_str());
    // ... and so does an ask.
    let err = big
        .0
        .send_and_receive("small/greeter", "x".repeat(70_000), LONG)
        .unwrap_err();
    assert_eq!(
        err,
        Error::MessageTooLarge {
            size: 70_000,
            max: 1_000
        }
    );
    let ok = big
        .0
        .send_and_receive("small/greeter", "you", LONG)
        .unwrap();
    assert_eq!(ok, "Hello, you from small!");
    assert_eq!(big.1.stats().links.protocol_errors, 0);
    assert_eq!(small.1.stats().links.protocol_errors, 0);
    big.0.shutdown();
    small.0.shutdown();
}

#[test]
fn link_statistics_count_traffic_per_peer() {
    let ((a, za), (b, zb)) = pair(1);
    b.start_worker("greeter", Greeter).unwrap();
    for _ in 0..5 {
        a.send_and_receive("b/greeter", "x", LONG).unwrap();
    }
    // The counters are updated once per read or write, just after the
    // envelopes were handled.
    wait_until("the counters to catch up", LONG, || {
        let peer = &za.stats().peers[0];
        peer.sent.envelopes >= 5 && peer.received.envelopes >= 5
    });
    let stats = za.stats();
    assert_eq!(stats.connected_peers(), ["b"]);
    let peer = &stats.peers[0];
    assert_eq!(peer.address, Some(zb.local_addr()));
    assert!(
        peer.sent.envelopes >= 5 && peer.received.envelopes >= 5,
        "{peer:?}"
    );
    assert!(stats.links.sent.bytes >= peer.sent.bytes && peer.sent.bytes > 0);
    assert_eq!(stats.links.handshake_failures, 0);
    assert_eq!(stats.links.decrypt_failures, 0);
    a.shutdown();
    b.shutdown();
}
