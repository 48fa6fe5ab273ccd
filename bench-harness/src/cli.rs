//! The command line: clap parses it, then [`Settings::from_cli`] makes the
//! checks clap cannot (shards against cores, repeated workloads). Every bad
//! argument ends with one clear message and exit code 2.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::serve_llm::ServeLlmArgs;
use crate::workloads::Workload;

/// Standard actor workloads against one Myriad node.
///
/// Runs each chosen workload on a fresh node, checks its result (a wrong
/// count or sum is an error, never a figure) and prints one table: workers,
/// messages, wall time, messages per second, latency where it applies, peak
/// resident memory and bytes per worker. Progress goes to stderr.
#[derive(Debug, Parser)]
#[command(name = "bench-harness", version, about, long_about)]
#[command(
    after_help = "Example: bench-harness --actors 1000000 --json results.jsonl\n\
    Field names of --json are documented in docs/performance.md."
)]
pub struct Cli {
    /// Workers in the scaled workloads: spawned workers, skynet leaves,
    /// fan-out receivers, agents.
    #[arg(long, value_name = "N", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub actors: u64,

    /// Workloads to run, in the order given (default: all of them).
    #[arg(long = "workload", value_name = "NAME", num_args = 1.., value_delimiter = ',')]
    pub workloads: Vec<Workload>,

    /// Shards, one thread per core (default: every available core).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    pub shards: Option<u64>,

    /// Messages per workload, in its own unit: round trips, hops, asks,
    /// messages per fan-out receiver times N, agent turns times N (default:
    /// a size that takes about a second).
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,

    /// Median simulated think time of an agent, in milliseconds (at most
    /// 10,000, so that a turn stays well within the stall watchdog).
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub think_ms: u64,

    /// virtual: keys in the store when the last activations are measured
    /// (default: --actors). Beyond --actors, the others are stored first,
    /// --actors at a time; then, with --actors of them active, a sample of
    /// the inactive ones is asked: the activation latency of a node that
    /// holds N stored and --actors active.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub stored: Option<u64>,

    /// Also write one JSON object per result row to PATH (JSON lines).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,

    /// Once a second during a workload, also show each shard's messages/s
    /// and the mailbox wait p99 (from the node's metrics), the latency p99
    /// and the resident memory (default when stderr is a terminal).
    #[arg(long, overrides_with = "no_live", conflicts_with = "quiet")]
    pub live: bool,

    /// Plain progress lines even on a terminal.
    #[arg(long, overrides_with = "live")]
    pub no_live: bool,

    /// Also write one self-contained HTML report to PATH: machine,
    /// settings, results, and each workload's charts over time (sampled
    /// every 100 ms).
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// agents-http: the OpenAI-compatible API root to call (default: start
    /// a mock with `serve-llm` in a child process on loopback).
    #[arg(long, value_name = "URL")]
    pub llm: Option<String>,

    /// agents-http: median delay of the mock it starts, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub llm_delay_ms: u64,

    /// agents-http: HTTP/1.1 connections per shard to the LLM.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub llm_connections: u64,

    /// agents-http: speak HTTP/2 to the LLM (one multiplexed connection per
    /// shard).
    #[arg(long)]
    pub http2: bool,

    /// Instead of workloads, run a tool.
    #[command(subcommand)]
    pub command: Option<Tool>,
}

/// Tools that run instead of the workloads.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Tool {
    /// Serve the mock OpenAI-compatible LLM (log-normal delay) until stopped.
    ServeLlm(ServeLlmArgs),
}

/// The checked settings of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Workers in the scaled workloads.
    pub actors: u64,
    /// Shards of every node.
    pub shards: usize,
    /// The `--messages` override, if given.
    pub messages: Option<u64>,
    /// Median think time of an agent.
    pub think: Duration,
    /// virtual: keys stored in all (at least `actors`).
    pub stored: u64,
    /// Workloads to run, in order, each once.
    pub workloads: Vec<Workload>,
    /// Where to write JSON lines.
    pub json: Option<PathBuf>,
    /// Whether progress lines are off.
    pub quiet: bool,
    /// Whether progress lines show the live view.
    pub live: bool,
    /// Where to write the HTML report.
    pub report: Option<PathBuf>,
    /// agents-http: the LLM endpoint, if not a mock of our own.
    pub llm: Option<String>,
    /// agents-http: the delay of the mock it starts.
    pub llm_delay: Duration,
    /// agents-http: HTTP/1.1 connections per shard.
    pub llm_connections: usize,
    /// agents-http: HTTP/2 instead of HTTP/1.1.
    pub http2: bool,
    /// A tool to run instead of the workloads.
    pub tool: Option<Tool>,
}

