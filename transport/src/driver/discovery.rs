//! Discovery, run by shard 0 every gossip interval: resolve the seeds (an
//! address, or a DNS name that may resolve to many), dial the seed addresses
//! no live node is known at (the handshake tells who answers), keep an
//! outbound link to every known node, gossip the member list to every live
//! peer, and forget nodes gone for long.

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;

use myriad_engine::plugin::ShardHandle;

use super::link::Phase;
use super::outbound::{count_failure, dial};
use super::{LinkError, ShardTransport};
use crate::handshake::HandshakeError;

/// Resolves every seed; a name that does not resolve is skipped (and logged).
async fn resolve(seeds: &[String]) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    let mut names = Vec::new();
    for seed in seeds {
        match seed.parse::<SocketAddr>() {
            Ok(addr) => addrs.push(addr),
            Err(_) => names.push(seed.clone()),
        }
    }
    if !names.is_empty() {
        let resolved = glommio::executor()
            .spawn_blocking(move || {
                let mut found = Vec::new();
                for name in names {
                    match name.to_socket_addrs() {
                        Ok(list) => found.extend(list),
                        Err(error) => {
                            tracing::debug!(seed = %name, %error, "seed does not resolve")
                        }
                    }
                }
                found
            })
            .await;
        addrs.extend(resolved);
    }
    addrs.sort();
    addrs.dedup();
    addrs
}

/// Runs discovery and gossip until the shard stops.
pub(crate) async fn run(st: Rc<ShardTransport>, shard: ShardHandle) {
    let probing = Rc::new(RefCell::new(HashSet::new()));
    let membership = &st.shared.membership;
    membership.mark_own(st.shared.local_addr);
    membership.mark_own(st.shared.advertise);
    loop {
        for addr in resolve(&st.shared.config.seeds).await {
            if membership.is_own(addr) || membership.is_live_at(addr) {
                continue;
            }
            if probing.borrow_mut().insert(addr) {
                let (prober, shard, probing) = (st.clone(), shard.clone(), probing.clone());
                st.spawn(async move {
                    probe(&prober, &shard, addr).await;
                    probing.borrow_mut().remove(&addr);
                });
            }
        }
        for name in membership.dialable() {
            // Creates the link (and starts dialling) if there is none.
            if let Err(error) = st.link_to(name.as_str()) {
                tracing::debug!(peer = %name, %error, "cannot link to a known node");
            }
        }
        let gossip = membership.gossip(st.shared.advertise);
        for link in st.outbound_links() {
            if link.phase() == Phase::Up {
                link.gossip(gossip.clone());
            }
        }
        membership.expire(st.shared.config.forget_after);
        glommio::timer::sleep(st.shared.config.gossip_interval).await;
    }
}

/// Dials a seed address to learn who is there; keeps the connection as that
/// node's link if there is none yet.
async fn probe(st: &Rc<ShardTransport>, shard: &ShardHandle, addr: SocketAddr) {
    match dial(st, addr).await {
        Ok((stream, established)) => {
            let name = established.peer.name.clone();
            st.shared.membership.learn(&name, addr);
            st.adopt(shard, name, (stream, established));
        }
        Err(LinkError::Handshake(HandshakeError::SelfConnection)) => {
            st.shared.membership.mark_own(addr);
        }
        Err(error) => {
            count_failure(st, &error);
            tracing::debug!(seed = %addr, %error, "seed not reachable");
        }
    }
}
