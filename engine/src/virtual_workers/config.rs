//! What a node is told about virtual workers: the kinds it hosts, their
//! idle times, its cap of active workers, where state is kept. The builder
//! methods are [`NodeConfig`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::redb_store::{RedbStore, REDB_FILE};
use super::store::{StateStore, StoreError};
use super::worker::{Factory, Typed, VirtualWorker};
use super::Key;
use crate::address::validate_name;
use crate::{Error, NodeConfig, Result};

/// How long a virtual worker of a kind may go without a message before it
/// is deactivated, unless set with [`NodeConfig::virtual_idle`].
pub const DEFAULT_IDLE: Duration = Duration::from_secs(600);

/// How often a node whose state store is shared looks in it for reminders
/// falling due, unless set with [`NodeConfig::reminder_scan`].
pub const DEFAULT_REMINDER_SCAN: Duration = Duration::from_secs(1);

/// Opens a node's state store; given the node's data directory.
pub(crate) type StoreFactory =
    Arc<dyn Fn(&Path) -> Result<Box<dyn StateStore>, StoreError> + Send + Sync>;

/// One registered kind.
#[derive(Clone)]
pub(crate) struct Kind {
    pub name: Arc<str>,
    pub idle: Duration,
    pub factory: Arc<dyn Factory>,
}

/// The virtual-worker part of a [`NodeConfig`].
#[derive(Clone)]
pub(crate) struct VirtualConfig {
    pub kinds: Vec<Kind>,
    pub max_active: Option<usize>,
    pub data_dir: Option<PathBuf>,
    pub store: Option<StoreFactory>,
    /// How often a shared store is scanned for due reminders.
    pub reminder_scan: Duration,
    /// Mistakes found while building, reported by `validate`.
    problems: Vec<String>,
}

impl Default for VirtualConfig {
    fn default() -> Self {
        VirtualConfig {
            kinds: Vec::new(),
            max_active: None,
            data_dir: None,
            store: None,
            reminder_scan: DEFAULT_REMINDER_SCAN,
            problems: Vec::new(),
        }
    }
}

impl std::fmt::Debug for VirtualConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<_> = self.kinds.iter().map(|k| (&*k.name, k.idle)).collect();
        f.debug_struct("VirtualConfig")
            .field("kinds", &kinds)
            .field("max_active", &self.max_active)
            .field("data_dir", &self.data_dir)
            .field("custom_store", &self.store.is_some())
            .field("reminder_scan", &self.reminder_scan)
            .finish()
    }
}

impl VirtualConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        match self.problems.first() {
            Some(problem) => Err(Error::Config(problem.clone())),
            None if self.max_active == Some(0) => {
                Err(Error::Config("max_active must be at least 1".into()))
            }
            None if self.reminder_scan.is_zero() => {
                Err(Error::Config("reminder_scan must not be zero".into()))
            }
            None => Ok(()),
        }
    }

    /// The node's data directory: as set, else `$MYRIAD_DATA_DIR/<node>`,
    /// else `myriad-data/<node>` in the working directory.
    pub(crate) fn data_dir(&self, node: &str) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        let base = std::env::var_os("MYRIAD_DATA_DIR").map_or_else(|| PathBuf::from("myriad-data"), PathBuf::from);
        base.join(node)
    }

    /// Opens the configured store, or the embedded default in `data_dir`.
    pub(crate) fn open_store(&self, data_dir: &Path) -> Result<Box<dyn StateStore>, StoreError> {
        match &self.store {
            Some(open) => open(data_dir),
            None => Ok(Box::new(RedbStore::open(data_dir.join(REDB_FILE))?)),
        }
    }
}

impl NodeConfig {
    /// Hosts virtual workers of kind `kind` on this node: a message sent to
    /// a [`Key`] of this kind activates its worker, built by `factory` from
    /// the key and its saved state (`None` if it has none yet). Idle ones
    /// are deactivated after [`DEFAULT_IDLE`] (10 minutes) unless
    /// [`virtual_idle`](Self::virtual_idle) says otherwise.
    ///
    /// ```no_run
    /// # use myriad_engine::{BoxError, Context, Message, NodeConfig, VirtualWorker};
    /// struct Counter { count: u64 }
    /// impl VirtualWorker for Counter {
    ///     type State = u64;
    ///     fn state(&self) -> &u64 { &self.count }
    ///     async fn handle_message(&mut self, _: &mut Context, _: Message) -> Result<(), BoxError> {
    ///         self.count += 1;
    ///         Ok(())
    ///     }
    /// }
    /// let config = NodeConfig::default()
    ///     .virtual_kind("counter", |_key, saved: Option<u64>| Counter { count: saved.unwrap_or(0) });
    /// ```
    pub fn virtual_kind<W, F>(mut self, kind: &str, factory: F) -> Self
    where
        W: VirtualWorker,
        F: Fn(&Key, Option<W::State>) -> W + Send + Sync + 'static,
    {
        let v = &mut self.virtuals;
        if let Err(e) = validate_name(kind) {
            v.problems.push(format!("virtual kind: {e}"));
        } else if v.kinds.iter().any(|k| &*k.name == kind) {
            v.problems.push(format!("virtual kind {kind:?} is registered twice"));
        }
        v.kinds.push(Kind {
            name: Arc::from(kind),
            idle: DEFAULT_IDLE,
            factory: Arc::new(Typed(factory, std::marker::PhantomData)),
        });
        self
    }

