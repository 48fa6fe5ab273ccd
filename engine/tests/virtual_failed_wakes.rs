//! A stored key that cannot be activated (its record is corrupt) and has a
//! reminder, in a store the zone shares: every scan of the store wakes it
//! again. Each failure is counted; it is logged once.
//!
//! Its own test binary: it installs the process's global log subscriber.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use myriad_engine::{Key, MemoryStore, Node, StateStore, StoreError, Write};

#[path = "support/counter.rs"]
mod counter;
use counter::counter_node;

/// A store the zone would share: its reminder index is scanned again and
/// again.
struct Shared(MemoryStore);

impl StateStore for Shared {
    fn load(&mut self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.0.load(keys)
    }

    fn save(&mut self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        self.0.save(writes)
    }

    fn keys(&mut self, kind: &str) -> Result<Vec<String>, StoreError> {
        self.0.keys(kind)
    }

    fn due(&mut self, until_ms: u64) -> Result<Vec<(Key, u64)>, StoreError> {
        self.0.due(until_ms)
    }

    fn shared(&self) -> bool {
        true
    }
}

/// Where the log goes: one buffer, whichever thread writes.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_corrupt_record_with_a_reminder_fails_at_every_scan_and_is_logged_once() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::ERROR)
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let key = Key::new("counter", "broken");
    let stored = key.clone();
    let config = counter_node("failed-wakes", 2)
        .reminder_scan(Duration::from_millis(10))
        .state_store(move |_| {
            let mut store = MemoryStore::default();
            // Not a record, with a reminder long due.
            store.save(&[Write {
                key: &stored,
                record: b"\x00garbage",
                next_due_ms: Some(1),
            }])?;
            Ok(Shared(store))
        });
    let node = Node::spawn(config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = node.virtual_stats().unwrap();
        if stats.failed_activations >= 3 {
            assert_eq!(stats.activations, 0, "{stats:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not woken three times: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    node.shutdown();

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let reports: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("not activated") && line.contains(key.as_str()))
        .collect();
    assert_eq!(reports.len(), 1, "{text}");
    assert!(reports[0].contains("corrupt"), "{}", reports[0]);
}
