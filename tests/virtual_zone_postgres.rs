//! Reminders of virtual workers in a zone whose nodes share one PostgreSQL
//! store (the server `MYRIAD_TEST_POSTGRES` names; `scripts/start-postgres.sh`
//! starts one and prints it, `.ci/run` does; without it each test says
//! loudly that it is skipped, and under CI fails). Every reminder is
//! delivered once, by its key's home node, wherever it was set; when the
//! home is lost, shut down or killed (SIGKILL), the survivor delivers the
//! reminders of its keys and activates them with their last saved state;
//! a node that joins is handed the keys it wins, with their state and
//! reminders.
//!
//! The nodes scan the store every 50 ms. Every wait is for an event (a
//! reminder's delivery, a member list, a count of scans), bounded by
//! `LONG`; no timing is asserted.
//!
//! The killed node is a child process on the loopback (this test binary,
//! run again with the ignored helper `zone_postgres_node`), not in a network
//! namespace: a namespace could not reach the test server on the host's
//! loopback without routes of its own. What the test needs of the kill is
//! that the node dies without a word or a save; SIGKILL does that.

mod cluster;
#[path = "../engine/tests/support/postgres_server.rs"]
mod support;

use std::io::BufRead;
use std::sync::Mutex;
use std::time::Duration;

use cluster::child::ChildNode;
use cluster::{
    ask_key, engine, key_homed_on, knows_address, raw_handshake, raw_read, raw_write, transport,
    wait_for_nodes, wait_until, LONG,
};
use myriad::transport::{start_node, Envelope, Kind, Zone};
use myriad::{
    BoxError, Context, Key, Message, NodeConfig, NodeHandle, PostgresStore, VirtualWorker,
};
use postgres::{Client, NoTls};
use support::server;

/// How often the test nodes scan the store for due reminders.
const SCAN: Duration = Duration::from_millis(50);

/// A scan period no test outlives: the node never scans.
const NEVER: Duration = Duration::from_secs(3600);

/// The environment variable that gives the child node its role.
const ROLE: &str = "MYRIAD_ZONE_POSTGRES_ROLE";

/// What an agent keeps.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Tally {
    count: u64,
    pings: u64,
}

/// Counts `inc`s and reminders (`ping`); `save` saves; `remind MS` sets a
/// reminder `ping` in MS ms, saves (so the store has it) and deactivates
/// (so the reminder must wake it); `later MS` only sets the reminder (it
/// is saved with the state at the next save); `sleep` deactivates. Answers every ask
/// with `count pings on node`, before any reminder can come.
struct Agent {
    tally: Tally,
}

impl VirtualWorker for Agent {
    type State = Tally;

    fn state(&self) -> &Tally {
        &self.tally
    }

    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let (verb, arg) = msg.split_once(' ').unwrap_or((&*msg, ""));
        match verb {
            "inc" => self.tally.count += 1,
            "save" => ctx.save(&self.tally).await?,
            "remind" => {
                ctx.remind_after(Duration::from_millis(arg.parse()?), "ping")?;
                ctx.save(&self.tally).await?;
                ctx.deactivate()?;
            }
            "later" => ctx.remind_after(Duration::from_millis(arg.parse()?), "ping")?,
            "sleep" => ctx.deactivate()?,
            "ping" => {
                self.tally.pings += 1;
                if let Some(key) = ctx.key() {
                    pinged(&key, ctx.node_name());
                }
            }
            "get" => {}
            other => return Err(format!("unknown command {other:?}").into()),
        }
        if ctx.is_ask() {
            let Tally { count, pings } = self.tally;
            ctx.reply(format!("{count} {pings} on {}", ctx.node_name()))?;
        }
        Ok(())
    }
}

/// Who wants to hear of each key's pings (tests run at once in this
/// process: each listens to its own keys).
static LISTENERS: Mutex<Vec<(Key, flume::Sender<String>)>> = Mutex::new(Vec::new());

/// The names of the nodes on which `key` gets its pings, from now on.
fn pings_of(key: &Key) -> flume::Receiver<String> {
    let (tx, rx) = flume::unbounded();
    LISTENERS.lock().unwrap().push((key.clone(), tx));
    rx
}

