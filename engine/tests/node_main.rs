//! What `main` of `Node::start` is: a task with a context, not a worker
//! (see `Node::start`).

use std::time::Duration;

use myriad_engine::{BoxError, Context, Error, Message, Node, NodeConfig, Worker};

/// Answers every ask with the sender it sees.
struct Echo;

impl Worker for Echo {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        let sender = ctx.sender().map(|r| r.to_string()).unwrap_or_default();
        ctx.reply(sender)?;
        Ok(())
    }
}

#[test]
fn main_can_ask_but_has_no_mailbox() {
    let config = NodeConfig::default()
        .name("main")
        .shards(2)
        .pin_shards(false);
    let outcome = Node::start(config, |mut ctx| async move {
        let me = ctx.me();
        let echo = ctx.spawn_on(1, Echo).await?;
        let seen = ctx
            .send_and_receive(echo, "who", Duration::from_secs(10))
            .await?;
        assert_eq!(&*seen, me.to_string(), "workers see main's placeholder");
        assert!(matches!(
            ctx.send(me, "to main"),
            Err(Error::NoSuchWorker(_))
        ));
        assert!(matches!(ctx.reply("no"), Err(Error::NothingToReplyTo)));
        Ok::<_, Error>(())
    });
    outcome.unwrap().unwrap();
}
