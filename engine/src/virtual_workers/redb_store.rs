//! [`RedbStore`]: the embedded default [`StateStore`], one redb file under
//! the node's data directory.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};

use super::store::{parse_due, StateStore, StoreError, Write};
use crate::Key;

/// Records by key text (`kind:id`).
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// The earliest reminder of each key that has one (ms since the Unix epoch).
const DUE: TableDefinition<&str, u64> = TableDefinition::new("due");

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
                let found = table.get(k.as_str()).map_err(StoreError::new)?;
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
                records.insert(w.key.as_str(), w.record).map_err(StoreError::new)?;
                match w.next_due_ms {
                    Some(at) => due.insert(w.key.as_str(), at).map(drop),
                    None => due.remove(w.key.as_str()).map(drop),
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
        for entry in table.range(prefix.as_str()..).map_err(StoreError::new)? {
            let (key, _) = entry.map_err(StoreError::new)?;
            let Some(id) = key.value().strip_prefix(&prefix) else {
                break;
            };
            ids.push(id.to_owned());
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
                entries.push((key.value().to_owned(), due.value()));
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
