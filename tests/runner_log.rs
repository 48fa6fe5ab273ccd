//! The runner example logs a refused handshake: an operator sees, on its
//! stderr, that a connection from outside the zone was turned away.
//!
//! Runs the example's binary, which `cargo test` builds beside this test
//! (`target/<profile>/examples/runner`). Built alone (`cargo test --test
//! runner_log`), the binary is missing: the test says so loudly and passes,
//! except under CI, where it must run.

mod cluster;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use cluster::{try_raw_handshake, LONG};

/// Kills the runner when the test ends, however it ends.
struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_refused_handshake_shows_in_the_runners_log() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let Some(runner) = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("runner"))
        .filter(|path| path.exists())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs `cargo test --workspace`, which builds the runner example"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_refused_handshake_shows_in_the_runners_log: examples/runner is not built"
        );
        return;
    };
    let mut child = Runner(
        Command::new(runner)
            .args(["runner-1", "127.0.0.1:0"])
            .env("MYRIAD_ZONE", "test")
            .env(
                "MYRIAD_ZONE_SECRET",
                "the runner's own secret, not the test zone's",
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the runner starts"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let stderr = child.0.stderr.take().expect("piped stderr");
    let (lines, seen) = mpsc::channel();
    let out = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // "runner-1 listens on 127.0.0.1:PORT, public key ..."
    let addr: SocketAddr = loop {
        let line = seen
            .recv_timeout(LONG)
            .expect("the runner says where it listens");
        if let Some(rest) = line.split(" listens on ").nth(1) {
            let addr = rest.split(',').next().unwrap_or_default();
            break addr.parse().expect("a socket address");
        }
    };
    // The test zone's secret is not the runner's: the handshake fails.
    let refused = try_raw_handshake(addr, "intruder");
    assert!(refused.is_err(), "a peer with another secret got in");
    loop {
        let line = seen
            .recv_timeout(LONG)
            .expect("the runner logs the refused connection");
        if line.contains("rejected an incoming connection") {
            assert!(line.contains("INFO"), "{line}");
            break;
        }
    }
}
