//! A link to one peer node as its shard's driver sees it: the link's
//! socket-free state ([`LinkState`], in `myriad-link`), and what the driver
//! adds — the wake-ups of the connection's writer, the link's one timer, and
//! the connection's "closed" signal. The I/O itself is in `connection.rs`.
//!
//! Every call into the state goes through [`Link::with`], which then does
//! what the state asks ([`Wake`]): wake the writer, rearm the timer, end the
//! connection's tasks, deliver answers to this node's askers (outside the
//! state's borrow, so that an asker may use the link at once).
//!
//! An *outbound* link is created on the first message to a node and lives on
//! (reconnecting, see `outbound.rs`) while the node is in the member list;
//! it carries this node's sends, asks and requests. An *inbound* link lives
//! as long as its one accepted connection and carries the peer's traffic and
//! this node's replies.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use futures_lite::future::or;
use myriad_engine::{Error, ExitReason, Message, RemoteAddress, Replier, Result, WorkerRef};
use myriad_link::backlog::Ready;
use myriad_link::link::{Incoming, LinkError, LinkSettings, LinkState, Receipt, Unsettled, Wake};
use myriad_link::Exit;

use myriad_engine::plugin::{ShardHandle, Signal, WireRef};

use super::latch::Latch;
use super::watched::Watched;
use super::ShardTransport;
use crate::codec::{Decoder, Encoder};
use crate::envelope::{ControlOp, ErrorCode, WorkerAddr};
use crate::handshake::PeerInfo;
use crate::stats::Traffic;
use crate::zone::NodeName;

pub(crate) use myriad_link::link::Phase;

/// One established connection of a link.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Distinguishes this connection from earlier ones of the same link.
    pub(crate) seq: u64,
    /// What the handshake established about the peer.
    pub(crate) peer: PeerInfo,
    /// The peer's address as this socket sees it.
    pub(crate) peer_addr: Option<SocketAddr>,
    /// Set when the connection is over; every task of the connection exits.
    pub(crate) closed: Latch,
}

impl Conn {
    /// A connection to `peer`, just established.
    pub(crate) fn new(seq: u64, peer: PeerInfo, peer_addr: Option<SocketAddr>) -> Self {
        Conn {
            seq,
            peer,
            peer_addr,
            closed: Latch::default(),
        }
    }
}

/// A link to one peer node, owned by one shard.
pub(crate) struct Link {
    /// Unique among the links of this shard.
    pub(crate) id: u64,
    state: RefCell<LinkState>,
    /// Wakes the writer when there is something to write.
    pub(crate) writer: Signal,
    /// Wakes the timer when the state's deadline may have moved earlier.
    timer: Signal,
    conn: RefCell<Option<Rc<Conn>>>,
    /// Set when the link is gone: its timer ends.
    retired: Latch,
    /// The peer's watches of this node's workers over this link.
    pub(crate) watched: Watched,
}

impl Link {
    /// A link in phase `Connecting`; `peer` is known up front for outbound
    /// links, and learned from the handshake for inbound ones.
    pub(crate) fn new(id: u64, peer: Option<NodeName>, settings: LinkSettings) -> Self {
        Link {
            id,
            state: RefCell::new(LinkState::new(peer, settings)),
            writer: Signal::default(),
            timer: Signal::default(),
            conn: RefCell::new(None),
            retired: Latch::default(),
            watched: Watched::default(),
        }
    }

    /// Runs `f` on the link's state, then does what the state asks.
    fn with<T>(&self, f: impl FnOnce(&mut LinkState) -> T) -> T {
        let mut state = self.state.borrow_mut();
        let out = f(&mut state);
        let wake = state.take_wake();
        drop(state);
        if wake != Wake::default() {
            self.wake(wake);
        }
        out
    }

