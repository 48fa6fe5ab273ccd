//! Every task of a shard's transport is spawned through
//! [`ShardTransport::spawn`], which counts it and ends it when the shard
//! stops, so that its sockets are closed (glommio never drops tasks that are
//! still waiting when an executor exits: their sockets would stay open, and a
//! node restarted on the same port would share it with a dead listener).
//!
//! The engine tells a router nothing when its shard stops, so each shard
//! runs a tiny *sentinel* worker whose `on_stop` stops the shard's transport
//! and waits (briefly) for its tasks to end. Its name starts with
//! [`SENTINEL_PREFIX`]; it shows up in the node's own worker lists, not in
//! those other nodes get.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future::or;
use glommio::task::JoinHandle;
use myriad_engine::{home_shard, BoxError, Context, Message, ShardHandle, Worker};

use super::signal::{Latch, Notify};
use super::ShardTransport;

/// The start of the sentinel workers' names.
pub(crate) const SENTINEL_PREFIX: &str = "_myriad_transport_";

/// How long a stopping shard waits for its transport tasks to end.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The running tasks of one shard's transport, and its stop signal.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    running: Cell<usize>,
    all_done: Notify,
    /// Set when the shard stops: every task ends.
    pub(crate) stopping: Latch,
}

/// Counts one running task; uncounts it when the task ends or is dropped.
struct Running(Rc<ShardTransport>);

impl Drop for Running {
    fn drop(&mut self) {
        let tasks = &self.0.tasks;
        tasks.running.set(tasks.running.get() - 1);
        if tasks.running.get() == 0 {
            tasks.all_done.notify();
        }
    }
}

impl ShardTransport {
    /// Spawns `work` on this shard as a counted task that ends when the
    /// shard stops. Await the handle to wait for it.
    pub(crate) fn spawn(
        self: &Rc<Self>,
        work: impl Future<Output = ()> + 'static,
    ) -> JoinHandle<()> {
        let tasks = &self.tasks;
        tasks.running.set(tasks.running.get() + 1);
        let running = Running(self.clone());
        glommio::spawn_local(async move {
            or(work, running.0.tasks.stopping.wait()).await;
            drop(running);
        })
        .detach()
    }

    /// True once the shard is stopping.
    pub(crate) fn is_stopping(&self) -> bool {
        self.tasks.stopping.is_set()
    }

    /// Ends every task and waits (at most [`STOP_GRACE`]) until they are gone.
    async fn stop(&self) {
        self.tasks.stopping.set();
        let all_done = async {
            while self.tasks.running.get() > 0 {
                self.tasks.all_done.wait().await;
            }
        };
        or(all_done, glommio::timer::sleep(STOP_GRACE)).await;
    }

    /// Starts this shard's sentinel worker.
    pub(crate) fn start_sentinel(self: &Rc<Self>, shard: ShardHandle) {
        let name = sentinel_name(shard.index(), shard.shards());
        let node = self.shared.id;
        self.spawn(async move {
            if let Err(error) = shard.start_worker(&name, Sentinel { node }).await {
                tracing::error!(%error, "cannot start the transport's sentinel worker");
            }
        });
    }
}

/// The first [`SENTINEL_PREFIX`]`<k>` name that lives on shard `shard`.
fn sentinel_name(shard: usize, shards: usize) -> String {
    (0..)
        .map(|k| format!("{SENTINEL_PREFIX}{k}"))
        .find(|name| home_shard(name, shards) == shard)
        .unwrap_or_default()
}

/// Stops its shard's transport when the shard stops.
struct Sentinel {
    node: u64,
}

impl Worker for Sentinel {
    async fn handle_message(&mut self, _ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        Ok(())
    }

    async fn on_stop(&mut self, _ctx: &mut Context) {
        if let Some(st) = super::local(self.node) {
            st.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shard_gets_its_own_sentinel() {
        for shards in 1..8 {
            let names: Vec<_> = (0..shards).map(|i| sentinel_name(i, shards)).collect();
            for (i, name) in names.iter().enumerate() {
                assert_eq!(home_shard(name, shards), i);
            }
        }
    }
}
