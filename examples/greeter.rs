//! The seed's echo example: `main` starts a worker named `greeter`, asks it
//! with `world`, and prints the reply.
//!
//! ```text
//! cargo run --example greeter
//! Hello, world!
//! ```

use std::time::Duration;

use myriad::{BoxError, Context, Message, Node, NodeConfig, Worker};

#[path = "support/logging.rs"]
mod logging;

/// Replies to every message with a greeting.
struct Greeter;

impl Worker for Greeter {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        ctx.reply(format!("Hello, {msg}!"))?;
        Ok(())
    }
}

fn main() -> Result<(), BoxError> {
    logging::init("info");
    let reply = Node::start(NodeConfig::default(), |ctx| async move {
        ctx.start_worker("greeter", Greeter).await?;
        ctx.send_and_receive("greeter", "world", Duration::from_secs(1))
            .await
    })??;
    println!("{reply}");
    Ok(())
}
