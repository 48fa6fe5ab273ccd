//! Simulated LLM agents: a load test to copy and adapt to your own agents.
//!
//! Each agent is a worker with a little memory. A user worker (one per
//! shard) gives an agent a task; the agent "thinks" by awaiting a timer drawn
//! from a latency distribution (standing in for a call to an LLM), calls a
//! tool worker with `send_and_receive`, remembers what the tool said and
//! answers the user, who gives it the next task. The user measures the
//! latency the engine adds on top of the think time.
//!
//! ```text
//! cargo run --release --example agent_sim                    # 10,000 agents, 3 turns
//! cargo run --release --example agent_sim -- 100000 5 500    # agents, turns, median think (ms)
//! ```
//!
//! To model your own agents, change [`Agent::handle_message`] (what a turn
//! does), [`think_time`] (how long your model takes) and [`Tool`] (what your
//! tools do). `bench-harness --workload agents` runs the same simulation at
//! scale.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use myriad::{BoxError, Context, Message, Node, NodeConfig, Replier, Worker, WorkerRef};

#[path = "support/logging.rs"]
mod logging;

/// How long a single wait of `main` may take.
const PATIENCE: Duration = Duration::from_secs(600);

/// An agent: a little memory, a tool to call, and a source of think times.
struct Agent {
    tool: WorkerRef,
    median_think: Duration,
    rng: Rng,
    /// The last few things the tool told this agent.
    memory: Vec<Message>,
    turns: u32,
}

impl Worker for Agent {
    /// One turn: `task <sent>` in, `answer <sent> <think ns> <turn>` out.
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let sent = msg.strip_prefix("task ").ok_or("agents take tasks")?;
        // Think: this is where a real agent would await its LLM.
        let think = think_time(&mut self.rng, self.median_think);
        ctx.sleep(think).await;
        // Use a tool, and remember what it said.
        let found = ctx.send_and_receive(self.tool, "lookup", PATIENCE).await?;
        if self.memory.len() == 4 {
            self.memory.remove(0);
        }
        self.memory.push(found);
        self.turns += 1;
        let user = ctx.sender().ok_or("tasks come from the user")?;
        ctx.send(
            user,
            format!("answer {sent} {} {}", think.as_nanos(), self.turns),
        )?;
        Ok(())
    }
}

/// A tool the agents of one shard share: here it answers at once.
struct Tool;

impl Worker for Tool {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        ctx.reply("42")?;
        Ok(())
    }
}

/// Starts a shard's tool and agents, hands out tasks, and records the
/// latency the engine added to each turn.
struct User {
    agents: u64,
    turns: u32,
    median_think: Duration,
    epoch: Instant,
    answered: u64,
    added: Vec<Duration>,
    /// Where all users put their measurements when they are done.
    results: Arc<Mutex<Vec<Duration>>>,
    waiting: Option<Replier>,
}

impl User {
    fn task(&self) -> String {
        format!("task {}", self.epoch.elapsed().as_nanos())
    }

    fn finished(&self) -> bool {
        self.answered == self.agents * u64::from(self.turns)
    }
}

impl Worker for User {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if msg == "start" {
            let tool = ctx.spawn(Tool);
            for i in 0..self.agents {
                let agent = ctx.spawn(Agent {
                    tool,
                    median_think: self.median_think,
                    rng: Rng(((ctx.shard() as u64) << 40) + i),
                    memory: Vec::new(),
                    turns: 0,
                });
                ctx.send(agent, self.task())?;
            }
        } else if msg == "wait" {
            self.waiting = ctx.defer_reply();
        } else {
            // `answer <sent> <think ns> <turn>`
            let fields: Vec<u64> = msg
                .strip_prefix("answer ")
                .ok_or("unexpected message")?
                .split(' ')
                .map(str::parse)
                .collect::<Result<_, _>>()?;
            let [sent, think, turn] = fields[..] else {
                return Err("answer <sent> <think> <turn>".into());
            };
            let now = self.epoch.elapsed().as_nanos() as u64;
            self.added
                .push(Duration::from_nanos(now.saturating_sub(sent + think)));
            self.answered += 1;
            if turn < u64::from(self.turns) {
                let agent = ctx.sender().ok_or("answers come from agents")?;
                ctx.send(agent, self.task())?;
            }
            if self.finished() {
                let mut results = self.results.lock().unwrap();
                results.append(&mut self.added);
            }
        }
        if self.finished() {
            if let Some(waiting) = self.waiting.take() {
                waiting.complete(Ok("done".into()));
            }
        }
        Ok(())
    }
}

/// A think time: log-normal around `median` (sigma 0.5), clipped to a
/// quarter and four times the median. Replace it with your model's latency.
fn think_time(rng: &mut Rng, median: Duration) -> Duration {
    let normal = (-2.0 * rng.unit().ln()).sqrt() * (std::f64::consts::TAU * rng.unit()).cos();
    median.mul_f64((0.5 * normal).exp().clamp(0.25, 4.0))
}

/// A small pseudo-random generator (SplitMix64).
struct Rng(u64);

impl Rng {
    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (((z ^ (z >> 31)) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

fn main() -> Result<(), BoxError> {
    logging::init("info");
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let agents = args.next().transpose()?.unwrap_or(10_000);
    let turns = u32::try_from(args.next().transpose()?.unwrap_or(3))?;
    let median_think = Duration::from_millis(args.next().transpose()?.unwrap_or(200));
    let results = Arc::new(Mutex::new(Vec::new()));

    let shared = results.clone();
    let wall = Node::start(NodeConfig::default(), move |ctx| async move {
        let shards = ctx.shards() as u64;
        let epoch = Instant::now();
        let mut users = Vec::new();
        for shard in 0..shards {
            let user = User {
                agents: agents / shards + u64::from(shard < agents % shards),
                turns,
                median_think,
                epoch,
                answered: 0,
                added: Vec::new(),
                results: shared.clone(),
                waiting: None,
            };
            users.push(ctx.spawn_on(shard as usize, user).await?);
        }
        let start = Instant::now();
        for &user in &users {
            ctx.send(user, "start")?;
        }
        for &user in &users {
            ctx.send_and_receive(user, "wait", PATIENCE).await?;
        }
        Ok::<_, myriad::Error>(start.elapsed())
    })??;

    let mut added = results.lock().unwrap().clone();
    added.sort_unstable();
    let at = |q: f64| added[((added.len() - 1) as f64 * q) as usize];
    let total = added.len() as f64;
    println!(
        "{agents} agents, {turns} turns each, median think {median_think:?}: {:.2} s",
        wall.as_secs_f64()
    );
    println!(
        "{:.0} turns/s, {:.0} messages/s (task, tool ask, tool answer, answer)",
        total / wall.as_secs_f64(),
        4.0 * total / wall.as_secs_f64()
    );
    println!(
        "latency the engine added to a turn: p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        at(0.50),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
