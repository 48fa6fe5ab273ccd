//! Supervisors: a worker that starts child workers from specs, watches them
//! (`Context::watch`) and restarts them by a strategy, within a restart
//! intensity; past it, it stops its children and fails itself, which its
//! own supervisor sees as a panic (supervisors nest).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::{BoxError, Context, ExitReason, Message, Result, Worker, WorkerRef};

/// When a terminated child is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always.
    Permanent,
    /// Only after a failure (a panic, a lost node), not after a stop.
    Transient,
    /// Never.
    Temporary,
}

/// Which children restart when one terminates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Only that child.
    OneForOne,
    /// Every child: the others are stopped (newest first), then all start
    /// again in spec order.
    OneForAll,
    /// That child and those after it in spec order.
    RestForOne,
}

/// The future of a child's start.
type Starting<'a> = Pin<Box<dyn Future<Output = Result<WorkerRef>> + 'a>>;

/// Makes and starts one child worker (type-erased factory).
trait Factory: Send {
    fn start<'a>(&'a mut self, ctx: &'a Context, name: Option<&'a str>) -> Starting<'a>;
}

struct MakeWith<F>(F);

impl<W, F> Factory for MakeWith<F>
where
    W: Worker + Send,
    F: FnMut() -> W + Send + 'static,
{
    fn start<'a>(&'a mut self, ctx: &'a Context, name: Option<&'a str>) -> Starting<'a> {
        let worker = (self.0)();
        Box::pin(async move {
            match name {
                Some(name) => ctx.start_worker(name, worker).await,
                None => Ok(ctx.spawn(worker)),
            }
        })
    }
}

/// One child of a [`Supervisor`]: how to make it, its name, its restart
/// policy.
pub struct ChildSpec {
    name: Option<String>,
    factory: Box<dyn Factory>,
    restart: Restart,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// A child started under `name` (on the name's home shard), made by
    /// `make`; a restarted child keeps its name. Permanent by default.
    pub fn named<W, F>(name: &str, make: F) -> Self
    where
        W: Worker + Send,
        F: FnMut() -> W + Send + 'static,
    {
        ChildSpec {
            name: Some(name.to_owned()),
            ..ChildSpec::anonymous(make)
        }
    }

    /// An anonymous child (on the supervisor's shard), made by `make`.
    /// Permanent by default.
    pub fn anonymous<W, F>(make: F) -> Self
    where
        W: Worker + Send,
        F: FnMut() -> W + Send + 'static,
    {
        ChildSpec {
            name: None,
            factory: Box::new(MakeWith(make)),
            restart: Restart::Permanent,
        }
    }

    /// Sets the restart policy.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }
}

/// A worker that supervises children (see the module's documentation and
/// `docs/guide.md`, "Failures and supervision").
///
/// An ask to a supervisor is answered with its children's references in
/// spec order, separated by spaces (`-` for a child not running).
pub struct Supervisor {
    strategy: Strategy,
    max_restarts: usize,
    within: Duration,
    backoff: Option<Duration>,
    specs: Vec<ChildSpec>,
    children: Vec<Option<WorkerRef>>,
    restarts: VecDeque<Instant>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("strategy", &self.strategy)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor with no children, `strategy`, and an intensity of 3
    /// restarts in 5 seconds.
    pub fn new(strategy: Strategy) -> Self {
        Supervisor {
            strategy,
            max_restarts: 3,
            within: Duration::from_secs(5),
            backoff: None,
            specs: Vec::new(),
            children: Vec::new(),
            restarts: VecDeque::new(),
        }
    }

    /// At most `max_restarts` restarts within `within`; one more and the
    /// supervisor stops its children and fails.
    pub fn intensity(mut self, max_restarts: usize, within: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.within = within;
        self
    }

    /// Waits `backoff` before each restart.
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Adds a child; children start in the order they are added.
    pub fn child(mut self, spec: ChildSpec) -> Self {
        self.specs.push(spec);
        self.children.push(None);
        self
    }

