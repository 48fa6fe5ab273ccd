//! `agents`: the agent-simulation load test. N agents, each a worker with a
//! little memory, take turns: a user worker gives an agent a task, the agent
//! "thinks" by awaiting a timer drawn from a log-normal distribution (as if
//! waiting on an LLM), calls its shard's tool worker with
//! `send_and_receive`, remembers the result and answers the user.
//!
//! Agents do not all start at once: each user hands out the first tasks
//! evenly over one median think time ([`Ramp`]), so that the load ramps up
//! to a steady rate of turns instead of measuring one burst.
//!
//! The figure is the latency the engine adds on top of the simulated think
//! time: from the user sending the task to the user receiving the answer,
//! minus the think time the agent drew. The N agents count as sustained
//! when that stays within [`SUSTAINED_P99`] at the 99th percentile; to find
//! how many agents a machine sustains, run with smaller `--actors` until
//! they are.

use std::f64::consts::TAU;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use myriad::{BoxError, Context, Message, Worker, WorkerRef};

use crate::cli::Settings;
use crate::harness::{self, BenchError, Tally};
use crate::latency_feed;
use crate::memory;
use crate::progress;
use crate::report::{latency_histogram, Latency, Outcome, Row};
use crate::workloads::ramp::Ramp;
use crate::workloads::{spawn_then_go, Workload};

/// Turns per agent when `--messages` is not given.
const DEFAULT_TURNS: u64 = 2;

/// Spread of the think time: the sigma of its logarithm.
const THINK_SIGMA: f64 = 0.5;

/// Think times are clipped to `median / CLIP ..= median * CLIP`.
const CLIP: f64 = 3.0;

/// Engine-added latency (p99) under which the agents count as sustained.
const SUSTAINED_P99: Duration = Duration::from_millis(10);

/// Time given to the shards to go idle before memory is read.
const SETTLE: Duration = Duration::from_millis(50);

/// A small, fast pseudo-random generator (SplitMix64), one per agent.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// Think times: log-normal around `median`, clipped.
#[derive(Clone, Copy)]
struct Think {
    median: Duration,
}

impl Think {
    fn sample(self, rng: &mut Rng) -> Duration {
        // Box-Muller: a standard normal from two uniforms.
        let normal = (-2.0 * rng.unit().ln()).sqrt() * (TAU * rng.unit()).cos();
        let factor = (THINK_SIGMA * normal).exp().clamp(1.0 / CLIP, CLIP);
        self.median.mul_f64(factor)
    }
}

/// An agent: thinks, calls the tool, remembers, answers.
struct Agent {
    tool: WorkerRef,
    think: Think,
    rng: Rng,
    memory: [u32; 4],
    turns: u64,
}

impl Worker for Agent {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let sent = msg.strip_prefix("task ").expect("agents take tasks");
        let think = self.think.sample(&mut self.rng);
        ctx.sleep(think).await;
        let found = harness::ask(ctx, self.tool, "lookup").await;
        self.memory[(self.turns % 4) as usize] = found.len() as u32;
        self.turns += 1;
        let answer = format!("answer {sent} {} {}", think.as_nanos(), self.turns);
        harness::send(ctx, harness::sender(ctx), answer);
        Ok(())
    }
}

/// The tool every agent of a shard calls.
struct Tool;

impl Worker for Tool {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        ctx.reply("found")?;
        Ok(())
    }
}

/// What the users of all shards add up.
#[derive(Default)]
struct Totals {
    added: Option<Histogram<u64>>,
    think_ns: u128,
    /// `wait` and `tick` messages between users and their clocks.
    clock_messages: u64,
}

/// Starts a tool, a clock and its shard's agents (`spawn <n>`), hands out
/// first tasks over the ramp-up (`go`, then each `tick`), gives an agent its
/// next task after each answer until it has done `turns` turns; then adds
/// its figures to `totals` and reports.
struct User {
    tally: WorkerRef,
    epoch: Instant,
    think: Think,
    turns: u64,
    answered: u64,
    added: Histogram<u64>,
    think_ns: u128,
    totals: Arc<Mutex<Totals>>,
    agents: Vec<WorkerRef>,
    ramp: Ramp,
}

/// A task stamped with its sending time (since `epoch`).
fn task(epoch: Instant) -> Message {
    format!("task {}", epoch.elapsed().as_nanos()).into()
}

