//! A quick, criterion-free measurement of the codec on one thread: encode +
//! encrypt + decrypt + decode. Ignored by default; run it in release mode:
//!
//! ```text
//! cargo test --release -p myriad-transport --test throughput -- --ignored --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use common::pair;
use myriad_transport::{Envelope, Kind, Message, WorkerAddr};

/// Sends `count` copies of `envelope` in batches of `batch`, flushing after
/// each batch; returns (encode time, decode time).
fn run(envelope: &Envelope, count: usize, batch: usize) -> (Duration, Duration) {
    let (mut a, mut b) = pair();
    let (mut encode, mut decode) = (Duration::ZERO, Duration::ZERO);
    let mut received = 0;
    for _ in 0..count / batch {
        let start = Instant::now();
        for _ in 0..batch {
            a.encoder.push(envelope).unwrap();
        }
        let bytes = a.encoder.flush().unwrap();
        let middle = Instant::now();
        b.decoder.feed(&bytes);
        while let Some(env) = b.decoder.next_envelope().unwrap() {
            assert_eq!(env.body.len(), envelope.body.len());
            received += 1;
        }
        decode += middle.elapsed();
        encode += middle - start;
    }
    assert_eq!(received, count / batch * batch);
    (encode, decode)
}

fn report(label: &str, envelope: &Envelope, count: usize, batch: usize) {
    let (encode, decode) = run(envelope, count, batch);
    let total = (encode + decode).as_secs_f64();
    let bytes = (count * envelope.body.len()) as f64;
    println!(
        "{label}: {count} msgs in {total:.3} s = {:.2} M msg/s, {:.0} MB/s of bodies \
         (encode+encrypt {:.3} s, decrypt+decode {:.3} s)",
        count as f64 / total / 1e6,
        bytes / total / 1e6,
        encode.as_secs_f64(),
        decode.as_secs_f64(),
    );
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn codec_throughput() {
    let small = Envelope::new(
        Kind::Send,
        Some(WorkerAddr::from("counter")),
        Message::from("x".repeat(64)),
    );
    report("64 B messages, batches of 1000", &small, 1_000_000, 1000);
    report("64 B messages, batches of 64", &small, 1_000_000, 64);
    let big = Envelope::new(
        Kind::Send,
        Some(WorkerAddr::from("sink")),
        Message::from("y".repeat(64 << 10)),
    );
    report("64 KiB messages", &big, 16_000, 16);
}
