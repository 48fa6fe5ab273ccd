//! `agents-http`: the agents load test over a real network. N agents, each a
//! worker with a little memory; a turn is a real chat-completions request
//! (non-streaming) to an OpenAI-compatible endpoint, then a tool ask, then
//! the answer to the agent's user.
//!
//! The endpoint is `--llm URL`, or else a mock LLM that the harness starts
//! as a child process (`bench-harness serve-llm` on loopback, median delay
//! `--llm-delay-ms`). Each shard has one LLM client (HTTP/1.1 keep-alive
//! pool capped at `--llm-connections` per shard, or one HTTP/2 connection
//! with `--http2`) shared by its agents.
//!
//! Agents do not all start at once: each shard's user hands out the first
//! requests evenly over one median LLM delay (`--llm-delay-ms`; all at once
//! when it is 0), as the `agents` workload does with its think time, so the
//! figure is the steady state and not one opening burst.
//!
//! The latency figure is what the engine and the client add on top of the
//! server: the time around each chat request minus the delay the mock says
//! it waited (its `x-mock-delay-us` header; 0 for a server that does not
//! send it). Failed requests are counted by kind, not timed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;
use myriad::http::{ClientConfig, Error as HttpError};
use myriad::llm::mock::DELAY_HEADER;
use myriad::llm::{ChatMessage, ChatRequest, LlmClient, LlmConfig, LlmError};
use myriad::{BoxError, Context, Message, Worker, WorkerRef};

use crate::cli::Settings;
use crate::harness::{self, BenchError, Tally};
use crate::latency_feed;
use crate::progress;
use crate::report::{latency_histogram, Latency, Outcome, Row};
use crate::workloads::ramp::Ramp;
use crate::workloads::{spawn_then_go, Workload};

/// Chat requests per agent when `--messages` is not given.
const DEFAULT_TURNS: u64 = 10;

/// Turns kept in an agent's memory.
const MEMORY: usize = 4;

thread_local! {
    /// This shard's LLM client, made by the shard's user before its agents.
    static LLM: RefCell<Option<LlmClient>> = const { RefCell::new(None) };
}

/// How the shards reach the LLM.
#[derive(Debug, Clone)]
struct Endpoint {
    base_url: String,
    http2: bool,
    connections: usize,
}

impl Endpoint {
    fn client(&self) -> LlmClient {
        let mut config = LlmConfig::new(self.base_url.clone(), "mock");
        config.max_concurrent = usize::MAX >> 1;
        config.http = ClientConfig {
            http2: self.http2,
            max_connections_per_host: self.connections,
            ..ClientConfig::default()
        };
        LlmClient::new(config)
    }
}

/// An agent: asks the LLM, calls the tool, remembers, answers.
struct Agent {
    llm: LlmClient,
    tool: WorkerRef,
    memory: Vec<ChatMessage>,
    turns: u64,
}

impl Worker for Agent {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        let mut messages = vec![ChatMessage::system("You are a helpful agent.")];
        messages.extend(self.memory.iter().cloned());
        messages.push(ChatMessage::user(msg.to_string()));
        let start = Instant::now();
        let outcome = self.llm.chat(&ChatRequest::new(messages)).await;
        let took = start.elapsed().as_nanos() as u64;
        let (added, kind) = match outcome {
            Ok(answer) => {
                let server_us = answer
                    .headers
                    .get(DELAY_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                if self.memory.len() >= MEMORY {
                    self.memory.drain(..2);
                }
                self.memory.push(ChatMessage::user(msg.to_string()));
                self.memory.push(ChatMessage::assistant(answer.content));
                (took.saturating_sub(server_us * 1_000), "ok")
            }
            Err(e) => (0, error_kind(&e)),
        };
        harness::ask(ctx, self.tool, "lookup").await;
        self.turns += 1;
        let answer = format!("answer {added} {kind} {}", self.turns);
        harness::send(ctx, harness::sender(ctx), answer);
        Ok(())
    }
}

