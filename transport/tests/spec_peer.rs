//! A peer written from `docs/protocol.md` alone, with snow and ring used
//! directly, talking to this crate: it checks the documented bytes (PSK
//! derivation, prologue, payloads, confirmation, frames, records) and lets
//! tests send what a well-behaved `Encoder` never would.

mod common;

use common::spec::{dial, frame, hello, prologue, psk, unframe, whole_send, Link};
use common::{node, zone};
use myriad_engine::plugin::WireRef;
use myriad_transport::{
    ControlOp, Envelope, ErrorCode, Handshake, HandshakeError, Kind, LinkConfig, ProtocolError,
    Step, WorkerAddr,
};

fn responder() -> LinkConfig {
    node("ours", zone("z", Some(common::SECRET))).with_max_message_size(100_000)
}

#[test]
fn the_documented_psk_test_vector_holds() {
    let hex: String = psk("correct horse battery staple", "demo")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "b0a2f0c8bde5cef7f4cddb791df22b1ef743ea88f5a3c433f036a277b7846567"
    );
}

#[test]
fn a_spec_peer_completes_the_handshake() {
    let link = Link::open(&responder());
    let peer = &link.ours.peer;
    assert_eq!(peer.name.as_str(), "hand");
    assert_eq!(
        (peer.version, peer.incarnation, peer.shard, peer.shards),
        (2, 42, 1, 2)
    );
    assert_eq!(peer.max_message_size, 16 << 20);
}

#[test]
fn unknown_trailing_payload_fields_are_ignored() {
    let (_, step) = dial(
        &responder(),
        &hello((1, 4), 1000, "newer", b"future fields"),
    );
    let Ok(Step::Done(link)) = step else {
        panic!("refused")
    };
    assert_eq!(link.peer.version, 2, "the newest common version");
}

