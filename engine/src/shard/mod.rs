//! A shard: one core's worth of workers, and what it does with them, one
//! job per submodule:
//!
//! * `route`: where a delivery goes (this shard, another shard, another
//!   node), and where the answer of an ask goes;
//! * `asks`: asks from this shard's workers and their sleeps, on the
//!   shard's ask table (`ask.rs`);
//! * `workers`: the workers of this shard, their slots (`slots.rs`) and
//!   their runs' hand-over with the slot table;
//! * `control`: operations across shards (Seastar's `submit_to`): starting
//!   named workers through the name directory (`directory.rs`), stopping
//!   and listing workers;
//! * `ready`: sends that wait for room in a full mailbox;
//! * `scheduler`: the loop that runs queued workers, drains the rings,
//!   ships the outboxes, spins and parks;
//! * `observe`: the shard's metrics snapshot, and the node's;
//! * `shutdown`: stopping the shard;
//! * `virtuals`: virtual workers on their home shard (see
//!   `virtual_workers/`).
//!
//! Everything here lives on one glommio executor thread. The shard's state
//! sits in one `RefCell` that is never borrowed across an `.await` or a call
//! into worker code: a delivery to a worker of this shard is one borrow.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::ask::AskTable;
use crate::directory::Directory;
use crate::dropped::Dropped;
use crate::envelope::Packet;
use crate::link::{Inbound, Outbox};
use crate::liveness::Liveness;
use crate::meter::Meter;
use crate::remote::RemoteRouter;
use crate::service::Service;
use crate::signal::Signal;
use crate::stall::StallWatch;
use crate::slots::Slots;
use crate::spare::Spares;
use crate::suspended::Suspended;
use crate::virtual_workers::registry::Registry;
use crate::virtual_workers::placement::{KindTable, ZoneKinds};
use crate::virtual_workers::NodeVirtuals;
use crate::worker::Runnable;
use crate::{Error, Result};

use ready::Waiting;

mod asks;
mod control;
mod observe;
mod ready;
mod route;
mod scheduler;
mod shutdown;
mod virtuals;
mod workers;

/// What every shard of a node knows about the node.
pub(crate) struct NodeShared {
    pub name: Arc<str>,
    pub shards: usize,
    pub mailbox_capacity: usize,
    pub default_timeout: Duration,
    /// How long each `on_stop` may take at shutdown.
    pub stop_timeout: Duration,
    /// Each shard's channel from outside its thread.
    pub inboxes: Vec<flume::Sender<Packet>>,
    /// Which shard threads have ended.
    pub liveness: Arc<Liveness>,
    /// Set when the node begins to shut down (supervisors stop restarting).
    pub stopping: std::sync::atomic::AtomicBool,
    /// The virtual workers' kinds and store, if the node hosts any.
    pub virtuals: Option<Arc<NodeVirtuals>>,
    /// What each shard tells the stall watchdog.
    pub stall_watches: Vec<Arc<StallWatch>>,
    /// Which nodes of the zone registered each virtual kind.
    pub zone_kinds: Arc<ZoneKinds>,
}

/// The shard's mutable state, borrowed once per operation.
struct State {
    /// The workers that live on this shard.
    slots: Slots<Box<dyn Runnable>>,
    /// The names whose home is this shard.
    directory: Directory,
}

impl State {
    fn new(shard: u16) -> Self {
        State {
            slots: Slots::new(shard),
            directory: Directory::default(),
        }
    }
}

