//! What a transport plugs into: the interface between the engine and the
//! network, apart from the API that workers and applications use.
//!
//! A transport installs a [`RemoteRouter`] on every shard
//! (`NodeConfig::remote_router`, with a [`RemoteRouterFactory`]), which the
//! engine hands every message for a worker of another node; it answers the
//! asks it carries through their [`Replier`](crate::Replier) (the same
//! handle a worker gets from `Context::defer_reply`, hence at the crate
//! root). It reaches the local node through a [`ShardHandle`] of the shard
//! its tasks run on, finds the shard a name lives on with [`home_shard`],
//! and may wake its own tasks of one shard with a [`Signal`].
//!
//! Other plugins run a [`Service`] on the shards they choose
//! (`NodeConfig::service`, with a [`ServiceFactory`]): the facade's metrics
//! endpoint is one.
//!
//! Across the zone, a worker is named on the wire by its [`WireRef`]; a
//! watch from another node is a callback ([`OnExit`]) that
//! [`ShardHandle::watch_with`] keeps with the watched worker until it ends
//! or [`ShardHandle::unwatch_with`] removes it.

pub use crate::address::{home_shard, WireRef};
pub use crate::exit::OnExit;
pub use crate::remote::{CallbackWatch, RemoteRouter, RemoteRouterFactory, ShardHandle};
pub use crate::service::{Service, ServiceFactory};
pub use crate::signal::Signal;