fn pinged(key: &Key, node: &str) {
    for (k, tx) in LISTENERS.lock().unwrap().iter() {
        if k == key {
            let _ = tx.send(node.to_owned());
        }
    }
}

/// The node that delivers the next ping of `pings`.
fn next_ping(pings: &flume::Receiver<String>) -> String {
    pings.recv_timeout(LONG).expect("the reminder is delivered")
}

/// A table of one test's own, empty, on the test server; dropped with
/// the guard.
struct Table {
    url: String,
    name: String,
}

impl Table {
    /// The table `name` of test `test`, or `None` (and the test is skipped,
    /// loudly) without a server.
    fn fresh(test: &str, name: &str) -> Option<Table> {
        let url = server(test)?;
        let name = format!("myriad_zone_{name}_{}", std::process::id());
        let mut admin = Client::connect(&url, NoTls).expect("the test server accepts connections");
        admin
            .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
            .unwrap();
        Some(Table { url, name })
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&self.url, NoTls) {
            let _ = admin.batch_execute(&format!("DROP TABLE IF EXISTS {}", self.name));
        }
    }
}

/// A test node's engine with the kind `agent`, its state in `table`,
/// scanning the store every `scan`.
fn agents(url: &str, table: &str, scan: Duration) -> NodeConfig {
    let (url, table) = (url.to_owned(), table.to_owned());
    engine(2)
        .virtual_kind("agent", |_key, saved: Option<Tally>| Agent {
            tally: saved.unwrap_or_default(),
        })
        .state_store(move |_| PostgresStore::connect_table(&url, &table))
        .reminder_scan(scan)
}

/// Two linked nodes `a` and `b` on `table`, scanning every `scan_a` and
/// `scan_b`.
fn pair(
    table: &Table,
    scan_a: Duration,
    scan_b: Duration,
) -> ((NodeHandle, Zone), (NodeHandle, Zone)) {
    let b = start_node(agents(&table.url, &table.name, scan_b), transport("b")).expect("b starts");
    let seed = b.1.local_addr().to_string();
    let a = start_node(
        agents(&table.url, &table.name, scan_a),
        transport("a").seed(seed),
    )
    .expect("a starts");
    wait_for_nodes(&a.1, &["b"]);
    wait_for_nodes(&b.1, &["a"]);
    wait_until("b to learn a's address", LONG, || knows_address(&b.1, "a"));
    (a, b)
}

/// Asks `key` each of `msgs` on the node `zone` runs, as a peer whose view
/// of the zone differs would: the node delivers it there without placing
/// it (`tests/virtual_zone.rs`), so the key activates there even if its
/// home is another node. Returns the answers.
fn ask_there(zone: &Zone, key: &Key, msgs: &[&str]) -> Vec<String> {
    let (mut stream, mut link) = raw_handshake(zone.local_addr(), "raw");
    let answers = msgs
        .iter()
        .zip(1..)
        .map(|(msg, id)| {
            let ask = Envelope::new(Kind::Ask { id }, Some(key.as_str().into()), msg.to_string());
            raw_write(&mut stream, &mut link, &ask);
            let got = raw_read(&mut stream, &mut link, 1);
            assert_eq!(
                got[0].kind,
                Kind::ReplyOk { id },
                "{msg}: {}",
                got[0].body.as_str()
            );
            got[0].body.as_str().to_owned()
        })
        .collect();
    drop(stream);
    answers
}

/// Sends `key` two `inc`s from `node`; they reach it on node `on`.
fn count_to_two(node: &NodeHandle, key: &Key, on: &str) {
    for n in 1..=2 {
        assert_eq!(ask_key(node, key, "inc"), format!("{n} 0 on {on}"));
    }
}

fn scans(node: &NodeHandle) -> u64 {
    node.virtual_stats().unwrap().reminder_scans
}

