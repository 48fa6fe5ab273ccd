//! Accepting links: every shard accepts on the node's port (SO_REUSEPORT),
//! runs the responder's handshake on each connection, and runs the ones that
//! pass as inbound links. A failed handshake is counted and logged; nothing
//! from that peer reaches a worker.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};
use myriad_engine::plugin::ShardHandle;

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
                st.spawn(serve(st.clone(), shard.clone(), stream));
            }
            Err(error) => {
                tracing::warn!(shard = st.index, %error, "accept failed");
                glommio::timer::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Authenticates one accepted connection and runs it.
async fn serve(st: Rc<ShardTransport>, shard: ShardHandle, mut stream: TcpStream) {
    let from = stream.peer_addr().ok();
    match connection::handshake(&st, &mut stream, false).await {
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
