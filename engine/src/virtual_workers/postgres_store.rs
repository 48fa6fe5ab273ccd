//! [`PostgresStore`]: a networked [`StateStore`] in one PostgreSQL table,
//! shared by the nodes of a cluster (feature `postgres`).
//!
//! It uses the blocking `postgres` client: a store runs on the node's own
//! store thread (`store_thread.rs`), never on a shard, so blocking there is
//! what the trait expects, and no async runtime has to be driven beside
//! glommio.

use std::collections::HashMap;
use std::time::Duration;

use postgres::config::Host;
use postgres::types::Type;
use postgres::{Client, Config, NoTls};

use super::store::{parse_due, StateStore, StoreError, Write};
use crate::Key;

/// The table a [`PostgresStore`] keeps records in unless told otherwise.
pub const POSTGRES_TABLE: &str = "myriad_virtual_state";

/// How long connecting may take when the connection string does not say
/// (`connect_timeout`): a node that cannot reach its store fails to start
/// with the reason instead of hanging.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The columns of the table, in order, with their types.
const COLUMNS: [(&str, Type); 4] = [
    ("key", Type::TEXT),
    ("kind", Type::TEXT),
    ("state", Type::BYTEA),
    ("due", Type::INT8),
];

/// A [`StateStore`] in a PostgreSQL table: one row per key (`key` text
/// primary key, `kind` text, `state` bytea, `due` bigint, null without a
/// reminder), indexed on `kind` and on `due`.
///
/// Every node of a cluster given the same database and table sees the same
/// records, so when a node is lost, its keys activate on the nodes that
/// remain with their last saved state (what the worker saved with
/// `ctx.save`, or at its last deactivation), and the nodes that are now
/// their homes deliver their reminders (the store is
/// [`shared`](StateStore::shared): each node wakes only the keys homed on
/// it, every [`reminder_scan`](crate::NodeConfig::reminder_scan), with one
/// query on the index of due times). The table is created when the
/// store connects if it does not exist. Each batch of writes is one
/// transaction (an upsert). A dropped connection is re-opened at the next
/// call; the call that met the drop fails with the reason.
///
/// The connection is plain (no TLS): use it on a trusted network or a
/// Unix socket.
pub struct PostgresStore {
    client: Client,
    config: Config,
    /// Where, for errors and `Debug` (never the password).
    target: String,
    table: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("table", &self.table)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database of `connection` (a libpq-style string,
    /// `host=127.0.0.1 user=myriad password=... dbname=myriad`, or a URL,
    /// `postgresql://myriad:...@127.0.0.1/myriad`) and keeps records in
    /// the table [`POSTGRES_TABLE`], creating it if absent.
    pub fn connect(connection: &str) -> Result<PostgresStore, StoreError> {
        Self::connect_table(connection, POSTGRES_TABLE)
    }

    /// As [`connect`](Self::connect), with records in `table` (letters,
    /// digits and `_`, not starting with a digit, at most 63 bytes): clusters
    /// that share a database keep apart in tables of their own.
    pub fn connect_table(connection: &str, table: &str) -> Result<PostgresStore, StoreError> {
        validate_table(table)?;
        let mut config: Config = connection
            .parse()
            .map_err(|e| StoreError::new(format!("the PostgreSQL connection string is not valid: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let target = describe(&config);
        let client = open(&config, &target)?;
        let mut store = PostgresStore {
            client,
            config,
            target,
            table: table.to_owned(),
        };
        store.create_schema()?;
        Ok(store)
    }

    /// The table the records are in.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table and its indexes if absent, then checks that the
    /// table has the columns this store reads.
    fn create_schema(&mut self) -> Result<(), StoreError> {
        let t = &self.table;
        let fail = |what: &str, e: postgres::Error| StoreError::new(format!("cannot {what} table {t}: {e}"));
        let mut txn = self.client.transaction().map_err(|e| fail("create the", e))?;
        // Nodes that start at once must not race on CREATE ... IF NOT
        // EXISTS (it can fail with a unique violation): one at a time.
        txn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[t])
            .map_err(|e| fail("lock to create the", e))?;
        txn.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                 key text PRIMARY KEY,
                 kind text NOT NULL,
                 state bytea NOT NULL,
                 due bigint NULL
             );
             CREATE INDEX IF NOT EXISTS {t}_kind ON {t} (kind);
             CREATE INDEX IF NOT EXISTS {t}_due ON {t} (due) WHERE due IS NOT NULL;"
        ))
        .map_err(|e| fail("create the", e))?;
        txn.commit().map_err(|e| fail("commit the creation of the", e))?;
        let probe = self
            .client
            .prepare(&format!("SELECT key, kind, state, due FROM {t}"))
            .map_err(|e| fail("read the columns of the", e))?;
        for (column, (name, expected)) in probe.columns().iter().zip(COLUMNS.iter()) {
            if column.type_() != expected {
                return Err(StoreError::new(format!(
                    "table {t} in {} has column {name} of type {}, not {expected}: it is not a Myriad state table",
                    self.target,
                    column.type_()
                )));
            }
        }
        Ok(())
    }