/// Waits until `node` has done two more scans: one of them began after
/// now, and its wakes are counted.
fn two_more_scans(node: &NodeHandle) {
    let from = scans(node);
    wait_until(&format!("two more scans on {}", node.name()), LONG, || {
        scans(node) >= from + 2
    });
}

fn lose(zone: &Zone, peer: &str) {
    wait_until(
        &format!("{} to see {peer} lost", zone.node_name()),
        LONG,
        || !zone.nodes("").iter().any(|n| n == peer),
    );
}

#[test]
fn each_reminder_is_delivered_once_by_the_home_node_of_its_key_wherever_it_was_set() {
    let Some(table) = Table::fresh("each_reminder_is_delivered_once_by_its_home_node", "once")
    else {
        return;
    };
    let ((a, za), (b, _zb)) = pair(&table, SCAN, SCAN);
    // Set on its home, b (sent from a): b's timer wakes it; a, which
    // finds it in the store too, leaves it to b.
    let set_home = key_homed_on("agent", "b", "home");
    let home_pings = pings_of(&set_home);
    assert_eq!(ask_key(&a, &set_home, "remind 20"), "0 0 on b");
    // Set on a, where a peer with another view sent it: a's timer leaves
    // it to b, the home, which finds it in the store.
    let set_away = key_homed_on("agent", "b", "away");
    let away_pings = pings_of(&set_away);
    assert_eq!(ask_there(&za, &set_away, &["remind 20"]), ["0 0 on a"]);

    assert_eq!(next_ping(&home_pings), "b");
    assert_eq!(next_ping(&away_pings), "b");
    // Both reminders are overdue in the store now (their keys, active on
    // b, have not saved since): scans that began since find them.
    two_more_scans(&a);
    two_more_scans(&b);
    let (sa, sb) = (a.virtual_stats().unwrap(), b.virtual_stats().unwrap());
    assert_eq!(sa.reminder_wakes, 0, "a wakes no key homed on b: {sa:?}");
    assert!(sb.reminder_wakes >= 1, "b woke the key set on a: {sb:?}");
    assert_eq!(ask_key(&a, &set_home, "get"), "0 1 on b", "delivered once");
    assert_eq!(ask_key(&a, &set_away, "get"), "0 1 on b", "delivered once");
    assert!(
        home_pings.is_empty() && away_pings.is_empty(),
        "no second delivery"
    );
    a.shutdown();
    b.shutdown();
}

#[test]
fn when_the_home_node_is_lost_the_survivor_delivers_its_reminder_with_the_last_saved_state() {
    let Some(table) = Table::fresh(
        "when_the_home_node_is_lost_the_survivor_delivers_its_reminder",
        "lost",
    ) else {
        return;
    };
    // b never scans: while it lives, nobody delivers the reminder below.
    let ((a, za), (b, _zb)) = pair(&table, SCAN, NEVER);
    let key = key_homed_on("agent", "b", "lost");
    let pings = pings_of(&key);
    count_to_two(&a, &key, "b");
    assert_eq!(
        ask_key(&a, &key, "sleep"),
        "2 0 on b",
        "deactivated: 2 is saved"
    );
    // The reminder is set on a (a peer with another view sent it there),
    // from b's saved state; a leaves it to b, its home.
    assert_eq!(ask_there(&za, &key, &["remind 20"]), ["2 0 on a"]);
    b.shutdown();
    lose(&za, "b");
    assert_eq!(next_ping(&pings), "a", "the survivor delivers it");
    assert_eq!(
        ask_key(&a, &key, "get"),
        "2 1 on a",
        "with the last saved state"
    );
    assert_eq!(a.active_keys("agent").unwrap(), vec![key]);
    a.shutdown();
}

