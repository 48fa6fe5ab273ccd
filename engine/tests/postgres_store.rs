//! The PostgreSQL state store (feature `postgres`) against a real server,
//! the one `MYRIAD_TEST_POSTGRES` names (`scripts/start-postgres.sh` starts
//! one and prints its connection string; `.ci/run` does): a later write in
//! a batch wins, corrupt rows are clear errors, a lost connection is
//! reopened, and a key saved on one node activates on another with its
//! last saved state. Connection failures need no server.

#[cfg(feature = "postgres")]
#[path = "support/postgres_server.rs"]
mod support;

#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_store_tests_need_the_postgres_feature() {
    eprintln!(
        "SKIPPED: the PostgresStore tests: built without the `postgres` feature \
         (`cargo test --workspace` enables it; or `cargo test -p myriad-engine --features postgres`) \
         and set MYRIAD_TEST_POSTGRES"
    );
}

#[cfg(feature = "postgres")]
mod with_postgres {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use myriad_engine::{
        BoxError, Context, Error, Key, Message, Node, NodeConfig, NodeHandle, PostgresStore,
        StateStore, Write, POSTGRES_TABLE,
    };
    use postgres::{Client, NoTls};

    const LONG: Duration = Duration::from_secs(10);

    use super::support::server;

    /// A table of this test's own (dropped first), and a plain client to
    /// look into it or spoil it.
    fn fresh_table(url: &str, name: &str) -> (String, Client) {
        let table = format!("myriad_test_{name}_{}", std::process::id());
        let mut admin = Client::connect(url, NoTls).expect("the test server accepts connections");
        admin
            .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
            .unwrap();
        (table, admin)
    }

    /// Runs `body` with the server's connection string, a fresh table of
    /// its own and a plain client, then drops the table; or skips, loudly.
    fn with_table(test: &str, name: &str, body: impl FnOnce(&str, &str, &mut Client)) {
        let Some(url) = server(test) else {
            return;
        };
        let (table, mut admin) = fresh_table(&url, name);
        body(&url, &table, &mut admin);
        admin
            .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
            .unwrap();
    }

    /// Counts `inc`s, saves on `save`, answers every ask with the count.
    struct Counter {
        count: u64,
    }

    impl myriad_engine::VirtualWorker for Counter {
        type State = u64;

        fn state(&self) -> &u64 {
            &self.count
        }

        async fn handle_message(
            &mut self,
            ctx: &mut Context,
            msg: Message,
        ) -> Result<(), BoxError> {
            match &*msg {
                "inc" => self.count += 1,
                "save" => ctx.save(&self.count).await?,
                "get" => {}
                other => return Err(format!("unknown command {other}").into()),
            }
            if ctx.is_ask() {
                ctx.reply(self.count.to_string())?;
            }
            Ok(())
        }
    }

    fn node_config(name: &str) -> NodeConfig {
        NodeConfig::default()
            .name(name)
            .shards(2)
            .pin_shards(false)
            .virtual_kind("counter", |_key, saved: Option<u64>| Counter {
                count: saved.unwrap_or(0),
            })
    }

    fn ask(node: &NodeHandle, key: &Key, msg: &str) -> Result<u64, Error> {
        let reply = node.send_and_receive(key, msg.to_owned(), LONG)?;
        Ok(reply.parse().expect("a count"))
    }

    /// A key no earlier run of the tests has used.
    fn unique_key(what: &str) -> Key {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Key::new("counter", &format!("{what}-{}-{nanos}", std::process::id()))
    }

    #[test]
    fn the_last_write_of_a_key_in_a_batch_wins_with_its_reminder() {
        with_table(
            "the_last_write_of_a_key_in_a_batch_wins",
            "last_write",
            |url, table, admin| {
                let mut store = PostgresStore::connect_table(url, table).unwrap();
                let keys: Vec<Key> = (0..10).map(|i| Key::new("k", &i.to_string())).collect();
                let records: Vec<Vec<u8>> =
                    (0..1000).map(|n: u32| n.to_le_bytes().to_vec()).collect();
                // 1000 writes over 10 keys: write n is of key n % 10; the last one
                // of each key (n = 990..999) has a reminder only for even keys.
                let writes: Vec<Write<'_>> = records
                    .iter()
                    .enumerate()
                    .map(|(n, record)| Write {
                        key: &keys[n % 10],
                        record,
                        next_due_ms: (n % 2 == 0).then_some(n as u64),
                    })
                    .collect();
                store.save(&writes).unwrap();
                let loaded = store.load(&keys).unwrap();
                for (i, record) in loaded.into_iter().enumerate() {
                    let last = 990 + i as u32;
                    assert_eq!(record, Some(last.to_le_bytes().to_vec()), "key {i}");
                }
                let mut due = store.due(u64::MAX).unwrap();
                due.sort_by_key(|(_, at)| *at);
                let expected: Vec<(Key, u64)> = (0..10)
                    .step_by(2)
                    .map(|i| (keys[i].clone(), 990 + i as u64))
                    .collect();
                assert_eq!(due, expected);
                // A later batch that clears the reminders leaves the index empty.
                let clear: Vec<Write<'_>> = keys
                    .iter()
                    .map(|key| Write {
                        key,
                        record: b"x",
                        next_due_ms: None,
                    })
                    .collect();
                store.save(&clear).unwrap();
                assert!(store.due(u64::MAX).unwrap().is_empty());
                let rows: i64 = admin
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .unwrap()
                    .get(0);
                assert_eq!(rows, 10, "one row per key");
            },
        );
    }

