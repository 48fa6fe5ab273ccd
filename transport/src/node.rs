//! Joining a node to a zone: [`install`] binds the listening sockets,
//! resolves the node's name and key, and installs the transport into a
//! [`NodeConfig`] as its remote router; [`start_node`] also starts the node.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use myriad_engine::plugin::{RemoteRouter, ShardHandle};
use myriad_engine::{Node, NodeConfig, NodeHandle};

use crate::config::TransportConfig;
use crate::counters::NodeCounters;
use crate::driver::admission::HandshakeSlots;
use crate::driver::{self, net, ShardStart, Shared};
use crate::error::TransportError;
use crate::handle::Zone;
use crate::handshake::LinkConfig;
use crate::keys::StaticKeypair;
use crate::membership::Membership;
use crate::zone::resolve_node_name;

/// Prepares `node` to join the zone of `transport`: resolves the node's name
/// (which replaces the one in `node`), binds its listening sockets, and
/// installs the transport as the node's remote router. Returns the
/// configuration to start the node with (`Node::spawn` or `Node::start`,
/// once) and the node's [`Zone`] handle.
pub fn install(
    node: NodeConfig,
    transport: TransportConfig,
) -> Result<(NodeConfig, Zone), TransportError> {
    transport.validate().map_err(TransportError::Config)?;
    transport.check_exposure()?;
    let name = resolve_node_name(transport.name.as_deref())?;
    let node = node.name(name.as_str());
    let shards = node.shard_count()?;
    let keypair = match &transport.keypair {
        Some(keypair) => keypair.clone(),
        None => StaticKeypair::generate()?,
    };
    let socket = net::SocketOptions {
        buffer_size: transport.socket_buffer,
        keepalive: transport.heartbeat_timeout,
    };
    let (listeners, local_addr) =
        net::bind_listeners(transport.listen, shards, &socket).map_err(|source| {
            TransportError::Bind {
                addr: transport.listen,
                source,
            }
        })?;
    let incarnation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
    let link = LinkConfig::new(name.clone(), keypair, transport.zone.clone())
        .with_incarnation(incarnation)
        .with_max_message_size(transport.max_message_size)
        .with_virtual_kinds(node.virtual_kind_names());
    let (commands, receivers): (Vec<_>, Vec<_>) = (0..shards).map(|_| flume::unbounded()).unzip();
    let startup = listeners
        .into_iter()
        .zip(receivers)
        .map(|(listener, commands)| Some(ShardStart { listener, commands }))
        .collect();
    let handshakes = HandshakeSlots::new(transport.max_handshakes.0, transport.max_handshakes.1);
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let shared = Arc::new(Shared {
        id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        membership: Membership::new(name.clone()),
        name,
        link,
        advertise: transport.advertise.unwrap_or(local_addr),
        config: transport,
        socket,
        local_addr,
        counters: NodeCounters::default(),
        handshakes,
        commands,
        startup: Mutex::new(startup),
    });
    let for_shards = shared.clone();
    let node = node.remote_router(Arc::new(
        move |shard: ShardHandle| -> std::rc::Rc<dyn RemoteRouter> {
            let start = for_shards.take_startup(shard.index());
            driver::start_shard(&for_shards, shard, start)
        },
    ));
    Ok((node, Zone::new(shared)))
}

/// [`install`]s the transport and starts the node in the background.
///
/// ```no_run
/// use myriad_engine::NodeConfig;
/// use myriad_transport::{start_node, TransportConfig, ZoneConfig};
///
/// let zone = ZoneConfig::new("demo").unwrap();
/// let (node, zone) = start_node(
///     NodeConfig::default(),
///     TransportConfig::new(zone).node_name("runner-1").seed("10.0.0.2:7700"),
/// )
/// .unwrap();
/// println!("{} listens on {}", node.name(), zone.local_addr());
/// ```
pub fn start_node(
    node: NodeConfig,
    transport: TransportConfig,
) -> Result<(NodeHandle, Zone), TransportError> {
    let (node, zone) = install(node, transport)?;
    Ok((Node::spawn(node)?, zone))
}
