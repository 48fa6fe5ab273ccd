// Where the PostgreSQL tests find their server: shared by
// engine/tests/postgres_store.rs, the workspace's tests/virtual_zone_postgres.rs
// and the unit tests of src/virtual_workers/postgres_store.rs (with
// `include!`: so no inner attributes here).

/// The test server's connection string (`MYRIAD_TEST_POSTGRES`), or `None`
/// after saying loudly that `test` is skipped. Under CI (`CI` set), which
/// starts a server, a missing one fails the test instead.
pub(super) fn server(test: &str) -> Option<String> {
    match std::env::var("MYRIAD_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{test}: CI must set MYRIAD_TEST_POSTGRES (scripts/start-postgres.sh)")
        }
        _ => {
            eprintln!(
                "SKIPPED: {test}: no PostgreSQL; set MYRIAD_TEST_POSTGRES to a connection string \
                 (scripts/start-postgres.sh starts a server and prints one)"
            );
            None
        }
    }
}
