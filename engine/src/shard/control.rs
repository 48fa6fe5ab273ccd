//! Operations across the shards of the node, as Seastar's `submit_to`:
//! a job runs on the shard that owns the state it touches. Starting a named
//! worker goes through the name's home shard's directory; stopping and
//! listing reach whichever shards hold the workers.

use std::rc::Rc;
use std::sync::Arc;

use crate::address::{home_shard, validate_name};
use crate::envelope::{Packet, Target};
use crate::exit::{OnExit, Watcher, WatcherId};
use crate::remote::RemoteRouter;
use crate::{Address, Error, ExitReason, RemoteAddress, Result, Worker, WorkerInfo, WorkerRef};

use super::Shard;

impl Shard {
    /// Runs `job` on shard `shard` and returns its result (Seastar's
    /// `submit_to`). On this shard it runs at once.
    pub(crate) async fn submit<R, F>(self: &Rc<Self>, shard: usize, job: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Rc<Shard>) -> R + Send + 'static,
    {
        self.check_shard(shard)?;
        if shard == self.index {
            return Ok(job(self));
        }
        let (tx, rx) = flume::bounded(1);
        let packet = Packet::Run(Box::new(move |s: &Rc<Shard>| {
            // The asker may have gone away (node stopping): nothing to do.
            let _ = tx.send(job(s));
        }));
        if self.node.liveness.is_down(shard) {
            return Err(Error::ShardDown(shard));
        }
        self.post(shard, packet).map_err(|_| Error::NodeStopped)?;
        rx.recv_async().await.map_err(|_| Error::NodeStopped)
    }

    /// Starts an anonymous worker on any shard of this node.
    pub(crate) async fn spawn_on<W: Worker + Send>(
        self: &Rc<Self>,
        shard: usize,
        worker: W,
    ) -> Result<WorkerRef> {
        self.submit(shard, move |s| {
            s.insert_worker(Box::new(worker), None, true)
        })
        .await
    }

    /// Starts a named worker: reserve the name on its home shard, create the
    /// worker (inactive) on its shard, bind the name, then let it run.
    pub(crate) async fn start_named<W: Worker + Send>(
        self: &Rc<Self>,
        name: &str,
        placement: Option<usize>,
        worker: W,
    ) -> Result<WorkerRef> {
        validate_name(name)?;
        let home = home_shard(name, self.node.shards);
        let target = placement.unwrap_or(home);
        self.check_shard(target)?;
        let name: Arc<str> = Arc::from(name);
        let reserve = name.clone();
        self.submit(home, move |s| {
            s.state.borrow_mut().directory.reserve(reserve)
        })
        .await??;
        let named = name.clone();
        let created = self
            .submit(target, move |s| {
                s.insert_worker(Box::new(worker), Some(named), false)
            })
            .await;
        let bound = self
            .submit(home, move |s| {
                s.state.borrow_mut().directory.bind(name, created.ok())
            })
            .await?;
        let r = bound.ok_or(Error::NodeStopped)?;
        self.submit(target, move |s| s.activate(r)).await?;
        Ok(r)
    }

    /// Frees `name` in its home shard's directory if it is still `r`'s,
    /// then runs `then` there (so that what `then` sends follows the
    /// release: a watcher told of `r`'s end may take the name again).
    pub(super) fn unbind_then(
        self: &Rc<Self>,
        name: Arc<str>,
        r: WorkerRef,
        then: impl FnOnce(&Rc<Shard>) + Send + 'static,
    ) {
        let home = home_shard(&name, self.node.shards);
        let job = move |shard: &Rc<Shard>| {
            shard.state.borrow_mut().directory.release(&name, r);
            then(shard);
        };
        if let Err(Packet::Run(job)) = self.post(home, Packet::Run(Box::new(job))) {
            job(self);
        }
    }

    /// Finds which worker of this node an address means, asking its home
    /// shard for names; `NoRoute` for a worker of another node.
    async fn resolve(self: &Rc<Self>, who: &Address) -> Result<WorkerRef> {
        let name = match self.local_target(who) {
            Ok((_, Target::Worker(r))) => return Ok(r),
            Ok((_, Target::Name(name))) => name,
            Ok((_, Target::Key(key))) => {
                let home = key.home_shard(self.node.shards);
                let lookup = key.clone();
                let found = self.submit(home, move |s| s.virtual_worker(&lookup)).await?;
                return found.ok_or_else(|| Error::NoSuchWorker(format!("{key} (not active)")));
            }
            Err(remote) => return Err(Error::NoRoute(remote.node.to_string())),
        };
        let home = home_shard(&name, self.node.shards);
        let lookup = name.clone();
        let found = self
            .submit(home, move |s| s.state.borrow().directory.lookup(&lookup))
            .await?;
        found.ok_or_else(|| Error::NoSuchWorker(name.to_string()))
    }

