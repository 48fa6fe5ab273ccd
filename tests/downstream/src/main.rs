//! Cross-shard traffic, many times over, each round bounded by a deadline.
//!
//! Every round starts a two-shard node and runs one of two workloads that
//! keep exactly one message in flight between the shards, which is where an
//! executor that parks with runnable work shows: a strict ping-pong, and a
//! storm of asks from several workers of shard 0 to one worker of shard 1.
//! A round that misses its deadline is a hang: the program names it and
//! exits with code 3 (the stuck node cannot be shut down). Exit code 0:
//! every round finished and every answer was right.

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use myriad::{BoxError, Context, Message, Node, NodeConfig, NodeHandle, Worker, WorkerRef};

/// Rounds of each workload.
const ROUNDS: usize = 200;
/// Round trips of one ping-pong round.
const VOLLEYS: u32 = 5_000;
/// Askers of one storm round, and the asks each makes in turn.
const ASKERS: usize = 8;
const ASKS: u32 = 500;
/// A round that takes longer than this is hung (a healthy one takes ms).
const DEADLINE: Duration = Duration::from_secs(20);
/// How long one ask may wait before it counts as lost.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers every message with the same text.
struct Echo;

impl Worker for Echo {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        ctx.reply(msg)?;
        Ok(())
    }
}

/// Asked "N", asks the echo worker N times, one after another, and answers
/// how many answers were right.
struct Asker {
    echo: WorkerRef,
}

impl Worker for Asker {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let asks: u32 = msg.as_str().parse()?;
        let mut right = 0;
        for i in 0..asks {
            let text = i.to_string();
            let answer = ctx
                .send_and_receive(self.echo, text.clone(), ASK_TIMEOUT)
                .await?;
            right += u32::from(answer.as_str() == text);
        }
        ctx.reply(right.to_string())?;
        Ok(())
    }
}

/// One side of a strict ping-pong: asked "N PARTNER", serves N volleys with
/// PARTNER and answers "done"; told "ball K", returns "ball K-1".
#[derive(Default)]
struct Player {
    partner: Option<WorkerRef>,
    left: u32,
    done: Option<myriad::Replier>,
}

impl Worker for Player {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let text = msg.as_str();
        if let Some(k) = text.strip_prefix("ball ") {
            let k: u32 = k.parse()?;
            let back = ctx.sender().ok_or("a ball without a sender")?;
            if self.done.is_some() {
                self.left -= 1;
                if self.left == 0 {
                    if let Some(done) = self.done.take() {
                        done.complete(Ok(Message::from("done")));
                    }
                    return Ok(());
                }
            }
            ctx.send(back, format!("ball {}", k.saturating_sub(1)))?;
            return Ok(());
        }
        let (n, partner) = text.split_once(' ').ok_or("expected 'N PARTNER'")?;
        let partner: WorkerRef = partner.parse()?;
        self.left = n.parse()?;
        self.partner = Some(partner);
        self.done = ctx.defer_reply();
        ctx.send(partner, format!("ball {n}"))?;
        Ok(())
    }
}

fn node() -> myriad::Result<NodeHandle> {
    Node::spawn(NodeConfig::default().shards(2).io_memory(128 << 10))
}

fn ping_pong() -> Result<(), BoxError> {
    let node = node()?;
    let far = node.spawn_on(1, Player::default())?;
    let near = node.spawn_on(0, Player::default())?;
    let outcome = node.send_and_receive(near, format!("{VOLLEYS} {far}"), DEADLINE)?;
    node.shutdown();
    if outcome.as_str() != "done" {
        return Err(format!("ping-pong ended with {outcome:?}").into());
    }
    Ok(())
}

fn ask_storm() -> Result<(), BoxError> {
    let node = node()?;
    let echo = node.spawn_on(1, Echo)?;
    let askers = (0..ASKERS)
        .map(|_| node.spawn_on(0, Asker { echo }))
        .collect::<myriad::Result<Vec<_>>>()?;
    // Every asker starts before any answer is awaited, so they all ask at once.
    let (tx, rx) = mpsc::channel();
    for asker in askers {
        let node = node.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(node.send_and_receive(asker, ASKS.to_string(), DEADLINE));
        });
    }
    drop(tx);
    for answer in rx {
        let right = answer?;
        if right.as_str() != ASKS.to_string() {
            return Err(format!("an asker got {right} of {ASKS} answers right").into());
        }
    }
    node.shutdown();
    Ok(())
}

/// A workload of one round: `Ok` when it finished with the right answers.
type Workload = fn() -> Result<(), BoxError>;

fn main() -> ExitCode {
    let workloads: [(&str, Workload); 2] = [("ping-pong", ping_pong), ("ask storm", ask_storm)];
    for round in 1..=ROUNDS {
        for (name, workload) in workloads {
            let (done, finished) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = done.send(workload().map_err(|e| e.to_string()));
            });
            match finished.recv_timeout(DEADLINE) {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    eprintln!("downstream: {name}, round {round}: {error}");
                    return ExitCode::FAILURE;
                }
                Err(_) => {
                    eprintln!("downstream: {name}, round {round}: hung (nothing for {DEADLINE:?})");
                    return ExitCode::from(3);
                }
            }
        }
    }
    println!("downstream: {ROUNDS} rounds each of ping-pong ({VOLLEYS} volleys) and ask storm ({ASKERS}×{ASKS} asks) finished");
    ExitCode::SUCCESS
}