    /// Starts child `i` and watches it.
    async fn start_child(&mut self, ctx: &Context, i: usize) -> Result<()> {
        let spec = &mut self.specs[i];
        let r = spec.factory.start(ctx, spec.name.as_deref()).await?;
        self.children[i] = Some(r);
        ctx.watch(r).await?;
        Ok(())
    }

    /// Stops child `i` if it runs, without restarting it.
    async fn stop_child(&mut self, ctx: &Context, i: usize) {
        if let Some(r) = self.children[i].take() {
            // A notice already on its way names a reference that is no
            // longer a child: it is ignored.
            let _ = ctx.unwatch(r).await;
            let _ = ctx.stop_worker(r).await;
        }
    }

    /// Stops every child, newest first.
    async fn stop_all(&mut self, ctx: &Context) {
        for i in (0..self.children.len()).rev() {
            self.stop_child(ctx, i).await;
        }
    }

    /// Stops the children and fails: the supervisor's watchers (its own
    /// supervisor) see a panic with `why`.
    async fn escalate(&mut self, ctx: &Context, why: String) -> ! {
        self.stop_all(ctx).await;
        panic!("supervisor {}: {why}", ctx.me())
    }

    /// Counts a restart; `false` if it is one too many.
    fn may_restart(&mut self) -> bool {
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.within)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= self.max_restarts {
            return false;
        }
        self.restarts.push_back(now);
        true
    }

    /// Starts every child in `range` that is not running; on a restart
    /// (`restarting`), not the temporary ones.
    async fn start_range(&mut self, ctx: &Context, range: std::ops::Range<usize>, restarting: bool) {
        for j in range {
            let temporary = self.specs[j].restart == Restart::Temporary;
            if self.children[j].is_some() || (restarting && temporary) {
                continue;
            }
            if let Err(e) = self.start_child(ctx, j).await {
                self.escalate(ctx, format!("cannot start child {j}: {e}")).await;
            }
        }
    }
}

impl Worker for Supervisor {
    async fn on_start(&mut self, ctx: &mut Context) {
        let all = 0..self.specs.len();
        self.start_range(ctx, all, false).await;
    }

    async fn handle_message(&mut self, ctx: &mut Context, _: Message) -> Result<(), BoxError> {
        let children: Vec<String> = self
            .children
            .iter()
            .map(|c| c.map_or_else(|| "-".to_owned(), |r| r.to_string()))
            .collect();
        if ctx.is_ask() {
            ctx.reply(children.join(" "))?;
        }
        Ok(())
    }

    async fn on_terminated(&mut self, ctx: &mut Context, who: WorkerRef, reason: ExitReason) {
        let Some(i) = self.children.iter().position(|c| *c == Some(who)) else {
            return;
        };
        self.children[i] = None;
        let failed = matches!(reason, ExitReason::Panicked(_) | ExitReason::NodeLost);
        let restart = match self.specs[i].restart {
            Restart::Permanent => true,
            Restart::Transient => failed,
            Restart::Temporary => false,
        };
        if !restart || ctx.node_is_stopping() {
            return;
        }
        if !self.may_restart() {
            let why = format!(
                "more than {} restarts within {:?} (last: child {i}, {reason})",
                self.max_restarts, self.within
            );
            self.escalate(ctx, why).await;
        }
        if let Some(backoff) = self.backoff {
            ctx.sleep(backoff).await;
        }
        let (first, end) = match self.strategy {
            Strategy::OneForOne => (i, i + 1),
            Strategy::OneForAll => (0, self.children.len()),
            Strategy::RestForOne => (i, self.children.len()),
        };
        for j in (first..end).rev() {
            self.stop_child(ctx, j).await;
        }
        self.start_range(ctx, first..end, true).await;
    }

    async fn on_stop(&mut self, ctx: &mut Context) {
        // A stopping node stops every worker itself, newest (children)
        // first on each shard; shards already stopped answer nobody.
        if !ctx.node_is_stopping() {
            self.stop_all(ctx).await;
        }
    }
}