    #[test]
    fn corrupt_rows_are_clear_errors_or_skipped_never_panics() {
        with_table(
            "corrupt_rows_are_clear_errors",
            "corrupt_rows",
            |url, table, admin| {
                let mut store = PostgresStore::connect_table(url, table).unwrap();
                let good = Key::new("k", "good");
                store
                    .save(&[Write {
                        key: &good,
                        record: b"r",
                        next_due_ms: Some(7),
                    }])
                    .unwrap();
                // Rows this store cannot have written: a negative reminder time, a
                // key whose text is not a key, a kind column that disagrees.
                admin
                    .batch_execute(&format!(
                        "INSERT INTO {table} (key, kind, state, due) VALUES
                     ('k:negative', 'k', '\\x00', -5),
                     ('not a key', 'k', '\\x00', 3),
                     ('other:1', 'k', '\\x00', NULL)"
                    ))
                    .unwrap();
                assert_eq!(
                    store.due(u64::MAX).unwrap(),
                    vec![(good.clone(), 7)],
                    "the bad entries are skipped"
                );
                let err = store.keys("k").unwrap_err().to_string();
                assert!(err.contains("corrupt row") && err.contains(table), "{err}");
                assert_eq!(
                    store.load(std::slice::from_ref(&good)).unwrap(),
                    vec![Some(b"r".to_vec())]
                );

                // A table that is there already in another shape is refused on connect.
                let (odd, _) = fresh_table(url, "odd_shape");
                admin
                    .batch_execute(&format!(
                "CREATE TABLE {odd} (key text PRIMARY KEY, kind text, state integer, due bigint)"
            ))
                    .unwrap();
                let err = PostgresStore::connect_table(url, &odd)
                    .unwrap_err()
                    .to_string();
                assert!(
                    err.contains("not a Myriad state table") && err.contains("state"),
                    "{err}"
                );
                admin.batch_execute(&format!("DROP TABLE {odd}")).unwrap();
            },
        );
    }

    #[test]
    fn corrupt_state_fails_the_activation_clearly_and_the_node_goes_on() {
        with_table(
            "corrupt_state_fails_the_activation",
            "corrupt_state",
            |url, table, admin| {
                let key = Key::new("counter", "garbage");
                let open = {
                    let (url, table) = (url.to_owned(), table.to_owned());
                    move |_: &std::path::Path| PostgresStore::connect_table(&url, &table)
                };
                // The node creates the table; the row is spoiled behind its back.
                let node = Node::spawn(node_config("pg-corrupt").state_store(open)).unwrap();
                admin
                    .execute(
                        &format!(
                            "INSERT INTO {table} (key, kind, state) VALUES ($1, 'counter', $2)"
                        ),
                        &[&key.as_str(), &b"\x00garbage".as_slice()],
                    )
                    .unwrap();
                let err = ask(&node, &key, "inc").unwrap_err();
                let text = err.to_string();
                assert!(matches!(err, Error::StateStore(_)), "{text}");
                assert!(
                    text.contains("corrupt") && text.contains(key.as_str()),
                    "{text}"
                );
                let fine = Key::new("counter", "fine");
                assert_eq!(ask(&node, &fine, "inc").unwrap(), 1, "the node goes on");
                assert_eq!(ask(&node, &fine, "save").unwrap(), 1);
                node.shutdown();
            },
        );
    }

