//! A stateful worker: a rate limiter that remembers, per client, how many
//! requests it let through. State lives in the worker struct; it is safe
//! because a worker handles one message at a time.
//!
//! ```text
//! cargo run --example stateful
//! ```

use std::collections::HashMap;
use std::time::Duration;

use myriad::{BoxError, Context, Message, Node, NodeConfig, Worker};

#[path = "support/logging.rs"]
mod logging;

/// Lets each client through `limit` times, then refuses.
struct RateLimiter {
    limit: u32,
    used: HashMap<String, u32>,
}

impl Worker for RateLimiter {
    async fn on_start(&mut self, ctx: &mut Context) {
        println!("rate limiter started on shard {}", ctx.shard());
    }

    async fn handle_message(&mut self, ctx: &mut Context, client: Message) -> Result<(), BoxError> {
        let used = self.used.entry(client.to_string()).or_insert(0);
        if *used < self.limit {
            *used += 1;
            ctx.reply(format!("ok ({used}/{})", self.limit))?;
        } else {
            ctx.reply("refused")?;
        }
        Ok(())
    }
}

fn main() -> Result<(), BoxError> {
    logging::init("info");
    Node::start(NodeConfig::default(), |ctx| async move {
        let limiter = RateLimiter {
            limit: 2,
            used: HashMap::new(),
        };
        ctx.start_worker("limiter", limiter).await?;
        for client in ["alice", "bob", "alice", "alice", "bob"] {
            let answer = ctx
                .send_and_receive("limiter", client, Duration::from_secs(1))
                .await?;
            println!("{client}: {answer}");
        }
        Ok::<_, BoxError>(())
    })?
}
