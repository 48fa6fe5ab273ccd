//! Fuzzes both handshake roles with arbitrary peer bytes, split at arbitrary
//! points: they may wait, answer or fail, but never panic or complete.

#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

use common::{node, zone, SECRET};
use libfuzzer_sys::fuzz_target;
use myriad_transport::{Handshake, Step};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let config = node("ours", zone("z", (mode & 1 == 1).then_some(SECRET)));
    let mut hs = if mode & 2 == 0 {
        Handshake::responder(&config).unwrap()
    } else {
        Handshake::initiator(&config).unwrap().0
    };
    for piece in rest.chunks(usize::from(mode >> 2).max(1)) {
        if let Ok(Step::Done(_)) = hs.feed(piece) {
            panic!("garbage completed a handshake");
        }
    }
});
