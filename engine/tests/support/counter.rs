// A virtual worker that counts its messages and answers an ask with the
// count: the least a worker needs to have state to save. Shared by
// engine/tests/shutdown_store.rs and engine/tests/virtual_failed_wakes.rs
// (with `#[path]`: so no inner attributes here).

use myriad_engine::{BoxError, Context, Message, NodeConfig, VirtualWorker};

/// Its count is its state.
pub(crate) struct Counter(pub(crate) u64);

impl VirtualWorker for Counter {
    type State = u64;

    fn state(&self) -> &u64 {
        &self.0
    }

    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        self.0 += 1;
        if ctx.is_ask() {
            ctx.reply(self.0.to_string())?;
        }
        Ok(())
    }
}

/// A node named `name`, of `shards` shards not pinned to cores, with the
/// kind `counter` of [`Counter`]s.
pub(crate) fn counter_node(name: &str, shards: usize) -> NodeConfig {
    NodeConfig::default()
        .name(name)
        .shards(shards)
        .pin_shards(false)
        .virtual_kind("counter", |_key, saved: Option<u64>| {
            Counter(saved.unwrap_or(0))
        })
}
