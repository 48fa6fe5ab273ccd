//! What refusing a handshake costs the responder, with criterion: only the
//! responder's own calls are timed (the initiator's work is not).
//!
//! - `wrong_zone_name`: with a secret, message 1 of a peer from another zone
//!   fails to decrypt (no Diffie-Hellman yet);
//! - `wrong_secret`: the responder answers message 1 (message 2) and refuses
//!   message 3, which fails to decrypt;
//! - `accepted`: a handshake that succeeds, for comparison.
//!
//! Run with `cargo bench -p myriad-link --bench handshake`.

use std::time::{Duration, Instant};

use criterion::Criterion;
use myriad_link::{Handshake, LinkConfig, NodeName, StaticKeypair, Step, ZoneConfig, ZoneSecret};

/// A node called `name` of zone `zone` with the secret `secret`.
fn node(name: &str, zone: &str, secret: &str) -> LinkConfig {
    let secret = ZoneSecret::from_bytes(secret).expect("a long enough secret");
    LinkConfig::new(
        NodeName::new(name).expect("a valid name"),
        StaticKeypair::generate().expect("a key"),
        ZoneConfig::new(zone)
            .expect("a valid zone")
            .with_secret(&secret),
    )
}

/// The bytes of a step that sends.
fn sent(step: Step) -> Vec<u8> {
    match step {
        Step::Send(bytes) => bytes.to_vec(),
        other => panic!("expected bytes to send, got {other:?}"),
    }
}

/// Where the responder is to refuse a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    AtMessage1,
    AtMessage3,
    None,
}

/// The responder's time for one handshake from `initiator`, which must end
/// as `expected` says.
fn respond(responder: &LinkConfig, initiator: &LinkConfig, expected: Refusal) -> Duration {
    let (mut ini, first) = Handshake::initiator(initiator).expect("an initiator");
    let started = Instant::now();
    let mut res = Handshake::responder(responder).expect("a responder");
    let msg1 = res.feed(&first);
    let mut spent = started.elapsed();
    assert_eq!(msg1.is_err(), expected == Refusal::AtMessage1);
    let Ok(step) = msg1 else {
        return spent;
    };
    let third = sent(ini.feed(&sent(step)).expect("message 2 is accepted"));
    let started = Instant::now();
    let msg3 = res.feed(&third);
    spent += started.elapsed();
    assert_eq!(msg3.is_err(), expected == Refusal::AtMessage3);
    spent
}

fn main() {
    let me = node("me", "zone", "the zone secret, at least 16 bytes");
    let other_zone = node("other", "elsewhere", "the zone secret, at least 16 bytes");
    let other_secret = node("other", "zone", "not the secret, but long enough");
    let member = node("member", "zone", "the zone secret, at least 16 bytes");
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = c.benchmark_group("refused_handshake");
    for (name, initiator, expected) in [
        ("wrong_zone_name", &other_zone, Refusal::AtMessage1),
        ("wrong_secret", &other_secret, Refusal::AtMessage3),
        ("accepted", &member, Refusal::None),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| respond(&me, initiator, expected)).sum())
        });
    }
    group.finish();
    c.final_summary();
}
