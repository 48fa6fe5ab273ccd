// Shutting a node down on a thread of its own, with patience: a test whose
// subject is a shutdown that hung fails instead of hanging with it. Shared
// by engine/tests/shutdown_store.rs and engine/tests/shutdown_links.rs (with
// `#[path]`: so no inner attributes here).

use std::time::Duration;

use myriad_engine::NodeHandle;

/// Shuts `node` down; whether that ended within `patience`.
pub(crate) fn shuts_down_within(node: NodeHandle, patience: Duration) -> bool {
    let (done, ended) = flume::bounded(1);
    std::thread::spawn(move || {
        node.shutdown();
        let _ = done.send(());
    });
    ended.recv_timeout(patience).is_ok()
}
