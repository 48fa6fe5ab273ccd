//! `NodeConfig`: how many shards, how big mailboxes are, default timeouts,
//! and the remote router hook.

use std::fmt;
use std::time::Duration;

use crate::remote::RemoteRouterFactory;
use crate::virtual_workers::VirtualConfig;
use crate::service::ServiceFactory;
use crate::{Error, Result};

/// Configuration of a node. Start from `NodeConfig::default()` and adjust.
///
/// ```
/// use std::time::Duration;
/// use myriad_engine::NodeConfig;
/// let config = NodeConfig::default()
///     .name("runner-1")
///     .shards(2)
///     .mailbox_capacity(10_000)
///     .default_timeout(Duration::from_secs(2));
/// assert_eq!(config.shard_count().unwrap(), 2);
/// ```
#[derive(Clone)]
pub struct NodeConfig {
    pub(crate) name: String,
    pub(crate) shards: Option<usize>,
    pub(crate) mailbox_capacity: usize,
    pub(crate) default_timeout: Duration,
    pub(crate) stop_timeout: Duration,
    pub(crate) pin_shards: bool,
    pub(crate) io_memory: usize,
    pub(crate) spin_before_park: Duration,
    pub(crate) stall_threshold: Duration,
    pub(crate) remote: Option<RemoteRouterFactory>,
    pub(crate) virtuals: VirtualConfig,
    pub(crate) services: Vec<ServiceFactory>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: std::env::var("MYRIAD_NODE_NAME").unwrap_or_else(|_| "local".to_owned()),
            shards: None,
            mailbox_capacity: 100_000,
            default_timeout: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(5),
            pin_shards: true,
            io_memory: 256 << 10,
            spin_before_park: Duration::from_micros(100),
            stall_threshold: Duration::from_millis(10),
            remote: None,
            virtuals: VirtualConfig::default(),
            services: Vec::new(),
        }
    }
}

impl NodeConfig {
    /// The node's name (default: `$MYRIAD_NODE_NAME`, else `local`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Number of shards (default: one per available core).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Most messages a mailbox holds before sends fail with `MailboxFull`
    /// (default 100,000).
    pub fn mailbox_capacity(mut self, capacity: usize) -> Self {
        self.mailbox_capacity = capacity;
        self
    }

    /// Timeout used by `Context::ask` (default 5 s).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// How long each worker's `on_stop` may take when the node shuts down
    /// (default 5 s); one still running then is dropped, so that shutdown
    /// always ends.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Pin each shard to a CPU (default true): shard `i` to the `i`-th of the
    /// CPUs this process may run on (its affinity mask, as a container's
    /// cpuset or `taskset` sets it), in turn. Turn off when several nodes
    /// share a small machine, e.g. in tests.
    pub fn pin_shards(mut self, pin: bool) -> Self {
        self.pin_shards = pin;
        self
    }

    /// Memory each shard's io_uring registers, in bytes (default 256 KiB).
    /// glommio needs `ulimit -l` of at least 512 KiB per process; on Linux
    /// before 5.12 this memory, for every shard, counts against it too.
    pub fn io_memory(mut self, bytes: usize) -> Self {
        self.io_memory = bytes;
        self
    }

    /// How long an idle shard's executor spins before it sleeps (default
    /// 100 µs). Timers and wake-ups due meanwhile are handled on time instead
    /// of after a sleep and an eventfd or kernel-timer wake-up; an idle node
    /// still uses no CPU once this time has passed.
    pub fn spin_before_park(mut self, spin: Duration) -> Self {
        self.spin_before_park = spin;
        self
    }

    /// How long a shard may stay away from its loop (in one worker's
    /// handler, say, making a blocking call) before it counts as stalled
    /// (default 10 ms): a watchdog thread logs the stall at once (`warn`),
    /// the shard logs the worker's name and how long it held the shard
    /// when it comes back, and `metrics()` counts it (`stalls`). Zero turns
    /// the watchdog off. It wakes twice per threshold.
    pub fn stall_threshold(mut self, threshold: Duration) -> Self {
        self.stall_threshold = threshold;
        self
    }

    /// Installs the router for addresses on other nodes (the transport does
    /// this).
    pub fn remote_router(mut self, factory: RemoteRouterFactory) -> Self {
        self.remote = Some(factory);
        self
    }

    /// Adds a service to start on the node's shards (a plugin does this,
    /// e.g. the facade's `metrics_listen`): `factory` runs on each shard's
    /// thread at start, after the remote router is installed, and the
    /// services it returns are shut down when the shard stops.
    pub fn service(mut self, factory: ServiceFactory) -> Self {
        self.services.push(factory);
        self
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        &self.name
    }

    /// The number of shards this configuration starts, or why it can't.
    pub fn shard_count(&self) -> Result<usize> {
        let shards = match self.shards {
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        if shards == 0 || shards > usize::from(u16::MAX) {
            return Err(Error::Config(format!(
                "shards must be between 1 and {}, got {shards}",
                u16::MAX
            )));
        }
        Ok(shards)
    }

    pub(crate) fn validate(&self) -> Result<usize> {
        if self.mailbox_capacity == 0 {
            return Err(Error::Config("mailbox_capacity must be at least 1".into()));
        }
        if self.name.is_empty() || self.name.contains('/') {
            return Err(Error::Config(format!(
                "node name {:?} must be non-empty and contain no '/'",
                self.name
            )));
        }
        self.virtuals.validate()?;
        self.shard_count()
    }

    pub(crate) fn remote_factory(&self) -> Option<RemoteRouterFactory> {
        self.remote.clone()
    }
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("shards", &self.shards)
            .field("mailbox_capacity", &self.mailbox_capacity)
            .field("default_timeout", &self.default_timeout)
            .field("stop_timeout", &self.stop_timeout)
            .field("pin_shards", &self.pin_shards)
            .field("io_memory", &self.io_memory)
            .field("spin_before_park", &self.spin_before_park)
            .field("stall_threshold", &self.stall_threshold)
            .field("remote_router", &self.remote.is_some())
            .field("virtuals", &self.virtuals)
            .field("services", &self.services.len())
            .finish()
    }
}