/// The kind of a failed chat request, for the error counts.
fn error_kind(e: &LlmError) -> &'static str {
    match e {
        LlmError::Http(HttpError::Timeout { .. }) => "timeout",
        LlmError::Http(HttpError::Connect { .. }) => "connect",
        LlmError::Http(HttpError::Status { .. }) | LlmError::Api { .. } => "status",
        LlmError::Http(HttpError::Body(_)) => "body",
        LlmError::Http(HttpError::TooLarge { .. }) => "too_large",
        LlmError::Http(HttpError::Http(_) | HttpError::Url { .. }) => "http",
        LlmError::Json(_) | LlmError::NoChoice => "malformed",
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
    errors: BTreeMap<String, u64>,
    connections: u64,
    /// `wait` and `tick` messages between users and their clocks.
    clock_messages: u64,
}

/// What an agent is asked each turn.
const TASK: &str = "plan the next step";

/// Makes its shard's LLM client, tool, clock and agents (`spawn <n>`), hands
/// out first tasks over the ramp-up (`go`, then each `tick`), gives an agent
/// its next task after each answer until it has done `turns`; then adds its
/// figures to `totals` and reports.
struct User {
    tally: WorkerRef,
    endpoint: Endpoint,
    turns: u64,
    answered: u64,
    added: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    totals: Arc<Mutex<Totals>>,
    agents: Vec<WorkerRef>,
    ramp: Ramp,
}

impl Worker for User {
    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if let Some(n) = msg.strip_prefix("spawn ") {
            let llm = self.endpoint.client();
            LLM.with(|slot| *slot.borrow_mut() = Some(llm.clone()));
            let tool = ctx.spawn(Tool);
            self.ramp.spawn_clock(ctx);
            self.agents = (0..harness::number(n))
                .map(|_| {
                    ctx.spawn(Agent {
                        llm: llm.clone(),
                        tool,
                        memory: Vec::with_capacity(MEMORY),
                        turns: 0,
                    })
                })
                .collect();
            harness::report(ctx, self.tally, self.agents.len() as u64);
        } else if msg == "go" {
            self.ramp.begin(ctx, &self.agents, || TASK.into());
            if self.agents.is_empty() {
                harness::report(ctx, self.tally, 0);
            }
        } else if msg == "tick" {
            self.ramp.step(ctx, &self.agents, || TASK.into());
        } else {
            let mut fields = msg.strip_prefix("answer ").expect("answer").split(' ');
            let added = harness::number(fields.next().expect("added"));
            let kind = fields.next().expect("kind");
            let turn = harness::number(fields.next().expect("turn"));
            if kind == "ok" {
                latency_feed::record(&mut self.added, added);
            } else {
                *self.errors.entry(kind.to_owned()).or_default() += 1;
            }
            self.answered += 1;
            progress::tick(ctx, 1);
            if turn < self.turns {
                harness::send(ctx, harness::sender(ctx), TASK);
            }
            if self.answered == self.agents.len() as u64 * self.turns {
                let opened = LLM.with(|slot| {
                    slot.borrow()
                        .as_ref()
                        .map_or(0, |llm| llm.http().stats().connections_opened)
                });
                let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
                let all = totals.added.get_or_insert_with(latency_histogram);
                all.add(&self.added).expect("histograms of the same bounds");
                for (kind, n) in &self.errors {
                    *totals.errors.entry(kind.clone()).or_default() += n;
                }
                totals.connections += opened;
                totals.clock_messages += self.ramp.clock_messages();
                drop(totals);
                harness::report(ctx, self.tally, self.answered);
            }
        }
        Ok(())
    }
}

/// The mock LLM in a child process, stopped when dropped.
struct MockProcess {
    child: Child,
    base_url: String,
}

