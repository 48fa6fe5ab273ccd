//! Which shard threads are still alive, so that a call to a shard whose
//! thread has ended (normally, or because it panicked) fails instead of
//! waiting forever.
//!
//! A call from outside queues a closure in the shard's inbox and waits for
//! the closure to answer. When the shard's thread ends, a thread-local guard
//! marks the shard down and drops every packet still in its inbox, which
//! drops their answer channels: the waiting callers see them close. A caller
//! that queued its packet after that drain sees the mark and drains the
//! inbox itself: marking (or queuing) happens before draining (or checking),
//! all `SeqCst`, so either the guard drains the packet or the caller sees the
//! mark.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::envelope::Packet;

/// The liveness of a node's shard threads, with the receiving end of each
/// shard's inbox to drain it once its thread is gone.
pub(crate) struct Liveness {
    down: Vec<AtomicBool>,
    inboxes: Vec<flume::Receiver<Packet>>,
}

impl Liveness {
    /// All shards alive; `inboxes[i]` is shard `i`'s inbox.
    pub(crate) fn new(inboxes: Vec<flume::Receiver<Packet>>) -> Self {
        Liveness {
            down: inboxes.iter().map(|_| AtomicBool::new(false)).collect(),
            inboxes,
        }
    }

    /// Whether shard `shard`'s thread has ended.
    pub(crate) fn is_down(&self, shard: usize) -> bool {
        self.down
            .get(shard)
            .is_some_and(|down| down.load(Ordering::SeqCst))
    }

    /// After queuing a packet for `shard`: if the shard is down, drops what
    /// its inbox holds (the packet included), so that its caller's wait
    /// ends. Returns whether the shard is down.
    pub(crate) fn settle(&self, shard: usize) -> bool {
        let down = self.is_down(shard);
        if down {
            self.drain(shard);
        }
        down
    }

    fn mark_down(&self, shard: usize) {
        if let Some(down) = self.down.get(shard) {
            down.store(true, Ordering::SeqCst);
        }
        self.drain(shard);
    }

    fn drain(&self, shard: usize) {
        let Some(inbox) = self.inboxes.get(shard) else {
            return;
        };
        for packet in inbox.try_iter() {
            // A packet's closure may own a worker; its drop must not end
            // the draining thread.
            crate::worker::drop_contained(packet, "a packet for a shard that is down");
        }
    }
}

/// The shards' inboxes as a thread outside them posts to them (the state
/// store's thread): it never waits on a shard whose thread has ended.
///
/// An inbox is bounded and only its shard drains it, and [`Liveness`] keeps
/// its receiving end open: a plain blocking send to a shard that is down
/// waits forever once the inbox is full (seen: a node's shutdown hung on the
/// store thread answering a million saves its shards no longer took).
#[derive(Clone)]
pub(crate) struct Inboxes {
    senders: Vec<flume::Sender<Packet>>,
    liveness: Arc<Liveness>,
}

impl Inboxes {
    /// The inboxes `senders` of the shards whose liveness is `liveness`.
    pub(crate) fn new(senders: Vec<flume::Sender<Packet>>, liveness: Arc<Liveness>) -> Self {
        Inboxes { senders, liveness }
    }

    /// How many shards there are.
    pub(crate) fn len(&self) -> usize {
        self.senders.len()
    }

    /// Queues `packet` for shard `shard`: see [`post`].
    pub(crate) fn post(&self, shard: usize, packet: Packet) {
        post(&self.senders, &self.liveness, shard, packet);
    }
}

/// Queues `packet` for shard `shard` of the node whose inboxes are
/// `senders`, from a thread outside its shards, waiting only while its inbox
/// is full and the shard alive. A packet for a shard that is down (or goes
/// down meanwhile) is dropped: nobody is left to run it.
pub(crate) fn post(senders: &[flume::Sender<Packet>], liveness: &Liveness, shard: usize, packet: Packet) {
    if let Some(inbox) = senders.get(shard) {
        post_to(inbox, liveness, shard, packet);
    }
}

/// [`post`] into `inbox`, shard `shard`'s.
fn post_to(inbox: &flume::Sender<Packet>, liveness: &Liveness, shard: usize, packet: Packet) {
    if liveness.is_down(shard) {
        crate::worker::drop_contained(packet, "a packet for a shard that is down");
        return;
    }
    // A shard that goes down while this waits drains its inbox (after
    // marking itself down), which makes room; `settle` then drops the
    // packet.
    if inbox.send(packet).is_ok() {
        liveness.settle(shard);
    }
}

