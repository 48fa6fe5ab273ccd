//! Outbound links: dialling a node by name, and keeping its link up —
//! reconnecting with exponential backoff and jitter after a failure, until
//! the node leaves the member list.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;
use myriad_engine::plugin::ShardHandle;
use ring::rand::{SecureRandom, SystemRandom};

use super::link::{Link, Phase};
use super::{connection, net, LinkError, ShardTransport};
use crate::handshake::{Established, HandshakeError};
use crate::stats::HandshakeFailure;
use crate::zone::NodeName;

/// A connected, authenticated connection, ready to run.
pub(crate) type Connected = (TcpStream, Box<Established>);

/// Connects to `addr` and runs the handshake as the initiator.
pub(crate) async fn dial(st: &ShardTransport, addr: SocketAddr) -> Result<Connected, LinkError> {
    let config = &st.shared.config;
    let (timeout, options) = (config.connect_timeout, st.shared.socket);
    let stream = glommio::executor()
        .spawn_blocking(move || net::connect(addr, timeout, &options))
        .await?;
    let mut stream = net::glommio_stream(stream);
    let established = connection::handshake(st, &mut stream, true).await?;
    Ok((stream, established))
}

/// The delay before retry number `failures` (1, 2, ...): `min` doubled per
/// failure, at most `max`, then a random 50 to 100 % of that.
fn backoff(failures: u32, (min, max): (Duration, Duration)) -> Duration {
    let full = min
        .saturating_mul(1 << failures.saturating_sub(1).min(20))
        .min(max);
    let mut random = [0; 2];
    let fraction = match SystemRandom::new().fill(&mut random) {
        Ok(()) => f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX),
        Err(_) => 1.0,
    };
    full.mul_f64(0.5 + fraction / 2.0)
}

/// Counts a failed attempt to establish a link, inbound or outbound, by
/// reason: a failed or timed-out handshake, or a connection that could not
/// be made or failed during the handshake. A node that dialled itself is not
/// a failure, nor is a node whose address is unknown.
pub(crate) fn count_failure(st: &ShardTransport, error: &LinkError) {
    let reason = match error {
        LinkError::Handshake(HandshakeError::SelfConnection) => return,
        LinkError::Handshake(error) => error.reason(),
        LinkError::HandshakeTimeout(_) => HandshakeFailure::Timeout,
        LinkError::Io(_) => HandshakeFailure::Io,
        _ => return,
    };
    st.shared.counters.handshake_failed(reason);
}

/// Keeps the outbound link to `name` up while the node is known. `first` is
/// a connection discovery already made to it.
pub(crate) async fn supervise(
    st: Rc<ShardTransport>,
    shard: ShardHandle,
    link: Rc<Link>,
    name: NodeName,
    mut first: Option<Connected>,
) {
    let mut failures = 0;
    loop {
        let attempt = match first.take() {
            Some(connected) => Ok(connected),
            None => match st.shared.membership.address_of(&name) {
                Some(addr) => dial(&st, addr).await,
                None => Err(LinkError::NoAddress),
            },
        };
        match attempt {
            Ok((stream, established)) if established.peer.name == name => {
                failures = 0;
                let st = st.clone();
                connection::run(
                    st,
                    shard.clone(),
                    link.clone(),
                    stream,
                    established,
                    Phase::Backoff,
                )
                .await;
            }
            Ok((_, established)) => {
                let found = established.peer.name.clone();
                tracing::warn!(expected = %name, %found, "the address of a node answers with another name");
                st.drop_unsent(&link, Phase::Backoff);
                failures += 1;
            }
            Err(error) => {
                count_failure(&st, &error);
                tracing::debug!(peer = %name, %error, "connection attempt failed");
                st.drop_unsent(&link, Phase::Backoff);
                failures += 1;
            }
        }
        if !st.shared.membership.knows(&name) {
            st.drop_unsent(&link, Phase::Closed);
            st.forget(&name, &link);
            tracing::info!(peer = %name, "node forgotten; its link is closed");
            return;
        }
        glommio::timer::sleep(backoff(failures.max(1), st.shared.config.backoff)).await;
        st.shared.counters.reconnects.bump();
        link.set_phase(Phase::Connecting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter() {
        let bounds = (Duration::from_millis(100), Duration::from_secs(1));
        for (failures, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            let delay = backoff(failures, bounds);
            let full = Duration::from_millis(full);
            assert!(delay >= full / 2 && delay <= full, "{failures}: {delay:?}");
        }
    }
}
