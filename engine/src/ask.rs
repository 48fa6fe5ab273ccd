//! The table of asks a shard is waiting on, and the future that waits for one.
//!
//! An ask opens an entry (slot + generation); the reply, from this shard or
//! another, fills it and wakes the asker. A timed-out or cancelled ask
//! removes its entry, so a late reply finds a different generation and is
//! dropped instead of reaching a newer ask.

use std::cell::RefCell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

use slab::Slab;

use crate::{Error, Message};

struct Entry {
    generation: u32,
    result: Option<Result<Message, Error>>,
    waker: Option<Waker>,
}

/// Pending asks of one shard.
#[derive(Default)]
pub(crate) struct AskTable {
    entries: RefCell<Slab<Entry>>,
    next_generation: std::cell::Cell<u32>,
}

/// One open ask; dropping it closes the entry.
pub(crate) struct PendingAsk<'a> {
    table: &'a AskTable,
    pub slot: u32,
    pub generation: u32,
}

impl AskTable {
    /// Opens an entry for a new ask.
    pub(crate) fn open(&self) -> PendingAsk<'_> {
        let generation = self.next_generation.get().wrapping_add(1);
        self.next_generation.set(generation);
        let key = self.entries.borrow_mut().insert(Entry {
            generation,
            result: None,
            waker: None,
        });
        PendingAsk {
            table: self,
            slot: u32::try_from(key).expect("more than 2^32 asks pending on one shard"),
            generation,
        }
    }

    /// Delivers the answer to an ask, if it is still waiting.
    pub(crate) fn fulfil(&self, slot: u32, generation: u32, result: Result<Message, Error>) {
        let mut entries = self.entries.borrow_mut();
        let Some(entry) = entries.get_mut(slot as usize) else {
            return;
        };
        if entry.generation != generation || entry.result.is_some() {
            return;
        }
        entry.result = Some(result);
        let waker = entry.waker.take();
        drop(entries);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Number of asks still waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.borrow().len()
    }
}

impl PendingAsk<'_> {
    /// Waits for the answer.
    pub(crate) async fn answer(&self) -> Result<Message, Error> {
        poll_fn(|cx| {
            let mut entries = self.table.entries.borrow_mut();
            let Some(entry) = entries.get_mut(self.slot as usize) else {
                return Poll::Ready(Err(Error::NodeStopped));
            };
            match entry.result.take() {
                Some(result) => Poll::Ready(result),
                None => {
                    entry.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Drop for PendingAsk<'_> {
    fn drop(&mut self) {
        let mut entries = self.table.entries.borrow_mut();
        if entries
            .get(self.slot as usize)
            .is_some_and(|e| e.generation == self.generation)
        {
            entries.remove(self.slot as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_answer_after_close_reaches_nobody() {
        let table = AskTable::default();
        let (slot, generation) = {
            let first = table.open();
            (first.slot, first.generation)
        };
        assert_eq!(table.len(), 0);
        let second = table.open();
        assert_eq!(second.slot, slot, "the slot is reused");
        table.fulfil(slot, generation, Ok(Message::from("stale")));
        table.fulfil(second.slot, second.generation, Ok(Message::from("fresh")));
        let answer = glommio::LocalExecutor::default().run(second.answer());
        assert_eq!(answer.unwrap(), "fresh");
    }
}
