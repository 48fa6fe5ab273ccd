//! Workers that check FIFO order per sender, shared by the engine's and the
//! transport's FIFO tests.

use std::collections::HashMap;
use std::time::Duration;

use myriad::{Address, BoxError, Context, Error, Message, Replier, Worker};

/// Checks that messages from each sender arrive in sequence order, and
/// answers `when <n>` with `<received> <violations>` once `n` arrived.
#[derive(Default)]
pub struct SequenceChecker {
    next: HashMap<String, u64>,
    received: u64,
    violations: u64,
    waiting: Option<(u64, Replier)>,
}

impl Worker for SequenceChecker {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if let Some(expected) = msg.strip_prefix("when ") {
            let replier = ctx.defer_reply().ok_or("`when` must be asked")?;
            self.waiting = Some((expected.parse()?, replier));
        } else {
            let (sender, seq) = msg.split_once(':').ok_or("expected sender:seq")?;
            let seq: u64 = seq.parse()?;
            let next = self.next.entry(sender.to_owned()).or_insert(0);
            if seq != *next {
                self.violations += 1;
            }
            *next = seq + 1;
            self.received += 1;
        }
        if matches!(&self.waiting, Some((n, _)) if self.received >= *n) {
            if let Some((_, replier)) = self.waiting.take() {
                let report = format!("{} {}", self.received, self.violations);
                replier.complete(Ok(report.into()));
            }
        }
        Ok(())
    }
}

/// On `go <n>`, sends `<id>:0` .. `<id>:<n-1>` to `target` (yielding the
/// shard now and then, as a long-running handler should), then replies.
pub struct SequenceSender {
    /// Names this sender in its messages.
    pub id: &'static str,
    /// Where the sequence goes.
    pub target: Address,
}

impl Worker for SequenceSender {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let n: u64 = msg.strip_prefix("go ").ok_or("expected go <n>")?.parse()?;
        for seq in 0..n {
            let msg = Message::from(format!("{}:{seq}", self.id));
            // A remote worker's delivery window may fill up: wait for the
            // link to take its credits, then send the same message again.
            while let Err(error) = ctx.send(&self.target, msg.clone()) {
                match error {
                    Error::MailboxFull(_) => ctx.sleep(Duration::from_micros(50)).await,
                    error => return Err(error.into()),
                }
            }
            if seq % 1000 == 999 {
                futures_lite::future::yield_now().await;
            }
        }
        ctx.reply("sent")?;
        Ok(())
    }
}
