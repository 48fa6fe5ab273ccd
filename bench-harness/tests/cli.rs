//! The `bench-harness` binary as a person runs it: a tiny run of every
//! workload, its `--json` output, and the errors for bad arguments.

use std::path::PathBuf;
use std::process::{Command, Output};

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bench-harness"))
        .args(args)
        .output()
        .expect("bench-harness runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_tiny_run_of_every_workload_succeeds_and_reports_each() {
    let json = TempFile(
        std::env::temp_dir().join(format!("bench-harness-smoke-{}.jsonl", std::process::id())),
    );
    let report = TempFile(
        std::env::temp_dir().join(format!("bench-harness-smoke-{}.html", std::process::id())),
    );
    let out = harness(&[
        "--actors",
        "1000",
        "--messages",
        "1000",
        "--think-ms",
        "5",
        "--quiet",
        "--json",
        json.0.to_str().unwrap(),
        "--report",
        report.0.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.is_empty(),
        "--quiet prints nothing on stderr: {stderr}"
    );
    let mut lines = stdout.lines();
    let header = lines.next().unwrap();
    for column in [
        "workload", "workers", "msgs/s", "p99.9", "peak RSS", "B/worker",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let rows: Vec<&str> = lines.collect();
    for workload in [
        "spawn", "skynet", "pingpong", "counting", "ring", "fanout", "ask", "agents", "remote",
    ] {
        assert!(
            rows.iter().any(|r| r.starts_with(workload)),
            "no row for {workload}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("sum 499500"),
        "skynet checks 0+..+999:\n{stdout}"
    );

    let records = std::fs::read_to_string(&json.0).unwrap();
    assert_eq!(records.lines().count(), rows.len(), "one JSON line per row");
    for record in records.lines() {
        for field in [
            "\"workload\":",
            "\"wall_s\":",
            "\"msgs_per_s\":",
            "\"ops_per_s\":",
            "\"latency_ns\":",
            "\"peak_rss_bytes\":",
            "\"bytes_per_worker\":",
        ] {
            assert!(record.contains(field), "{field} missing in {record}");
        }
    }

    let html = std::fs::read_to_string(&report.0).unwrap();
    for workload in [
        "spawn", "skynet", "pingpong", "counting", "ring", "fanout", "ask", "agents", "remote",
    ] {
        for chart in ["throughput", "shards", "memory"] {
            let id = format!("id=\"fig-{workload}-{chart}\"");
            assert!(html.contains(&id), "no {chart} chart for {workload}");
        }
    }
    for workload in ["ask", "agents", "remote"] {
        for chart in ["latency", "distribution"] {
            let id = format!("id=\"fig-{workload}-{chart}\"");
            assert!(html.contains(&id), "no {chart} chart for {workload}");
        }
    }
    // Each variant's distribution has exactly its own latencies.
    for curve in [
        "ask same shard at 100k/s (1.00k values)",
        "ask same shard saturated, 16 in flight (1.00k values)",
        "ask across shards at 100k/s (1.00k values)",
        "ask across shards saturated, 16 in flight (1.00k values)",
        "agents (1.00k values)",
        "remote ask, 8 in flight (800 values)",
    ] {
        assert!(html.contains(curve), "no curve {curve:?}");
    }
    let figures = html.matches("<figure class=\"chart\"").count();
    assert_eq!(html.matches("<svg").count(), figures, "one <svg> per chart");
}

#[test]
fn agents_http_against_its_own_mock_answers_every_turn_with_a_staggered_start() {
    // 200 agents, 2 turns each, first requests spread over the mock's 20 ms.
    let out = harness(&[
        "--workload",
        "agents-http",
        "--actors",
        "200",
        "--messages",
        "400",
        "--llm-delay-ms",
        "20",
        "--quiet",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let row = stdout
        .lines()
        .find(|r| r.starts_with("agents-http"))
        .unwrap_or_else(|| panic!("no agents-http row:\n{stdout}"));
    assert!(row.contains("400 turns, 400 chats ok, no errors"), "{row}");
}

#[test]
fn progress_goes_to_stderr_unless_quiet() {
    let out = harness(&["--actors", "100", "--workload", "spawn"]);
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("spawn: done"), "{stderr}");
    assert!(!text(&out.stdout).contains("done in"));
}

#[test]
fn bad_arguments_exit_with_code_2_and_say_why() {
    for (args, says) in [
        (&["--actors", "0"][..], "--actors"),
        (&["--workload", "bogus"][..], "bogus"),
        (&["--shards", "4096"][..], "available cores"),
        (&["--messages", "many"][..], "--messages"),
        (&["--report", "/nonexistent/r.html"][..], "--report"),
        (&["--live", "--quiet"][..], "--quiet"),
    ] {
        let out = harness(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_explains_each_workload_in_one_line() {
    let out = harness(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for workload in [
        "spawn", "skynet", "pingpong", "counting", "ring", "fanout", "ask", "agents", "remote",
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("- {workload}:")))
            .unwrap_or_else(|| panic!("{workload} is not explained:\n{help}"));
        assert!(line.len() > workload.len() + 20, "{line}");
    }
}
