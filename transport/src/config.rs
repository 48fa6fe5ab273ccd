//! [`TransportConfig`]: everything a node needs to join a zone — its name,
//! keys, listen address, seeds, timings, limits, and the worker kinds other
//! nodes may start on it.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use myriad_engine::plugin::ShardHandle;
use myriad_engine::{Result, Worker, WorkerRef};

use crate::codec::DEFAULT_MAX_MESSAGE_SIZE;
use crate::error::TransportError;
use crate::keys::StaticKeypair;
use crate::zone::{ZoneConfig, ZoneSecret};

/// The port a node listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7700;

/// The environment variable that, set to `1` or `true`, lets
/// [`TransportConfig::from_env`] listen beyond loopback without a zone
/// secret or pinned keys (see [`TransportConfig::allow_open_zone`]).
pub const ALLOW_OPEN_ZONE_ENV: &str = "MYRIAD_ALLOW_OPEN_ZONE";

/// Starts a worker of one registered kind under a name, on the shard it is
/// called on.
pub(crate) type Factory = Arc<
    dyn Fn(ShardHandle, String) -> Pin<Box<dyn Future<Output = Result<WorkerRef>>>> + Send + Sync,
>;

/// How a node takes part in a zone. Start from [`TransportConfig::new`] and
/// adjust; hand it to [`install`](crate::install) or
/// [`start_node`](crate::start_node).
///
/// ```
/// use std::time::Duration;
/// use myriad_transport::{TransportConfig, ZoneConfig};
///
/// let config = TransportConfig::new(ZoneConfig::new("demo").unwrap())
///     .node_name("runner-1")
///     .listen("127.0.0.1:0".parse().unwrap())
///     .seed("127.0.0.1:7700")
///     .heartbeat(Duration::from_millis(500), Duration::from_secs(3));
/// assert_eq!(config.heartbeat_timeout(), Duration::from_secs(3));
/// ```
#[derive(Clone)]
pub struct TransportConfig {
    pub(crate) name: Option<String>,
    pub(crate) zone: ZoneConfig,
    pub(crate) keypair: Option<StaticKeypair>,
    pub(crate) listen: SocketAddr,
    pub(crate) advertise: Option<SocketAddr>,
    pub(crate) seeds: Vec<String>,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) gossip_interval: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff: (Duration, Duration),
    pub(crate) request_timeout: Duration,
    pub(crate) forget_after: Duration,
    pub(crate) max_message_size: u32,
    pub(crate) outbound_buffer: usize,
    pub(crate) socket_buffer: Option<usize>,
    pub(crate) factories: HashMap<String, Factory>,
    pub(crate) allow_open_zone: bool,
    pub(crate) max_handshakes: (usize, usize),
}

impl TransportConfig {
    /// A node of `zone`, listening on loopback, `127.0.0.1:7700`, named by
    /// `MYRIAD_NODE_NAME` or the host name, with a key generated in memory.
    pub fn new(zone: ZoneConfig) -> Self {
        TransportConfig {
            name: None,
            zone,
            keypair: None,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            advertise: None,
            seeds: Vec::new(),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(5),
            gossip_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(3),
            backoff: (Duration::from_millis(50), Duration::from_secs(5)),
            request_timeout: Duration::from_secs(10),
            forget_after: Duration::from_secs(60),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            outbound_buffer: 16 << 20,
            socket_buffer: None,
            factories: HashMap::new(),
            allow_open_zone: false,
            max_handshakes: (256, 32),
        }
    }

