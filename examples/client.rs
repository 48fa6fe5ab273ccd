//! The client half of the seed's multi-node example: finds the nodes named
//! `runner*`, starts a `greeter` worker on each (by the kind the runners
//! registered), messages each by name, prints the replies, lists the
//! runners' workers, and stops its greeters again.
//!
//! ```text
//! cargo run --release --example client -- 127.0.0.1:7701
//! ```
//!
//! Arguments: seeds (default: `MYRIAD_SEEDS`). `MYRIAD_EXPECT_RUNNERS`
//! (default 1) is how many runners to wait for (at most 30 s).

use std::time::{Duration, Instant};

use myriad::transport::{install, TransportConfig};
use myriad::{BoxError, Error, Node, NodeConfig};

#[path = "support/logging.rs"]
mod logging;

fn main() -> Result<(), BoxError> {
    logging::init("info");
    let mut config = TransportConfig::from_env()?;
    if std::env::var_os("MYRIAD_NODE_NAME").is_none() {
        config = config.node_name(format!("client-{}", std::process::id()));
    }
    if std::env::var_os("MYRIAD_LISTEN").is_none() {
        config = config.listen("127.0.0.1:0".parse()?);
    }
    for seed in std::env::args().skip(1) {
        config = config.seed(seed);
    }
    let expect: usize = match std::env::var("MYRIAD_EXPECT_RUNNERS") {
        Ok(n) => n.parse()?,
        Err(_) => 1,
    };
    let (config, zone) = install(NodeConfig::default().pin_shards(false), config)?;
    let outcome = Node::start(config, move |ctx| async move {
        // Runners show up as links come up and gossip spreads: retry.
        let since = Instant::now();
        let runners = loop {
            let runners = zone.nodes("runner");
            if runners.len() >= expect || since.elapsed() > Duration::from_secs(30) {
                break runners;
            }
            ctx.sleep(Duration::from_millis(100)).await;
        };
        if runners.is_empty() {
            return Err(Error::NoRoute("no node named runner* was found".into()));
        }
        let greeter = format!("greeter-{}", ctx.node_name());
        for node in &runners {
            zone.start_worker(node, &greeter, "greeter").await?;
            let address = format!("{node}/{greeter}");
            let reply = ctx
                .send_and_receive(address.as_str(), "client", Duration::from_secs(5))
                .await?;
            println!("{address} replied: {reply}");
        }
        for node in &runners {
            let workers = zone.list_workers(node).await?;
            let names: Vec<&str> = workers.iter().map(|w| w.name.as_str()).collect();
            println!("{node} runs {names:?}");
            zone.stop_worker(node, &greeter).await?;
        }
        Ok(())
    })?;
    outcome?;
    Ok(())
}
