//! Handshakes between two real `Handshake`s: success in both directions with
//! and without a zone secret, and every way a peer is refused.

mod common;

use common::{handshake, handshake_chunked, node, pair, zone, SECRET};
use myriad_transport::stats::HandshakeFailure;
use myriad_transport::{
    Envelope, Handshake, HandshakeError, Kind, LinkConfig, StaticKeypair, Step, ZoneConfig,
    MAX_ADVERTISED_KINDS, PROTOCOL_VERSION,
};

fn check_success(a: &LinkConfig, b: &LinkConfig, chunk: usize) {
    let (ini, res) = handshake_chunked(a, b, chunk);
    let (ini, res) = (ini.unwrap(), res.unwrap());
    assert_eq!(ini.peer.name, *b.node());
    assert_eq!(res.peer.name, *a.node());
    assert_eq!(ini.peer.public_key, *b.keypair().public_key());
    assert_eq!(res.peer.public_key, *a.keypair().public_key());
    assert_eq!(ini.peer.version, PROTOCOL_VERSION);
    assert_eq!(res.peer.version, PROTOCOL_VERSION);
}

#[test]
fn succeeds_both_ways_without_a_secret() {
    let (a, b) = (node("a", zone("z", None)), node("b", zone("z", None)));
    check_success(&a, &b, usize::MAX);
    check_success(&b, &a, usize::MAX);
}

#[test]
fn succeeds_both_ways_with_a_secret() {
    let (a, b) = (
        node("a", zone("z", Some(SECRET))),
        node("b", zone("z", Some(SECRET))),
    );
    check_success(&a, &b, usize::MAX);
    check_success(&b, &a, usize::MAX);
}

#[test]
fn succeeds_when_bytes_arrive_one_at_a_time() {
    let (a, b) = (
        node("a", zone("z", Some(SECRET))),
        node("b", zone("z", Some(SECRET))),
    );
    for chunk in [1, 2, 3, 7, 50] {
        check_success(&a, &b, chunk);
    }
}

#[test]
fn peer_info_carries_shard_incarnation_and_limits() {
    let a = node("a", zone("z", None))
        .with_shard(1, 2)
        .with_incarnation(77)
        .with_max_message_size(1000);
    let b = node("b", zone("z", None))
        .with_shard(3, 4)
        .with_incarnation(88);
    let (ini, res) = handshake(&a, &b);
    let (ini, res) = (ini.unwrap(), res.unwrap());
    assert_eq!(
        (ini.peer.shard, ini.peer.shards, ini.peer.incarnation),
        (3, 4, 88)
    );
    assert_eq!(
        (res.peer.shard, res.peer.shards, res.peer.incarnation),
        (1, 2, 77)
    );
    assert_eq!(res.peer.max_message_size, 1000);
    // Each side sends at most what the other accepts.
    assert_eq!(ini.encoder.max_message_size(), 1000);
    assert_eq!(res.encoder.max_message_size(), 1000);
}

#[test]
fn peer_info_carries_the_virtual_kinds_each_side_registered() {
    let long = "k".repeat(256);
    let a = node("a", zone("z", None)).with_virtual_kinds(["agent".into(), String::new(), long]);
    let many = (0..100).map(|i| format!("kind-{i}"));
    let b = node("b", zone("z", None)).with_virtual_kinds(many);
    assert_eq!(
        a.virtual_kinds(),
        ["agent"],
        "empty and over-long kinds are left out"
    );
    assert_eq!(b.virtual_kinds().len(), MAX_ADVERTISED_KINDS);
    let (ini, res) = handshake(&a, &b);
    let (ini, res) = (ini.unwrap(), res.unwrap());
    assert_eq!(res.peer.virtual_kinds, ["agent"]);
    assert_eq!(ini.peer.virtual_kinds, b.virtual_kinds());
    // A node that registered none says so.
    let c = node("c", zone("z", None));
    let (ini, _) = handshake(&a, &c);
    assert!(ini.unwrap().peer.virtual_kinds.is_empty());
}

#[test]
fn a_wrong_secret_fails_on_both_sides_with_nothing_delivered() {
    let a = node("a", zone("z", Some(SECRET)));
    let b = node("b", zone("z", Some("another secret of the zone")));
    let (ini, res) = handshake(&a, &b);
    // The responder sees the wrong key at message 3 and closes; the initiator,
    // which never got its confirmation, learns it was rejected.
    assert!(
        matches!(res, Err(HandshakeError::Decrypt)),
        "{:?}",
        res.err()
    );
    assert!(
        matches!(ini, Err(HandshakeError::Rejected)),
        "{:?}",
        ini.err()
    );
}

