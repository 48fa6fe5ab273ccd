//! A supervised pool of agents: a `Supervisor` starts three named agents
//! and restarts any that fails, under the same name, so callers keep
//! using `agent-1` as before.
//!
//! ```text
//! cargo run --example supervised
//! the pool runs #1.1.2 #0.1.2 #1.2.3
//! agent-1 answered: agent-1 (turn 1)
//! agent-1 failed: worker agent-1 failed: panicked: agent-1 was asked to crash
//! agent-1 answered after its restart: agent-1 (turn 1)
//! ```

use std::time::Duration;

use myriad::{
    BoxError, ChildSpec, Context, Error, Message, Node, NodeConfig, Restart, Strategy, Supervisor,
    Worker,
};

#[path = "support/logging.rs"]
mod logging;

const PATIENCE: Duration = Duration::from_secs(5);

/// An agent with a little state: the turns it has answered. A restart
/// starts it afresh.
struct Agent {
    name: String,
    turns: u32,
}

impl Worker for Agent {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        assert!(msg != "crash", "{} was asked to crash", self.name);
        self.turns += 1;
        ctx.reply(format!("{} (turn {})", self.name, self.turns))?;
        Ok(())
    }
}

/// The pool: one supervisor, three agents, each restarted after a failure
/// (at most 5 restarts in 10 s, else the pool itself fails).
fn pool() -> Supervisor {
    (0..3).fold(
        Supervisor::new(Strategy::OneForOne).intensity(5, Duration::from_secs(10)),
        |pool, i| {
            let name = format!("agent-{i}");
            let spec = ChildSpec::named(&name.clone(), move || Agent {
                name: name.clone(),
                turns: 0,
            });
            pool.child(spec.restart(Restart::Transient))
        },
    )
}

/// Asks `to`, asking again while it is between two lives (a restart takes
/// a moment: its name is free before the new agent holds it).
async fn ask_again(ctx: &Context, to: &str, msg: &'static str) -> Result<Message, Error> {
    for _ in 0..1000 {
        match ctx.send_and_receive(to, msg, PATIENCE).await {
            Err(Error::NoSuchWorker(_)) => ctx.sleep(Duration::from_millis(1)).await,
            answer => return answer,
        }
    }
    ctx.send_and_receive(to, msg, PATIENCE).await
}

fn main() -> Result<(), BoxError> {
    logging::init("warn");
    Node::start(NodeConfig::default(), |ctx| async move {
        ctx.start_worker("pool", pool()).await?;
        // A supervisor handles messages after its `on_start` started its
        // children: its answer (the children's references) says they run.
        let children = ctx.send_and_receive("pool", "children?", PATIENCE).await?;
        println!("the pool runs {children}");
        let answer = ctx.send_and_receive("agent-1", "hello", PATIENCE).await?;
        println!("agent-1 answered: {answer}");
        if let Err(e) = ctx.send_and_receive("agent-1", "crash", PATIENCE).await {
            println!("agent-1 failed: {e}");
        }
        let answer = ask_again(&ctx, "agent-1", "hello").await?;
        println!("agent-1 answered after its restart: {answer}");
        Ok::<_, BoxError>(())
    })??;
    Ok(())
}
