//! Reproduces glommio 0.9.0's park with runnable task queues, on demand.
//!
//! The executor polls I/O (which installs its preempt timer), then runs its
//! task queues. Unpatched, `run_task_queues` answers "nothing ran" when the
//! preempt flag is already set on entry, and the executor parks in
//! `io_uring_enter` although a task queue is runnable: nothing will ever
//! complete, so it sleeps for good. A 1 ns preempt timer makes "already set
//! on entry" the common case, and a task that only yields keeps a queue
//! runnable at every turn, so the park comes within a few runs.
//!
//! Each run gets a deadline; a run that misses it is a hang: the program
//! says so and exits with code 3 (the stuck executor thread cannot be
//! joined). Exit code 0: every run finished.

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

#[cfg(feature = "fixed")]
use fixed as glommio;
#[cfg(all(feature = "stock", not(feature = "fixed")))]
use stock as glommio;

use glommio::{LocalExecutorBuilder, Placement};

/// Executors started, one after another.
const RUNS: usize = 10;
/// Yields of the one task of each run.
const YIELDS: usize = 5_000;
/// A run that takes longer than this is hung (a healthy one takes a few ms).
const DEADLINE: Duration = Duration::from_secs(10);

fn one_run() -> std::io::Result<()> {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .preempt_timer(Duration::from_nanos(1))
        .spin_before_park(Duration::ZERO)
        .io_memory(64 << 10)
        .spawn(|| async {
            let task = glommio::spawn_local(async {
                for _ in 0..YIELDS {
                    futures_yield().await;
                }
            });
            task.await;
        })?;
    executor
        .join()
        .map_err(|e| std::io::Error::other(format!("{e:?}")))
}

/// Returns `Pending` once, waking itself first: the task stays runnable.
async fn futures_yield() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut yielded, true) {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

fn main() -> ExitCode {
    let which = if cfg!(feature = "fixed") {
        "myriad-glommio"
    } else {
        "glommio 0.9.0 (crates.io)"
    };
    for run in 1..=RUNS {
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(one_run());
        });
        match finished.recv_timeout(DEADLINE) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                eprintln!("park-repro: run {run} could not start an executor: {error}");
                return ExitCode::from(2);
            }
            Err(_) => {
                println!(
                    "park-repro: {which}: run {run} of {RUNS} hung (no progress in {DEADLINE:?})"
                );
                return ExitCode::from(3);
            }
        }
    }
    println!("park-repro: {which}: {RUNS} of {RUNS} runs finished");
    ExitCode::SUCCESS
}