#[test]
fn a_secret_on_one_side_only_fails() {
    let with = node("a", zone("z", Some(SECRET)));
    let without = node("b", zone("z", None));
    // The responder tells from the length of message 1 (XXpsk3 appends the tag
    // of an encrypted empty payload) and closes; the initiator sees the close.
    for (a, b, local_has_secret) in [(&with, &without, false), (&without, &with, true)] {
        let (ini, res) = handshake(a, b);
        match res {
            Err(HandshakeError::SecretMismatch {
                local_has_secret: l,
            }) => assert_eq!(l, local_has_secret),
            other => panic!("{:?}", other.err()),
        }
        assert!(
            matches!(ini, Err(HandshakeError::Closed)),
            "{:?}",
            ini.err()
        );
    }
}

#[test]
fn another_zone_name_fails() {
    // Without a secret, the initiator notices in message 2...
    let (ini, res) = handshake(&node("a", zone("z1", None)), &node("b", zone("z2", None)));
    assert!(matches!(ini, Err(HandshakeError::Decrypt)));
    assert!(matches!(res, Err(HandshakeError::Rejected)));
    // ...with one, the responder already in message 1.
    let (ini, res) = handshake(
        &node("a", zone("z1", Some(SECRET))),
        &node("b", zone("z2", Some(SECRET))),
    );
    assert!(matches!(ini, Err(HandshakeError::Closed)));
    assert!(matches!(res, Err(HandshakeError::Decrypt)));
}

fn pinned(name: &str, keys: &[&LinkConfig]) -> LinkConfig {
    let zone =
        zone("z", Some(SECRET)).with_pinned_keys(keys.iter().map(|c| *c.keypair().public_key()));
    node(name, zone)
}

#[test]
fn pinned_keys_admit_only_their_owners() {
    let stranger = node("stranger", zone("z", Some(SECRET)));
    let friend = node("friend", zone("z", Some(SECRET)));
    let strict = pinned("strict", &[&friend]);
    // Pinned and admitted, whichever side dials.
    assert!(handshake(&friend, &strict).0.is_ok());
    assert!(handshake(&strict, &friend).0.is_ok());
    // A responder that does not pin the initiator refuses it at message 3.
    let (ini, res) = handshake(&stranger, &strict);
    match res {
        Err(HandshakeError::NotPinned { name, key }) => {
            assert_eq!(name.as_str(), "stranger");
            assert_eq!(key, *stranger.keypair().public_key());
        }
        other => panic!("{:?}", other.err()),
    }
    assert!(matches!(ini, Err(HandshakeError::Rejected)));
    // An initiator that does not pin the responder refuses it at message 2.
    let (ini, res) = handshake(&strict, &stranger);
    assert!(matches!(ini, Err(HandshakeError::NotPinned { .. })));
    assert!(matches!(res, Err(HandshakeError::Rejected)));
    let err = handshake(&strict, &stranger).0.err().unwrap().to_string();
    assert!(err.contains("does not pin"), "{err}");
}

#[test]
fn a_node_that_dials_itself_notices() {
    let zone = ZoneConfig::new("z").unwrap();
    let me = node("me", zone);
    let (ini, _) = handshake(&me, &me);
    assert!(matches!(ini, Err(HandshakeError::SelfConnection)));
    let twin = LinkConfig::new(
        "twin".parse().unwrap(),
        me.keypair().clone(),
        me.zone().clone(),
    );
    assert!(matches!(
        handshake(&me, &twin).0,
        Err(HandshakeError::SelfConnection)
    ));
}

#[test]
fn a_peer_that_claims_this_nodes_name_with_another_key_is_refused() {
    let zone = zone("z", Some(SECRET));
    let (me, impostor) = (node("me", zone.clone()), node("me", zone));
    // Both ends run the same check on the other's payload: the initiator sees
    // the responder's claim first (message 2) and gives up; the responder is
    // left with a closed connection.
    let (ini, res) = handshake(&impostor, &me);
    assert!(
        matches!(&ini, Err(HandshakeError::OwnName { name, key })
            if name.as_str() == "me" && key == me.keypair().public_key()),
        "{ini:?}"
    );
    assert!(res.is_err(), "{res:?}");
}

#[test]
fn a_finished_or_failed_handshake_refuses_more_input() {
    let (a, b) = (node("a", zone("z", None)), node("b", zone("z", None)));
    let (mut ini, first) = Handshake::initiator(&a).unwrap();
    let mut res = Handshake::responder(&b).unwrap();
    let Ok(Step::Send(msg2)) = res.feed(&first) else {
        panic!("no message 2")
    };
    let Ok(Step::Send(msg3)) = ini.feed(&msg2) else {
        panic!("no message 3")
    };
    let Ok(Step::Done(_)) = res.feed(&msg3) else {
        panic!("responder not done")
    };
    assert!(matches!(res.feed(b"more"), Err(HandshakeError::Finished)));
    // A failed handshake stays failed.
    let mut res = Handshake::responder(&b).unwrap();
    assert!(res.feed(&[0, 3, 1, 2, 3]).is_err());
    assert!(matches!(res.feed(&first), Err(HandshakeError::Finished)));
}

