//! [`RedbStore`]: the embedded default [`StateStore`], one redb file under
//! the node's data directory.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition, TypeName};

use super::store::{parse_due, StateStore, StoreError, Write};
use crate::Key;

/// Records by key text (`kind:id`).
const RECORDS: TableDefinition<KeyText, &[u8]> = TableDefinition::new("records");
/// The earliest reminder of each key that has one (ms since the Unix epoch).
const DUE: TableDefinition<KeyText, u64> = TableDefinition::new("due");

/// A key's text as the tables keep it: redb's `&str` on disk (the same
/// bytes and type name, so a file written with `&str` keys opens as it
/// is), compared as bytes. `&str`'s own comparison validates the UTF-8 of
/// both sides at every step of every search (3.4 % of a whole run at a
/// million keys, docs/performance.md); byte order is `str`'s order.
#[derive(Debug)]
struct KeyText;

impl redb::Value for KeyText {
    type SelfType<'a> = &'a [u8];
    type AsBytes<'a> = &'a [u8];

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> &'a [u8]
    where
        Self: 'a,
    {
        data
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a &'b [u8]) -> &'a [u8]
    where
        Self: 'b,
    {
        value
    }

    fn type_name() -> TypeName {
        <&str as redb::Value>::type_name()
    }
}

impl redb::Key for KeyText {
    fn compare(a: &[u8], b: &[u8]) -> Ordering {
        a.cmp(b)
    }
}

/// A stored key's text, or a store error if it is not UTF-8.
fn key_text(bytes: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(bytes).map_err(|e| StoreError::new(format!("a stored key is not text: {e}")))
}

/// The file name of the store in a node's data directory.
pub const REDB_FILE: &str = "virtual-state.redb";

/// A [`StateStore`] in one [redb](https://www.redb.org) file: embedded,
/// crash-safe (each batch of writes is one committed transaction), no
/// setup. The node opens it at `<data_dir>/virtual-state.redb` unless told
/// to use another store. The file is locked while open: one node per file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.path).finish()
    }
}

impl RedbStore {
    /// Opens (or creates) the store at `path`, creating its directory.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::new(format!("{what} {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the directory of", &e))?;
        }
        let db = Database::create(&path).map_err(|e| fail("cannot open", &e))?;
        // Both tables exist from the start, so that reads never meet a
        // missing table.
        let txn = db.begin_write().map_err(|e| fail("cannot write to", &e))?;
        txn.open_table(RECORDS).map_err(|e| fail("cannot open the records of", &e))?;
        txn.open_table(DUE).map_err(|e| fail("cannot open the reminders of", &e))?;
        txn.commit().map_err(|e| fail("cannot commit to", &e))?;
        Ok(RedbStore { db, path })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl StateStore for RedbStore {
    fn load(&mut self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::new)?;
        let table = txn.open_table(RECORDS).map_err(StoreError::new)?;
        keys.iter()
            .map(|k| {
                let found = table.get(k.as_str().as_bytes()).map_err(StoreError::new)?;
                Ok(found.map(|v| v.value().to_vec()))
            })
            .collect()
    }

    fn save(&mut self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::new)?;
        {
            let mut records = txn.open_table(RECORDS).map_err(StoreError::new)?;
            let mut due = txn.open_table(DUE).map_err(StoreError::new)?;
            for w in writes {
                let key = w.key.as_str().as_bytes();
                records.insert(key, w.record).map_err(StoreError::new)?;
                match w.next_due_ms {
                    Some(at) => due.insert(key, at).map(drop),
                    None => due.remove(key).map(drop),
                }
                .map_err(StoreError::new)?;
            }
        }
        txn.commit().map_err(StoreError::new)
    }

    fn keys(&mut self, kind: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::new)?;
        let table = txn.open_table(RECORDS).map_err(StoreError::new)?;
        let prefix = format!("{kind}:");
        let mut ids = Vec::new();
        for entry in table.range(prefix.as_bytes()..).map_err(StoreError::new)? {
            let (key, _) = entry.map_err(StoreError::new)?;
            let Some(id) = key.value().strip_prefix(prefix.as_bytes()) else {
                break;
            };
            ids.push(key_text(id)?.to_owned());
        }
        Ok(ids)
    }

    fn due(&mut self, until_ms: u64) -> Result<Vec<(Key, u64)>, StoreError> {
        // The table is by key, not by time: a node reads it once, when it
        // starts (this store is not shared).
        let txn = self.db.begin_read().map_err(StoreError::new)?;
        let table = txn.open_table(DUE).map_err(StoreError::new)?;
        let mut entries = Vec::new();
        for entry in table.iter().map_err(StoreError::new)? {
            let (key, due) = entry.map_err(StoreError::new)?;
            if due.value() <= until_ms {
                entries.push((key_text(key.value())?.to_owned(), due.value()));
            }
        }
        Ok(parse_due(entries.iter().map(|(k, d)| (k.as_str(), *d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtual_workers::store::tests::behaves_as_a_store;

    #[test]
    fn the_redb_store_behaves_as_a_store_and_keeps_its_records_when_reopened() {
        let dir = crate::virtual_workers::tests::scratch_dir("redb-store");
        let path = dir.join("nested").join(REDB_FILE);
        behaves_as_a_store(&mut RedbStore::open(&path).unwrap());
        let mut reopened = RedbStore::open(&path).unwrap();
        assert_eq!(reopened.keys("a").unwrap(), vec!["1", "2"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_written_with_str_keys_opens_and_reads_as_it_is() {
        let dir = crate::virtual_workers::tests::scratch_dir("redb-str-keys");
        let path = dir.join(REDB_FILE);
        std::fs::create_dir_all(&dir).unwrap();
        {
            // The tables as the store defined them before `KeyText`.
            let records: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
            let due: TableDefinition<&str, u64> = TableDefinition::new("due");
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(records).unwrap().insert("a:1", b"one".as_slice()).unwrap();
            txn.open_table(records).unwrap().insert("a:2", b"two".as_slice()).unwrap();
            txn.open_table(due).unwrap().insert("a:1", 7).unwrap();
            txn.commit().unwrap();
        }
        let mut store = RedbStore::open(&path).unwrap();
        let (a1, a2) = (Key::new("a", "1"), Key::new("a", "2"));
        let loaded = store.load(&[a2.clone(), a1.clone()]).unwrap();
        assert_eq!(loaded, vec![Some(b"two".to_vec()), Some(b"one".to_vec())]);
        assert_eq!(store.keys("a").unwrap(), vec!["1", "2"]);
        assert_eq!(store.due(u64::MAX).unwrap(), vec![(a1.clone(), 7)]);
        store.save(&[Write { key: &a1, record: b"again", next_due_ms: None }]).unwrap();
        assert_eq!(store.load(&[a1]).unwrap(), vec![Some(b"again".to_vec())]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_that_is_not_a_store_is_a_clear_error() {
        let dir = crate::virtual_workers::tests::scratch_dir("redb-garbage");
        let path = dir.join(REDB_FILE);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = RedbStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("cannot open"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
