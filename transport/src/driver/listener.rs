//! Accepting links: every shard accepts on the node's port (SO_REUSEPORT),
//! runs the responder's handshake on each connection, and runs the ones that
//! pass as inbound links. A connection beyond the node's handshake limits
//! (`admission.rs`) is closed at once and counted (reason `busy`); a failed
//! handshake is counted and logged; nothing from that peer reaches a worker.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};
use myriad_engine::metrics::HandshakeFailure;
use myriad_engine::plugin::ShardHandle;

use super::admission::Slot;
use super::link::Phase;
use super::outbound::count_failure;
use super::{connection, ShardTransport};

/// Pause after a failed `accept` (say, out of file descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Accepts connections for as long as the shard runs.
pub(crate) async fn accept_loop(st: Rc<ShardTransport>, shard: ShardHandle, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let slot = stream
                    .peer_addr()
                    .ok()
                    .and_then(|from| st.shared.handshakes.acquire(from.ip()));
                match slot {
                    Some(slot) => {
                        st.spawn(serve(st.clone(), shard.clone(), stream, slot));
                    }
                    None => {
                        st.shared.counters.handshake_failed(HandshakeFailure::Busy);
                        let from = stream.peer_addr().ok();
                        tracing::debug!(?from, "too many handshakes in progress: closed");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(shard = st.index, %error, "accept failed");
                glommio::timer::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Authenticates one accepted connection (holding `slot` meanwhile) and runs it.
async fn serve(st: Rc<ShardTransport>, shard: ShardHandle, mut stream: TcpStream, slot: Slot) {
    let from = stream.peer_addr().ok();
    let handshake = connection::handshake(&st, &mut stream, false).await;
    drop(slot);
    match handshake {
        Ok(established) => {
            let link = st.new_link(None);
            connection::run(
                st.clone(),
                shard,
                link.clone(),
                stream,
                established,
                Phase::Closed,
            )
            .await;
            st.remove_link(link.id);
        }
        Err(error) => {
            count_failure(&st, &error);
            tracing::info!(?from, %error, "rejected an incoming connection");
        }
    }
}