    /// Connects again if the connection was lost.
    fn reconnect_if_lost(&mut self) -> Result<(), StoreError> {
        if self.client.is_closed() {
            tracing::warn!(target = %self.target, "the PostgreSQL connection was lost; reconnecting");
            self.client = open(&self.config, &self.target)?;
        }
        Ok(())
    }

    /// A database error of `what` as a store error naming where.
    fn error(&self, what: &str, e: postgres::Error) -> StoreError {
        db_error(&self.table, &self.target, what, e)
    }

    /// A row that this store cannot have written.
    fn corrupt(&self, key: &str, what: impl std::fmt::Display) -> StoreError {
        StoreError::new(format!("corrupt row {key:?} in {} ({}): {what}", self.table, self.target))
    }
}

impl StateStore for PostgresStore {
    fn load(&mut self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let texts: Vec<&str> = keys.iter().map(Key::as_str).collect();
        let sql = format!("SELECT key, state FROM {} WHERE key = ANY($1)", self.table);
        self.reconnect_if_lost()?;
        let rows = self
            .client
            .query(&sql, &[&texts])
            .map_err(|e| self.error("cannot load", e))?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get(0).map_err(|e| self.corrupt("?", e))?;
            let state: Vec<u8> = row.try_get(1).map_err(|e| self.corrupt(&key, e))?;
            found.insert(key, state);
        }
        // Each asked key gets its record, a key asked twice twice.
        Ok(texts.iter().map(|k| found.get(*k).cloned()).collect())
    }

    fn save(&mut self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        // One upsert may not touch a row twice: keep each key's last write.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(writes.len());
        for (i, w) in writes.iter().enumerate() {
            last.insert(w.key.as_str(), i);
        }
        let mut chosen: Vec<usize> = last.into_values().collect();
        chosen.sort_unstable();
        let (mut keys, mut kinds, mut states, mut dues) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for w in chosen.into_iter().map(|i| &writes[i]) {
            let due = match w.next_due_ms {
                Some(ms) => Some(i64::try_from(ms).map_err(|_| {
                    StoreError::new(format!("the reminder time of {} ({ms} ms) does not fit a bigint", w.key))
                })?),
                None => None,
            };
            keys.push(w.key.as_str());
            kinds.push(w.key.kind());
            states.push(w.record);
            dues.push(due);
        }
        let sql = format!(
            "INSERT INTO {t} (key, kind, state, due)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int8[])
             ON CONFLICT (key) DO UPDATE
             SET kind = EXCLUDED.kind, state = EXCLUDED.state, due = EXCLUDED.due",
            t = self.table
        );
        self.reconnect_if_lost()?;
        let (table, target) = (&self.table, &self.target);
        let fail = |what: &str, e: postgres::Error| db_error(table, target, what, e);
        let mut txn = self.client.transaction().map_err(|e| fail("cannot save", e))?;
        txn.execute(&sql, &[&keys, &kinds, &states, &dues])
            .map_err(|e| fail("cannot save", e))?;
        txn.commit().map_err(|e| fail("cannot commit a save", e))
    }

    fn keys(&mut self, kind: &str) -> Result<Vec<String>, StoreError> {
        // Byte order (the C collation), as the other stores list.
        let sql = format!("SELECT key FROM {} WHERE kind = $1 ORDER BY key COLLATE \"C\"", self.table);
        self.reconnect_if_lost()?;
        let rows = self
            .client
            .query(&sql, &[&kind])
            .map_err(|e| self.error("cannot list keys", e))?;
        let prefix = format!("{kind}:");
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get(0).map_err(|e| self.corrupt("?", e))?;
            match key.strip_prefix(&prefix) {
                Some(id) => ids.push(id.to_owned()),
                None => return Err(self.corrupt(&key, format_args!("its kind column says {kind:?}"))),
            }
        }
        Ok(ids)
    }

    fn due(&mut self, until_ms: u64) -> Result<Vec<(Key, u64)>, StoreError> {
        // The partial index on `due` answers this without a table scan.
        let sql = format!("SELECT key, due FROM {} WHERE due IS NOT NULL AND due <= $1", self.table);
        let until = i64::try_from(until_ms).unwrap_or(i64::MAX);
        self.reconnect_if_lost()?;
        let rows = self
            .client
            .query(&sql, &[&until])
            .map_err(|e| self.error("cannot read the reminders", e))?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get(0).map_err(|e| self.corrupt("?", e))?;
            let due: i64 = row.try_get(1).map_err(|e| self.corrupt(&key, e))?;
            // As a key that does not parse (`parse_due`): one bad entry
            // must not keep the others' reminders from the node.
            match u64::try_from(due) {
                Ok(due) => entries.push((key, due)),
                Err(_) => tracing::error!(
                    error = %self.corrupt(&key, format_args!("negative reminder time {due}")),
                    "a reminder index entry is not a time; ignored"
                ),
            }
        }
        Ok(parse_due(entries.iter().map(|(k, d)| (k.as_str(), *d))))
    }

    /// Every node given the same table sees the same records.
    fn shared(&self) -> bool {
        true
    }
}