    /// A configuration from the environment, for containers:
    ///
    /// | variable | meaning | default |
    /// | --- | --- | --- |
    /// | `MYRIAD_NODE_NAME` | the node's name | the host name |
    /// | `MYRIAD_ZONE` | the zone's name | `default` |
    /// | `MYRIAD_ZONE_SECRET_FILE` | a file holding the zone secret | — |
    /// | `MYRIAD_ZONE_SECRET` | the zone secret itself | — (no secret: trusted networks only) |
    /// | `MYRIAD_LISTEN` | the listen address | `127.0.0.1:7700` |
    /// | `MYRIAD_ADVERTISE` | the address to gossip | see [`advertise`](Self::advertise) |
    /// | `MYRIAD_SEEDS` | comma-separated seeds (`ip:port` or `dns-name:port`) | none |
    /// | `MYRIAD_KEY_FILE` | where the node's key is kept (created if missing) | a key in memory |
    /// | `MYRIAD_ALLOW_OPEN_ZONE` | `1` or `true`: see [`allow_open_zone`](Self::allow_open_zone) | `false` |
    pub fn from_env() -> std::result::Result<Self, TransportError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let zone_name = var("MYRIAD_ZONE").unwrap_or_else(|| "default".to_owned());
        let mut zone = ZoneConfig::new(zone_name.trim())?;
        if let Some(path) = var("MYRIAD_ZONE_SECRET_FILE") {
            zone = zone.with_secret(&ZoneSecret::from_file(path.trim())?);
        } else if var("MYRIAD_ZONE_SECRET").is_some() {
            zone = zone.with_secret(&ZoneSecret::from_env("MYRIAD_ZONE_SECRET")?);
        }
        let mut config = TransportConfig::new(zone);
        let addr = |name: &str, value: String| {
            value.trim().parse::<SocketAddr>().map_err(|e| {
                TransportError::Config(format!("{name}={value:?} is not an ip:port address: {e}"))
            })
        };
        if let Some(listen) = var("MYRIAD_LISTEN") {
            config = config.listen(addr("MYRIAD_LISTEN", listen)?);
        }
        if let Some(advertise) = var("MYRIAD_ADVERTISE") {
            config = config.advertise(addr("MYRIAD_ADVERTISE", advertise)?);
        }
        for seed in var("MYRIAD_SEEDS").iter().flat_map(|s| s.split(',')) {
            if !seed.trim().is_empty() {
                config = config.seed(seed.trim());
            }
        }
        if let Some(path) = var("MYRIAD_KEY_FILE") {
            config = config.keypair(StaticKeypair::load_or_generate(path.trim())?);
        }
        if let Some(allow) = var(ALLOW_OPEN_ZONE_ENV) {
            config = config.allow_open_zone(flag(ALLOW_OPEN_ZONE_ENV, &allow)?);
        }
        Ok(config)
    }

    /// The node's name (else `MYRIAD_NODE_NAME`, else the host name; see
    /// [`resolve_node_name`](crate::resolve_node_name)).
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The node's static key (default: generated in memory at start; use
    /// [`StaticKeypair::load_or_generate`] to keep one in a file).
    pub fn keypair(mut self, keypair: StaticKeypair) -> Self {
        self.keypair = Some(keypair);
        self
    }

    /// Where to accept links (default `127.0.0.1:7700`; port 0 picks a free
    /// port). A node refuses to listen beyond loopback in a zone without a
    /// secret or pinned keys, unless [`allow_open_zone`](Self::allow_open_zone).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The address other nodes should dial, as gossiped (default: the listen
    /// address; with an unspecified IP such as `0.0.0.0`, peers use the IP
    /// they see this node connect from).
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// A seed: `ip:port`, or `dns-name:port`. A name is resolved again every
    /// discovery round, and every address it resolves to is dialled (a
    /// Kubernetes headless service lists all its pods this way).
    pub fn seed(mut self, seed: impl Into<String>) -> Self {
        self.seeds.push(seed.into());
        self
    }

    /// Heartbeats: a link idle for `interval` sends one; a link that has
    /// received nothing for `timeout` is declared dead (defaults 1 s and 5 s).
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        self
    }

    /// How often the member list is gossiped and seeds are re-dialled (default 1 s).
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.gossip_interval = interval;
        self
    }

    /// How long a connection attempt and its handshake may take, on either
    /// side: a dialled node that has not completed the handshake within it
    /// is given up, an accepted connection that has not is closed (default 3 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Reconnection delays: the first retry waits about `min`, each failure
    /// doubles it up to `max`, with random jitter (defaults 50 ms and 5 s).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max);
        self
    }

    /// How long a remote `start_worker`, `stop_worker` or `list_workers` may
    /// take (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long an unreachable node stays in the member list (and is
    /// redialled) before it is forgotten (default 60 s).
    pub fn forget_after(mut self, after: Duration) -> Self {
        self.forget_after = after;
        self
    }

    /// The largest message this node sends or accepts, in bytes (default
    /// 16 MiB). A link uses the smaller of its two ends' limits.
    pub fn max_message_size(mut self, bytes: u32) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Bytes of messages a link may hold unsent before sends to its node fail
    /// with `Error::MailboxFull` (default 16 MiB; one message may overshoot).
    pub fn outbound_buffer(mut self, bytes: usize) -> Self {
        self.outbound_buffer = bytes;
        self
    }

    /// SO_SNDBUF and SO_RCVBUF of every connection (default: the kernel's,
    /// which autotunes).
    pub fn socket_buffer(mut self, bytes: usize) -> Self {
        self.socket_buffer = Some(bytes);
        self
    }

    /// Registers a kind of worker that other nodes may start here by name
    /// with `Zone::start_worker(node, name, kind)`. `make` gets the new
    /// worker's name.
    pub fn worker_kind<W, F>(mut self, kind: &str, make: F) -> Self
    where
        W: Worker + Send,
        F: Fn(&str) -> W + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let factory: Factory = Arc::new(move |shard: ShardHandle, name: String| {
            let worker = make(&name);
            Box::pin(async move { shard.start_worker(&name, worker).await })
        });
        self.factories.insert(kind.to_owned(), factory);
        self
    }

    /// How many accepted connections may be in their handshake at once: at
    /// most `total` on the node, at most `per_address` from one source IP
    /// (defaults 256 and 32). A connection over either limit is closed at
    /// once; each handshake is bounded by the
    /// [`connect_timeout`](Self::connect_timeout).
    pub fn max_handshakes(mut self, total: usize, per_address: usize) -> Self {
        self.max_handshakes = (total, per_address);
        self
    }

    /// Lets the node listen on a non-loopback address although its zone has
    /// neither a secret nor pinned keys (default `false`: such a node fails to
    /// start with `TransportError::Config`). Any host that can reach the port
    /// and knows the zone name then joins the zone, starts registered worker
    /// kinds and stops workers: use it only on a network you trust. The node
    /// logs a warning at start.
    pub fn allow_open_zone(mut self, allow: bool) -> Self {
        self.allow_open_zone = allow;
        self
    }

    /// True if the zone admits any node that knows its name (no secret, no pinned keys).
    fn zone_is_open(&self) -> bool {
        !self.zone.has_secret() && self.zone.pinned_keys().is_none()
    }

    /// Refuses an open zone beyond loopback unless the user opted in
    /// (then warns); see [`allow_open_zone`](Self::allow_open_zone).
    pub(crate) fn check_exposure(&self) -> std::result::Result<(), TransportError> {
        if !self.zone_is_open() || self.listen.ip().is_loopback() {
            return Ok(());
        }
        if !self.allow_open_zone {
            return Err(TransportError::Config(format!(
                "refusing to listen on {} in zone {:?} without a zone secret or pinned keys: \
                 anyone who reaches the port could join. Set a secret (MYRIAD_ZONE_SECRET_FILE, \
                 ZoneConfig::with_secret), pin keys, listen on loopback, or opt in with \
                 allow_open_zone(true) / {ALLOW_OPEN_ZONE_ENV}=1",
                self.listen,
                self.zone.name()
            )));
        }
        tracing::warn!(
            listen = %self.listen,
            zone = self.zone.name(),
            "listening beyond loopback in an open zone (no secret, no pinned keys): \
             any host that reaches this port can join"
        );
        Ok(())
    }

    /// The heartbeat timeout.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }

    /// Checks the timings and limits.
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        if self.heartbeat_interval.is_zero() || self.heartbeat_timeout <= self.heartbeat_interval {
            return Err(format!(
                "the heartbeat timeout ({:?}) must exceed the heartbeat interval ({:?}), \
                 which must not be zero",
                self.heartbeat_timeout, self.heartbeat_interval
            ));
        }
        if self.gossip_interval.is_zero() || self.connect_timeout.is_zero() {
            return Err("the gossip interval and the connect timeout must not be zero".into());
        }
        if self.backoff.0.is_zero() || self.backoff.0 > self.backoff.1 {
            return Err(format!(
                "reconnect backoff: min {:?} must be positive and at most max {:?}",
                self.backoff.0, self.backoff.1
            ));
        }
        if self.max_handshakes.0 == 0 || self.max_handshakes.1 == 0 {
            return Err("max_handshakes: both limits must be positive".into());
        }
        if self.max_message_size == 0 || self.outbound_buffer == 0 {
            return Err("max_message_size and outbound_buffer must be positive".into());
        }
        Ok(())
    }
}

