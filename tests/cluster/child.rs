//! A node in a child process: this test binary, run again with one ignored
//! helper test selected and its role in an environment variable, talking to
//! the parent in lines (its stdout, the parent's `tell` on its stdin).
//! Killed (SIGKILL) when dropped: nothing of it says goodbye.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// How long the parent waits for any one line from a child.
pub const STEP: Duration = Duration::from_secs(30);

/// A node running in a child process.
pub struct ChildNode {
    child: Child,
    input: ChildStdin,
    lines: Receiver<String>,
}

impl ChildNode {
    /// Runs `wrapper` (e.g. `ip netns exec NS`, or nothing) with this test
    /// binary, selecting the ignored test `helper`, with `role` in the
    /// environment variable `role_var`.
    pub fn spawn(wrapper: &[&str], helper: &str, role_var: &str, role: &str) -> ChildNode {
        let exe = std::env::current_exe().expect("the test binary");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        let mut child = command
            .args(["--exact", helper, "--ignored", "--nocapture"])
            .env(role_var, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the child node starts");
        let input = child.stdin.take().expect("piped stdin");
        let output = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        ChildNode {
            child,
            input,
            lines,
        }
    }

    /// Waits for the child's next line that starts with `prefix`; returns the rest.
    pub fn expect(&self, prefix: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no {prefix:?} line from the child: {e}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Sends the child one line.
    pub fn tell(&mut self, line: &str) {
        writeln!(self.input, "{line}").expect("the child reads its stdin");
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