/// One shard of a node.
pub(crate) struct Shard {
    index: usize,
    node: Arc<NodeShared>,
    state: RefCell<State>,
    /// Plain messages dropped because nobody could take them, by reason.
    dropped: Cell<Dropped>,
    /// This shard's counters (`metrics()`).
    meter: Meter,
    /// What this shard tells the stall watchdog.
    stall: Arc<StallWatch>,
    asks: AskTable,
    outboxes: Vec<Option<Outbox>>,
    inbound: Inbound,
    remote: OnceCell<Rc<dyn RemoteRouter>>,
    /// Plugins' services running on this shard.
    services: RefCell<Vec<Rc<dyn Service>>>,
    spares: Spares,
    suspended: Suspended,
    /// Waiting sends parked here, and this shard's workers waiting in one.
    waiting: Waiting,
    /// Raised when a worker is queued or an outbox needs shipping.
    work: Signal,
    /// Raised when the node asks the shard to stop.
    stop: Signal,
    /// Set once the shard's workers are stopped: its tasks end.
    closed: Cell<bool>,
    /// The virtual workers whose home is this shard.
    virtuals: RefCell<Registry>,
    /// The last reminder id this shard gave out.
    reminder_ids: Cell<u64>,
    /// The last key handed out for a callback watch (`control.rs`).
    watch_keys: Cell<u64>,
    /// This shard's copy of the node's kind table, with its version.
    zone_view: RefCell<(u64, Arc<KindTable>)>,
}

impl Shard {
    /// A shard with its outboxes (indexed by peer shard; `None` for itself)
    /// and its incoming rings.
    pub(crate) fn new(
        index: usize,
        node: Arc<NodeShared>,
        outboxes: Vec<Option<Outbox>>,
        inbound: Inbound,
    ) -> Self {
        let suspended = Suspended::new(inbound.doorbell().clone());
        let virtuals = RefCell::new(NodeVirtuals::registry(node.virtuals.as_deref()));
        // The node makes one watch per shard.
        let stall = node.stall_watches[index].clone();
        let zone_view = RefCell::new(node.zone_kinds.snapshot());
        Shard {
            // The node refuses more than u16::MAX shards at start-up.
            state: RefCell::new(State::new(index as u16)),
            index,
            node,
            dropped: Cell::new(Dropped::default()),
            meter: Meter::default(),
            stall,
            asks: AskTable::default(),
            outboxes,
            inbound,
            remote: OnceCell::new(),
            services: RefCell::default(),
            spares: Spares::default(),
            suspended,
            waiting: Waiting::default(),
            work: Signal::default(),
            stop: Signal::default(),
            closed: Cell::new(false),
            virtuals,
            reminder_ids: Cell::new(0),
            watch_keys: Cell::new(0),
            zone_view,
        }
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn node(&self) -> &Arc<NodeShared> {
        &self.node
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.node.shards
    }

    pub(crate) fn node_name(&self) -> &str {
        &self.node.name
    }

    pub(crate) fn default_timeout(&self) -> Duration {
        self.node.default_timeout
    }

    /// The memory this shard's runs are polled in.
    pub(crate) fn spares(&self) -> &Spares {
        &self.spares
    }

    pub(crate) fn install_remote(&self, router: Rc<dyn RemoteRouter>) {
        // Installed once at shard start; a second call is a programming error
        // of the node builder and is ignored.
        let _ = self.remote.set(router);
    }

    pub(crate) fn add_service(&self, service: Rc<dyn Service>) {
        self.services.borrow_mut().push(service);
    }

    /// The outbox towards `peer` (another shard of this node).
    fn outbox(&self, peer: usize) -> Option<&Outbox> {
        self.outboxes.get(peer).and_then(Option::as_ref)
    }

    /// Queues a reply or control packet for shard `peer` (never refused).
    /// Returns the packet if `peer` is this shard or does not exist.
    fn post(&self, peer: usize, packet: Packet) -> Result<(), Packet> {
        let Some(outbox) = self.outbox(peer) else {
            return Err(packet);
        };
        if outbox.push(packet) {
            self.work.notify();
        }
        Ok(())
    }

    /// A key for a callback watch, unique on the node (the shard's index
    /// in the top 16 bits).
    fn next_watch_key(&self) -> u64 {
        let n = self.watch_keys.get().wrapping_add(1) & ((1 << 48) - 1);
        self.watch_keys.set(n);
        (u64::from(self.shard_id()) << 48) | n
    }

    fn shard_id(&self) -> u16 {
        // The node refuses more than u16::MAX shards at start-up.
        self.index as u16
    }

    fn check_shard(&self, shard: usize) -> Result<()> {
        if shard < self.node.shards {
            Ok(())
        } else {
            Err(Error::NoSuchShard {
                shard,
                shards: self.node.shards,
            })
        }
    }
}
