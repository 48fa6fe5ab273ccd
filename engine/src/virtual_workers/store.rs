//! [`StateStore`]: where virtual workers' records are kept, and
//! [`MemoryStore`], the store that keeps them in memory.
//!
//! A store is a map from [`Key`] to bytes (the engine's record of the
//! worker's state and reminders), plus an index of the keys that have a
//! reminder due. It is called only from the node's store thread
//! (`store_thread.rs`), in batches, so it may block; the shards never wait
//! on it.

use std::collections::{BTreeMap, HashMap};

use crate::Key;

/// Why a store could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    /// A store error from anything printable.
    pub fn new(what: impl std::fmt::Display) -> Self {
        StoreError(what.to_string())
    }
}

/// One record to write.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    /// Whose record.
    pub key: &'a Key,
    /// The record's bytes (opaque to the store).
    pub record: &'a [u8],
    /// When the key's earliest reminder is due, in milliseconds since the
    /// Unix epoch, if it has one: the store indexes it for [`StateStore::due`].
    pub next_due_ms: Option<u64>,
}

/// Durable storage for virtual workers' state.
///
/// The engine calls it from one thread of its own, in batches: many loads
/// at once, many writes in one transaction. A failed call fails only the
/// keys of that batch; the node keeps running.
pub trait StateStore: Send + 'static {
    /// The records of `keys` (`None` for a key never stored), in order.
    fn load(&mut self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Writes `writes` at once (a later write of a key in the batch wins).
    fn save(&mut self, writes: &[Write<'_>]) -> Result<(), StoreError>;

    /// The ids of the stored keys of `kind`, in order.
    fn keys(&mut self, kind: &str) -> Result<Vec<String>, StoreError>;

    /// The stored keys whose earliest reminder is due at or before
    /// `until_ms` (milliseconds since the Unix epoch; `u64::MAX` for all),
    /// with that due time: the keys a node wakes for their reminders.
    fn due(&mut self, until_ms: u64) -> Result<Vec<(Key, u64)>, StoreError>;

    /// Whether the nodes of a zone share this store (one database for
    /// all). A node then wakes only the keys whose home node it is, and
    /// looks for reminders falling due every
    /// [`reminder_scan`](crate::NodeConfig::reminder_scan), so that a key
    /// whose home moves (a node lost or joined) has its reminders delivered
    /// by its new home. `false` (the default): the store is this node's
    /// alone, and the node wakes every key in it that has a reminder, once,
    /// when it starts.
    fn shared(&self) -> bool {
        false
    }
}

/// A [`StateStore`] in memory: state lives as long as the node (tests,
/// examples, agents that need no durability).
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: BTreeMap<String, Vec<u8>>,
    due: HashMap<String, u64>,
}

impl StateStore for MemoryStore {
    fn load(&mut self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        Ok(keys
            .iter()
            .map(|k| self.records.get(k.as_str()).cloned())
            .collect())
    }

    fn save(&mut self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        for w in writes {
            self.records.insert(w.key.to_string(), w.record.to_vec());
            match w.next_due_ms {
                Some(due) => self.due.insert(w.key.to_string(), due),
                None => self.due.remove(w.key.as_str()),
            };
        }
        Ok(())
    }

    fn keys(&mut self, kind: &str) -> Result<Vec<String>, StoreError> {
        Ok(kind_range(&self.records, kind))
    }

    fn due(&mut self, until_ms: u64) -> Result<Vec<(Key, u64)>, StoreError> {
        let due = self.due.iter().filter(|(_, &d)| d <= until_ms);
        Ok(parse_due(due.map(|(k, &d)| (k.as_str(), d))))
    }
}

/// The ids of `kind`'s keys in a map ordered by key text (`kind:id`).
fn kind_range(records: &BTreeMap<String, Vec<u8>>, kind: &str) -> Vec<String> {
    let prefix = format!("{kind}:");
    records
        .range(prefix.clone()..)
        .map(|(k, _)| k)
        .take_while(|k| k.starts_with(&prefix))
        .map(|k| k[prefix.len()..].to_owned())
        .collect()
}

/// Due-index entries as keys, skipping (and logging) any whose text is not
/// a key.
pub(crate) fn parse_due<'a>(entries: impl Iterator<Item = (&'a str, u64)>) -> Vec<(Key, u64)> {
    entries
        .filter_map(|(text, due)| match text.parse::<Key>() {
            Ok(key) => Some((key, due)),
            Err(error) => {
                tracing::error!(%error, "a reminder index entry is not a key; ignored");
                None
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What every store must do; run on each implementation.
    pub(crate) fn behaves_as_a_store(store: &mut dyn StateStore) {
        let a1 = Key::new("a", "1");
        let a2 = Key::new("a", "2");
        let ab = Key::new("ab", "1");
        assert_eq!(store.load(std::slice::from_ref(&a1)).unwrap(), vec![None]);
        let writes = [
            Write { key: &a1, record: b"one", next_due_ms: Some(5) },
            Write { key: &a2, record: b"two", next_due_ms: None },
            Write { key: &ab, record: b"other kind", next_due_ms: None },
            Write { key: &a1, record: b"one again", next_due_ms: Some(9) },
        ];
        store.save(&writes).unwrap();
        let loaded = store.load(&[a1.clone(), a2.clone(), Key::new("a", "3")]).unwrap();
        assert_eq!(loaded, vec![Some(b"one again".to_vec()), Some(b"two".to_vec()), None]);
        assert_eq!(store.keys("a").unwrap(), vec!["1", "2"]);
        assert_eq!(store.keys("ab").unwrap(), vec!["1"]);
        assert_eq!(store.due(u64::MAX).unwrap(), vec![(a1.clone(), 9)]);
        assert_eq!(store.due(9).unwrap(), vec![(a1.clone(), 9)], "due at the bound is due");
        assert!(store.due(8).unwrap().is_empty(), "not due yet");
        store.save(&[Write { key: &a1, record: b"x", next_due_ms: None }]).unwrap();
        assert!(store.due(u64::MAX).unwrap().is_empty(), "a saved key without reminders leaves the index");
    }

    #[test]
    fn the_memory_store_behaves_as_a_store() {
        behaves_as_a_store(&mut MemoryStore::default());
    }
}
