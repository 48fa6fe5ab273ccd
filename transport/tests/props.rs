//! Property tests: arbitrary envelopes survive arbitrary stream splits, and
//! arbitrary bytes (raw, or encrypted so they reach the record parser) make
//! the decoder and the handshake fail cleanly, never panic.

mod common;

use bytes::BytesMut;
use common::spec::Link;
use common::{node, pair, zone, SECRET};
use myriad_transport::{
    ControlOp, Envelope, ErrorCode, Handshake, HandshakeError, Kind, Message, NodeName, Step,
    WorkerAddr,
};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Send),
        Just(Kind::Heartbeat),
        any::<u64>().prop_map(|id| Kind::Ask { id }),
        any::<u64>().prop_map(|id| Kind::ReplyOk { id }),
        (any::<u64>(), prop::sample::select(ErrorCode::ALL))
            .prop_map(|(id, code)| Kind::ReplyErr { id, code }),
        (any::<u64>(), prop::sample::select(ControlOp::ALL))
            .prop_map(|(id, op)| Kind::Control { id, op }),
        any::<u32>().prop_map(|bytes| Kind::Credit { bytes }),
        (any::<u32>(), prop::sample::select(ErrorCode::ALL))
            .prop_map(|(count, code)| Kind::Undeliverable { count, code }),
    ]
}

fn addr() -> impl Strategy<Value = Option<WorkerAddr>> {
    prop_oneof![
        Just(None),
        any::<u64>().prop_map(|id| Some(WorkerAddr::Id(id))),
        any::<(u16, u32, u32)>().prop_map(|(shard, index, generation)| {
            Some(WorkerAddr::Ref(myriad_engine::plugin::WireRef {
                shard,
                index,
                generation,
            }))
        }),
        "\\PC{1,60}"
            .prop_filter("1 to 255 bytes", |s| s.len() <= 255)
            .prop_map(|s| Some(WorkerAddr::Name(Message::from(s)))),
    ]
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "\\PC{0,100}",
        1 => (60_000usize..200_000).prop_map(|n| "ä".repeat(n / 2)),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        kind(),
        addr(),
        addr(),
        prop::option::of("[a-z0-9.-]{1,20}"),
        prop::option::of(any::<u16>()),
        body(),
    )
        .prop_map(|(kind, target, sender, node, shard, body)| Envelope {
            kind,
            target,
            sender,
            sender_node: node.map(|n| NodeName::new(&n).unwrap()),
            shard,
            body: Message::from(body),
        })
}

/// Splits `len` bytes at the given cut points (each taken modulo `len + 1`).
fn pieces(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    cuts.extend([0, len]);
    cuts.sort_unstable();
    cuts.windows(2).map(|w| (w[0], w[1])).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn envelopes_round_trip_through_any_split(
        sent in prop::collection::vec(envelope(), 0..60),
        flush_every in 1usize..20,
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let (mut a, mut b) = pair();
        let mut stream = BytesMut::new();
        for (i, env) in sent.iter().enumerate() {
            a.encoder.push(env).unwrap();
            if i % flush_every == 0 {
                stream.extend_from_slice(&a.encoder.flush().unwrap());
            }
        }
        stream.extend_from_slice(&a.encoder.flush().unwrap());
        let mut received = Vec::new();
        for (from, to) in pieces(stream.len(), &cuts) {
            b.decoder.feed(&stream[from..to]);
            while let Some(env) = b.decoder.next_envelope().unwrap() {
                received.push(env);
            }
        }
        prop_assert_eq!(received, sent);
        prop_assert_eq!(b.decoder.buffered_len(), 0);
    }

    #[test]
    fn raw_garbage_never_yields_an_envelope(
        junk in prop::collection::vec(any::<u8>(), 0..3000),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let (_, mut b) = pair();
        for (from, to) in pieces(junk.len(), &cuts) {
            b.decoder.feed(&junk[from..to]);
            match b.decoder.next_envelope() {
                Ok(None) => {}
                Ok(Some(env)) => prop_assert!(false, "forged {:?}", env),
                Err(_) => prop_assert!(b.decoder.next_envelope().is_err()),
            }
        }
    }

    #[test]
    fn arbitrary_authentic_plaintext_fails_cleanly(
        frames in prop::collection::vec(plaintext(), 1..6),
    ) {
        // The frames decrypt, so every byte reaches the record parser.
        let mut link = Link::open(&node("ours", zone("z", Some(SECRET))).with_max_message_size(70_000));
        let mut failed = None;
        for plain in &frames {
            let (_, err) = link.send(plain);
            if let Some(prev) = &failed {
                prop_assert_eq!(err.as_ref(), Some(prev), "a failed decoder must stay failed");
            }
            failed = failed.or(err);
        }
    }

    #[test]
    fn a_responder_fed_garbage_fails_cleanly(
        junk in prop::collection::vec(any::<u8>(), 0..400),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        secret in any::<bool>(),
    ) {
        let config = node("ours", zone("z", secret.then_some(SECRET)));
        let mut res = Handshake::responder(&config).unwrap();
        let mut failed = false;
        for (from, to) in pieces(junk.len(), &cuts) {
            match res.feed(&junk[from..to]) {
                Ok(Step::Wait | Step::Send(_)) => prop_assert!(!failed),
                Ok(Step::Done(_)) => prop_assert!(false, "garbage completed a handshake"),
                Err(HandshakeError::Finished) => prop_assert!(failed),
                Err(_) => { prop_assert!(!failed); failed = true; }
            }
        }
    }

    #[test]
    fn an_initiator_fed_garbage_fails_cleanly(
        junk in prop::collection::vec(any::<u8>(), 0..400),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let config = node("ours", zone("z", Some(SECRET)));
        let (mut ini, _) = Handshake::initiator(&config).unwrap();
        for (from, to) in pieces(junk.len(), &cuts) {
            let step = ini.feed(&junk[from..to]);
            prop_assert!(!matches!(step, Ok(Step::Done(_)) | Ok(Step::Send(_))));
        }
    }

    #[test]
    fn a_damaged_stream_delivers_only_what_was_sent(
        sent in prop::collection::vec(envelope(), 1..30),
        at in any::<usize>(),
        xor in 1u8..=255,
    ) {
        let (mut a, mut b) = pair();
        let mut stream = BytesMut::new();
        for env in &sent {
            a.encoder.push(env).unwrap();
            stream.extend_from_slice(&a.encoder.flush().unwrap());
        }
        let at = at % stream.len();
        stream[at] ^= xor;
        b.decoder.feed(&stream);
        let mut received = Vec::new();
        while let Ok(Some(env)) = b.decoder.next_envelope() {
            received.push(env);
        }
        prop_assert!(received.len() < sent.len());
        prop_assert!(sent.starts_with(&received));
    }
}

/// Plaintext made of record-ish pieces: small type/kind/flag/tag bytes,
/// short and long big-endian lengths, and random runs.
fn plaintext() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        (0u8..8).prop_map(|b| vec![b]),
        (0u16..300).prop_map(|n| n.to_be_bytes().to_vec()),
        any::<u32>().prop_map(|n| (n % 200_000).to_be_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}