#[test]
fn message_one_must_be_a_bare_ephemeral_key() {
    let b = node("b", zone("z", None));
    let mut res = Handshake::responder(&b).unwrap();
    let err = res.feed(&[0, 3, 1, 2, 3]).err().unwrap();
    assert!(matches!(err, HandshakeError::Malformed(_)), "{err:?}");
    let mut res = Handshake::responder(&b).unwrap();
    let mut msg = vec![0, 40];
    msg.extend([7; 40]);
    assert!(matches!(res.feed(&msg), Err(HandshakeError::Malformed(_))));
}

#[test]
fn eof_before_anything_is_a_plain_close() {
    let b = node("b", zone("z", None));
    let mut res = Handshake::responder(&b).unwrap();
    assert!(matches!(res.feed(&[0, 32, 1]), Ok(Step::Wait)));
    assert!(matches!(res.peer_closed(), HandshakeError::Closed));
}

#[test]
fn data_right_behind_the_confirmation_is_kept_for_the_decoder() {
    let (a, b) = (
        node("a", zone("z", Some(SECRET))),
        node("b", zone("z", Some(SECRET))),
    );
    let (mut ini, first) = Handshake::initiator(&a).unwrap();
    let mut res = Handshake::responder(&b).unwrap();
    let Ok(Step::Send(msg2)) = res.feed(&first) else {
        panic!()
    };
    let Ok(Step::Send(msg3)) = ini.feed(&msg2) else {
        panic!()
    };
    let Ok(Step::Done(mut responder)) = res.feed(&msg3) else {
        panic!()
    };
    // The responder may send data at once, in the same write as its confirmation.
    responder
        .encoder
        .push(&Envelope::new(Kind::Send, Some("w".into()), "early"))
        .unwrap();
    let bytes = responder.encoder.flush().unwrap();
    let Ok(Step::Done(mut initiator)) = ini.feed(&bytes) else {
        panic!()
    };
    let env = initiator.decoder.next_envelope().unwrap().unwrap();
    assert_eq!(env.body.as_str(), "early");
    assert!(initiator.decoder.next_envelope().unwrap().is_none());
}

#[test]
fn keys_loaded_from_files_work_in_handshakes() {
    let dir = std::env::temp_dir().join(format!("myriad-hs-keys-{}", std::process::id()));
    let key = StaticKeypair::load_or_generate(dir.join("a.key")).unwrap();
    let a = LinkConfig::new("a".parse().unwrap(), key, zone("z", None));
    let (ini, _) = handshake(&a, &node("b", zone("z", None)));
    assert!(ini.is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_default_pair_is_connected() {
    let (a, b) = pair();
    assert_eq!(a.peer.name.as_str(), "beta");
    assert_eq!(b.peer.name.as_str(), "alpha");
}

#[test]
fn every_way_of_being_outside_the_zone_counts_as_the_zone_reason() {
    let friend = node("friend", zone("z", Some(SECRET)));
    let stranger = node("stranger", zone("z", Some(SECRET)));
    let cases = [
        (
            friend.clone(),
            node("b", zone("z", Some("another secret of the zone"))),
        ),
        (friend.clone(), node("b", zone("z", None))),
        (node("a", zone("z", None)), friend.clone()),
        (node("a", zone("z1", None)), node("b", zone("z2", None))),
        (
            node("a", zone("z1", Some(SECRET))),
            node("b", zone("z2", Some(SECRET))),
        ),
        (stranger.clone(), pinned("strict", &[&friend])),
        (pinned("strict", &[&friend]), stranger.clone()),
    ];
    for (a, b) in &cases {
        let (ini, res) = handshake(a, b);
        let mut reasons = [ini.unwrap_err().reason(), res.unwrap_err().reason()];
        reasons.sort_by_key(|r| r.index());
        // The side that finds out counts `zone`; the other sees the close.
        assert!(
            matches!(
                reasons,
                [
                    HandshakeFailure::Zone,
                    HandshakeFailure::Closed | HandshakeFailure::Rejected
                ]
            ),
            "{} -> {}: {reasons:?}",
            a.node(),
            b.node()
        );
    }
}

#[test]
fn other_failures_have_their_own_reasons() {
    let a = node("a", zone("z", None));
    let same_name = node("a", zone("z", None));
    let (ini, _) = handshake(&a, &same_name);
    assert_eq!(ini.unwrap_err().reason(), HandshakeFailure::Identity);
    let mut res = Handshake::responder(&a).unwrap();
    let err = res.feed(&[0, 3, 1, 2, 3]).unwrap_err();
    assert_eq!(err.reason(), HandshakeFailure::Malformed);
    assert_eq!(res.peer_closed().reason(), HandshakeFailure::Other);
    let mut res = Handshake::responder(&a).unwrap();
    assert_eq!(res.peer_closed().reason(), HandshakeFailure::Closed);
}