impl Settings {
    /// Checks what clap could not, against a machine with `cores` cores;
    /// `terminal` says whether stderr is one (the live view's default).
    pub fn from_cli(cli: Cli, cores: usize, terminal: bool) -> Result<Settings, String> {
        let shards = match cli.shards {
            None => cores,
            Some(s) => usize::try_from(s)
                .ok()
                .filter(|&s| s <= cores)
                .ok_or_else(|| {
                    format!(
                        "--shards {s} is more than the {cores} available cores \
                         (a shard is a thread pinned to a core)"
                    )
                })?,
        };
        let mut workloads = Vec::new();
        for w in cli.workloads {
            if !workloads.contains(&w) {
                workloads.push(w);
            }
        }
        if workloads.is_empty() {
            workloads = Workload::ALL.to_vec();
        }
        let stored = cli.stored.unwrap_or(cli.actors);
        if stored < cli.actors {
            return Err(format!(
                "--stored {stored} is fewer than --actors {}: the keys made active are stored ones",
                cli.actors
            ));
        }
        Ok(Settings {
            actors: cli.actors,
            stored,
            shards,
            messages: cli.messages,
            think: Duration::from_millis(cli.think_ms),
            workloads,
            json: cli.json,
            quiet: cli.quiet,
            live: !cli.quiet && (cli.live || (terminal && !cli.no_live)),
            report: cli.report,
            llm: cli.llm,
            llm_delay: Duration::from_millis(cli.llm_delay_ms),
            llm_connections: usize::try_from(cli.llm_connections).unwrap_or(usize::MAX),
            http2: cli.http2,
            tool: cli.command,
        })
    }

    /// The `--messages` override, or `default`.
    pub fn messages_or(&self, default: u64) -> u64 {
        self.messages.unwrap_or(default)
    }
}

/// Parses the process's arguments; exits with code 2 on a bad one.
pub fn parse() -> Settings {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let terminal = std::io::stderr().is_terminal();
    Settings::from_cli(Cli::parse(), cores, terminal)
        .unwrap_or_else(|msg| Cli::command().error(ErrorKind::ValueValidation, msg).exit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench-harness").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_run_every_workload_on_every_core() {
        let settings = Settings::from_cli(parse(&[]).unwrap(), 2, false).unwrap();
        assert_eq!(settings.actors, 1_000_000);
        assert_eq!(settings.shards, 2);
        assert_eq!(settings.workloads, Workload::ALL);
        assert_eq!(settings.messages_or(7), 7);
    }

    #[test]
    fn workloads_are_taken_in_order_once() {
        let cli = parse(&["--workload", "ring", "spawn", "--workload", "ring,ask"]).unwrap();
        let settings = Settings::from_cli(cli, 2, false).unwrap();
        assert_eq!(
            settings.workloads,
            [Workload::Ring, Workload::Spawn, Workload::Ask]
        );
    }

    #[test]
    fn zero_actors_is_a_usage_error() {
        let err = parse(&["--actors", "0"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--actors"), "{err}");
    }

    #[test]
    fn unknown_workload_is_a_usage_error_that_lists_the_known_ones() {
        let err = parse(&["--workload", "bogus"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("bogus") && text.contains("skynet"), "{text}");
    }

    #[test]
    fn stored_keys_default_to_the_actors_and_may_not_be_fewer() {
        let settings = Settings::from_cli(parse(&["--actors", "5"]).unwrap(), 2, false).unwrap();
        assert_eq!(settings.stored, 5);
        let cli = parse(&["--actors", "5", "--stored", "50"]).unwrap();
        assert_eq!(Settings::from_cli(cli, 2, false).unwrap().stored, 50);
        let cli = parse(&["--actors", "5", "--stored", "4"]).unwrap();
        let msg = Settings::from_cli(cli, 2, false).unwrap_err();
        assert!(msg.contains("--stored 4"), "{msg}");
    }

    #[test]
    fn more_shards_than_cores_is_refused() {
        let cli = parse(&["--shards", "3"]).unwrap();
        let msg = Settings::from_cli(cli, 2, false).unwrap_err();
        assert!(
            msg.contains("--shards 3") && msg.contains("2 available cores"),
            "{msg}"
        );
        assert!(parse(&["--shards", "0"]).is_err());
    }

    #[test]
    fn the_live_view_is_on_for_a_terminal_unless_told_otherwise() {
        let live = |args: &[&str], terminal| {
            Settings::from_cli(parse(args).unwrap(), 2, terminal)
                .unwrap()
                .live
        };
        assert!(live(&[], true));
        assert!(!live(&[], false));
        assert!(live(&["--live"], false));
        assert!(!live(&["--no-live"], true));
        assert!(live(&["--no-live", "--live"], false), "the last one wins");
        assert!(!live(&["--quiet"], true), "quiet is quiet");
        let err = parse(&["--quiet", "--live"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn a_report_path_is_taken() {
        let cli = parse(&["--report", "out.html"]).unwrap();
        let settings = Settings::from_cli(cli, 2, false).unwrap();
        assert_eq!(settings.report, Some(PathBuf::from("out.html")));
    }

    #[test]
    fn serve_llm_takes_the_mock_settings() {
        let cli = parse(&[
            "serve-llm",
            "--listen",
            "127.0.0.1:0",
            "--latency-ms",
            "0",
            "--stream",
        ]);
        let settings = Settings::from_cli(cli.unwrap(), 2, false).unwrap();
        let Some(Tool::ServeLlm(args)) = settings.tool else {
            panic!("serve-llm parsed as {:?}", settings.tool);
        };
        assert_eq!(args.listen.port(), 0);
        assert_eq!((args.latency_ms, args.tokens, args.stream), (0, 50, true));
        assert!(parse(&["serve-llm", "--listen", "nowhere"]).is_err());
    }

    #[test]
    fn help_explains_every_workload() {
        let help = Cli::command().render_long_help().to_string();
        for w in Workload::ALL {
            assert!(
                help.contains(&format!("- {}:", w.name())),
                "{w} missing:\n{help}"
            );
        }
    }
}
