//! Memory for runs that finish without suspending, reused instead of
//! allocated per run.
//!
//! A run (see `worker.rs`) is a future of a type known only to the worker,
//! polled once inline by the scheduler. Most runs finish in that first poll;
//! only one that suspends must outlive it, in the shard's table of suspended
//! runs. So the scheduler builds each run inside a *spare block* of exactly
//! the run's layout, polls it there, and then either drops it in place and
//! keeps the block for the next run of that layout, or hands the block over
//! as the run's `Box`. A handler that does not suspend thus costs no
//! allocation.
//!
//! Replacing a `Box::pin` per run: same-shard ping-pong (one run per
//! message) spent about 8% of its time in malloc and free.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// A future run by the scheduler, boxed once it has suspended.
pub(crate) type Run = Pin<Box<dyn Future<Output = ()>>>;

/// Most distinct layouts kept; a shard runs few worker types at a time.
const MAX_SPARES: usize = 8;

/// An allocation of `layout` from the global allocator, holding nothing.
struct Block {
    layout: Layout,
    ptr: NonNull<u8>,
}

/// One shard's spare blocks, at most one per layout: runs are polled one at
/// a time, so one block per layout is all a shard ever needs at once.
#[derive(Default)]
pub(crate) struct Spares {
    blocks: RefCell<Vec<Block>>,
}

impl Spares {
    /// Builds a run with `make` right inside a spare block of its layout and
    /// polls it once. Returns `None` if it finished (its block is kept for
    /// the next run), or the run, boxed in that same block, if it suspended.
    ///
    /// A panic escaping `run` leaks the run and its block (nothing is
    /// dropped twice); worker code cannot cause one, as runs catch the
    /// panics of handlers.
    pub(crate) fn poll_in_place<F>(
        &self,
        make: impl FnOnce() -> F,
        cx: &mut Context<'_>,
    ) -> Option<Run>
    where
        F: Future<Output = ()> + 'static,
    {
        let layout = Layout::new::<F>();
        if layout.size() == 0 {
            // Nothing to allocate: a zero-sized box is free.
            let mut run = Box::pin(make());
            return run.as_mut().poll(cx).is_pending().then_some(run);
        }
        let ptr = self.take(layout).cast::<F>();
        // SAFETY: `ptr` comes from `take(Layout::new::<F>())`, so it is
        // non-null, aligned and valid for writes of one `F`, and nothing else
        // refers to it.
        // Built right where it is written, the run's bytes are not first
        // assembled on the stack and then copied.
        unsafe { ptr.as_ptr().write(make()) };
        // SAFETY: the run was just written at `ptr` and is not moved again:
        // below it is either dropped in place or owned by a `Box` made from
        // this same pointer, which never moves its contents.
        let pinned = unsafe { Pin::new_unchecked(&mut *ptr.as_ptr()) };
        match pinned.poll(cx) {
            Poll::Ready(()) => {
                // SAFETY: the run at `ptr` is initialised, and nothing uses
                // it after this drop; the block then holds nothing again.
                unsafe { std::ptr::drop_in_place(ptr.as_ptr()) };
                self.give(Block {
                    layout,
                    ptr: ptr.cast(),
                });
                None
            }
            Poll::Pending => {
                // SAFETY: the block was allocated by the global allocator
                // with `Layout::new::<F>()`, the layout `Box<F>` frees with,
                // and holds an initialised `F` that nothing else owns.
                let boxed: Box<F> = unsafe { Box::from_raw(ptr.as_ptr()) };
                // SAFETY: the run was pinned in this block above and the box
                // keeps it there.
                Some(unsafe { Pin::new_unchecked(boxed) })
            }
        }
    }

    /// A spare block of `layout` (non-zero size), or a new one.
    fn take(&self, layout: Layout) -> NonNull<u8> {
        let mut blocks = self.blocks.borrow_mut();
        if let Some(i) = blocks.iter().position(|b| b.layout == layout) {
            return blocks.swap_remove(i).ptr;
        }
        drop(blocks);
        // SAFETY: `layout` has a non-zero size (checked by the caller).
        let ptr = unsafe { alloc(layout) };
        NonNull::new(ptr).unwrap_or_else(|| handle_alloc_error(layout))
    }

    /// Keeps `block` for a later run, or frees it if enough are kept.
    fn give(&self, block: Block) {
        let mut blocks = self.blocks.borrow_mut();
        if blocks.len() < MAX_SPARES {
            blocks.push(block);
        } else {
            drop(blocks);
            free(block);
        }
    }

    /// How many blocks are kept.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.blocks.borrow().len()
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        for block in self.blocks.get_mut().drain(..) {
            free(block);
        }
    }
}

fn free(block: Block) {
    // SAFETY: every block was allocated by `alloc(block.layout)` and holds
    // no value (runs are dropped in place before their block is kept).
    unsafe { dealloc(block.ptr.as_ptr(), block.layout) };
}

#[cfg(test)]
mod tests {
    //! These tests use no glommio, so that they also run under a sanitizer:
    //! `RUSTFLAGS=-Zsanitizer=address cargo +nightly test -p myriad-engine
    //! --lib spare --target x86_64-unknown-linux-gnu`.

    use super::*;
    use std::cell::Cell;
    use std::panic::AssertUnwindSafe;
    use std::rc::Rc;
    use std::task::Waker;