impl Worker for User {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if let Some(n) = msg.strip_prefix("spawn ") {
            let n = harness::number(n);
            let tool = ctx.spawn(Tool);
            self.ramp.spawn_clock(ctx);
            let seed = (ctx.shard() as u64) << 40;
            self.agents = (0..n)
                .map(|i| {
                    progress::tick(ctx, 1);
                    ctx.spawn(Agent {
                        tool,
                        think: self.think,
                        rng: Rng(seed + i),
                        memory: [0; 4],
                        turns: 0,
                    })
                })
                .collect();
            harness::report(ctx, self.tally, n);
        } else if msg == "go" {
            let epoch = self.epoch;
            self.ramp.begin(ctx, &self.agents, || task(epoch));
            if self.agents.is_empty() {
                harness::report(ctx, self.tally, 0);
            }
        } else if msg == "tick" {
            let epoch = self.epoch;
            self.ramp.step(ctx, &self.agents, || task(epoch));
        } else {
            let mut fields = msg.strip_prefix("answer ").expect("answer").split(' ');
            let mut next = || harness::number(fields.next().expect("answer fields"));
            let (sent, think, turn) = (next(), next(), next());
            let now = self.epoch.elapsed().as_nanos() as u64;
            let added = now.saturating_sub(sent).saturating_sub(think);
            latency_feed::record(&mut self.added, added);
            self.think_ns += u128::from(think);
            self.answered += 1;
            progress::tick(ctx, 1);
            if turn < self.turns {
                harness::send(ctx, harness::sender(ctx), task(self.epoch));
            }
            if self.answered == self.agents.len() as u64 * self.turns {
                let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
                let added = totals.added.get_or_insert_with(latency_histogram);
                added
                    .add(&self.added)
                    .expect("histograms of the same bounds");
                totals.think_ns += self.think_ns;
                totals.clock_messages += self.ramp.clock_messages();
                drop(totals);
                harness::report(ctx, self.tally, self.answered);
            }
        }
        Ok(())
    }
}

/// Runs the workload: one row.
pub fn run(settings: &Settings) -> Result<Vec<Row>, BenchError> {
    let (n, shards) = (settings.actors, settings.shards);
    let turns = settings.messages.map_or(DEFAULT_TURNS, |m| (m / n).max(1));
    let think = Think {
        median: settings.think,
    };
    let row = harness::measure(settings, Workload::Agents, "", move |ctx| async move {
        let tally = ctx.spawn(Tally::default());
        let totals = Arc::new(Mutex::new(Totals::default()));
        let epoch = Instant::now();
        let mut users = Vec::with_capacity(shards);
        for shard in 0..shards {
            let user = User {
                tally,
                epoch,
                think,
                turns,
                answered: 0,
                added: latency_histogram(),
                think_ns: 0,
                totals: totals.clone(),
                agents: Vec::new(),
                ramp: Ramp::new(think.median),
            };
            users.push(harness::spawn_at(&ctx, shard, user).await?);
        }
        glommio::timer::sleep(SETTLE).await;
        let empty = memory::resident();
        let rounds = spawn_then_go(&ctx, tally, &users, n, turns, "agents").await?;
        let total = n * turns;
        let peak = memory::peak();
        let per_agent = |bytes: u64| bytes as f64 / n as f64;
        // An idle agent (its state, slot and the user's reference to it),
        // and what thinking adds to it at the peak: its suspended run, the
        // entry of its sleep or ask, its messages.
        let idle = per_agent(rounds.idle_resident.saturating_sub(empty));
        let thinking = per_agent(peak.saturating_sub(rounds.idle_resident));
        let totals = totals.lock().unwrap_or_else(|p| p.into_inner());
        let latency = totals.added.as_ref().and_then(Latency::of);
        let mean_think_s = totals.think_ns as f64 / 1e9 / total as f64;
        let p99 = latency.map_or(0, |l| l.p99);
        let sustained = p99 <= SUSTAINED_P99.as_nanos() as u64;
        let verdict = if sustained {
            format!("{n} agents sustained")
        } else {
            format!("not sustained: p99 added > {SUSTAINED_P99:?}")
        };
        Ok(Outcome {
            workers: n,
            // Per turn: task, tool ask, its answer, answer to the user;
            // plus each user's `spawn`, `go`, two reports and clock ticks.
            messages: 4 * total + 4 * shards as u64 + totals.clock_messages,
            ops: total,
            op: "turns",
            phases: vec![("agents", rounds.time)],
            latency,
            bytes_per_worker: Some(per_agent(peak.saturating_sub(empty))),
            check: format!(
                "{total} turns; {verdict} (think {:.0} ms mean); {idle:.0} B/agent idle, +{thinking:.0} thinking",
                mean_think_s * 1e3
            ),
            extra: vec![
                ("agents_sustained", if sustained { n as f64 } else { 0.0 }),
                ("think_mean_ms", mean_think_s * 1e3),
                ("spawn_s", rounds.spawn.as_secs_f64()),
                ("idle_bytes_per_agent", idle),
                ("thinking_bytes_per_agent", thinking),
            ],
        })
    })?;
    Ok(vec![row])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_times_are_log_normal_around_the_median() {
        let think = Think {
            median: Duration::from_millis(100),
        };
        let mut rng = Rng(7);
        let mut samples: Vec<Duration> = (0..10_001).map(|_| think.sample(&mut rng)).collect();
        samples.sort_unstable();
        let median = samples[5_000].as_secs_f64();
        assert!((0.095..0.105).contains(&median), "median {median}");
        assert!(samples[0] >= Duration::from_millis(33));
        assert!(samples[10_000] <= Duration::from_millis(300));
    }
}
