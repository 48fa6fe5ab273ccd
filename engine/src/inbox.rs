//! The mailbox of `main` (`Node::start`): `main` is a future, not a
//! handler, so a worker takes its messages and queues them for
//! `Context::receive`.
//!
//! The worker is an ordinary one of shard 0 (a slot, a mailbox, the usual
//! path for every message), so `main` has a real address and the message
//! path knows nothing of it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use crate::signal::Signal;
use crate::{BoxError, Context, Message, Worker};

/// The messages that `main`'s worker took and `main` has not received.
#[derive(Default)]
pub(crate) struct Inbox {
    messages: RefCell<VecDeque<Message>>,
    /// Raised by each message, and when the worker stops.
    arrived: Signal,
    closed: Cell<bool>,
}

impl Inbox {
    /// The next message, in arrival order; `None` once `main`'s worker has
    /// stopped and every message was received.
    pub(crate) async fn receive(&self) -> Option<Message> {
        loop {
            if let Some(msg) = self.messages.borrow_mut().pop_front() {
                return Some(msg);
            }
            if self.closed.get() {
                return None;
            }
            self.arrived.wait().await;
        }
    }
}

/// The worker that stands for `main`: it queues every message for
/// `Context::receive` (an ask is answered `NoReply` at once).
pub(crate) struct MainWorker(pub(crate) Rc<Inbox>);

impl Worker for MainWorker {
    async fn handle_message(&mut self, _ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        self.0.messages.borrow_mut().push_back(msg);
        self.0.arrived.notify();
        Ok(())
    }

    async fn on_stop(&mut self, _ctx: &mut Context) {
        self.0.closed.set(true);
        self.0.arrived.notify();
    }
}
