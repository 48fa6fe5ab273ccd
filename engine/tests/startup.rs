//! A node that cannot start says why and what to do.

use std::process::Command;

use myriad_engine::{Error, Node, NodeConfig};

/// Below glommio's lockable-memory minimum, `Node::spawn` fails with a
/// `Startup` error that names the limit, the figure needed and how to raise
/// it. The node starts in a child process (this test binary, re-run) whose
/// soft `ulimit -l` is lowered to 64 KiB, which any user may do.
#[test]
fn below_the_memlock_limit_a_node_says_which_limit_and_how_to_raise_it() {
    let me = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -S -l 64 && exec "$0" --exact start_a_node --ignored --nocapture"#)
        .arg(me)
        .output()
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("STARTUP: "))
        .unwrap_or_else(|| panic!("no STARTUP line from the child:\n{stdout}"));
    for needed in [
        "RLIMIT_MEMLOCK",
        "64 KiB",
        "512 KiB",
        "ulimit -l",
        "LimitMEMLOCK",
    ] {
        assert!(line.contains(needed), "{needed:?} missing from: {line}");
    }
}

/// The child of the test above: starts a node, prints what came of it.
#[test]
#[ignore = "run by below_the_memlock_limit_a_node_says_which_limit_and_how_to_raise_it"]
fn start_a_node() {
    match Node::spawn(NodeConfig::default().shards(1).pin_shards(false)) {
        Err(Error::Startup(reason)) => println!("STARTUP: {reason}"),
        Err(other) => println!("OTHER: {other}"),
        Ok(node) => {
            println!("STARTED");
            node.shutdown();
        }
    }
}