/// The value of the on/off environment variable `name`: `1`/`true` or `0`/`false`.
fn flag(name: &str, value: &str) -> std::result::Result<bool, TransportError> {
    match value.trim() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        other => Err(TransportError::Config(format!(
            "{name}={other:?}: use 1, true, 0 or false"
        ))),
    }
}

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<_> = self.factories.keys().collect();
        kinds.sort();
        f.debug_struct("TransportConfig")
            .field("name", &self.name)
            .field("zone", &self.zone)
            .field("keypair", &self.keypair)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("gossip_interval", &self.gossip_interval)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &self.backoff)
            .field("request_timeout", &self.request_timeout)
            .field("forget_after", &self.forget_after)
            .field("max_message_size", &self.max_message_size)
            .field("outbound_buffer", &self.outbound_buffer)
            .field("socket_buffer", &self.socket_buffer)
            .field("worker_kinds", &kinds)
            .field("allow_open_zone", &self.allow_open_zone)
            .field("max_handshakes", &self.max_handshakes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::StaticKeypair;

    fn open(listen: &str) -> TransportConfig {
        TransportConfig::new(ZoneConfig::new("z").unwrap()).listen(listen.parse().unwrap())
    }

    #[test]
    fn the_default_listen_address_is_loopback() {
        let config = TransportConfig::new(ZoneConfig::new("z").unwrap());
        assert!(config.listen.ip().is_loopback(), "{}", config.listen);
        assert!(config.check_exposure().is_ok());
    }

    #[test]
    fn an_open_zone_beyond_loopback_needs_an_explicit_opt_in() {
        for addr in ["0.0.0.0:0", "[::]:0", "10.1.2.3:7700"] {
            let err = open(addr).check_exposure().unwrap_err();
            assert!(
                err.to_string()
                    .contains("without a zone secret or pinned keys"),
                "{err}"
            );
            assert!(open(addr).allow_open_zone(true).check_exposure().is_ok());
        }
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            assert!(open(addr).check_exposure().is_ok(), "{addr}");
        }
    }

    #[test]
    fn the_opt_in_variable_is_a_strict_flag() {
        for (value, on) in [
            ("1", true),
            ("true", true),
            (" 0\n", false),
            ("false", false),
        ] {
            assert_eq!(flag(ALLOW_OPEN_ZONE_ENV, value).unwrap(), on, "{value:?}");
        }
        let err = flag(ALLOW_OPEN_ZONE_ENV, "yes").unwrap_err();
        assert!(
            err.to_string().contains("MYRIAD_ALLOW_OPEN_ZONE=\"yes\""),
            "{err}"
        );
    }

    #[test]
    fn a_secret_or_pinned_keys_close_the_zone() {
        let secret = crate::zone::ZoneSecret::from_bytes("sixteen bytes or more").unwrap();
        let with_secret = ZoneConfig::new("z").unwrap().with_secret(&secret);
        let key = *StaticKeypair::generate().unwrap().public_key();
        let pinned = ZoneConfig::new("z").unwrap().with_pinned_keys([key]);
        for zone in [with_secret, pinned] {
            let config = TransportConfig::new(zone).listen("0.0.0.0:0".parse().unwrap());
            assert!(config.check_exposure().is_ok());
        }
    }
}
