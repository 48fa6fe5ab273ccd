//! The data phase: envelopes through a real encoder and decoder pair, with
//! arbitrary stream splits, big messages, limits and corrupted input.

mod common;

use bytes::{Bytes, BytesMut};
use common::{decode_all, handshake, node, pair, zone, Rng, SECRET};
use myriad_transport::frame::{MAX_FRAME_LEN, MAX_FRAME_PLAINTEXT};
use myriad_transport::{
    ControlOp, EncodeError, Envelope, ErrorCode, Kind, LinkStats, NodeName, ProtocolError,
    WorkerAddr,
};

/// A varied envelope number `i`, with a body of `len` bytes.
fn sample(i: u64, len: usize) -> Envelope {
    let mut body = String::with_capacity(len);
    for ch in "héllo wörld ✓ ".chars().cycle() {
        if body.len() + ch.len_utf8() > len {
            break;
        }
        body.push(ch);
    }
    body.extend(std::iter::repeat_n('x', len - body.len()));
    let kind = match i % 8 {
        0 => Kind::Send,
        1 => Kind::Ask { id: i },
        2 => Kind::ReplyOk { id: i },
        3 => Kind::ReplyErr {
            id: i,
            code: ErrorCode::NoSuchWorker,
        },
        4 => Kind::Heartbeat,
        5 => Kind::Credit { bytes: i as u32 },
        6 => Kind::Undeliverable {
            count: i as u32,
            code: ErrorCode::MailboxFull,
        },
        _ => Kind::Control {
            id: i,
            op: ControlOp::ListWorkers,
        },
    };
    let target = match i % 3 {
        0 => None,
        1 => Some(WorkerAddr::Id(i)),
        _ => Some(WorkerAddr::from(format!("worker-{i}").as_str())),
    };
    let mut env = Envelope::new(kind, target, body);
    if i % 4 == 0 {
        env = env
            .with_sender(WorkerAddr::from("me"))
            .with_sender_node(NodeName::new("alpha").unwrap());
    }
    if i % 5 == 0 {
        env = env.with_shard((i % 7) as u16);
    }
    env
}

/// Feeds `stream` to `link`'s decoder in random pieces, collecting envelopes.
fn decode_chunked(
    link: &mut myriad_transport::Established,
    stream: &[u8],
    rng: &mut Rng,
) -> Vec<Envelope> {
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = (1 + rng.below(3000) as usize).min(rest.len());
        let (part, tail) = rest.split_at(n);
        link.decoder.feed(part);
        rest = tail;
        while let Some(env) = link.decoder.next_envelope().unwrap() {
            out.push(env);
        }
    }
    out
}

#[test]
fn many_envelopes_round_trip_through_random_splits() {
    let (mut a, mut b) = pair();
    let mut rng = Rng(0x5eed);
    let sent: Vec<Envelope> = (0..20_000)
        .map(|i| sample(i, rng.below(200) as usize))
        .collect();
    let mut stream = BytesMut::new();
    for (i, env) in sent.iter().enumerate() {
        a.encoder.push(env).unwrap();
        if i % 997 == 0 {
            stream.extend_from_slice(&a.encoder.flush().unwrap());
        }
    }
    stream.extend_from_slice(&a.encoder.flush().unwrap());
    let received = decode_chunked(&mut b, &stream, &mut rng);
    assert_eq!(received, sent);
    // Packed: hundreds of envelopes per frame.
    let stats = LinkStats::of(&a.encoder, &b.decoder);
    assert_eq!(stats.sent.envelopes, 20_000);
    assert_eq!(stats.received.envelopes, 20_000);
    assert_eq!(stats.sent.frames, stats.received.frames);
    assert!(stats.sent.frames < 100, "{} frames", stats.sent.frames);
    assert_eq!(stats.sent.bytes, stream.len() as u64);
    assert_eq!(stats.received.bytes, stream.len() as u64);
}

#[test]
fn both_directions_work_at_once() {
    let (mut a, mut b) = pair();
    a.encoder.push(&sample(1, 10)).unwrap();
    b.encoder.push(&sample(2, 20)).unwrap();
    let (to_b, to_a) = (a.encoder.flush().unwrap(), b.encoder.flush().unwrap());
    assert_eq!(decode_all(&mut b, &to_b), [sample(1, 10)]);
    assert_eq!(decode_all(&mut a, &to_a), [sample(2, 20)]);
}

#[test]
fn small_bodies_are_zero_copy_slices_of_the_frame() {
    let (mut a, mut b) = pair();
    for i in 0..3 {
        a.encoder.push(&sample(i, 30)).unwrap();
    }
    let got = decode_all(&mut b, &a.encoder.flush().unwrap());
    let ptrs: Vec<usize> = got
        .iter()
        .map(|e| e.body.as_bytes().as_ptr() as usize)
        .collect();
    assert!(
        ptrs.windows(2).all(|w| w[0] < w[1] && w[1] - w[0] < 100),
        "{ptrs:?}"
    );
}