    /// Counts its drops, to prove each run is dropped exactly once.
    struct DropCount(Rc<Cell<usize>>);

    impl Drop for DropCount {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    /// A run that holds `payload`, bumps `polls` per poll and suspends
    /// `suspensions` times before it finishes.
    fn run(
        payload: [u64; 8],
        drops: &Rc<Cell<usize>>,
        polls: &Rc<Cell<usize>>,
        suspensions: usize,
    ) -> impl Future<Output = ()> + 'static {
        let guard = DropCount(drops.clone());
        let polls = polls.clone();
        let mut left = suspensions;
        std::future::poll_fn(move |cx| {
            let _keep = (&guard, payload);
            polls.set(polls.get() + 1);
            if left == 0 {
                return Poll::Ready(());
            }
            left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    }

    #[test]
    fn a_finished_run_leaves_its_block_for_the_next_one() {
        let spares = Spares::default();
        let (drops, polls) = (Rc::default(), Rc::default());
        let mut cx = Context::from_waker(Waker::noop());
        for i in 0..3 {
            let ran = spares.poll_in_place(|| run([i; 8], &drops, &polls, 0), &mut cx);
            assert!(ran.is_none(), "a run that does not suspend finishes");
            assert_eq!(spares.kept(), 1, "one block, reused");
        }
        assert_eq!((drops.get(), polls.get()), (3, 3));
    }

    #[test]
    fn a_suspended_run_keeps_its_block_as_its_box() {
        let spares = Spares::default();
        let (drops, polls) = (Rc::default(), Rc::default());
        let mut cx = Context::from_waker(Waker::noop());
        let first = spares.poll_in_place(|| run([1; 8], &drops, &polls, 0), &mut cx);
        assert!(first.is_none());
        let mut suspended = spares
            .poll_in_place(|| run([2; 8], &drops, &polls, 2), &mut cx)
            .expect("the run suspends");
        assert_eq!(spares.kept(), 0, "the block went to the suspended run");
        assert_eq!(suspended.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(suspended.as_mut().poll(&mut cx), Poll::Ready(()));
        drop(suspended);
        assert_eq!((drops.get(), polls.get()), (2, 4));
        // The next run gets a fresh block.
        assert!(spares
            .poll_in_place(|| run([3; 8], &drops, &polls, 0), &mut cx)
            .is_none());
        assert_eq!((spares.kept(), drops.get()), (1, 3));
    }

    #[test]
    fn a_suspended_run_dropped_unfinished_is_dropped_once() {
        let spares = Spares::default();
        let (drops, polls) = (Rc::default(), Rc::default());
        let mut cx = Context::from_waker(Waker::noop());
        let suspended = spares.poll_in_place(|| run([4; 8], &drops, &polls, 5), &mut cx);
        assert!(suspended.is_some());
        drop(suspended);
        assert_eq!(drops.get(), 1);
    }

    /// Where the last leaked run lived: a pointer into its block, so that
    /// LeakSanitizer (the ASan run) sees the block as reachable.
    static LEAKED_RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// A run that records where it lives (in its spare block) and panics
    /// on its first poll if `panics`.
    fn located(
        at: &Rc<Cell<usize>>,
        drops: &Rc<Cell<usize>>,
        panics: bool,
    ) -> impl Future<Output = ()> + 'static {
        let (at, guard) = (at.clone(), DropCount(drops.clone()));
        let payload = [7u64; 8];
        std::future::poll_fn(move |_| {
            let _keep = &guard;
            at.set(std::ptr::from_ref(&payload) as usize);
            assert!(!panics, "the run panics");
            Poll::Ready(())
        })
    }

    #[test]
    fn a_block_whose_poll_panicked_is_leaked_never_reused() {
        let spares = Spares::default();
        let (at, drops) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let mut cx = Context::from_waker(Waker::noop());
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
            spares.poll_in_place(|| located(&at, &drops, true), &mut cx)
        }));
        assert!(panicked.is_err());
        let leaked = at.get();
        LEAKED_RUN.store(leaked, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(spares.kept(), 0, "the block was not given back");
        assert_eq!(drops.get(), 0, "the half-polled run is not dropped");
        assert!(spares
            .poll_in_place(|| located(&at, &drops, false), &mut cx)
            .is_none());
        assert_ne!(
            at.get(),
            leaked,
            "the next run of that layout got a new block"
        );
        assert_eq!((spares.kept(), drops.get()), (1, 1));
    }

    #[test]
    fn layouts_get_their_own_blocks_up_to_a_bound() {
        let spares = Spares::default();
        let mut cx = Context::from_waker(Waker::noop());
        let drops = Rc::new(Cell::new(0));
        macro_rules! sized {
            ($($n:literal)*) => {$(
                let guard = DropCount(drops.clone());
                let payload = [0u64; $n];
                let ran = spares.poll_in_place(|| async move {
                    let _keep = (&guard, payload);
                }, &mut cx);
                assert!(ran.is_none());
            )*};
        }
        sized!(1 2 3 4 5 6 7 8 9 10 11 12);
        assert_eq!(spares.kept(), MAX_SPARES);
        assert_eq!(drops.get(), 12);
        // Zero-sized runs need no block at all.
        assert!(spares.poll_in_place(|| async {}, &mut cx).is_none());
        assert_eq!(spares.kept(), MAX_SPARES);
    }
}