#[test]
fn the_keys_of_a_killed_home_node_reactivate_on_the_survivor_with_their_saved_state_and_reminders()
{
    let Some(table) = Table::fresh(
        "the_keys_of_a_killed_home_node_reactivate_on_the_survivor",
        "killed",
    ) else {
        return;
    };
    let url = &table.url;
    let b = ChildNode::spawn(
        &[],
        "zone_postgres_node",
        ROLE,
        &format!("b {}", table.name),
    );
    let seed = b.expect("ADDR");
    let (a, za) =
        start_node(agents(url, &table.name, SCAN), transport("a").seed(seed)).expect("a starts");
    wait_for_nodes(&za, &["b"]);
    b.expect("LINKED");
    let key = key_homed_on("agent", "b", "killed");
    let pings = pings_of(&key);
    count_to_two(&a, &key, "b");
    assert_eq!(
        ask_key(&a, &key, "remind 50"),
        "2 0 on b",
        "2 and the reminder are saved"
    );
    let counted = ask_key(&a, &key, "inc");
    // (The reminder may have come already, or not.)
    assert!(
        counted.starts_with("3 ") && counted.ends_with(" on b"),
        "counted, not saved: {counted}"
    );
    // Whether or not b delivered the reminder before it died, it saved
    // nothing since: the store still has the reminder due.
    drop(b); // SIGKILL
    lose(&za, "b");
    assert_eq!(next_ping(&pings), "a", "the survivor delivers it");
    assert_eq!(
        ask_key(&a, &key, "get"),
        "2 1 on a",
        "with the last saved state"
    );
    a.shutdown();
}

#[test]
fn a_node_that_joins_is_handed_the_keys_it_wins_with_their_state_and_reminders() {
    let Some(table) = Table::fresh("a_node_that_joins_is_handed_the_keys_it_wins", "joins") else {
        return;
    };
    let url = &table.url;
    let (a, za) = start_node(agents(url, &table.name, SCAN), transport("a")).expect("a starts");
    // Alone, a is the home of every key; b will win this one.
    let key = key_homed_on("agent", "b", "joins");
    count_to_two(&a, &key, "a");
    assert_eq!(
        ask_key(&a, &key, "later 600000"),
        "2 0 on a",
        "a reminder in memory only"
    );
    let mut admin = Client::connect(url, NoTls).unwrap();
    let due = |admin: &mut Client| -> Option<Option<i64>> {
        let sql = format!("SELECT due FROM {} WHERE key = $1", table.name);
        admin
            .query_opt(&sql, &[&key.as_str()])
            .unwrap()
            .map(|row| row.get(0))
    };
    assert_eq!(due(&mut admin), None, "nothing stored yet");
    let (b, zb) = start_node(
        agents(url, &table.name, SCAN),
        transport("b").seed(za.local_addr().to_string()),
    )
    .expect("b starts");
    wait_for_nodes(&za, &["b"]);
    wait_for_nodes(&zb, &["a"]);
    wait_until("b to learn a's address", LONG, || knows_address(&zb, "a"));
    // a hands the key off: deactivated, its state and reminder saved.
    wait_until("a to hand the key off", LONG, || {
        a.virtual_stats().unwrap().deactivations == 1
    });
    assert!(a.active_keys("agent").unwrap().is_empty());
    assert!(
        matches!(due(&mut admin), Some(Some(_))),
        "the reminder is in the store, for b"
    );
    assert_eq!(
        ask_key(&a, &key, "inc"),
        "3 0 on b",
        "b has the state a saved"
    );
    a.shutdown();
    b.shutdown();
}

/// The killed node of `the_keys_of_a_killed_home_node_reactivate_...`, in
/// a child process: node `b` (the role's first word) on the table its
/// second word names, saying `ADDR` with where it listens, then `LINKED`
/// once it can reach `a`.
#[test]
#[ignore = "a helper process of the killed-node test"]
fn zone_postgres_node() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let (name, table) = role.split_once(' ').expect("a role is `name table`");
    let url = std::env::var("MYRIAD_TEST_POSTGRES").expect("the parent has a server");
    let (_node, zone) =
        start_node(agents(&url, table, SCAN), transport(name)).expect("the child node starts");
    println!("ADDR {}", zone.local_addr());
    wait_for_nodes(&zone, &["a"]);
    wait_until("the child to learn a's address", LONG, || {
        knows_address(&zone, "a")
    });
    println!("LINKED");
    // Runs until the parent kills it (or closes stdin).
    for _ in std::io::stdin().lock().lines() {}
}
