//! Fire and forget: `send` enqueues and returns at once; the sender never
//! waits for the message to be handled. Here 10,000 notifications go to a
//! collector worker, then one ask (which queues behind them, FIFO) reads the
//! total.
//!
//! ```text
//! cargo run --example fire_and_forget
//! ```

use std::time::Duration;

use myriad::{BoxError, Context, Message, Node, NodeConfig, Worker};

#[path = "support/logging.rs"]
mod logging;

/// Adds up the numbers it is sent; answers `total` with the sum.
#[derive(Default)]
struct Collector {
    sum: u64,
}

impl Worker for Collector {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if msg == "total" {
            ctx.reply(self.sum.to_string())?;
        } else {
            self.sum += msg.parse::<u64>()?;
        }
        Ok(())
    }
}

fn main() -> Result<(), BoxError> {
    logging::init("info");
    let total = Node::start(NodeConfig::default(), |ctx| async move {
        let collector = ctx.start_worker("collector", Collector::default()).await?;
        for i in 1..=10_000u64 {
            ctx.send(collector, i.to_string())?; // returns at once
        }
        ctx.send_and_receive(collector, "total", Duration::from_secs(5))
            .await
    })??;
    println!("sum of 1..=10000 = {total}");
    assert_eq!(total, "50005000");
    Ok(())
}