#[test]
fn messages_larger_than_a_frame_are_reassembled() {
    let (mut a, mut b) = pair();
    let sizes = [
        MAX_FRAME_PLAINTEXT - 20,
        MAX_FRAME_PLAINTEXT - 7,
        MAX_FRAME_PLAINTEXT,
        MAX_FRAME_PLAINTEXT + 1,
        3 * MAX_FRAME_LEN + 5,
        1 << 20,
        5_000_000,
    ];
    let mut sent = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        // Small envelopes around big ones keep their order.
        sent.push(sample(i as u64, 5));
        sent.push(sample(i as u64, len));
    }
    for env in &sent {
        a.encoder.push(env).unwrap();
    }
    let stream = a.encoder.flush().unwrap();
    let received = decode_chunked(&mut b, &stream, &mut Rng(7));
    assert_eq!(received.len(), sent.len());
    for (got, want) in received.iter().zip(&sent) {
        assert_eq!(got, want);
    }
}

#[test]
fn the_sender_refuses_oversized_messages_and_stays_usable() {
    let small = node("a", zone("z", None)).with_max_message_size(1000);
    let (a, b) = handshake(&small, &node("b", zone("z", None)));
    let (mut a, mut b) = (a.unwrap(), b.unwrap());
    // The limit is enforced on both sides of a link: the peer's limit binds b too.
    for link in [&mut a, &mut b] {
        let err = link.encoder.push(&sample(0, 1001)).unwrap_err();
        assert_eq!(
            err,
            EncodeError::TooLarge {
                size: 1001,
                max: 1000
            }
        );
        assert!(err
            .to_string()
            .contains("exceeds this link's maximum message size of 1000"));
        assert_eq!(link.encoder.pending_len(), 0);
        link.encoder.push(&sample(0, 1000)).unwrap();
    }
    assert_eq!(
        decode_all(&mut b, &a.encoder.flush().unwrap()),
        [sample(0, 1000)]
    );
    assert_eq!(
        decode_all(&mut a, &b.encoder.flush().unwrap()),
        [sample(0, 1000)]
    );
    // The default limit is 16 MiB.
    let (mut c, _) = pair();
    let big = Envelope::new(Kind::Send, None, "x".repeat((16 << 20) + 1));
    assert!(matches!(
        c.encoder.push(&big),
        Err(EncodeError::TooLarge { max: 16777216, .. })
    ));
}

#[test]
fn bad_names_are_refused_before_anything_is_queued() {
    let (mut a, _) = pair();
    let env = Envelope::new(Kind::Send, Some(WorkerAddr::from("")), "x");
    assert!(matches!(
        a.encoder.push(&env),
        Err(EncodeError::BadName { .. })
    ));
    assert_eq!(a.encoder.pending_len(), 0);
    assert!(a.encoder.flush().unwrap().is_empty());
}

/// A stream of several frames, with the envelopes it carries.
fn frames() -> (
    Box<myriad_transport::Established>,
    Box<myriad_transport::Established>,
    Bytes,
    Vec<Envelope>,
) {
    let (mut a, b) = pair();
    let sent: Vec<Envelope> = (0..6).map(|i| sample(i, 40)).collect();
    let mut stream = BytesMut::new();
    for env in &sent {
        a.encoder.push(env).unwrap();
        stream.extend_from_slice(&a.encoder.flush().unwrap());
    }
    (a, b, stream.freeze(), sent)
}

/// Decodes until the decoder needs more bytes or fails.
fn drain(link: &mut myriad_transport::Established) -> (Vec<Envelope>, Result<(), ProtocolError>) {
    let mut got = Vec::new();
    loop {
        match link.decoder.next_envelope() {
            Ok(Some(env)) => got.push(env),
            Ok(None) => return (got, Ok(())),
            Err(e) => return (got, Err(e)),
        }
    }
}

/// Positions to damage or cut at: the first bytes (length prefix, first
/// record) and a sample of the rest. Every try needs a fresh session, and an
/// unoptimised X25519 makes those slow in debug builds.
fn positions(len: usize) -> Vec<usize> {
    let mut rng = Rng(len as u64);
    (0..8)
        .chain((0..40).map(|_| rng.below(len as u64) as usize))
        .collect()
}

