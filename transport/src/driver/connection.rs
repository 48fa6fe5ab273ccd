//! The I/O of one connection: the handshake, then two tasks until the
//! connection ends — a reader (bytes → the link's state → envelopes →
//! workers) and a writer (the link's encoded frames → socket). Heartbeats
//! and the heartbeat timeout are the link's state's, run by the link's timer
//! (`link.rs`).
//!
//! Senders encode straight into the link's encoder, which packs small
//! envelopes many to a frame. The writer runs when the shard's current work
//! yields: it seals the frame being filled and writes everything encoded
//! since its last write at once, so a burst of sends becomes one `write`.
//! Reading and writing never wait for each other, so two busy nodes cannot
//! deadlock on full socket buffers.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::future::{or, yield_now};
use futures_lite::io::{split, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::net::TcpStream;
use myriad_engine::plugin::ShardHandle;

use super::inbound::Inbound;
use super::link::{Conn, Link, Phase};
use super::{LinkError, ShardTransport};
use crate::codec::ProtocolError;
use crate::counters::PeerTraffic;
use crate::handshake::{Established, Handshake, Step};
use crate::stats::Traffic;
use crate::zone::NodeName;

/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 256 << 10;

/// Runs `work` unless `limit` passes first.
async fn within<T>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, LinkError>>,
) -> Result<T, LinkError> {
    or(work, async {
        glommio::timer::sleep(limit).await;
        Err(LinkError::HandshakeTimeout(limit))
    })
    .await
}

/// Runs the Noise handshake on a fresh connection, as the initiator (after
/// connecting) or the responder (after accepting), within the connect
/// timeout; then binds the peer's name to its key in the member list (or
/// refuses a peer that claims a name bound to another key).
pub(crate) async fn handshake(
    st: &ShardTransport,
    stream: &mut TcpStream,
    initiator: bool,
) -> Result<Box<Established>, LinkError> {
    let established = within(st.shared.config.connect_timeout, async {
        let config = &st.link_config;
        let mut handshake = if initiator {
            let (handshake, first) = Handshake::initiator(config)?;
            stream.write_all(&first).await?;
            handshake
        } else {
            Handshake::responder(config)?
        };
        let mut buf = vec![0; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(LinkError::Handshake(handshake.peer_closed()));
            }
            match handshake.feed(&buf[..n])? {
                Step::Send(bytes) => stream.write_all(&bytes).await?,
                Step::Wait => {}
                Step::Done(established) => return Ok(established),
            }
        }
    })
    .await?;
    let peer = &established.peer;
    st.shared.membership.bind(&peer.name, &peer.public_key)?;
    Ok(established)
}

/// Adds what a codec counted since `reported` to `counters`. Once the
/// connection is over its codec's counts read zero: nothing is added.
fn report(
    now: Traffic,
    reported: &mut Traffic,
    node: &crate::counters::TrafficCounter,
    peer: &crate::counters::TrafficCounter,
) {
    let delta = Traffic {
        bytes: now.bytes.saturating_sub(reported.bytes),
        frames: now.frames.saturating_sub(reported.frames),
        envelopes: now.envelopes.saturating_sub(reported.envelopes),
    };
    node.add(delta);
    peer.add(delta);
    *reported = now;
}

/// A link that is up: undone when dropped, even if the task running it is
/// ended by the shard stopping.
struct Up {
    st: Rc<ShardTransport>,
    link: Rc<Link>,
    shard: ShardHandle,
    name: NodeName,
    after: Phase,
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(shard) = ShardHandle::current() {
            self.link.watched.close_all(&shard);
        }
        self.st.drop_unsent(&self.link, self.after);
        let shard = &self.shard;
        let name = self.name.as_str();
        self.st
            .shared
            .membership
            .link_down_then(&self.name, || shard.zone_member_down(name));
    }
}

