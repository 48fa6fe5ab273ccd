//! Waiting on this shard's ask table (`ask.rs`): asks from its workers,
//! their sleeps, and the sweeper that expires both on time.

use std::rc::Rc;
use std::time::Duration;

use crate::envelope::{Delivery, ReplyTo};
use crate::meter::{AskEnd, Meter};
use crate::{Address, Error, Message, Result, WorkerRef};

use super::Shard;

impl Shard {
    /// `send_and_receive` from a worker of this shard.
    pub(crate) async fn ask(
        &self,
        me: WorkerRef,
        to: Address,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message> {
        let mut counted = Counted::ask(&self.meter);
        let pending = self.asks.open(timeout);
        let delivery = Delivery {
            msg,
            from: Some(me),
            reply: Some(ReplyTo::Shard {
                shard: self.shard_id(),
                slot: pending.slot,
                generation: pending.generation,
            }),
        };
        let answer = match self.route(&to, delivery) {
            Ok(()) => pending.answer().await.unwrap_or_else(|| {
                Err(Error::Timeout {
                    worker: to.to_string(),
                    after: timeout,
                })
            }),
            Err(undelivered) => Err(undelivered.error),
        };
        counted.end = Some(match &answer {
            Ok(_) => AskEnd::Answered,
            Err(Error::Timeout { .. }) => AskEnd::TimedOut,
            Err(_) => AskEnd::Failed,
        });
        answer
    }

    /// Waits `duration` on this shard's deadline wheel (see `ask.rs`): a
    /// sleep is an ask that nobody answers.
    pub(crate) async fn sleep_for(&self, duration: Duration) {
        let _counted = Counted::sleep(&self.meter);
        let wait = self.asks.open(duration);
        // Only expiry or a stopping node can end it; both mean "time is up".
        let _ = wait.answer().await;
    }

    /// Whether this shard's ask `slot`/`generation` still waits.
    pub(crate) fn ask_is_waiting(&self, slot: u32, generation: u32) -> bool {
        self.asks.is_waiting(slot, generation)
    }

    /// Expires this shard's asks on time, until the shard stops.
    pub(crate) async fn sweep_asks(self: Rc<Self>) {
        self.asks.sweep(|| self.closed.get()).await;
    }
}

/// An ask or a sleep in the shard's meter, from its start until it ends or
/// its future is dropped (its worker went away meanwhile).
struct Counted<'a> {
    meter: &'a Meter,
    /// `Some` for an ask: how it ended, once known.
    end: Option<AskEnd>,
    ask: bool,
}

impl<'a> Counted<'a> {
    fn ask(meter: &'a Meter) -> Self {
        meter.ask_started();
        Counted {
            meter,
            end: None,
            ask: true,
        }
    }

    fn sleep(meter: &'a Meter) -> Self {
        meter.sleeping(true);
        Counted {
            meter,
            end: None,
            ask: false,
        }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if self.ask {
            self.meter.ask_ended(self.end);
        } else {
            self.meter.sleeping(false);
        }
    }
}
