//! The workloads, one module each. Every one runs on fresh nodes through
//! [`harness::measure`](crate::harness::measure), checks its own result and
//! returns one row per variant.
//!
//! The doc comment of each [`Workload`] variant is its line in `--help`.

use std::fmt;

use clap::ValueEnum;

use crate::cli::Settings;
use crate::harness::BenchError;
use crate::report::Row;

mod agents;
mod agents_http;
mod ask;
mod counting;
mod fanout;
mod pingpong;
mod ramp;
mod remote;
mod ring;
mod skynet;
mod spawn;
mod virtual_agents;

/// A standard workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// N workers holding a u64 start inside the shards; each gets one message and confirms it
    Spawn,
    /// The skynet tree: branching 10 down to N leaves that sum 0..N on the way up
    Skynet,
    /// Savina ping-pong: two workers, M round trips, on one shard and across shards
    Pingpong,
    /// Savina counting: one producer sends M messages to one counter, then asks for the count
    Counting,
    /// Savina thread ring: 1,000 workers pass one token for M hops
    Ring,
    /// N workers; every shard sends each of its workers M/N messages (default 10)
    Fanout,
    /// Request-reply latency at a fixed offered rate and at saturation, same and across shards
    Ask,
    /// N simulated LLM agents: think (a timer), call a tool worker, answer; engine-added latency
    Agents,
    /// Two nodes on loopback, one Noise link: 64 B and 64 KiB one-way, asks with latency
    Remote,
    /// N agents whose think is a real chat request over HTTP (--llm, or a mock it starts); not in the default suite
    AgentsHttp,
    /// N virtual workers on the embedded store: activation (new, stored) with latency, deactivation, and M messages by key vs by name; not in the default suite
    Virtual,
}

impl Workload {
    /// Every workload, in the order of the default suite.
    pub const ALL: [Workload; 9] = [
        Workload::Spawn,
        Workload::Skynet,
        Workload::Pingpong,
        Workload::Counting,
        Workload::Ring,
        Workload::Fanout,
        Workload::Ask,
        Workload::Agents,
        Workload::Remote,
    ];

    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Spawn => "spawn",
            Workload::Skynet => "skynet",
            Workload::Pingpong => "pingpong",
            Workload::Counting => "counting",
            Workload::Ring => "ring",
            Workload::Fanout => "fanout",
            Workload::Ask => "ask",
            Workload::Agents => "agents",
            Workload::Remote => "remote",
            Workload::AgentsHttp => "agents-http",
            Workload::Virtual => "virtual",
        }
    }

    /// Runs the workload; one row per variant.
    pub fn run(self, settings: &Settings) -> Result<Vec<Row>, BenchError> {
        match self {
            Workload::Spawn => spawn::run(settings),
            Workload::Skynet => skynet::run(settings),
            Workload::Pingpong => per_placement(settings, pingpong::run),
            Workload::Counting => per_placement(settings, counting::run),
            Workload::Ring => per_placement(settings, ring::run),
            Workload::Fanout => fanout::run(settings),
            Workload::Ask => ask::run(settings),
            Workload::Agents => agents::run(settings),
            Workload::Remote => remote::run(settings),
            Workload::AgentsHttp => agents_http::run(settings),
            Workload::Virtual => virtual_agents::run(settings),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the two ends of a workload live: on one shard, or on different
/// shards so that every message between them crosses a shard ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Everything on shard 0.
    SameShard,
    /// The far end on another shard.
    AcrossShards,
}

impl Placement {
    /// The placements a node of `shards` shards can run.
    pub fn all(shards: usize) -> Vec<Placement> {
        if shards > 1 {
            vec![Placement::SameShard, Placement::AcrossShards]
        } else {
            vec![Placement::SameShard]
        }
    }

    /// The shard of the far end (the near end is on shard 0).
    pub fn far_shard(self) -> usize {
        match self {
            Placement::SameShard => 0,
            Placement::AcrossShards => 1,
        }
    }

    /// The variant label of the row.
    pub fn label(self) -> &'static str {
        match self {
            Placement::SameShard => "same shard",
            Placement::AcrossShards => "across shards",
        }
    }
}

/// Runs a two-party workload once per placement.
fn per_placement(
    settings: &Settings,
    run: fn(&Settings, Placement) -> Result<Row, BenchError>,
) -> Result<Vec<Row>, BenchError> {
    Placement::all(settings.shards)
        .into_iter()
        .map(|placement| run(settings, placement))
        .collect()
}

/// The two rounds of an agents workload: each user (one per shard) starts
/// its share of `n` agents (`spawn <k>`), then all of them play `turns`
/// turns (`go`); `label` names the second round. Returns how long each
/// round took.
pub async fn spawn_then_go(
    ctx: &myriad::Context,
    tally: myriad::WorkerRef,
    users: &[myriad::WorkerRef],
    n: u64,
    turns: u64,
    label: &str,
) -> Result<AgentRounds, BenchError> {
    let shards = users.len();
    let orders = users.iter().enumerate().map(|(i, &u)| {
        let order = format!("spawn {}", share(n, shards, i));
        (u, order.into())
    });
    let (spawn, spawned) =
        crate::harness::round(ctx, tally, "agents spawn", n, orders, shards).await?;
    crate::harness::check("agents started", n, spawned)?;
    let idle_resident = crate::memory::resident();
    let orders = users.iter().map(|&u| (u, "go".into()));
    let total = n * turns;
    let (time, answered) = crate::harness::round(ctx, tally, label, total, orders, shards).await?;
    crate::harness::check("agent turns answered", total, answered)?;
    Ok(AgentRounds {
        spawn,
        idle_resident,
        time,
    })
}

/// What [`spawn_then_go`] measured.
pub struct AgentRounds {
    /// How long the agents took to start.
    pub spawn: std::time::Duration,
    /// Resident bytes with every agent started and idle, before the turns.
    pub idle_resident: u64,
    /// How long the turns took.
    pub time: std::time::Duration,
}

/// Part `i` of `total` split into `parts` nearly equal parts.
pub fn share(total: u64, parts: usize, i: usize) -> u64 {
    let (parts, i) = (parts as u64, i as u64);
    total / parts + u64::from(i < total % parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for (total, parts) in [(10, 3), (1_000_000, 2), (1, 2), (7, 7)] {
            let sum: u64 = (0..parts).map(|i| share(total, parts, i)).sum();
            assert_eq!(sum, total);
        }
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
    }

    #[test]
    fn names_match_the_command_line() {
        for w in Workload::ALL.into_iter().chain([Workload::AgentsHttp]) {
            let value = w.to_possible_value().unwrap();
            assert_eq!(value.get_name(), w.name());
        }
    }

    #[test]
    fn a_single_shard_has_no_far_side() {
        assert_eq!(Placement::all(1), [Placement::SameShard]);
        assert_eq!(Placement::all(2).len(), 2);
    }
}
