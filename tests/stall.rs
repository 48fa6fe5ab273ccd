//! A handler that blocks its shard is named: the watchdog logs the stall
//! while it lasts, the shard logs the worker's name and how long it held
//! the shard once it is back, and `metrics()` counts one stall.

#[path = "common/captured_log.rs"]
mod captured_log;
mod cluster;

use std::time::Duration;

use captured_log::CapturedLog;
use cluster::{wait_until, LONG};
use myriad::{BoxError, Context, Message, Node, NodeConfig, Worker};

/// How long the handler blocks at least.
const BLOCK: Duration = Duration::from_millis(50);
/// Above any preemption a loaded test machine inflicts on an idle shard.
const THRESHOLD: Duration = Duration::from_millis(30);

/// Blocks its shard's thread for [`BLOCK`], then until released.
struct Blocker(flume::Receiver<()>);

impl Worker for Blocker {
    async fn handle_message(&mut self, _: &mut Context, _: Message) -> Result<(), BoxError> {
        std::thread::sleep(BLOCK);
        self.0.recv()?;
        Ok(())
    }
}

#[test]
fn a_blocking_handler_is_one_stall_logged_with_its_worker() {
    let log = CapturedLog::install("warn");
    let config = NodeConfig::default()
        .shards(2)
        .pin_shards(false)
        .stall_threshold(THRESHOLD);
    let node = Node::spawn(config).unwrap();
    let (release, released) = flume::bounded(1);
    let blocker = node.start_worker("blocker", Blocker(released)).unwrap();
    node.send("blocker", "block").unwrap();

    // While it blocks: the watchdog's warning, with the worker's reference.
    let seen = format!("in {blocker}");
    wait_until("the watchdog's warning", LONG, || {
        !log.lines_with(&seen).is_empty()
    });
    release.send(()).unwrap();

    // Once back: the shard names the worker and how long it held the shard.
    let ended = "worker=blocker";
    wait_until("the shard's report", LONG, || {
        !log.lines_with(ended).is_empty()
    });
    let report = log.lines_with(ended).remove(0);
    let held_ms: u128 = report
        .split("held_ms=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no held_ms in {report:?}"));
    // The watchdog looks every half threshold: the figure is that close.
    let at_least = (BLOCK - THRESHOLD / 2).as_millis();
    assert!(held_ms >= at_least, "{report}");

    let metrics = node.metrics().unwrap();
    let stalls: Vec<u64> = metrics.shards.iter().map(|s| s.stalls).collect();
    let mut expected = vec![0; 2];
    expected[blocker.shard()] = 1;
    assert_eq!(stalls, expected);
    node.shutdown();
}
