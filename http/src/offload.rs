//! The bridge to tokio-only libraries: [`offload`] runs a `Send` future on a
//! small tokio runtime shared by the process and resumes the caller (on its
//! own shard) with the output.
//!
//! This leaves thread-per-core on purpose: the future runs on one of the
//! runtime's two worker threads (named `myriad-offload`), which compete with
//! the shards for the cores, and each call crosses threads twice. Use it for
//! a database driver or an SDK that exists only for tokio; for HTTP use the
//! shard's own [`crate::Client`]. The runtime starts on first use, with
//! tokio's I/O and timer drivers on.

use std::future::Future;
use std::sync::OnceLock;

/// Worker threads of the shared runtime.
const THREADS: usize = 2;

/// Why an offloaded future gave no output.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OffloadError {
    /// The shared runtime could not be started.
    #[error("the offload runtime could not start: {0}")]
    Runtime(String),
    /// The future panicked on the runtime.
    #[error("the offloaded future panicked")]
    Panicked,
}

fn runtime() -> Result<&'static tokio::runtime::Runtime, OffloadError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(THREADS)
                .thread_name("myriad-offload")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| OffloadError::Runtime(e.clone()))
}

/// Runs `future` on the shared tokio runtime and waits (without blocking the
/// shard) for its output. Dropping the returned future cancels the work.
pub async fn offload<F>(future: F) -> Result<F::Output, OffloadError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = flume::bounded(1);
    let task = runtime()?.spawn(async move {
        // The receiver is gone only if the caller stopped waiting.
        let _ = tx.send(future.await);
    });
    let _cancel = AbortOnDrop(task);
    rx.recv_async().await.map_err(|_| OffloadError::Panicked)
}

/// Aborts the tokio task when the caller stops waiting for it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn on_shard<Fut: Future<Output = ()> + 'static>(test: impl FnOnce() -> Fut + Send + 'static) {
        glommio::LocalExecutorBuilder::default()
            .io_memory(64 << 10)
            .spawn(test)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_tokio_only_future_runs_off_the_shard_and_returns_its_output() {
        on_shard(|| async {
            let shard = std::thread::current().id();
            let (ran_on, slept) = offload(async {
                // tokio::time panics outside a tokio runtime.
                tokio::time::sleep(Duration::from_millis(1)).await;
                (std::thread::current().id(), true)
            })
            .await
            .unwrap();
            assert!(slept);
            assert_ne!(ran_on, shard);
            assert_eq!(std::thread::current().id(), shard);
        });
    }

    #[test]
    fn a_panic_on_the_runtime_is_an_error_not_a_crash() {
        on_shard(|| async {
            let outcome = offload(async {
                if std::hint::black_box(true) {
                    panic!("inside the offloaded future");
                }
            })
            .await;
            assert!(matches!(outcome, Err(OffloadError::Panicked)));
            assert_eq!(offload(async { 7 }).await.unwrap(), 7);
        });
    }

    #[test]
    fn dropping_the_wait_cancels_the_work() {
        on_shard(|| async {
            let (started_tx, started) = flume::bounded(1);
            let (dropped_tx, dropped) = flume::bounded::<()>(1);
            let wait = glommio::spawn_local(offload(async move {
                let _held_until_dropped = &dropped_tx;
                let _ = started_tx.send(());
                std::future::pending::<()>().await;
            }));
            started.recv_async().await.unwrap();
            drop(wait); // cancels the shard task, and with it the wait
                        // The future's state is dropped on the runtime: its sender goes.
            assert!(dropped.recv_async().await.is_err());
        });
    }
}
