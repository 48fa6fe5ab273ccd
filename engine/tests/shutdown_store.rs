//! A node's shutdown ends even when the state store still answers more
//! saves than a shard's inbox holds after the shards have gone.
//!
//! The store thread posts its answers to the shard's inbox, which is
//! bounded and drained only by that shard. Once the shard's thread has
//! ended nobody drains it: a blocking post waited forever, and `shutdown`
//! (which joins the store thread after the shards) hung with it, as a bench
//! run with a million active virtual workers did. This test makes the store
//! answer the shutdown's saves only after the shard thread has ended, with
//! more of them than an inbox holds. Since the answers of a batch go to a
//! shard as one job, they no longer fill the inbox here (70,000 saves are
//! some twenty posts); the full inbox of a shard that is down is
//! `liveness.rs`'s unit test `posts_to_a_shard_that_is_down_never_wait_
//! on_its_full_inbox`.
//!
//! In a file of its own: it watches this process's threads for the node's
//! shard thread, and no other test's node may run meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use myriad_engine::{Key, MemoryStore, Node, StateStore, StoreError, Write};

#[path = "support/counter.rs"]
mod counter;
use counter::counter_node;

#[path = "support/shutdown.rs"]
mod shutdown;
use shutdown::shuts_down_within;

/// More than a shard's inbox holds (`INBOX_CAPACITY`, 65,536).
const KEYS: u64 = 70_000;

const LONG: Duration = Duration::from_secs(60);

/// A [`MemoryStore`] whose first save after `hold` is set waits until the
/// node's shard threads have ended.
struct LateSaves {
    inner: MemoryStore,
    hold: Arc<AtomicBool>,
}

/// How many threads of this process are named for a shard (`myriad-<index>`:
/// the shard's own, and its executor's helper).
fn shard_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| {
            name.strip_prefix("myriad-")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count()
}

impl StateStore for LateSaves {
    fn load(&mut self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.inner.load(keys)
    }

    fn save(&mut self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        if self.hold.swap(false, Ordering::SeqCst) {
            let deadline = Instant::now() + LONG;
            while shard_threads() > 0 {
                if Instant::now() > deadline {
                    return Err(StoreError::new("the shard threads did not end"));
                }
                std::thread::yield_now();
            }
        }
        self.inner.save(writes)
    }

    fn keys(&mut self, kind: &str) -> Result<Vec<String>, StoreError> {
        self.inner.keys(kind)
    }

    fn due(&mut self, until_ms: u64) -> Result<Vec<(Key, u64)>, StoreError> {
        self.inner.due(until_ms)
    }
}

#[test]
fn shutdown_ends_when_the_store_answers_more_saves_than_an_inbox_holds_after_the_shards() {
    let hold = Arc::new(AtomicBool::new(false));
    let store_hold = hold.clone();
    let config = counter_node("late-saves", 1)
        .stop_timeout(Duration::from_millis(200))
        .state_store(move |_dir| {
            Ok(LateSaves {
                inner: MemoryStore::default(),
                hold: store_hold.clone(),
            })
        });
    let node = Node::spawn(config).unwrap();
    for i in 0..KEYS {
        node.send_when_ready(Key::new("counter", &i.to_string()), "inc")
            .unwrap();
    }
    // Sent after the others from this thread, so handled after them: every
    // key is active with a count to save.
    let last = Key::new("counter", &(KEYS - 1).to_string());
    assert_eq!(node.send_and_receive(&last, "inc", LONG).unwrap(), "2");
    assert_eq!(node.virtual_stats().unwrap().active, KEYS);
    // The shard's thread, and glommio's helper thread of its executor.
    assert!(shard_threads() > 0, "the node's shard threads are seen");

    hold.store(true, Ordering::SeqCst);
    assert!(
        shuts_down_within(node, LONG),
        "the node's shutdown hung: the store thread waits on an inbox nobody drains"
    );
}
