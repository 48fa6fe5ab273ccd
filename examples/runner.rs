//! The runner half of the seed's multi-node example: a node that lets other
//! nodes of its zone start `greeter` workers on it, then answers them. Start
//! one or more runners, then `client` (see `docs/deploy.md`):
//!
//! ```text
//! export MYRIAD_ZONE_SECRET="$(head -c 32 /dev/urandom | base64)"
//! cargo run --release --example runner -- runner-1 127.0.0.1:7701
//! cargo run --release --example runner -- runner-2 127.0.0.1:7702 127.0.0.1:7701
//! ```
//!
//! Arguments: node name, listen address, seeds. Whatever is not given comes
//! from the environment (`TransportConfig::from_env`: `MYRIAD_NODE_NAME`,
//! `MYRIAD_LISTEN`, `MYRIAD_SEEDS`, `MYRIAD_ZONE_SECRET`, ...), which is how
//! it runs under Kubernetes.

use std::time::Duration;

use myriad::transport::{start_node, TransportConfig};
use myriad::{BoxError, Context, Message, NodeConfig, Worker};

#[path = "support/logging.rs"]
mod logging;

/// Greets whoever writes to it, saying who and where it is.
struct Greeter {
    name: String,
}

impl Worker for Greeter {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let node = ctx.node_name();
        ctx.reply(format!("Hello, {msg}! ({} on {node})", self.name))?;
        Ok(())
    }
}

fn main() -> Result<(), BoxError> {
    logging::init("info");
    let mut args = std::env::args().skip(1);
    let mut config = TransportConfig::from_env()?.worker_kind("greeter", |name| Greeter {
        name: name.to_owned(),
    });
    if let Some(name) = args.next() {
        config = config.node_name(name);
    }
    if let Some(listen) = args.next() {
        config = config.listen(listen.parse()?);
    }
    for seed in args {
        config = config.seed(seed);
    }
    // Several nodes may share one small machine: leave the cores unpinned.
    let (node, zone) = start_node(NodeConfig::default().pin_shards(false), config)?;
    println!(
        "{} listens on {}, public key {}",
        node.name(),
        zone.local_addr(),
        zone.public_key()
    );
    let mut seen = Vec::new();
    loop {
        let now = zone.nodes("");
        if now != seen {
            println!("{} sees {now:?}", node.name());
            seen = now;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