    fn wake(&self, wake: Wake) {
        if wake.transmit {
            self.writer.notify();
        }
        if wake.timer {
            self.timer.notify();
        }
        if wake.closed {
            if let Some(conn) = &*self.conn.borrow() {
                conn.closed.set();
            }
        }
        if wake.answers {
            loop {
                let answer = self.state.borrow_mut().poll_answer();
                match answer {
                    Some(answer) => answer.deliver(),
                    None => break,
                }
            }
        }
        if wake.exits {
            loop {
                let exit = self.state.borrow_mut().poll_exit();
                match exit {
                    Some(exit) => tell_watcher(exit),
                    None => break,
                }
            }
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.state.borrow().phase()
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.with(|s| s.set_phase(phase));
    }

    // ----- sending ----------------------------------------------------------

    /// See [`LinkState::send`].
    pub(crate) fn send(
        &self,
        to: &RemoteAddress,
        msg: Message,
        from: Option<WireRef>,
        reply: &mut Option<Replier>,
    ) -> Result<()> {
        self.with(|s| s.send(to, msg, from, reply))
    }

    /// See [`LinkState::send_when_ready`].
    pub(crate) fn send_when_ready(
        &self,
        to: &RemoteAddress,
        msg: Message,
        from: Option<WireRef>,
        forced: bool,
        ready: Ready,
    ) -> Option<u64> {
        self.with(|s| s.send_when_ready(to, msg, from, forced, ready))
    }

    /// See [`LinkState::force`].
    pub(crate) fn force(&self, id: u64) {
        self.with(|s| s.force(id));
    }

    /// See [`LinkState::watch`].
    pub(crate) fn watch(
        &self,
        watcher: WorkerRef,
        to: &RemoteAddress,
        reply: flume::Sender<Result<Message>>,
    ) -> Result<()> {
        self.with(|s| s.watch(Instant::now(), watcher, to, reply))
    }

    /// See [`LinkState::unwatch`].
    pub(crate) fn unwatch(&self, watcher: WorkerRef, to: &RemoteAddress) -> bool {
        self.with(|s| s.unwatch(watcher, to))
    }

    /// See [`LinkState::exited`].
    pub(crate) fn exited(
        &self,
        conn: u64,
        id: u64,
        watcher: WireRef,
        who: WireRef,
        reason: &ExitReason,
    ) {
        self.with(|s| s.exited(conn, id, watcher, who, reason));
    }

    /// See [`LinkState::request`].
    pub(crate) fn request(
        &self,
        op: ControlOp,
        worker: Option<&str>,
        body: Message,
        reply: flume::Sender<Result<Message>>,
    ) -> Result<u64> {
        self.with(|s| s.request(Instant::now(), op, worker, body, reply))
    }

    /// See [`LinkState::gossip`].
    pub(crate) fn gossip(&self, body: Message) {
        self.with(|s| s.gossip(body));
    }

    /// See [`LinkState::settle`].
    pub(crate) fn settle(
        &self,
        receipt: Receipt,
        target: &Option<WorkerAddr>,
        outcome: Result<(), (ErrorCode, Message)>,
    ) {
        self.with(|s| s.settle(receipt, target, outcome));
    }

    /// See [`LinkState::reply`].
    pub(crate) fn reply(&self, conn: u64, id: u64, answer: Result<Message, (ErrorCode, Message)>) {
        self.with(|s| s.reply(conn, id, answer));
    }

    // ----- the connection's I/O -----------------------------------------------

    /// The next chunk to write (see [`LinkState::poll_transmit`]).
    pub(crate) fn poll_transmit(&self) -> Option<Bytes> {
        self.with(LinkState::poll_transmit)
    }

    /// The chunk handed out was written.
    pub(crate) fn transmitted(&self) {
        self.with(|s| s.transmitted(Instant::now()));
    }

    /// Takes what the connection read.
    pub(crate) fn handle_input(&self, bytes: &[u8]) {
        self.with(|s| s.handle_input(Instant::now(), bytes));
    }

    /// The next thing from the peer to act on (see [`LinkState::poll_input`]).
    pub(crate) fn poll_input(&self) -> Option<Incoming<Replier>> {
        self.with(LinkState::poll_input)
    }

    /// The heartbeat round trip measured since the last call, if any
    /// (nanoseconds).
    pub(crate) fn take_round_trip(&self) -> Option<u64> {
        self.state.borrow_mut().take_round_trip()
    }

    /// What this link's current connection has sent so far.
    pub(crate) fn sent(&self) -> Traffic {
        self.state.borrow().sent()
    }

    /// What this link's current connection has received so far.
    pub(crate) fn received(&self) -> Traffic {
        self.state.borrow().received()
    }

    // ----- connection changes -------------------------------------------------

    /// `conn` is established, `encoder` and `decoder` serve it: the link is
    /// up. Returns why each plain send kept meanwhile was refused, if any
    /// was (see [`LinkState::connected`]).
    pub(crate) fn connected(
        &self,
        conn: Rc<Conn>,
        encoder: Encoder,
        decoder: Decoder,
    ) -> Vec<Error> {
        let (seq, peer) = (conn.seq, conn.peer.clone());
        *self.conn.borrow_mut() = Some(conn);
        self.with(|s| s.connected(Instant::now(), seq, &peer, encoder, decoder))
    }

    /// Ends the current connection for `reason` (the first reason wins).
    pub(crate) fn close(&self, reason: LinkError) {
        self.with(|s| s.close(reason));
    }

    /// Why the current connection ended.
    pub(crate) fn take_close_reason(&self) -> LinkError {
        self.with(LinkState::take_close_reason)
    }

    /// See [`LinkState::disconnected`]; its askers get their answers here.
    pub(crate) fn disconnected(&self, next: Phase) -> Unsettled {
        self.conn.borrow_mut().take();
        self.with(|s| s.disconnected(next))
    }

    /// The link is gone: its timer ends.
    pub(crate) fn retire(&self) {
        self.retired.set();
    }
}

/// Tells a watcher of this node that the remote worker it watched ended.
fn tell_watcher(exit: Exit) {
    // Links run on shard threads only.
    let Some(shard) = ShardHandle::current() else {
        return;
    };
    match exit.who.on_node(exit.node.as_str()) {
        Some(who) => shard.notify_terminated(exit.watcher, who, exit.reason),
        None => tracing::warn!(
            node = %exit.node,
            "a remote watch fired, but the node's name cannot be numbered (too many nodes)"
        ),
    }
}

/// The link's one timer, for as long as the link lives: sleeps until the
/// state's deadline (heartbeat ticks, request deadlines) and hands it the
/// time when it is due.
pub(crate) async fn keep_time(st: Rc<ShardTransport>, link: Rc<Link>) {
    loop {
        let deadline = link.state.borrow().poll_timeout();
        let due = async {
            match deadline {
                Some(at) => {
                    glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await
                }
                None => std::future::pending().await,
            }
        };
        let woken = or(or(due, link.timer.wait()), async {
            link.retired.wait().await;
        });
        woken.await;
        if link.retired.is_set() {
            return;
        }
        let forgotten = link.with(|s| s.handle_timeout(Instant::now()));
        st.shared.counters.abandoned_asks.add(forgotten as u64);
    }
}
