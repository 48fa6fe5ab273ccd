//! The staggered start of the agents workloads: each shard's user hands out
//! its agents' first tasks evenly over one median wait (think time or LLM
//! delay), woken every [`TICK`] by a [`Clock`] worker, so that the load
//! ramps up to a steady rate of turns instead of measuring one burst.

use std::time::{Duration, Instant};

use myriad::{BoxError, Context, Message, Worker, WorkerRef};

use crate::harness;

/// How often a user hands out first tasks during the ramp-up.
pub const TICK: Duration = Duration::from_millis(1);

/// A timer as a worker: answers `wait` with `tick` after [`TICK`].
pub struct Clock;

impl Worker for Clock {
    async fn handle_message(&mut self, ctx: &mut Context, _msg: Message) -> Result<(), BoxError> {
        glommio::timer::sleep(TICK).await;
        harness::send(ctx, harness::sender(ctx), "tick");
        Ok(())
    }
}

/// One user's ramp-up: which first tasks are due, and the clock that wakes
/// the user until all of them are out.
pub struct Ramp {
    over: Duration,
    start: Instant,
    started: usize,
    clock: Option<WorkerRef>,
    /// `wait` and `tick` messages between the user and its clock.
    clock_messages: u64,
}

impl Ramp {
    /// A ramp that spreads first tasks over `over` (all at once when zero).
    pub fn new(over: Duration) -> Self {
        Self {
            over,
            start: Instant::now(),
            started: 0,
            clock: None,
            clock_messages: 0,
        }
    }

    /// Starts the ramp's clock on the user's shard (with the agents).
    pub fn spawn_clock(&mut self, ctx: &Context) {
        self.clock = Some(ctx.spawn(Clock));
    }

    /// Starts the ramp now (on `go`) and hands out what is due already.
    pub fn begin(&mut self, ctx: &Context, agents: &[WorkerRef], task: impl FnMut() -> Message) {
        self.start = Instant::now();
        self.step(ctx, agents, task);
    }

    /// Sends `task()` to every agent whose first task is due by now (on `go`
    /// and on each `tick`), and asks the clock for the next tick while some
    /// remain.
    pub fn step(&mut self, ctx: &Context, agents: &[WorkerRef], mut task: impl FnMut() -> Message) {
        let due = due(agents.len(), self.start.elapsed(), self.over);
        for &agent in &agents[self.started.min(due)..due] {
            harness::send(ctx, agent, task());
        }
        self.started = self.started.max(due);
        if self.started < agents.len() {
            let clock = self.clock.expect("the clock starts with the agents");
            harness::send(ctx, clock, "wait");
            self.clock_messages += 2;
        }
    }

    /// Messages sent between the user and its clock so far.
    pub fn clock_messages(&self) -> u64 {
        self.clock_messages
    }
}

/// How many of `n` first tasks are due `elapsed` into a ramp of length
/// `over`.
fn due(n: usize, elapsed: Duration, over: Duration) -> usize {
    if elapsed >= over {
        return n;
    }
    ((n as f64 * elapsed.as_secs_f64() / over.as_secs_f64()) as usize).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_tasks_are_due_in_proportion_and_all_at_the_end() {
        let over = Duration::from_secs(1);
        assert_eq!(due(1000, Duration::ZERO, over), 0);
        assert_eq!(due(1000, Duration::from_millis(250), over), 250);
        assert_eq!(due(1000, over, over), 1000);
        assert_eq!(due(1000, Duration::from_secs(5), over), 1000);
    }

    #[test]
    fn a_ramp_of_no_length_starts_everyone_at_once() {
        assert_eq!(due(7, Duration::ZERO, Duration::ZERO), 7);
    }
}