    #[test]
    fn a_lost_connection_fails_one_call_and_is_reopened() {
        with_table(
            "a_lost_connection_is_reopened",
            "lost",
            |url, table, admin| {
                let app = format!("myriad_lost_{}", std::process::id());
                let named = match (url.contains("://"), url.contains('?')) {
                    (true, true) => format!("{url}&application_name={app}"),
                    (true, false) => format!("{url}?application_name={app}"),
                    (false, _) => format!("{url} application_name={app}"),
                };
                let mut store = PostgresStore::connect_table(&named, table).unwrap();
                let key = Key::new("k", "1");
                store
                    .save(&[Write {
                        key: &key,
                        record: b"before",
                        next_due_ms: None,
                    }])
                    .unwrap();
                let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .unwrap()
            .get(0);
                assert_eq!(killed, 1);
                // pg_terminate_backend only signals: wait until the backend is gone.
                while admin
                    .query_opt(
                        "SELECT 1 FROM pg_stat_activity WHERE application_name = $1",
                        &[&app],
                    )
                    .unwrap()
                    .is_some()
                {
                    std::thread::yield_now();
                }
                if let Err(err) = store.load(std::slice::from_ref(&key)) {
                    let err = err.to_string();
                    assert!(err.contains("cannot load") && err.contains(table), "{err}");
                }
                assert_eq!(
                    store.load(std::slice::from_ref(&key)).unwrap(),
                    vec![Some(b"before".to_vec())],
                    "the next call reconnects"
                );
            },
        );
    }

    #[test]
    fn a_server_that_cannot_be_reached_is_a_clear_error_without_the_password() {
        // Port 1 on the loopback: nothing listens there.
        let unreachable =
            "host=127.0.0.1 port=1 user=myriad password=hunter2 dbname=state connect_timeout=5";
        let err = PostgresStore::connect(unreachable).unwrap_err().to_string();
        assert!(
            err.contains("cannot connect to PostgreSQL at myriad@127.0.0.1:1/state"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "the password leaked: {err}");
        let err = PostgresStore::connect("host=127.0.0.1 port=notaport")
            .unwrap_err()
            .to_string();
        assert!(err.contains("connection string is not valid"), "{err}");
        // A node whose store cannot be reached does not start, and says why.
        let config = node_config("pg-unreachable").postgres_store(unreachable);
        let err = Node::spawn(config).unwrap_err().to_string();
        assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    }

    /// Saves `key` at 2 on a node with the PostgreSQL store, then counts one
    /// more without saving; returns the node, still running.
    fn node_a_saves_two(url: &str, key: &Key) -> NodeHandle {
        let a = Node::spawn(node_config("pg-a").postgres_store(url)).unwrap();
        assert_eq!(ask(&a, key, "inc").unwrap(), 1);
        assert_eq!(ask(&a, key, "inc").unwrap(), 2);
        assert_eq!(ask(&a, key, "save").unwrap(), 2);
        // The reply came after the save: the database has it now.
        let mut look = PostgresStore::connect(url).unwrap();
        assert!(look
            .keys("counter")
            .unwrap()
            .iter()
            .any(|id| id == key.id()));
        assert_eq!(ask(&a, key, "inc").unwrap(), 3, "counted, not saved");
        a
    }

    fn forget(url: &str, key: &Key) {
        let mut admin = Client::connect(url, NoTls).unwrap();
        admin
            .execute(
                &format!("DELETE FROM {POSTGRES_TABLE} WHERE key = $1"),
                &[&key.as_str()],
            )
            .unwrap();
    }

    #[test]
    fn a_key_saved_on_a_node_that_shut_down_activates_on_another_with_its_state() {
        let Some(url) = server("a_key_saved_on_a_node_that_shut_down_activates_on_another") else {
            return;
        };
        let key = unique_key("moved");
        let a = node_a_saves_two(&url, &key);
        a.shutdown(); // deactivates: saves 3
        let b = Node::spawn(node_config("pg-b").postgres_store(&url)).unwrap();
        assert_eq!(
            ask(&b, &key, "get").unwrap(),
            3,
            "node B has node A's state"
        );
        assert_eq!(
            b.stored_keys("counter")
                .unwrap()
                .iter()
                .filter(|k| **k == key)
                .count(),
            1
        );
        b.shutdown();
        forget(&url, &key);
    }

    #[test]
    fn a_key_of_a_lost_node_activates_elsewhere_with_its_last_saved_state() {
        let Some(url) = server("a_key_of_a_lost_node_activates_elsewhere") else {
            return;
        };
        let key = unique_key("lost");
        // Node A is "lost": it still holds the key at 3 but nobody reaches
        // it; node B, on the same database, activates the key.
        let a = node_a_saves_two(&url, &key);
        let b = Node::spawn(node_config("pg-b").postgres_store(&url)).unwrap();
        assert_eq!(
            ask(&b, &key, "get").unwrap(),
            2,
            "the last saved state, not what A counted since"
        );
        assert_eq!(ask(&b, &key, "inc").unwrap(), 3);
        b.shutdown();
        a.shutdown();
        forget(&url, &key);
    }
}
