//! Waiting on this shard's ask table (`ask.rs`): asks from its workers,
//! their sleeps, and the sweeper that expires both on time.
//!
//! An ask and a sleep are small hand-written futures, not `async fn`s: a
//! handler suspended in one keeps it in its run's block for the whole wait
//! (a million thinking agents keep a million), and an `async fn` keeps its
//! arguments, its locals and every future it awaits side by side (about
//! 230 bytes for an ask through `Context::send_and_receive`). These keep
//! what the wait needs: the shard, the table entry, and for an ask the
//! target and timeout that a timeout error names.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::ask::PendingAsk;
use crate::envelope::{Delivery, ReplyTo};
use crate::meter::AskEnd;
use crate::{Address, Error, Message, Result, WorkerRef};

use super::Shard;

impl Shard {
    /// `send_and_receive` from worker `me` of this shard; the ask is sent
    /// when the future is first polled.
    pub(crate) fn ask(
        &self,
        me: WorkerRef,
        to: Address,
        msg: Message,
        timeout: Duration,
    ) -> Ask<'_> {
        Ask {
            shard: self,
            me,
            to,
            timeout,
            state: Phase::Unstarted(msg),
        }
    }

    /// Waits `duration` on this shard's deadline wheel (see `ask.rs`): a
    /// sleep is an ask that nobody answers. The wait starts when the future
    /// is first polled.
    pub(crate) fn sleep_for(&self, duration: Duration) -> Sleep<'_> {
        Sleep {
            shard: self,
            state: Phase::Unstarted(duration),
        }
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

/// The future of [`Shard::ask`]. Counted in the shard's meter from its
/// first poll until it ends, or until it is dropped unanswered.
pub(crate) struct Ask<'a> {
    shard: &'a Shard,
    me: WorkerRef,
    /// Whom it asks; named by a timeout.
    to: Address,
    timeout: Duration,
    /// Unstarted: the message to send.
    state: Phase<'a, Message>,
}

/// Where an ask or a sleep stands.
enum Phase<'a, T> {
    /// Not polled yet: what starting needs.
    Unstarted(T),
    /// Started: its entry in the ask table.
    Waiting(PendingAsk<'a>),
    Done,
}

impl Future for Ask<'_> {
    type Output = Result<Message>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Message>> {
        // No field is pinned: the future holds nothing that is.
        let this = self.get_mut();
        if let Phase::Unstarted(_) = this.state {
            let Phase::Unstarted(msg) = std::mem::replace(&mut this.state, Phase::Done) else {
                unreachable!("matched just above");
            };
            this.shard.meter.ask_started();
            let pending = this.shard.asks.open(this.timeout);
            let delivery = Delivery {
                msg,
                from: Some(this.me),
                reply: Some(ReplyTo::Shard {
                    shard: this.shard.shard_id(),
                    slot: pending.slot,
                    generation: pending.generation,
                }),
            };
            match this.shard.route(&this.to, delivery) {
                Ok(()) => this.state = Phase::Waiting(pending),
                Err(undelivered) => return Poll::Ready(this.end(Err(undelivered.error))),
            }
        }
        let Phase::Waiting(pending) = &this.state else {
            panic!("an ask polled after it ended");
        };
        let answer = match pending.poll_answer(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(answer)) => answer,
            Poll::Ready(None) => Err(Error::Timeout {
                worker: this.to.to_string(),
                after: this.timeout,
            }),
        };
        this.state = Phase::Done;
        Poll::Ready(this.end(answer))
    }
}

impl Ask<'_> {
    /// Counts how the ask ended and hands its answer on.
    fn end(&self, answer: Result<Message>) -> Result<Message> {
        self.shard.meter.ask_ended(Some(match &answer {
            Ok(_) => AskEnd::Answered,
            Err(Error::Timeout { .. }) => AskEnd::TimedOut,
            Err(_) => AskEnd::Failed,
        }));
        answer
    }
}

impl Drop for Ask<'_> {
    fn drop(&mut self) {
        if let Phase::Waiting(_) = self.state {
            // Its asker went away (the worker stopped, the node shuts down).
            self.shard.meter.ask_ended(None);
        }
    }
}

/// The future of [`Shard::sleep_for`]. Counted in the shard's meter as a
/// pending sleep from its first poll until it ends or is dropped.
pub(crate) struct Sleep<'a> {
    shard: &'a Shard,
    /// Unstarted: how long to sleep; waiting: an entry that only expires.
    state: Phase<'a, Duration>,
}

impl Future for Sleep<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // No field is pinned: the future holds nothing that is.
        let this = self.get_mut();
        if let Phase::Unstarted(duration) = this.state {
            this.shard.meter.sleeping(true);
            this.state = Phase::Waiting(this.shard.asks.open(duration));
        }
        let Phase::Waiting(wait) = &this.state else {
            panic!("a sleep polled after it ended");
        };
        // Only expiry or a stopping node can end it; both mean "time is up".
        if wait.poll_answer(cx).is_pending() {
            return Poll::Pending;
        }
        this.state = Phase::Done;
        this.shard.meter.sleeping(false);
        Poll::Ready(())
    }
}

impl Drop for Sleep<'_> {
    fn drop(&mut self) {
        if let Phase::Waiting(_) = self.state {
            self.shard.meter.sleeping(false);
        }
    }
}
