//! How a shard that is about to sleep is woken by other threads: the
//! consumer side of the cross-shard rings (`link.rs`) and of the wakes of
//! suspended runs from other threads (`suspended.rs`).
//!
//! Parking is a Dekker handshake: the consumer registers its waker, raises
//! `parked`, issues a SeqCst fence and checks its queues once more; a
//! producer pushes, issues a SeqCst fence and rings the doorbell only if
//! `parked` is up. Either the consumer sees the push or the producer sees
//! the flag, so no wake-up is lost, and a producer pays for a wake-up (an
//! eventfd write inside glommio) only when the consumer really sleeps.
//! Model-checked with loom (the tests below, `--cfg loom`).

use std::task::Waker;

use crate::sync::{fence, AtomicBool, AtomicWaker, Ordering};

/// How a shard that is about to sleep is woken by the other shards.
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    waker: AtomicWaker,
    parked: AtomicBool,
}

impl Doorbell {
    /// Producer side, after a push: wakes the consumer if it sleeps.
    pub(crate) fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) {
            self.waker.wake();
        }
    }

    /// Consumer side, before its last check of the rings: from now on a
    /// producer will wake `waker`.
    pub(crate) fn arm(&self, waker: &Waker) {
        self.waker.register(waker);
        self.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Consumer side, once awake.
    pub(crate) fn disarm(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The handshake under every interleaving and every weak-memory outcome
    //! loom can produce. The producer's queue is a loom atomic written and
    //! read `Relaxed`, the weakest a real queue (crossbeam's `ArrayQueue`,
    //! `SegQueue`) could offer: the fences alone must carry the handshake.

    use super::*;
    use crate::sync::CountingWaker;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;
    use loom::thread::JoinHandle;

    /// A doorbell, and a producer thread that pushes `pushes` times (the
    /// queue's length, as a counter) and rings after each push.
    fn producer(pushes: usize) -> (Arc<Doorbell>, Arc<AtomicUsize>, JoinHandle<()>) {
        let bell = Arc::new(Doorbell::default());
        let pushed = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (bell, pushed) = (bell.clone(), pushed.clone());
            loom::thread::spawn(move || {
                for n in 1..=pushes {
                    pushed.store(n, Ordering::Relaxed);
                    bell.ring();
                }
            })
        };
        (bell, pushed, thread)
    }

    /// A producer pushes and rings while the consumer parks: the consumer
    /// either sees the push in its last check or is woken.
    #[test]
    fn loom_a_parking_consumer_never_misses_a_push() {
        loom::model(|| {
            let (bell, pushed, producer) = producer(1);
            let (waker, woken) = CountingWaker::new();
            bell.arm(&waker);
            let seen = pushed.load(Ordering::Relaxed) == 1;
            producer.join().unwrap();
            let wakes = woken.wakes();
            assert!(seen || wakes == 1, "lost wake-up: push unseen, no wake");
            bell.disarm();
        });
    }

    /// A consumer that parks again after it was woken or saw a push (so
    /// registers its waker again), against a producer that pushes twice:
    /// whenever the consumer would sleep, a wake comes after it armed.
    #[test]
    fn loom_a_consumer_that_parks_again_is_woken_again() {
        loom::model(|| {
            let (bell, pushed, producer) = producer(2);
            let (waker, woken) = CountingWaker::new();
            let mut seen = 0;
            while seen < 2 {
                let wakes_before = woken.wakes();
                bell.arm(&waker);
                let now = pushed.load(Ordering::Relaxed);
                if now > seen {
                    seen = now;
                    bell.disarm();
                    continue;
                }
                // Nothing new: the consumer sleeps, armed, until woken.
                producer.join().unwrap();
                let wakes = woken.wakes();
                assert!(wakes > wakes_before, "asleep with push {} unseen", seen + 1);
                return;
            }
            producer.join().unwrap();
        });
    }
}