#[test]
fn disjoint_versions_are_refused() {
    let (_, step) = dial(&responder(), &hello((3, 4), 1000, "future", &[]));
    match step {
        Err(HandshakeError::Version { name, ours, theirs }) => {
            assert_eq!((name.as_str(), ours, theirs), ("future", (1, 2), (3, 4)));
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn malformed_payloads_are_refused() {
    let full = hello((1, 1), 1000, "x", &[]);
    for (payload, what) in [
        (&full[..10], "truncated"),
        (
            &hello((1, 1), 1000, "bad name", &[])[..],
            "invalid node name",
        ),
        (&hello((1, 1), 1000, "", &[])[..], "invalid node name"),
        (
            &hello((3, 2), 1000, "x", &[])[..],
            "empty protocol version range",
        ),
    ] {
        match dial(&responder(), payload).1 {
            Err(HandshakeError::Malformed(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("{what}: {:?}", other.err()),
        }
    }
}

#[test]
fn documented_records_decode() {
    let mut link = Link::open(&responder());
    // Two whole envelopes in one frame, then a message in three fragments
    // spread over two frames, followed by a whole one.
    let mut plain = whole_send("greeter", b"hi");
    plain.extend(whole_send("w", "ünï".as_bytes()));
    let (got, err) = link.send(&plain);
    assert_eq!(err, None);
    assert_eq!(
        got,
        [
            Envelope::new(Kind::Send, Some("greeter".into()), "hi"),
            Envelope::new(Kind::Send, Some("w".into()), "ünï"),
        ]
    );

    // First fragment: ask id 7, target id 9, sender "me", sender node "n1",
    // shard 3, total 6 bytes, chunk "abc".
    let mut first = vec![2, 2, 0b11];
    first.extend(7u64.to_be_bytes());
    first.push(2);
    first.extend(9u64.to_be_bytes());
    first.extend([1, 2, b'm', b'e', 2, b'n', b'1', 0, 3]);
    first.extend(6u32.to_be_bytes());
    first.extend([0, 3, b'a', b'b', b'c']);
    first.extend([3, 0, 1, b'd']);
    assert_eq!(link.send(&first), (vec![], None));
    let mut next = vec![3, 0, 2, b'e', b'f'];
    next.extend(whole_send("after", b""));
    let (got, err) = link.send(&next);
    assert_eq!(err, None);
    let ask = Envelope::new(Kind::Ask { id: 7 }, Some(WorkerAddr::Id(9)), "abcdef")
        .with_sender("me".into())
        .with_sender_node("n1".parse().unwrap())
        .with_shard(3);
    assert_eq!(
        got,
        [ask, Envelope::new(Kind::Send, Some("after".into()), "")]
    );
}

#[test]
fn version_2_references_and_watch_operations_decode() {
    let mut link = Link::open(&responder());
    let reference = |shard: u16, index: u32, generation: u32| {
        let mut r = vec![3];
        r.extend(shard.to_be_bytes());
        r.extend(index.to_be_bytes());
        r.extend(generation.to_be_bytes());
        r
    };
    // A send to reference #1.4.2 from the peer's #0.9.3, body "hi".
    let mut plain = vec![1, 1, 0];
    plain.extend(reference(1, 4, 2));
    plain.extend(reference(0, 9, 3));
    plain.extend([0, 2, b'h', b'i']);
    // watch (id 5) of "greeter" by #0.9.3; unwatch 5; exited 6, watcher
    // #0.9.3, ended #1.4.2, "panicked\nboom".
    plain.extend([1, 6, 0]);
    plain.extend(5u64.to_be_bytes());
    plain.extend([5, 1, 7]);
    plain.extend(b"greeter");
    plain.extend(reference(0, 9, 3));
    plain.extend([0, 0]);
    plain.extend([1, 6, 0]);
    plain.extend(5u64.to_be_bytes());
    plain.extend([6, 0, 0, 0, 0]);
    plain.extend([1, 6, 0]);
    plain.extend(6u64.to_be_bytes());
    plain.push(7);
    plain.extend(reference(0, 9, 3));
    plain.extend(reference(1, 4, 2));
    plain.extend([0, 13]);
    plain.extend(b"panicked\nboom");
    let (got, err) = link.send(&plain);
    assert_eq!(err, None);
    let r = |shard, index, generation| {
        WorkerAddr::Ref(WireRef {
            shard,
            index,
            generation,
        })
    };
    let control = |id, op| Kind::Control { id, op };
    assert_eq!(
        got,
        [
            Envelope::new(Kind::Send, Some(r(1, 4, 2)), "hi").with_sender(r(0, 9, 3)),
            Envelope::new(control(5, ControlOp::Watch), Some("greeter".into()), "")
                .with_sender(r(0, 9, 3)),
            Envelope::new(control(5, ControlOp::Unwatch), None, ""),
            Envelope::new(
                control(6, ControlOp::Exited),
                Some(r(0, 9, 3)),
                "panicked\nboom"
            )
            .with_sender(r(1, 4, 2)),
        ]
    );
}

#[test]
fn our_encoder_writes_the_documented_bytes() {
    let mut link = Link::open(&responder());
    let reply = Envelope::new(
        Kind::ReplyErr {
            id: 5,
            code: ErrorCode::NoSuchWorker,
        },
        None,
        "gone",
    );
    link.ours.encoder.push(&reply).unwrap();
    link.ours
        .encoder
        .push(&Envelope::heartbeat().with_shard(258))
        .unwrap();
    let frames = link.receive();
    let mut want = vec![1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 5, 2, 0, 0, 0, 4];
    want.extend(b"gone");
    want.extend([1, 5, 0b10, 0, 0, 1, 2, 0, 0]);
    assert_eq!(frames, [want]);
}

#[test]
fn flow_control_envelopes_have_the_documented_bytes() {
    let mut link = Link::open(&responder());
    let credit = Envelope::new(Kind::Credit { bytes: 130 }, Some("w".into()), "");
    let report = Envelope::new(
        Kind::Undeliverable {
            count: 3,
            code: ErrorCode::NoSuchWorker,
        },
        Some("ghost".into()),
        "ghost",
    );
    link.ours.encoder.push(&credit).unwrap();
    link.ours.encoder.push(&report).unwrap();
    let frames = link.receive();
    let mut want = vec![1, 16, 0, 0, 0, 0, 130, 1, 1, b'w', 0, 0, 0];
    want.extend([1, 17, 0, 0, 0, 0, 3, 2, 1, 5]);
    want.extend(b"ghost");
    want.extend([0, 0, 5]);
    want.extend(b"ghost");
    assert_eq!(frames, [want]);
    // And they decode from those bytes.
    let (got, err) = link.send(&frames[0]);
    assert_eq!((got, err), (vec![credit, report], None));
}

fn violation(plaintext: &[u8]) -> ProtocolError {
    let mut link = Link::open(&responder());
    let (got, err) = link.send(plaintext);
    assert!(got.is_empty());
    let err = err.expect("accepted a violation");
    // The decoder stays failed.
    assert_eq!(
        link.send(&whole_send("w", b"ok")),
        (vec![], Some(err.clone()))
    );
    err
}

#[test]
fn a_peer_claiming_an_oversized_message_is_a_violation() {
    // This node accepts 100,000 bytes: a first fragment announcing more is
    // refused before anything is buffered.
    let mut first = vec![2, 1, 0, 0, 0];
    first.extend(100_001u32.to_be_bytes());
    first.extend([0, 1, b'x']);
    assert_eq!(
        violation(&first),
        ProtocolError::TooLarge {
            size: 100_001,
            max: 100_000
        }
    );
    // So is a whole record over a smaller limit.
    let small = node("small", zone("z", Some(common::SECRET))).with_max_message_size(10);
    let mut link = Link::open(&small);
    let (_, err) = link.send(&whole_send("w", &[b'y'; 11]));
    assert_eq!(err, Some(ProtocolError::TooLarge { size: 11, max: 10 }));
}

#[test]
fn broken_records_are_violations() {
    let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
        (
            vec![9],
            ProtocolError::Unknown {
                what: "record type",
                value: 9,
            },
        ),
        (vec![1, 1, 0, 0, 0, 0, 5, b'a'], ProtocolError::Truncated),
        (
            whole_send("w", b"\xff\xfe"),
            ProtocolError::InvalidUtf8("message body"),
        ),
        (
            vec![3, 0, 1, b'a'],
            ProtocolError::Malformed("a fragment continues no fragmented message"),
        ),
        (
            [
                &[2, 1, 0, 0, 0, 0, 0, 0, 9, 0, 1, b'a'][..],
                &whole_send("w", b""),
            ]
            .concat(),
            ProtocolError::Malformed("a new message began before the fragmented one ended"),
        ),
        (
            vec![2, 1, 0, 0, 0, 0, 0, 0, 9, 0, 1, b'a', 3, 0, 0],
            ProtocolError::Malformed("a fragment is empty or longer than the rest of its message"),
        ),
        (
            vec![2, 1, 0, 0, 0, 0, 0, 0, 2, 0, 3, b'a', b'b', b'c'],
            ProtocolError::Malformed("a fragment is empty or longer than the rest of its message"),
        ),
        (
            vec![2, 1, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0xc3, 3, 0, 1, b'('],
            ProtocolError::InvalidUtf8("message body"),
        ),
    ];
    for (plaintext, want) in cases {
        assert_eq!(violation(&plaintext), want, "{plaintext:?}");
    }
}

#[test]
fn a_confirmation_with_content_is_refused() {
    // Run the spec's responder against our initiator, but put an envelope in
    // the confirmation frame.
    let params: snow::params::NoiseParams = "Noise_XX_25519_ChaChaPoly_SHA256".parse().unwrap();
    let key = snow::Builder::new(params.clone())
        .generate_keypair()
        .unwrap();
    let mut hs = snow::Builder::new(params)
        .local_private_key(&key.private)
        .unwrap()
        .prologue(&prologue("open"))
        .unwrap()
        .build_responder()
        .unwrap();
    let (mut ini, first) = Handshake::initiator(&node("ours", zone("open", None))).unwrap();
    let mut buf = vec![0; 65535];
    hs.read_message(&unframe(&mut &first[..]), &mut buf)
        .unwrap();
    let n = hs
        .write_message(&hello((1, 1), 1000, "hand", &[]), &mut buf)
        .unwrap();
    let Ok(Step::Send(msg3)) = ini.feed(&frame(&buf[..n])) else {
        panic!("no message 3")
    };
    hs.read_message(&unframe(&mut &msg3[..]), &mut buf).unwrap();
    let mut t = hs.into_transport_mode().unwrap();
    let n = t
        .write_message(&whole_send("w", b"too early"), &mut buf)
        .unwrap();
    assert!(matches!(
        ini.feed(&frame(&buf[..n])),
        Err(HandshakeError::Unexpected(_))
    ));
}
