//! Every task of a shard's transport is spawned through
//! [`ShardTransport::spawn`], which counts it and ends it when the shard
//! stops, so that its sockets are closed (glommio never drops tasks that are
//! still waiting when an executor exits: their sockets would stay open, and a
//! node restarted on the same port would share it with a dead listener).
//!
//! When the shard stops, the engine calls the router's `shutdown`, which
//! stops the shard's transport and waits (briefly) for its tasks to end.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future::or;
use glommio::task::JoinHandle;

use myriad_engine::plugin::Signal;

use super::latch::Latch;
use super::ShardTransport;

/// How long a stopping shard waits for its transport tasks to end.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The running tasks of one shard's transport, and its stop signal.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    running: Cell<usize>,
    all_done: Signal,
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
    pub(crate) async fn stop(&self) {
        self.tasks.stopping.set();
        let all_done = async {
            while self.tasks.running.get() > 0 {
                self.tasks.all_done.wait().await;
            }
        };
        or(all_done, glommio::timer::sleep(STOP_GRACE)).await;
    }
}
