//! Remote operations, the serving side: a peer asks this node to start a
//! worker of a registered kind, stop a worker, or list its workers (the
//! request arrives through `inbound.rs`). Also the text form of a worker
//! list (one `name shard mailbox_len handled` line per worker).

use std::sync::Arc;

use myriad_engine::plugin::ShardHandle;
use myriad_engine::{Address, Message, WorkerInfo};
use myriad_link::remote_error::to_wire;

use super::ShardTransport;
use crate::envelope::{ControlOp, ErrorCode, WorkerAddr};

/// A worker of a remote node, as `Zone::list_workers` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWorker {
    /// Its name, or its reference (`#shard.index.generation`) if it has none.
    pub name: String,
    /// The shard it lives on.
    pub shard: usize,
    /// Messages waiting in its mailbox.
    pub mailbox_len: usize,
    /// Messages it has handled.
    pub handled: u64,
}

/// The text of a worker list.
pub(crate) fn format_list(workers: &[WorkerInfo]) -> Message {
    let mut text = String::new();
    for w in workers {
        let name = w.name.clone().unwrap_or_else(|| w.id.to_string());
        text.push_str(&format!(
            "{name} {} {} {}\n",
            w.shard, w.mailbox_len, w.handled
        ));
    }
    Message::from(text)
}

/// Reads a worker list; malformed lines are skipped.
pub(crate) fn parse_list(text: &str) -> Vec<RemoteWorker> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let name = fields.next()?.to_owned();
            let shard = fields.next()?.parse().ok()?;
            let mailbox_len = fields.next()?.parse().ok()?;
            let handled = fields.next()?.parse().ok()?;
            Some(RemoteWorker {
                name,
                shard,
                mailbox_len,
                handled,
            })
        })
        .collect()
}

/// Carries out a start, stop or list request.
pub(crate) async fn perform(
    st: &ShardTransport,
    shard: &ShardHandle,
    op: ControlOp,
    target: Option<WorkerAddr>,
    body: Message,
) -> Result<Message, (ErrorCode, Message)> {
    let name = match target {
        Some(WorkerAddr::Name(name)) => Some(name),
        _ => None,
    };
    let named = || {
        name.clone().ok_or((
            ErrorCode::InvalidName,
            Message::from_static("the request names no worker"),
        ))
    };
    match op {
        ControlOp::StartWorker => {
            let name = named()?;
            let factory = st
                .shared
                .config
                .factories
                .get(body.as_str())
                .ok_or((ErrorCode::UnknownFactory, body.clone()))?;
            let started = factory(shard.clone(), name.to_string()).await;
            to_wire(started.map(|worker| Message::from(worker.to_string())))
        }
        ControlOp::StopWorker => {
            let name = named()?;
            let stopped = shard
                .stop_worker(&Address::Name(Arc::from(name.as_str())))
                .await;
            to_wire(stopped.map(|()| Message::default()))
        }
        ControlOp::ListWorkers => Ok(format_list(&shard.list_workers().await)),
        ControlOp::Members => Ok(Message::default()),
        // The link itself handles the watch operations (see `LinkState`).
        ControlOp::Watch | ControlOp::Unwatch | ControlOp::Exited => Err((
            ErrorCode::InvalidMessage,
            Message::from_static("not a remote operation"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_lists_round_trip_and_skip_junk() {
        let text = "greeter 1 0 5\n#0.3.1 0 2 7\nbad line\nx y z w\n";
        let list = parse_list(text);
        assert_eq!(
            list,
            [
                RemoteWorker {
                    name: "greeter".into(),
                    shard: 1,
                    mailbox_len: 0,
                    handled: 5
                },
                RemoteWorker {
                    name: "#0.3.1".into(),
                    shard: 0,
                    mailbox_len: 2,
                    handled: 7
                },
            ]
        );
    }
}