impl MockProcess {
    fn start(delay_ms: u64) -> Result<MockProcess, BenchError> {
        let setup =
            |what: &str, e: &dyn std::fmt::Display| BenchError::Setup(format!("{what}: {e}"));
        let exe = std::env::current_exe().map_err(|e| setup("finding bench-harness", &e))?;
        let mut child = Command::new(exe)
            .args(["serve-llm", "--listen", "127.0.0.1:0", "--sigma", "0.5"])
            .args(["--latency-ms", &delay_ms.to_string(), "--tokens", "16"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| setup("starting serve-llm", &e))?;
        let mut line = String::new();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| setup("serve-llm", &"no stdout"))?;
        let read = BufReader::new(stdout).read_line(&mut line);
        let mut mock = MockProcess {
            child,
            base_url: String::new(),
        };
        // On an error from here on, dropping `mock` stops the child.
        read.map_err(|e| setup("reading serve-llm's address", &e))?;
        mock.base_url = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| setup("serve-llm did not start", &line.trim()))?
            .to_owned();
        Ok(mock)
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        // Already gone is fine: nothing is left to stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the workload: one row.
pub fn run(settings: &Settings) -> Result<Vec<Row>, BenchError> {
    let (n, shards) = (settings.actors, settings.shards);
    let turns = settings.messages.map_or(DEFAULT_TURNS, |m| (m / n).max(1));
    let mock = match &settings.llm {
        Some(_) => None,
        None => Some(MockProcess::start(settings.llm_delay.as_millis() as u64)?),
    };
    let base_url = match (&settings.llm, &mock) {
        (Some(url), _) => url.clone(),
        (None, Some(mock)) => mock.base_url.clone(),
        (None, None) => unreachable!("a mock starts when no --llm is given"),
    };
    let endpoint = Endpoint {
        base_url,
        http2: settings.http2,
        connections: settings.llm_connections,
    };
    let ramp = settings.llm_delay;
    let variant = if endpoint.http2 { "h2" } else { "h1 pooled" };
    let row = harness::measure(
        settings,
        Workload::AgentsHttp,
        variant,
        move |ctx| async move {
            let tally = ctx.spawn(Tally::default());
            let totals = Arc::new(Mutex::new(Totals::default()));
            let mut users = Vec::with_capacity(shards);
            for shard in 0..shards {
                let user = User {
                    tally,
                    endpoint: endpoint.clone(),
                    turns,
                    answered: 0,
                    added: latency_histogram(),
                    errors: BTreeMap::new(),
                    totals: totals.clone(),
                    agents: Vec::new(),
                    ramp: Ramp::new(ramp),
                };
                users.push(harness::spawn_at(&ctx, shard, user).await?);
            }
            let time = spawn_then_go(&ctx, tally, &users, n, turns, "agents-http")
                .await?
                .time;
            let total = n * turns;
            let totals = totals.lock().unwrap_or_else(|p| p.into_inner());
            let failed: u64 = totals.errors.values().sum();
            let errors = if failed == 0 {
                "no errors".to_owned()
            } else {
                let kinds: Vec<String> = totals
                    .errors
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                format!("errors: {}", kinds.join(", "))
            };
            Ok(Outcome {
                workers: n,
                // Per turn: task, tool ask, its answer, answer to the user; plus
                // each user's `spawn`, `go`, two reports and clock ticks.
                messages: 4 * total + 4 * shards as u64 + totals.clock_messages,
                ops: total - failed,
                op: "chat requests",
                phases: vec![("agents-http", time)],
                latency: totals.added.as_ref().and_then(Latency::of),
                bytes_per_worker: None,
                check: format!(
                    "{total} turns, {} chats ok, {errors}; {} connections",
                    total - failed,
                    totals.connections
                ),
                extra: vec![
                    ("connections", totals.connections as f64),
                    ("errors", failed as f64),
                    (
                        "requests_per_s",
                        (total - failed) as f64 / time.as_secs_f64().max(f64::MIN_POSITIVE),
                    ),
                ],
            })
        },
    );
    drop(mock);
    Ok(vec![row?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_error_has_a_kind_the_user_counts() {
        let timeout = LlmError::Http(HttpError::Timeout {
            during: "connecting",
            limit: Duration::from_secs(1),
        });
        assert_eq!(error_kind(&timeout), "timeout");
        assert_eq!(error_kind(&LlmError::NoChoice), "malformed");
    }
}