    /// Stops the worker `who` (see `Context::stop_worker`).
    ///
    /// Returns once the worker is marked to stop and its name, if any, is
    /// free: the worker finishes its current message and runs `on_stop` on
    /// its own, so a worker may stop another (or itself) without waiting
    /// on it, while the name can be taken again at once.
    pub(crate) async fn stop_worker(self: &Rc<Self>, who: Address) -> Result<()> {
        let r = self.resolve(&who).await?;
        self.check_shard(r.shard())?;
        let stopping = self
            .submit(r.shard(), move |s| s.request_stop(r).then(|| s.name_of(r)))
            .await?;
        let Some(name) = stopping else {
            return Err(Error::NoSuchWorker(who.to_string()));
        };
        if let Some(name) = name {
            let home = home_shard(&name, self.node.shards);
            self.submit(home, move |s| {
                s.state.borrow_mut().directory.release(&name, r);
            })
            .await?;
        }
        Ok(())
    }

    /// Makes `watcher` watch the worker `target` means (see
    /// `Context::watch`); returns that worker. A worker of another node is
    /// watched by the remote router.
    pub(crate) async fn watch(self: &Rc<Self>, watcher: WorkerRef, target: Address) -> Result<WorkerRef> {
        if let Err(remote) = self.local_target(&target) {
            let router = self.router_for(&remote)?;
            return router.watch(watcher, &remote).await;
        }
        let r = self.resolve(&target).await?;
        self.check_shard(r.shard())?;
        let watch = move |s: &Rc<Shard>| s.add_watch(r, Watcher::Worker(watcher)).is_ok();
        if !self.submit(r.shard(), watch).await? {
            self.notify_watcher(watcher, r, ExitReason::NoSuchWorker);
        }
        Ok(r)
    }

    /// Removes `watcher`'s watch of `target` (see `Context::unwatch`).
    pub(crate) async fn unwatch(self: &Rc<Self>, watcher: WorkerRef, target: Address) -> Result<bool> {
        if let Err(remote) = self.local_target(&target) {
            return Ok(self.router_for(&remote)?.unwatch(watcher, &remote));
        }
        let r = self.resolve(&target).await?;
        self.check_shard(r.shard())?;
        let id = WatcherId::Worker(watcher);
        self.submit(r.shard(), move |s| s.remove_watch(r, id)).await
    }

    /// Calls `notify` once when the worker of this node that `target` means
    /// ends (see `ShardHandle::watch_with`); returns that worker and the
    /// watch's key for [`Shard::unwatch_callback`].
    pub(crate) async fn watch_callback(
        self: &Rc<Self>,
        target: Address,
        notify: OnExit,
    ) -> Result<(WorkerRef, u64)> {
        let r = self.resolve(&target).await?;
        self.check_shard(r.shard())?;
        let key = self.next_watch_key();
        let watch = move |s: &Rc<Shard>| s.add_watch(r, Watcher::Callback { key, notify }).err();
        if let Some(Watcher::Callback { notify, .. }) = self.submit(r.shard(), watch).await? {
            notify(r, ExitReason::NoSuchWorker);
        }
        Ok((r, key))
    }

    /// Removes the watch `key` of worker `target` that
    /// [`Shard::watch_callback`] made, without waiting (its callback is
    /// then not called, unless it was already).
    pub(crate) fn unwatch_callback(self: &Rc<Self>, target: WorkerRef, key: u64) {
        let job = move |s: &Rc<Shard>| {
            s.remove_watch(target, WatcherId::Callback(key));
        };
        if let Err(Packet::Run(job)) = self.post(target.shard(), Packet::Run(Box::new(job))) {
            job(self);
        }
    }

    /// The remote router that reaches `remote`'s node.
    fn router_for(&self, remote: &RemoteAddress) -> Result<Rc<dyn RemoteRouter>> {
        self.remote
            .get()
            .cloned()
            .ok_or_else(|| Error::NoRoute(remote.node.to_string()))
    }

    /// The workers of every shard of the node.
    pub(crate) async fn list_all(self: &Rc<Self>) -> Vec<WorkerInfo> {
        let mut all = Vec::new();
        for shard in 0..self.node.shards {
            if let Ok(mut some) = self.submit(shard, |s| s.list_here()).await {
                all.append(&mut some);
            }
        }
        all
    }
}