    /// The virtual kinds registered so far, in order: what a transport
    /// tells the other nodes of the zone, so that they place the keys of
    /// these kinds on this node too.
    pub fn virtual_kind_names(&self) -> Vec<String> {
        self.virtuals.kinds.iter().map(|k| k.name.to_string()).collect()
    }

    /// How long a virtual worker of kind `kind` (registered before with
    /// [`virtual_kind`](Self::virtual_kind)) may go without a message
    /// before it is deactivated (default [`DEFAULT_IDLE`]).
    pub fn virtual_idle(mut self, kind: &str, idle: Duration) -> Self {
        let v = &mut self.virtuals;
        match v.kinds.iter_mut().find(|k| &*k.name == kind) {
            Some(_) if idle.is_zero() => v.problems.push(format!("the idle time of {kind:?} must not be zero")),
            Some(k) => k.idle = idle,
            None => v.problems.push(format!("virtual_idle for {kind:?}, which is not a registered kind")),
        }
        self
    }

    /// The most virtual workers active at once on this node (default: no
    /// cap). Beyond it, each activation first deactivates the least
    /// recently used one of its shard: the cap is kept per shard
    /// (`max_active / shards`, rounded up).
    pub fn max_active(mut self, max: usize) -> Self {
        self.virtuals.max_active = Some(max);
        self
    }

    /// How often the node looks in a shared state store (one whose
    /// [`StateStore::shared`] is true, such as PostgreSQL) for the
    /// reminders of its keys falling due (default
    /// [`DEFAULT_REMINDER_SCAN`], 1 s; the first look is one period after
    /// the node starts). Each look is one indexed query for the reminders
    /// due before the look after next; the node wakes those of the keys
    /// whose home it is, so a key that moves to it (its home was lost, or
    /// it joined the zone) has its reminders delivered here within about
    /// one period of the move. A store of this node alone is read once,
    /// at start.
    pub fn reminder_scan(mut self, every: Duration) -> Self {
        self.virtuals.reminder_scan = every;
        self
    }

    /// Where the node keeps its files, such as the embedded state store
    /// (default `$MYRIAD_DATA_DIR/<node name>`, else
    /// `myriad-data/<node name>` in the working directory).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.virtuals.data_dir = Some(dir.into());
        self
    }

    /// Keeps virtual workers' state in the store `open` returns (given the
    /// node's data directory) instead of the embedded default, a
    /// [`RedbStore`] in the data directory.
    ///
    /// ```
    /// use myriad_engine::{MemoryStore, NodeConfig};
    /// let config = NodeConfig::default().state_store(|_dir| Ok(MemoryStore::default()));
    /// ```
    pub fn state_store<S, F>(mut self, open: F) -> Self
    where
        S: StateStore,
        F: Fn(&Path) -> Result<S, StoreError> + Send + Sync + 'static,
    {
        self.virtuals.store = Some(Arc::new(move |dir: &Path| {
            open(dir).map(|s| Box::new(s) as Box<dyn StateStore>)
        }));
        self
    }

    /// Keeps virtual workers' state in PostgreSQL (feature `postgres`): a
    /// [`PostgresStore`](super::PostgresStore) connected with `connection`
    /// (`host=... user=... password=... dbname=...` or a
    /// `postgresql://` URL), in the table
    /// [`POSTGRES_TABLE`](super::POSTGRES_TABLE), created if absent. Nodes
    /// given the same database share their keys' state: a key of a node
    /// that is lost activates elsewhere with its last saved state. The node
    /// connects when it starts and fails to start with the reason if it
    /// cannot. For another table, use [`state_store`](Self::state_store)
    /// with [`PostgresStore::connect_table`](super::PostgresStore::connect_table).
    ///
    /// ```no_run
    /// use myriad_engine::NodeConfig;
    /// let config = NodeConfig::default()
    ///     .postgres_store("host=127.0.0.1 user=myriad password=secret dbname=myriad");
    /// ```
    #[cfg(feature = "postgres")]
    pub fn postgres_store(self, connection: impl Into<String>) -> Self {
        let connection = connection.into();
        self.state_store(move |_dir| super::PostgresStore::connect(&connection))
    }
}
