//! The round trip of `myriad_http::offload` for an immediately ready future:
//! shard -> tokio runtime -> shard, one call at a time. Prints p50 / p99 / max.

use std::time::Instant;

const WARMUP: usize = 2_000;
const CALLS: usize = 100_000;

fn main() {
    let histogram = glommio::LocalExecutorBuilder::default()
        .io_memory(64 << 10)
        .spawn(|| async {
            let mut histogram =
                hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)
                    .expect("valid histogram bounds");
            for call in 0..WARMUP + CALLS {
                let start = Instant::now();
                let out = myriad_http::offload(async move { call }).await;
                let took = start.elapsed().as_nanos() as u64;
                assert_eq!(out.ok(), Some(call));
                if call >= WARMUP {
                    histogram.saturating_record(took);
                }
            }
            histogram
        })
        .expect("a glommio shard starts")
        .join()
        .expect("the bench shard did not panic");
    println!(
        "offload round trip, ready future, {CALLS} calls: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        histogram.value_at_quantile(0.5) as f64 / 1e3,
        histogram.value_at_quantile(0.99) as f64 / 1e3,
        histogram.max() as f64 / 1e3,
    );
}