/// A database error of `what` in `table` at `target` as a store error.
fn db_error(table: &str, target: &str, what: &str, e: postgres::Error) -> StoreError {
    StoreError::new(format!("{what} in {table} ({target}): {e}"))
}

/// Connects, with an error that says where to (without the password).
fn open(config: &Config, target: &str) -> Result<Client, StoreError> {
    config
        .connect(NoTls)
        .map_err(|e| StoreError::new(format!("cannot connect to PostgreSQL at {target}: {e}")))
}

/// `user@host:port/dbname` of a connection: what errors name.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let hosts = if hosts.is_empty() { "localhost".to_owned() } else { hosts.join(",") };
    let user = config.get_user().unwrap_or("?");
    let db = config.get_dbname().unwrap_or(user);
    format!("{user}@{hosts}/{db}")
}

/// A table name that is safe to put in SQL unquoted.
fn validate_table(table: &str) -> Result<(), StoreError> {
    let mut chars = table.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && rest_ok && table.len() <= 63 {
        Ok(())
    } else {
        Err(StoreError::new(format!(
            "{table:?} is not a valid table name (letters, digits and _, not starting with a digit, at most 63 bytes)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtual_workers::store::tests::behaves_as_a_store;

    mod support {
        include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/postgres_server.rs"));
    }
    use support::server;

    #[test]
    fn the_postgres_store_behaves_as_a_store_and_keeps_its_records_when_reconnected() {
        let Some(url) = server("the_postgres_store_behaves_as_a_store") else {
            return;
        };
        let table = format!("myriad_unit_{}", std::process::id());
        let mut admin = Client::connect(&url, NoTls).unwrap();
        admin.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).unwrap();
        let mut store = PostgresStore::connect_table(&url, &table).unwrap();
        assert!(store.shared(), "the nodes of a zone share it");
        behaves_as_a_store(&mut store);
        let mut again = PostgresStore::connect_table(&url, &table).unwrap();
        assert_eq!(again.keys("a").unwrap(), vec!["1", "2"]);
        assert_eq!(again.load(&[Key::new("ab", "1")]).unwrap(), vec![Some(b"other kind".to_vec())]);
        admin.batch_execute(&format!("DROP TABLE {table}")).unwrap();
    }

    #[test]
    fn table_names_are_checked_before_they_reach_sql() {
        for good in ["myriad_virtual_state", "_t", "T2"] {
            assert!(validate_table(good).is_ok(), "{good}");
        }
        let long = "t".repeat(64);
        for bad in ["", "2t", "a-b", "a;drop table x", "a b", "\"q\"", long.as_str()] {
            let err = validate_table(bad).unwrap_err();
            assert!(err.to_string().contains("not a valid table name"), "{err}");
        }
    }

    #[test]
    fn the_description_of_a_connection_never_has_the_password() {
        let config: Config = "postgresql://myriad:s3cret@127.0.0.1:5433/state".parse().unwrap();
        let text = describe(&config);
        assert_eq!(text, "myriad@127.0.0.1:5433/state");
        let config: Config = "host=db user=u password=s3cret".parse().unwrap();
        assert_eq!(describe(&config), "u@db/u");
    }
}
