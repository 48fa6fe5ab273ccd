//! Handler spans: with `trace` on for the engine, each poll of a worker's
//! run is a span `run` with its worker and shard, and each message handled
//! in it an event `handle` with the message's size.

#[path = "common/captured_log.rs"]
mod captured_log;
mod cluster;

use std::time::Duration;

use captured_log::CapturedLog;
use cluster::Greeter;
use myriad::{Node, NodeConfig};

#[test]
fn a_handled_message_is_an_event_in_its_workers_run_span() {
    let log = CapturedLog::install("myriad_engine::worker=trace");
    let node = Node::spawn(
        NodeConfig::default()
            .name("spans")
            .shards(2)
            .pin_shards(false),
    )
    .unwrap();
    let echo = node.spawn_on(1, Greeter).unwrap();
    let answer = node
        .send_and_receive(echo, "hello", Duration::from_secs(30))
        .unwrap();
    assert_eq!(answer, "Hello, hello from spans!");
    node.shutdown();
    let span = format!("run{{worker={echo} shard=1}}");
    let events = log.lines_with(&span);
    let event = events
        .iter()
        .find(|l| l.contains("handle"))
        .unwrap_or_else(|| panic!("no handle event in {span}: {events:?}"));
    assert!(event.contains("size=5"), "{event}");
}
