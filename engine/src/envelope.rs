//! What travels between shards: deliveries for workers, replies for asks,
//! and control closures (the `smp::submit_to` of Seastar).

use std::rc::Rc;
use std::sync::Arc;

use crate::shard::Shard;
use crate::{Error, ExitReason, Key, Message, WorkerRef};

/// A message on its way into a worker's mailbox.
///
/// `repr(C)` keeps the fields in this order, the reply (whose tag the
/// mailbox pool's free-slot marker shares) last. In the order rustc chose,
/// a delivery taken out of the pool was copied through the stack in pieces
/// whose 16-byte loads straddled earlier smaller stores: store-forwarding
/// stalls that `perf annotate` put at half of the receive path's samples,
/// and counting on one shard took 10-25 % more CPU (docs/performance.md).
#[repr(C)]
pub(crate) struct Delivery {
    pub msg: Message,
    pub from: Option<WorkerRef>,
    pub reply: Option<ReplyTo>,
}

/// Where the answer to an ask goes.
pub(crate) enum ReplyTo {
    /// A pending ask in the table of a shard of this node.
    Shard {
        shard: u16,
        slot: u32,
        generation: u32,
    },
    /// Anything else (a thread outside the node, a remote link): a callback
    /// that may run on any shard.
    Callback(Box<dyn FnOnce(Result<Message, Error>) + Send>),
    /// Not an ask: the delivery tells a watcher that the worker `from`
    /// terminated, and why (see `Context::watch`). Nobody waits for an
    /// answer to it.
    Notice(ExitReason),
}

/// Which worker a delivery is for, as seen by the shard that resolves it.
pub(crate) enum Target {
    Worker(WorkerRef),
    Name(Arc<str>),
    /// A virtual worker, on the key's home shard.
    Key(Key),
}

/// A message that could not be delivered, with the reason.
pub(crate) struct Undelivered {
    pub error: Error,
    pub delivery: Delivery,
}

impl std::fmt::Debug for Undelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Undelivered")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// A closure run on another shard.
pub(crate) type Job = Box<dyn FnOnce(&Rc<Shard>) + Send>;

/// One unit of cross-shard traffic.
pub(crate) enum Packet {
    Deliver {
        to: Target,
        delivery: Delivery,
    },
    Reply {
        slot: u32,
        generation: u32,
        result: Result<Message, Error>,
    },
    Run(Job),
}