#[test]
fn any_flipped_bit_is_caught_and_nothing_wrong_is_delivered() {
    let len = frames().2.len();
    for (n, pos) in positions(len).into_iter().enumerate() {
        let (_, mut b, stream, sent) = frames();
        let mut bad = stream.to_vec();
        bad[pos] ^= 1 << (n % 8);
        b.decoder.feed(&bad);
        let (got, end) = drain(&mut b);
        // Only envelopes from frames before the damage come out, intact.
        assert!(sent.starts_with(&got), "flip at {pos}");
        assert!(got.len() < sent.len(), "flip at {pos} went unnoticed");
        match end {
            // A damaged length prefix may leave the decoder waiting for more
            // bytes; a real link then fails on the next frame or times out.
            Ok(()) => assert!(b.decoder.buffered_len() > 0),
            Err(ProtocolError::Decrypt | ProtocolError::ShortFrame(_)) => {}
            Err(other) => panic!("flip at {pos}: {other:?}"),
        }
    }
}

#[test]
fn a_tampered_frame_is_a_decrypt_error_and_the_decoder_stays_failed() {
    let (a, mut b, stream, _) = frames();
    let mut bad = stream.to_vec();
    bad[10] ^= 1;
    b.decoder.feed(&bad);
    assert_eq!(b.decoder.next_envelope(), Err(ProtocolError::Decrypt));
    assert_eq!(b.decoder.next_envelope(), Err(ProtocolError::Decrypt));
    b.decoder.feed(&stream);
    assert_eq!(b.decoder.next_envelope(), Err(ProtocolError::Decrypt));
    let stats = LinkStats::of(&a.encoder, &b.decoder);
    assert_eq!((stats.decrypt_failures, stats.protocol_errors), (1, 0));
}

#[test]
fn replayed_or_dropped_frames_fail() {
    for replay in [true, false] {
        let (_, mut b, stream, sent) = frames();
        let first_len = 2 + usize::from(u16::from_be_bytes([stream[0], stream[1]]));
        let (first, rest) = stream.split_at(first_len);
        let bad = if replay {
            [first, first].concat()
        } else {
            rest.to_vec()
        };
        b.decoder.feed(&bad);
        let (got, end) = drain(&mut b);
        assert_eq!(got, &sent[..usize::from(replay)]);
        assert_eq!(end, Err(ProtocolError::Decrypt));
    }
}

#[test]
fn a_truncated_stream_delivers_whole_frames_only_then_resumes() {
    let len = frames().2.len();
    for cut in positions(len) {
        let (_, mut b, stream, sent) = frames();
        b.decoder.feed(&stream[..cut]);
        let (got, end) = drain(&mut b);
        assert_eq!(end, Ok(()));
        assert!(
            got.len() < sent.len() && sent.starts_with(&got),
            "cut at {cut}"
        );
        b.decoder.feed(&stream[cut..]);
        let (rest, end) = drain(&mut b);
        assert_eq!(end, Ok(()));
        assert_eq!([got, rest].concat(), sent);
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut rng = Rng(99);
    for round in 0..30 {
        let (_, mut b) = pair();
        let len = rng.below(300) as usize;
        let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        b.decoder.feed(&junk);
        match b.decoder.next_envelope() {
            Ok(None) | Err(ProtocolError::Decrypt | ProtocolError::ShortFrame(_)) => {}
            other => panic!("round {round}: {other:?}"),
        }
    }
    // A frame shorter than a tag.
    let (_, mut b) = pair();
    b.decoder.feed(&[0, 3, 1, 2, 3]);
    assert_eq!(b.decoder.next_envelope(), Err(ProtocolError::ShortFrame(3)));
}

#[test]
fn a_frame_from_another_session_fails() {
    let (mut a, _) = pair();
    let (_, mut other) = pair();
    a.encoder.push(&sample(1, 10)).unwrap();
    other.decoder.feed(&a.encoder.flush().unwrap());
    assert_eq!(other.decoder.next_envelope(), Err(ProtocolError::Decrypt));
}

#[test]
fn heartbeats_and_empty_bodies_travel() {
    let (mut a, mut b) = pair();
    a.encoder.push(&Envelope::heartbeat()).unwrap();
    a.encoder
        .push(&Envelope::new(Kind::Send, Some(WorkerAddr::Id(1)), ""))
        .unwrap();
    let got = decode_all(&mut b, &a.encoder.flush().unwrap());
    assert_eq!(
        got,
        [
            Envelope::heartbeat(),
            Envelope::new(Kind::Send, Some(WorkerAddr::Id(1)), "")
        ]
    );
    assert!(a.encoder.flush().unwrap().is_empty());
}

#[test]
fn zone_secret_links_and_open_links_both_carry_data() {
    for secret in [None, Some(SECRET)] {
        let (a, b) = handshake(&node("a", zone("z", secret)), &node("b", zone("z", secret)));
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        a.encoder.push(&sample(3, 3)).unwrap();
        assert_eq!(
            decode_all(&mut b, &a.encoder.flush().unwrap()),
            [sample(3, 3)]
        );
    }
}
