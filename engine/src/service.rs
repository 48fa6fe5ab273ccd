//! Services: what a plugin runs on a node's shards besides workers and the
//! transport (an HTTP endpoint, say), installed with
//! [`NodeConfig::service`](crate::NodeConfig::service) and stopped with the
//! shard.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use crate::remote::ShardHandle;

/// A plugin's presence on one shard: its glommio tasks, which it must end
/// when asked (the shard's executor does not drop tasks that still wait).
pub trait Service: 'static {
    /// Called once when the shard stops, after its workers ran `on_stop`
    /// and its remote router shut down: end the service's tasks and close
    /// its sockets.
    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + '_>>;
}

/// Starts a service on each shard, on that shard's thread, when the node
/// starts; `None` where it has nothing to run. It may spawn glommio tasks.
pub type ServiceFactory = Arc<dyn Fn(ShardHandle) -> Option<Rc<dyn Service>> + Send + Sync>;
