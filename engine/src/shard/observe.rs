//! Reading metrics: this shard's snapshot, taken on its own thread from
//! its meter (`meter.rs`) and the gauges its state holds, and the node's,
//! gathered shard by shard through the control path (`control.rs`).

use std::rc::Rc;

use crate::metrics::{LinkMetrics, Metrics, ShardMetrics};
use crate::stall::Stall;

use super::Shard;

impl Shard {
    /// This shard's metrics now. Costs the same whatever the number of
    /// workers: every figure is a counter or a length kept as it changes.
    pub(crate) fn metrics_here(&self) -> ShardMetrics {
        let mut metrics = self.meter.read();
        let state = self.state.borrow();
        metrics.shard = self.index;
        metrics.workers_live = state.slots.len() as u64;
        metrics.run_queue = state.slots.queued() as u64;
        metrics.mailbox_depth_max = state.slots.depth_max() as u64;
        drop(state);
        metrics.workers_suspended = self.suspended.len() as u64;
        metrics.dropped = self.dropped.get();
        metrics.stalls = self.stall.stalls();
        metrics
    }

    /// Logs a stall of this shard that ended, naming its worker.
    pub(crate) fn stall_ended(&self, stall: Stall) {
        let worker = stall.worker.map_or_else(
            || "no worker (another task of the shard)".to_owned(),
            |w| self.describe(w),
        );
        let held = stall.held;
        tracing::warn!(
            shard = self.index,
            %worker,
            held_ms = held.as_millis() as u64,
            "shard {} stalled: {worker} held it for about {held:?} without coming back to its loop (a blocking call or a long loop?)",
            self.index
        );
    }

    /// What the transport counts of the node's links, if one is installed.
    pub(crate) fn link_metrics(&self) -> Option<LinkMetrics> {
        self.remote.get()?.link_metrics()
    }

    /// The metrics of every shard of the node, and of its links.
    pub(crate) async fn metrics_all(self: &Rc<Self>) -> crate::Result<Metrics> {
        let mut shards = Vec::with_capacity(self.node.shards);
        for shard in 0..self.node.shards {
            shards.push(self.submit(shard, |s| s.metrics_here()).await?);
        }
        Ok(Metrics {
            node: self.node.name.to_string(),
            shards,
            links: self.link_metrics(),
        })
    }
}
