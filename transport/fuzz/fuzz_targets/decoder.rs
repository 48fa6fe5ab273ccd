//! Fuzzes the data-phase decoder: the input's first byte picks raw mode (bytes
//! go straight into the decoder, as from a hostile network) or authentic mode
//! (the rest is cut into frames at 0xFF bytes and each is encrypted by a spec
//! peer, so every byte reaches the record parser).

#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

use common::spec::Link;
use common::{node, pair, zone, SECRET};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let (_, mut b) = pair();
        for piece in rest.chunks(usize::from(mode).max(1)) {
            b.decoder.feed(piece);
            // Raw bytes never authenticate, so nothing may come out.
            assert!(
                !matches!(b.decoder.next_envelope(), Ok(Some(_))),
                "forged an envelope"
            );
        }
    } else {
        let config = node("ours", zone("z", Some(SECRET))).with_max_message_size(70_000);
        let mut link = Link::open(&config);
        let mut failed = None;
        for plaintext in rest.split(|&b| b == 0xff) {
            let (_, err) = link.send(plaintext);
            if let Some(prev) = &failed {
                assert_eq!(
                    err.as_ref(),
                    Some(prev),
                    "a failed decoder must stay failed"
                );
            }
            failed = failed.or(err);
        }
    }
});
