//! Helpers shared by the integration tests.

use myriad::{Node, NodeConfig, NodeHandle};

/// A node with `shards` unpinned shards (tests share two cores).
pub fn node(shards: usize) -> NodeHandle {
    Node::spawn(config(shards)).expect("node starts")
}

/// The configuration the tests start from.
pub fn config(shards: usize) -> NodeConfig {
    NodeConfig::default()
        .name("test")
        .shards(shards)
        .pin_shards(false)
}
