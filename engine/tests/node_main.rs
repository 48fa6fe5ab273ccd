//! `main` of `Node::start` is a worker with a real address: workers see it
//! as their sender and can send to it; it receives with `ctx.receive()`.

use std::time::Duration;

use myriad_engine::{BoxError, Context, Error, Message, Node, NodeConfig, Worker};

const LONG: Duration = Duration::from_secs(10);

/// Answers with the sender it sees; on `count <n>`, first sends 0..n to
/// its sender.
struct Echo;

impl Worker for Echo {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let sender = ctx.sender().ok_or("no sender")?;
        if ctx.receive().await.is_some() {
            return Err("a worker's context received a message".into());
        }
        if let Some(n) = msg.strip_prefix("count ") {
            for i in 0..n.parse::<u32>()? {
                ctx.send(sender, i.to_string())?;
            }
        }
        ctx.reply(sender.to_string())?;
        Ok(())
    }
}

fn config() -> NodeConfig {
    NodeConfig::default()
        .name("main")
        .shards(2)
        .pin_shards(false)
}

#[test]
fn main_receives_what_workers_send_it_in_order() {
    let outcome = Node::start(config(), |ctx| async move {
        let echo = ctx.spawn_on(1, Echo).await?;
        let seen = ctx.send_and_receive(echo, "count 100", LONG).await?;
        assert_eq!(&*seen, ctx.me().to_string(), "workers see main's address");
        for i in 0..100 {
            assert_eq!(ctx.receive().await.as_deref(), Some(&*i.to_string()));
        }
        // A send to itself, from its own shard.
        ctx.send(ctx.me(), "to me")?;
        assert_eq!(ctx.receive().await.as_deref(), Some("to me"));
        Ok::<_, Error>(())
    });
    outcome.unwrap().unwrap();
}

#[test]
fn an_ask_to_main_is_answered_no_reply_and_a_stopped_main_receives_none() {
    let outcome = Node::start(config(), |mut ctx| async move {
        let asked = ctx.send_and_receive(ctx.me(), "hello", LONG).await;
        assert!(matches!(asked, Err(Error::NoReply(_))), "{asked:?}");
        assert_eq!(ctx.receive().await.as_deref(), Some("hello"));
        assert!(matches!(ctx.reply("no"), Err(Error::NothingToReplyTo)));
        ctx.stop();
        assert_eq!(ctx.receive().await, None);
        Ok::<_, Error>(())
    });
    outcome.unwrap().unwrap();
}
