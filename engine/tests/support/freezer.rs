// A worker that stops its whole shard: shared by engine/tests/deferred_replies.rs
// and the workspace's tests/delivery.rs (with `#[path]`).

use myriad_engine::{BoxError, Context, Message, Worker};

/// Blocks its shard's thread on its first message until its gate opens
/// (its sender is dropped, or sends), after saying so on `frozen`: a shard
/// that drains, reads and answers nothing meanwhile.
pub(crate) struct Freezer {
    pub(crate) frozen: flume::Sender<()>,
    pub(crate) gate: flume::Receiver<()>,
}

impl Worker for Freezer {
    async fn handle_message(&mut self, _ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        self.frozen.send(())?;
        // Blocking on purpose: the whole shard stops.
        let _ = self.gate.recv();
        Ok(())
    }
}