/// [`post`], for a shard thread that is not one of that node's (another
/// node's, or one of its own after it stopped being the shard): it never
/// waits. A shard thread that waited for another shard's inbox could wait
/// for ever — for a shard that waits for it in turn, or for its own inbox,
/// which nobody else drains. A packet for a full inbox goes to the overflow
/// thread, which waits for room instead.
pub(crate) fn post_without_waiting(
    senders: &[flume::Sender<Packet>],
    liveness: &Arc<Liveness>,
    shard: usize,
    packet: Packet,
) {
    let Some(inbox) = senders.get(shard) else {
        return;
    };
    if liveness.is_down(shard) {
        crate::worker::drop_contained(packet, "a packet for a shard that is down");
        return;
    }
    match inbox.try_send(packet) {
        Ok(()) => {
            liveness.settle(shard);
        }
        Err(flume::TrySendError::Full(packet)) => {
            let overflowed = Overflowed {
                inbox: inbox.clone(),
                liveness: liveness.clone(),
                shard,
                packet,
            };
            match overflow() {
                Some(overflow) => drop(overflow.send(overflowed)),
                None => tracing::warn!(shard, "no overflow thread: a packet for a full inbox is dropped"),
            }
        }
        // The node is gone.
        Err(flume::TrySendError::Disconnected(_)) => {}
    }
}

/// A packet that a shard thread could not queue without waiting.
struct Overflowed {
    inbox: flume::Sender<Packet>,
    liveness: Arc<Liveness>,
    shard: usize,
    packet: Packet,
}

/// The overflow thread's queue: one thread for the process, started on
/// first use, that queues each packet as a thread outside the shards does
/// ([`post`]). Its queue is unbounded; it fills only while an inbox of
/// 65,536 packets is full.
fn overflow() -> Option<&'static flume::Sender<Overflowed>> {
    static OVERFLOW: OnceLock<Option<flume::Sender<Overflowed>>> = OnceLock::new();
    OVERFLOW
        .get_or_init(|| {
            let (tx, rx) = flume::unbounded::<Overflowed>();
            let spawned = std::thread::Builder::new()
                .name("myriad-overflow".into())
                .spawn(move || {
                    for o in rx.iter() {
                        post_to(&o.inbox, &o.liveness, o.shard, o.packet);
                    }
                });
            spawned.ok().map(|_| tx)
        })
        .as_ref()
}

/// Marks its shard down when its thread ends (see [`watch_this_thread`]).
struct Guard {
    liveness: Arc<Liveness>,
    shard: usize,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.liveness.mark_down(self.shard);
    }
}

thread_local! {
    /// The guard of the shard running on this thread, dropped at thread
    /// exit, also when the thread unwinds from a panic.
    static GUARD: RefCell<Option<Guard>> = const { RefCell::new(None) };
}

/// Marks shard `shard` down in `liveness` when the calling thread ends.
pub(crate) fn watch_this_thread(liveness: Arc<Liveness>, shard: usize) {
    GUARD.with(|g| *g.borrow_mut() = Some(Guard { liveness, shard }));
}

/// Whether the calling thread runs a shard (of any node).
pub(crate) fn on_shard_thread() -> bool {
    GUARD
        .try_with(|g| g.borrow().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(answer: flume::Sender<()>) -> Packet {
        Packet::Run(Box::new(move |_| {
            let _ = answer.send(());
        }))
    }

    #[test]
    fn a_thread_that_ends_marks_its_shard_down_and_fails_queued_calls() {
        let (tx, rx) = flume::unbounded();
        let liveness = Arc::new(Liveness::new(vec![rx]));
        let (answer, waiting) = flume::bounded(1);
        tx.send(packet(answer)).unwrap();
        let watched = liveness.clone();
        std::thread::spawn(move || {
            watch_this_thread(watched, 0);
            assert!(on_shard_thread());
            panic!("the shard thread dies");
        })
        .join()
        .unwrap_err();
        assert!(liveness.is_down(0));
        assert!(waiting.recv().is_err(), "the queued call's wait ends");
        assert!(!on_shard_thread());
    }

    /// What the state store's thread relies on: its answers to a shard
    /// whose thread ended never wait for ever on the inbox nobody drains,
    /// however many it posts.
    #[test]
    fn posts_to_a_shard_that_is_down_never_wait_on_its_full_inbox() {
        let (tx, rx) = flume::bounded(1);
        let liveness = Arc::new(Liveness::new(vec![rx]));
        let inboxes = Inboxes::new(vec![tx], liveness.clone());
        let watched = liveness.clone();
        std::thread::spawn(move || watch_this_thread(watched, 0)).join().unwrap();
        let (posted, returned) = flume::bounded(1);
        std::thread::spawn(move || {
            // One fills an inbox of one; the next would wait for room.
            for _ in 0..3 {
                let (answer, _) = flume::bounded(1);
                inboxes.post(0, packet(answer));
            }
            let _ = posted.send(());
        });
        assert!(
            returned.recv_timeout(std::time::Duration::from_secs(10)).is_ok(),
            "the posts returned"
        );
    }

    #[test]
    fn a_call_queued_after_the_drain_is_settled_by_its_caller() {
        let (tx, rx) = flume::unbounded();
        let liveness = Liveness::new(vec![rx]);
        assert!(!liveness.settle(0));
        liveness.mark_down(0);
        let (answer, waiting) = flume::bounded(1);
        tx.send(packet(answer)).unwrap();
        assert!(liveness.settle(0));
        assert!(waiting.recv().is_err());
    }
}
