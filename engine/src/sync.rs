//! The atomics and the lock-free queue of the engine's cross-thread
//! primitives (`doorbell.rs`, `suspended.rs`): std's and the chosen crates'
//! in a normal build, loom's in a `cfg(loom)` build, so that loom can
//! model-check those primitives:
//!
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p myriad-engine --lib loom`

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, Ordering};

/// Registers the waker of a task that other threads may wake.
#[cfg(not(loom))]
pub(crate) use atomic_waker::AtomicWaker;

/// Multi-producer queue of woken keys.
#[cfg(not(loom))]
pub(crate) use crossbeam::queue::SegQueue as Queue;

/// loom's `AtomicWaker`, with the `atomic_waker` crate's signature.
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct AtomicWaker(loom::future::AtomicWaker);

#[cfg(loom)]
impl AtomicWaker {
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.0.register_by_ref(waker);
    }

    pub(crate) fn wake(&self) {
        self.0.wake();
    }
}

/// A queue whose synchronisation loom sees (crossbeam's atomics are not
/// loom's): a locked `VecDeque` with `SegQueue`'s signature.
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct Queue<T>(loom::sync::Mutex<std::collections::VecDeque<T>>);

#[cfg(loom)]
impl<T> Queue<T> {
    pub(crate) fn new() -> Self {
        Queue(loom::sync::Mutex::new(std::collections::VecDeque::new()))
    }

    pub(crate) fn push(&self, value: T) {
        self.lock().push_back(value);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        self.lock().pop_front()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> loom::sync::MutexGuard<'_, std::collections::VecDeque<T>> {
        // A panic under the lock fails the model anyway.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A waker that counts its wakes (with loom's atomics in a `cfg(loom)`
/// build), for the tests of the primitives.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct CountingWaker {
    #[cfg(not(loom))]
    wakes: std::sync::atomic::AtomicUsize,
    #[cfg(loom)]
    wakes: loom::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl CountingWaker {
    /// A waker that has not been woken, and its counter.
    pub(crate) fn new() -> (std::task::Waker, std::sync::Arc<Self>) {
        let counter = std::sync::Arc::new(CountingWaker {
            wakes: Default::default(),
        });
        (std::task::Waker::from(counter.clone()), counter)
    }

    /// How often it was woken.
    pub(crate) fn wakes(&self) -> usize {
        self.wakes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
    }
}