/// Runs an established connection of `link` until it ends; returns why.
/// The link is up meanwhile, and afterwards in phase `after`.
pub(crate) async fn run(
    st: Rc<ShardTransport>,
    shard: ShardHandle,
    link: Rc<Link>,
    stream: TcpStream,
    established: Box<Established>,
    after: Phase,
) -> LinkError {
    let Established {
        peer,
        encoder,
        decoder,
    } = *established;
    let peer_addr = stream.peer_addr().ok();
    let name = peer.name.clone();
    let traffic = st.shared.membership.link_up_then(&name, || {
        shard.zone_member_up(name.as_str(), &peer.virtual_kinds)
    });
    let conn = Rc::new(Conn::new(st.next_seq(), peer, peer_addr));
    let refused = link.connected(conn.clone(), encoder, decoder);
    st.count_unsent(refused);
    let _up = Up {
        st: st.clone(),
        link: link.clone(),
        shard: shard.clone(),
        name: name.clone(),
        after,
    };
    tracing::debug!(peer = %name, link = link.id, shard = st.index, ?peer_addr, "link up");

    let (input, output) = split(stream);
    let reader = st.spawn(read_loop(
        st.clone(),
        shard,
        link.clone(),
        conn.clone(),
        input,
        traffic.clone(),
    ));
    if let Err(error) = write_loop(&st, &link, &conn, output, &traffic).await {
        link.close(error);
    }
    reader.await;

    let reason = link.take_close_reason();
    let counters = &st.shared.counters;
    match &reason {
        LinkError::Protocol(ProtocolError::Decrypt | ProtocolError::ShortFrame(_)) => {
            counters.decrypt_failures.bump();
            tracing::warn!(peer = %name, error = %reason, "link closed: a frame failed to decrypt");
        }
        LinkError::Protocol(_) => {
            counters.protocol_errors.bump();
            tracing::warn!(peer = %name, error = %reason, "link closed: protocol violation");
        }
        _ => tracing::info!(peer = %name, reason = %reason, "link down"),
    }
    reason
}

/// Reads until the connection ends, handing what the link decodes to
/// [`Inbound`].
async fn read_loop(
    st: Rc<ShardTransport>,
    shard: ShardHandle,
    link: Rc<Link>,
    conn: Rc<Conn>,
    mut input: ReadHalf<TcpStream>,
    traffic: std::sync::Arc<PeerTraffic>,
) {
    let mut inbound = Inbound::new(st.clone(), shard, link.clone(), conn.clone());
    let mut buf = vec![0; READ_BUFFER];
    let mut reported = Traffic::default();
    let received = &st.shared.counters.traffic.received;
    loop {
        while let Some(incoming) = link.poll_input() {
            inbound.dispatch(incoming);
        }
        report(link.received(), &mut reported, received, &traffic.received);
        if let Some(nanos) = link.take_round_trip() {
            traffic.rtt.record(nanos);
        }
        let read = or(async { Some(input.read(&mut buf).await) }, async {
            conn.closed.wait().await;
            None
        });
        match read.await {
            None => return,
            Some(Ok(0)) => return link.close(LinkError::Closed),
            Some(Err(error)) => return link.close(error.into()),
            Some(Ok(n)) => {
                link.handle_input(&buf[..n]);
                if n == buf.len() {
                    // More is probably waiting: let the workers run first.
                    yield_now().await;
                }
            }
        }
    }
}

/// Writes what the link encodes until the connection ends.
async fn write_loop(
    st: &ShardTransport,
    link: &Link,
    conn: &Conn,
    mut output: WriteHalf<TcpStream>,
    traffic: &PeerTraffic,
) -> Result<(), LinkError> {
    let mut reported = Traffic::default();
    let sent = &st.shared.counters.traffic.sent;
    loop {
        let Some(bytes) = link.poll_transmit() else {
            let woken = or(
                async {
                    link.writer.wait().await;
                    true
                },
                async {
                    conn.closed.wait().await;
                    false
                },
            );
            if !woken.await {
                return Ok(());
            }
            continue;
        };
        let write = or(async { Some(output.write_all(&bytes).await) }, async {
            conn.closed.wait().await;
            None
        });
        match write.await {
            None => return Ok(()),
            Some(written) => written?,
        }
        link.transmitted();
        report(link.sent(), &mut reported, sent, &traffic.sent);
    }
}
