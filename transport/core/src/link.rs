//! The state machine of one link to a peer node, socket-free in the style of
//! quinn-proto's `Connection`: [`LinkState`] takes bytes and the time and
//! says what to write, what to deliver and when to wake it; it never reads a
//! clock or touches a socket, so it is tested with a fake clock.
//!
//! A link outlives its connections: an outbound link to a node reconnects
//! after a failure, so the state holds
//!
//! - the link's [`Phase`] and the peer's name and message size limit;
//! - the bounded outbound buffer: before the handshake, the envelopes
//!   accepted meanwhile (flushed into the encoder when the link comes up);
//!   after it, the encoder, which senders encode straight into, and chunks of
//!   sealed frames waiting for the writer;
//! - the asks, remote operations and watch requests waiting for an answer,
//!   by request id, and the deadlines of the operations;
//! - this node's remote watches in force over the current connection
//!   (`watches.rs`), which fire once, by the peer's notice or with
//!   `NodeLost` when the connection ends, and handed out by
//!   [`poll_exit`](LinkState::poll_exit);
//! - while a connection is up: its decoder, when it last received and sent,
//!   and its heartbeat tick;
//! - delivery flow control (`flow.rs`, protocol version 2): the window this
//!   node's sends hold at the peer, per worker, and the peer's at this node,
//!   with the credits and reports of sends settled here; and the sends that
//!   wait for room in the window (`backlog.rs`).
//!
//! The driver calls [`handle_input`](LinkState::handle_input) with what it
//! read and then [`poll_input`](LinkState::poll_input) until it returns
//! `None`, delivering what it returns; writes what
//! [`poll_transmit`](LinkState::poll_transmit) hands it (and says when it is
//! written with [`transmitted`](LinkState::transmitted)); and sleeps until
//! [`poll_timeout`](LinkState::poll_timeout), then calls
//! [`handle_timeout`](LinkState::handle_timeout). After every call,
//! [`take_wake`](LinkState::take_wake) says which of its tasks to wake and
//! whether [`poll_answer`](LinkState::poll_answer) holds answers for this
//! node's askers. Answers are handed out, never delivered here, so that an
//! asker that reacts at once finds the link free to use.
//!
//! A plain send from the peer comes with a [`Receipt`] on a flow-controlled
//! connection: the driver settles it exactly once with
//! [`settle`](LinkState::settle) when it is in the mailbox (it may wait for
//! room) or cannot be delivered. Until then it holds its part of the peer's
//! window, so the peer sends no more to that worker than the window allows
//! while the driver reads on and serves the other workers.
//!
//! This node's plain sends that find their window full are refused
//! ([`send`](LinkState::send)), or wait for room
//! ([`send_when_ready`](LinkState::send_when_ready)); those that hold
//! window when a connection ends are *in doubt*, which
//! [`disconnected`](LinkState::disconnected) counts.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use myriad_engine::plugin::WireRef;
use myriad_engine::{Error, ExitReason, Message, RemoteAddress, Replier, Result, WorkerRef};

use crate::backlog::{Backlog, Ready, Waiting};
use crate::codec::{Decoder, Encoder};
use crate::envelope::{ControlOp, Envelope, ErrorCode, Kind, WorkerAddr};
use crate::error::{EncodeError, ProtocolError};
use crate::flow::{self, Settlements, Window, FLOW_CONTROL_VERSION};
use crate::handshake::{HandshakeError, PeerInfo};
use crate::remote_error;
use crate::stats::{RoundTrips, Traffic};
use crate::watches::{decode_reason, encode_reason, Exit, Watches};
use crate::zone::{NodeName, MAX_NAME_LEN};

/// Bytes counted for an envelope's header and framing while it waits for
/// the link to come up, on top of its body.
const ENVELOPE_COST: usize = 32;

/// The encoder's output is taken in chunks of about this size, so that the
/// writer can write one while senders fill the next, and buffers of one size
/// are reused by the allocator instead of growing without end.
const OUTPUT_CHUNK: usize = 1 << 20;

/// How a heartbeat that asks for an echo starts (`docs/protocol.md` §10.1):
/// `ping ` and a token.
const PING: &str = "ping ";

/// How the echo of a ping starts: `pong ` and the ping's token.
const PONG: &str = "pong ";

/// The longest ping token echoed; a longer one is ignored like any other text.
const MAX_PING_TOKEN: usize = 32;

/// Where a link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connecting or handshaking: messages are kept until the link is up.
    Connecting,
    /// Established: messages are encoded and written.
    Up,
    /// The last attempt failed; waiting before the next. Messages are refused.
    Backoff,
    /// Gone for good.
    Closed,
}

/// Why a connection ended (or never started).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The peer closed the connection.
    #[error("the peer closed the connection")]
    Closed,
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// Connecting and the handshake took too long.
    #[error("no handshake within {0:?}")]
    HandshakeTimeout(Duration),
    /// The peer broke the protocol (or a frame failed to decrypt).
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    /// Encryption failed.
    #[error("{0}")]
    Encode(EncodeError),
    /// No complete frame arrived within the heartbeat timeout (bytes of an
    /// unfinished frame do not count: a trickle cannot keep a link open).
    #[error("no complete frame received for {0:?} (heartbeat timeout)")]
    Silent(Duration),
    /// The node's address is unknown.
    #[error("the node's address is unknown")]
    NoAddress,
}

/// Whoever waits for the answer to an ask: in a node, the engine's
/// [`Replier`] (tests use their own).
pub trait Asker {
    /// True once nobody waits for the answer any more (the ask timed out or
    /// was cancelled): the link may forget the ask.
    fn is_abandoned(&self) -> bool;
    /// Hands over the answer (or the failure).
    fn complete(self, result: Result<Message>);
}

impl Asker for Replier {
    fn is_abandoned(&self) -> bool {
        Replier::is_abandoned(self)
    }

    fn complete(self, result: Result<Message>) {
        Replier::complete(self, result);
    }
}

/// A link's limits and timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSettings {
    /// Bytes accepted and not yet written beyond which sends are refused
    /// with `MailboxFull`.
    pub buffer_limit: usize,
    /// This node's maximum message size (the link's is the smaller of this
    /// and the peer's).
    pub max_message_size: u32,
    /// A link that has sent nothing for this long sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// A link that has received nothing for this long is closed.
    pub heartbeat_timeout: Duration,
    /// How long a remote operation waits for its answer.
    pub request_timeout: Duration,
}

impl LinkSettings {
    /// How often an established link checks its heartbeats and forgets
    /// abandoned asks.
    fn tick(&self) -> Duration {
        self.heartbeat_interval.min(self.heartbeat_timeout / 4)
    }
}

/// Someone of this node waiting for an answer from the peer.
enum Waiter<A> {
    /// An ask from a worker (or a thread) of this node.
    Ask { asker: A, to: RemoteAddress },
    /// A remote operation (`Zone::start_worker` and friends).
    Request {
        reply: flume::Sender<Result<Message>>,
        worker: String,
    },
    /// A watch by worker `watcher` of this node of the peer's worker `to`;
    /// answered with the watched worker's reference (`#shard.index.generation`).
    Watch {
        reply: flume::Sender<Result<Message>>,
        watcher: WorkerRef,
        to: RemoteAddress,
    },
}

/// An answer for someone of this node: hand it over with
/// [`deliver`](Self::deliver), outside any borrow of the link.
#[must_use = "an answer does nothing until delivered"]
pub struct Answer<A>(Answered<A>);

enum Answered<A> {
    /// The answer to an ask, a request or a watch.
    Reply(Waiter<A>, Result<Message>),
    /// The verdict of a waiting send ([`LinkState::send_when_ready`]).
    Taken(Ready, Result<()>),
}

impl<A> Answer<A> {
    fn reply(waiter: Waiter<A>, result: Result<Message>) -> Self {
        Answer(Answered::Reply(waiter, result))
    }
}

impl<A: Asker> Answer<A> {
    /// Hands the answer to whoever waits for it.
    pub fn deliver(self) {
        match self.0 {
            Answered::Reply(waiter, result) => match waiter {
                Waiter::Ask { asker, .. } => asker.complete(result),
                // The requester may have given up.
                Waiter::Request { reply, .. } | Waiter::Watch { reply, .. } => {
                    drop(reply.send(result))
                }
            },
            Answered::Taken(ready, result) => ready(result),
        }
    }
}

impl<A> fmt::Debug for Answer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (to, result) = match &self.0 {
            Answered::Reply(waiter, result) => {
                let to = match waiter {
                    Waiter::Ask { to, .. } => to.to_string(),
                    Waiter::Request { worker, .. } => format!("request for {worker:?}"),
                    Waiter::Watch { to, .. } => format!("watch of {to}"),
                };
                (to, format!("{result:?}"))
            }
            Answered::Taken(_, result) => ("a waiting send".to_owned(), format!("{result:?}")),
        };
        f.debug_struct("Answer")
            .field("to", &to)
            .field("result", &result)
            .finish()
    }
}

/// What a driver hands back to [`LinkState::settle`] for a plain send the
/// peer sent on a flow-controlled connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The connection the send came on.
    conn: u64,
    /// The window bytes it holds.
    cost: u64,
}

/// What the peer sent that the driver acts on (replies to this node's asks
/// come as [`Incoming::Answer`]; heartbeats and credits stay inside).
#[derive(Debug)]
pub enum Incoming<A> {
    /// A message for a worker of this node.
    Send {
        /// The worker.
        target: Option<WorkerAddr>,
        /// The peer's worker that sent it, if one did (version 2).
        from: Option<WireRef>,
        /// The message.
        body: Message,
        /// On a flow-controlled connection: settle the send with it, exactly
        /// once. Without one (a version 1 peer), the peer cannot be told.
        receipt: Option<Receipt>,
        /// It came in the link window's reserve (`flow.rs`): its sender
        /// must not wait, deliver it at once, even into a full mailbox.
        forced: bool,
    },
    /// An ask for a worker of this node: answer it with [`LinkState::reply`].
    Ask {
        /// The peer's request id.
        id: u64,
        /// The worker.
        target: Option<WorkerAddr>,
        /// The peer's worker that asks, if one does (version 2).
        from: Option<WireRef>,
        /// The message.
        body: Message,
    },
    /// The peer's worker `watcher` watches the worker `target` of this node
    /// (`docs/protocol.md` §10.5): answer with [`LinkState::reply`] (the
    /// watched worker's reference), then tell its end with
    /// [`LinkState::exited`] under the same `id`.
    Watch {
        /// The watch's id.
        id: u64,
        /// The watched worker (a name or a reference).
        target: WorkerAddr,
        /// The watching worker, as the peer names it.
        watcher: WireRef,
    },
    /// The peer no longer watches under `id`.
    Unwatch {
        /// The watch's id.
        id: u64,
    },
    /// The peer sent a malformed watch request (answered with an error) or
    /// exit notice (dropped); the link stays up. For the log.
    Malformed {
        /// The request or notice's id.
        id: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A remote operation or gossip (`id` 0: no answer expected).
    Control {
        /// The peer's request id.
        id: u64,
        /// The operation.
        op: ControlOp,
        /// The worker it is about, if any.
        target: Option<WorkerAddr>,
        /// Its argument.
        body: Message,
    },
    /// The answer to one of this node's asks or requests.
    Answer(Answer<A>),
    /// The peer could not deliver `count` of this node's plain sends to
    /// `target`, for the reason `error`: they count as dropped at this node.
    Undeliverable {
        /// The worker they were for.
        target: Option<WorkerAddr>,
        /// How many.
        count: u64,
        /// Why, as the engine error about `node/worker`.
        error: Error,
    },
}

/// The plain sends of this node that a connection (or an attempt to make
/// one) left unsettled when it ended, each accepted (its sender was told
/// `Ok`): see [`LinkState::disconnected`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unsettled {
    /// Kept for a connection that never came up: never sent, so never
    /// delivered.
    pub unsent: u64,
    /// Written (or about to be) on a flow-controlled connection and neither
    /// credited nor reported by the peer: delivered or not, nobody knows
    /// (none on a version 1 connection, which keeps no window).
    pub in_doubt: u64,
}

/// What the driver must do after a call into the link.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    /// The writer has something new to write.
    pub transmit: bool,
    /// [`LinkState::poll_timeout`] may be earlier than before.
    pub timer: bool,
    /// The connection is over: every task of it should end.
    pub closed: bool,
    /// [`LinkState::poll_answer`] has answers to deliver.
    pub answers: bool,
    /// [`LinkState::poll_exit`] has watches that fired.
    pub exits: bool,
}

/// What waits to be written.
#[derive(Default)]
struct Outbox {
    /// Packs envelopes into sealed frames once the link is up.
    encoder: Option<Encoder>,
    /// Chunks of sealed frames taken from the encoder, oldest first.
    sealed: VecDeque<Bytes>,
    sealed_len: usize,
    /// Envelopes accepted before the link came up.
    early: VecDeque<Envelope>,
    early_bytes: usize,
}

impl Outbox {
    /// Bytes accepted and not yet handed to the writer.
    fn buffered(&self) -> usize {
        match &self.encoder {
            Some(encoder) => self.sealed_len + encoder.buffered_len() + encoder.pending_len(),
            None => self.early_bytes,
        }
    }

    /// Moves the encoder's output into a chunk of its own.
    fn cut(&mut self) -> Result<(), EncodeError> {
        if let Some(encoder) = &mut self.encoder {
            let chunk = encoder.flush()?;
            if !chunk.is_empty() {
                self.sealed_len += chunk.len();
                self.sealed.push_back(chunk);
            }
        }
        Ok(())
    }
}

/// The established connection of a link.
struct Connection {
    /// Tells this connection from earlier ones of the same link.
    seq: u64,
    decoder: Decoder,
    /// When the last complete frame was received: what resets the idle
    /// timer (heartbeat timeout).
    last_rx: Instant,
    /// When bytes were last fed to the decoder.
    fed_at: Instant,
    /// When something other than a pong was last written: what the
    /// heartbeat interval counts from.
    last_tx: Instant,
    /// Something other than a pong was encoded since the last write.
    unwritten: bool,
    /// The ping waiting for its echo: its token and when it was sent.
    ping: Option<(u64, Instant)>,
    /// When the heartbeats are next checked.
    next_tick: Instant,
    /// Set when the connection is over (the first reason given wins).
    closed: bool,
    reason: Option<LinkError>,
}

/// The state of a link to one peer node; `A` is who waits for the answer to
/// an ask (the engine's [`Replier`] in a node).
pub struct LinkState<A = Replier> {
    peer: Option<NodeName>,
    phase: Phase,
    settings: LinkSettings,
    out: Outbox,
    /// Bytes handed to the writer and not yet written.
    writing: usize,
    /// The link's maximum message size (this node's until the handshake).
    send_limit: u32,
    waiting: HashMap<u64, Waiter<A>>,
    next_id: u64,
    /// Remote operations' deadlines, oldest first (they share one timeout).
    deadlines: VecDeque<(Instant, u64)>,
    conn: Option<Connection>,
    /// Answers to hand out with `poll_answer`.
    answers: VecDeque<Answer<A>>,
    wake: Wake,
    /// The last target name converted for the wire (senders often repeat it).
    last_target: Option<(Arc<str>, WorkerAddr)>,
    /// Whether the connection uses delivery flow control: the peer speaks
    /// protocol version 2 or newer (assumed until the handshake tells).
    flow: bool,
    /// What this node's plain sends hold of the peer's window.
    sent: Window,
    /// What the peer's plain sends hold of this node's window, all workers
    /// together (what bounds the receiver; the per-worker windows are the
    /// sender's to keep).
    unsettled: u64,
    /// Credits and reports for the peer, written before anything else.
    settlements: Settlements,
    /// This node's plain sends waiting for room.
    backlog: Backlog,
    /// The link protocol version of the current (or last) connection;
    /// `None` before the first.
    version: Option<u16>,
    /// This node's watches of the peer's workers over the current connection.
    watches: Watches,
    /// Watches that fired, for `poll_exit`.
    exits: VecDeque<Exit>,
    /// The token of the last ping sent.
    pings: u64,
    /// Heartbeat round trips measured over every connection of the link.
    rtt: RoundTrips,
    /// The latest round trip (nanoseconds), until the driver takes it.
    new_rtt: Option<u64>,
}

impl<A> fmt::Debug for LinkState<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkState")
            .field("peer", &self.peer)
            .field("phase", &self.phase)
            .field("buffered", &self.out.buffered())
            .field("waiting", &self.waiting.len())
            .field("window_held", &self.sent.total())
            .field("connection", &self.conn.as_ref().map(|c| c.seq))
            .finish_non_exhaustive()
    }
}

impl<A: Asker> LinkState<A> {
    /// A link in phase `Connecting`; `peer` is known up front for outbound
    /// links, and learned from the handshake for inbound ones.
    pub fn new(peer: Option<NodeName>, settings: LinkSettings) -> Self {
        LinkState {
            peer,
            phase: Phase::Connecting,
            settings,
            out: Outbox::default(),
            writing: 0,
            send_limit: settings.max_message_size,
            waiting: HashMap::new(),
            next_id: 1,
            deadlines: VecDeque::new(),
            conn: None,
            answers: VecDeque::new(),
            wake: Wake::default(),
            last_target: None,
            flow: true,
            sent: Window::default(),
            unsettled: 0,
            settlements: Settlements::default(),
            backlog: Backlog::default(),
            version: None,
            watches: Watches::default(),
            exits: VecDeque::new(),
            pings: 0,
            rtt: RoundTrips::default(),
            new_rtt: None,
        }
    }

    /// Where the link stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Moves the link to `phase` (the driver's reconnection: `Connecting`
    /// after a backoff).
    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// What the driver must do after the last calls (and resets it).
    pub fn take_wake(&mut self) -> Wake {
        std::mem::take(&mut self.wake)
    }

    /// The peer's name for messages, or `?` before the handshake.
    fn peer_label(&self) -> String {
        self.peer
            .as_ref()
            .map_or_else(|| "?".to_owned(), NodeName::to_string)
    }

    // ----- sending ----------------------------------------------------------

    /// Checks that a message of `size` bytes may be sent now.
    fn admit(&self, size: usize) -> Result<()> {
        self.check(size)?;
        if !self.has_buffer_room() {
            let peer = self.peer_label();
            return Err(Error::MailboxFull(format!("link to node {peer}")));
        }
        Ok(())
    }

    /// Checks that a message of `size` bytes may ever be sent on this
    /// connection (or attempt): the link is not down, the message not too
    /// large.
    fn check(&self, size: usize) -> Result<()> {
        match self.phase {
            Phase::Connecting | Phase::Up => {}
            Phase::Backoff | Phase::Closed => return Err(Error::ConnectionLost(self.peer_label())),
        }
        let max = self.send_limit;
        if size > max as usize {
            return Err(Error::MessageTooLarge {
                size,
                max: max as usize,
            });
        }
        Ok(())
    }

    /// Whether the outbound buffer takes more.
    fn has_buffer_room(&self) -> bool {
        self.out.buffered() + self.writing < self.settings.buffer_limit
    }

    /// The wire address of worker `name`.
    fn target(&mut self, name: &Arc<str>) -> Result<WorkerAddr> {
        if let Some((last, addr)) = &self.last_target {
            if Arc::ptr_eq(last, name) || **last == **name {
                return Ok(addr.clone());
            }
        }
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(Error::InvalidName {
                name: name.to_string(),
                reason: "a remote worker name must be 1 to 255 bytes",
            });
        }
        let addr = match name.strip_prefix('#') {
            // `#shard.index.generation`: a reference (no name has `#`).
            Some(_) => {
                self.need_version_2()?;
                let r: WorkerRef = name.parse()?;
                WorkerAddr::Ref(WireRef::of(r))
            }
            None => WorkerAddr::Name(Message::from(name.to_string())),
        };
        self.last_target = Some((name.clone(), addr.clone()));
        Ok(addr)
    }

    /// Whether the peer may be sent what version 2 added (worker
    /// references, watches): its connection says so, or there was none yet
    /// (what is kept meanwhile is checked when it comes up).
    fn speaks_version_2(&self) -> bool {
        self.version.is_none_or(|v| v >= 2)
    }

    /// [`speaks_version_2`](Self::speaks_version_2), as a clear error.
    fn need_version_2(&self) -> Result<()> {
        if self.speaks_version_2() {
            return Ok(());
        }
        let peer = self.peer_label();
        Err(Error::NoRoute(format!(
            "{peer} (it speaks link protocol 1, without worker references and watches)"
        )))
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = id.wrapping_add(1).max(1);
        id
    }

    /// Encodes `envelope` (or keeps it until the link is up); wakes the
    /// writer if it had nothing to write.
    fn push(&mut self, envelope: Envelope) -> Result<(), EncodeError> {
        if let Some(conn) = &mut self.conn {
            conn.unwritten |= !is_pong(&envelope);
        }
        let out = &mut self.out;
        let idle = out.buffered() == 0;
        match &mut out.encoder {
            Some(encoder) => {
                encoder.push(&envelope)?;
                if encoder.buffered_len() >= OUTPUT_CHUNK {
                    out.cut()?;
                }
            }
            None => {
                out.early_bytes += envelope.body.len() + ENVELOPE_COST;
                out.early.push_back(envelope);
            }
        }
        self.wake.transmit |= idle;
        Ok(())
    }

    /// [`push`](Self::push), with the encoder's refusal as an engine error.
    fn push_checked(&mut self, envelope: Envelope) -> Result<()> {
        self.push(envelope).map_err(|error| self.refusal(error))
    }

    /// The engine error for an envelope the encoder refused. A crypto
    /// failure also ends the connection.
    fn refusal(&mut self, error: EncodeError) -> Error {
        match error {
            EncodeError::TooLarge { size, max } => Error::MessageTooLarge {
                size,
                max: max as usize,
            },
            EncodeError::BadName { .. } => Error::InvalidMessage(error.to_string()),
            EncodeError::Crypto => {
                self.close(LinkError::Encode(error));
                Error::ConnectionLost(self.peer_label())
            }
        }
    }

    /// Sends `msg` from worker `from` of this node (if a worker sent it) to
    /// worker `to` (an ask if `reply` holds an asker, which is then taken).
    /// Refuses it, leaving `reply` alone, when the link is down, the message
    /// too large, or the outbound buffer full.
    pub fn send(
        &mut self,
        to: &RemoteAddress,
        msg: Message,
        from: Option<WireRef>,
        reply: &mut Option<A>,
    ) -> Result<()> {
        self.admit(msg.len())?;
        let cost = flow::cost(msg.len());
        let target = Some(self.target(&to.worker)?);
        let sender = from
            .filter(|_| self.speaks_version_2())
            .map(WorkerAddr::Ref);
        let envelope = |kind| Envelope {
            sender,
            ..Envelope::new(kind, target, msg)
        };
        let Some(asker) = reply.take() else {
            // A plain send also needs room in the worker's delivery window
            // at the peer (see `flow.rs`): without it, it is refused with
            // `MailboxFull`, as a full mailbox of this node would be.
            let window = Some(self.target(&to.worker)?);
            if self.flow && !self.sent.take(&window, cost) {
                return Err(Error::MailboxFull(format!(
                    "{to} (its delivery window on the link is full)"
                )));
            }
            let pushed = self.push_checked(envelope(Kind::Send));
            if pushed.is_err() && self.flow {
                self.sent.forget(&window, cost);
            }
            return pushed;
        };
        let id = self.next_id();
        match self.push_checked(envelope(Kind::Ask { id })) {
            Ok(()) => {
                let to = to.clone();
                self.waiting.insert(id, Waiter::Ask { asker, to });
                Ok(())
            }
            Err(error) => {
                *reply = Some(asker);
                Err(error)
            }
        }
    }

    /// Sends the plain message `msg` from worker `from` of this node (if a
    /// worker sent it) to worker `to` as [`send`](Self::send) does, but
    /// where `send` would refuse it for want of room — its worker's
    /// delivery window or the outbound buffer is full — keeps it until there
    /// is room, behind the sends to that worker waiting already; the sends
    /// to other workers go on meanwhile. `ready` is told once, through
    /// [`poll_answer`](Self::poll_answer): `Ok` when the link took it (as an
    /// `Ok` of `send` means), or why not (the connection ended first:
    /// `ConnectionLost`). Returns its id while it waits, for
    /// [`force`](Self::force).
    ///
    /// A `forced` send is one whose sender must not wait, a worker whose
    /// own mailbox is full: it ignores its worker's window and needs only
    /// room in the link's, its reserve included (`flow.rs`).
    pub fn send_when_ready(
        &mut self,
        to: &RemoteAddress,
        msg: Message,
        from: Option<WireRef>,
        forced: bool,
        ready: Ready,
    ) -> Option<u64> {
        let target = match self.check(msg.len()).and_then(|()| self.target(&to.worker)) {
            Ok(target) => Some(target),
            Err(error) => {
                self.queue(Some(Answer(Answered::Taken(ready, Err(error)))));
                return None;
            }
        };
        let sender = from
            .filter(|_| self.speaks_version_2())
            .map(WorkerAddr::Ref);
        let waiting = Waiting {
            id: self.backlog.next_id(),
            cost: flow::cost(msg.len()),
            envelope: Envelope {
                sender,
                ..Envelope::new(Kind::Send, target.clone(), msg)
            },
            target,
            ready,
        };
        if !self.backlog.must_queue(&waiting.target, forced) && self.take_room(&waiting, forced) {
            self.go(waiting);
            return None;
        }
        let id = waiting.id;
        self.backlog.push(waiting, forced);
        Some(id)
    }

    /// The sender of waiting send `id` must not wait any more (its own
    /// mailbox filled up): it becomes a forced send (see
    /// [`send_when_ready`](Self::send_when_ready)). Nothing happens if it
    /// is no longer waiting.
    pub fn force(&mut self, id: u64) {
        if self.backlog.force(id) {
            self.release_backlog();
        }
    }

    /// Takes room for `waiting` in the outbound buffer and its window (on a
    /// flow-controlled connection), forced or not; `false` if there is none.
    fn take_room(&mut self, waiting: &Waiting, forced: bool) -> bool {
        if !self.has_buffer_room() {
            return false;
        }
        match (self.flow, forced) {
            (false, _) => true,
            (true, false) => self.sent.take(&waiting.target, waiting.cost),
            (true, true) => self.sent.take_forced(&waiting.target, waiting.cost),
        }
    }

    /// Sends the waiting sends there is room for now (see `backlog.rs`).
    fn release_backlog(&mut self) {
        let mut backlog = std::mem::take(&mut self.backlog);
        let released = backlog.release(|waiting, forced| self.take_room(waiting, forced));
        self.backlog = backlog;
        for waiting in released {
            self.go(waiting);
        }
    }

    /// Encodes a waiting send that has its room, and tells its sender.
    fn go(&mut self, waiting: Waiting) {
        let Waiting {
            target,
            mut envelope,
            cost,
            ready,
            ..
        } = waiting;
        // A send kept before the handshake may meet a version 1 peer.
        let pushed = match self.need_version_2() {
            Err(error) if !version_1_compatible(&mut envelope) => Err(error),
            _ => self.push_checked(envelope),
        };
        if pushed.is_err() && self.flow {
            self.sent.forget(&target, cost);
        }
        self.queue(Some(Answer(Answered::Taken(ready, pushed))));
    }

    /// Sends remote operation `op` at `now`; its answer (or its failure,
    /// after the request timeout at the latest) goes to `reply`. Returns its id.
    pub fn request(
        &mut self,
        now: Instant,
        op: ControlOp,
        worker: Option<&str>,
        body: Message,
        reply: flume::Sender<Result<Message>>,
    ) -> Result<u64> {
        self.admit(body.len())?;
        let target = worker
            .map(|name| self.target(&Arc::from(name)))
            .transpose()?;
        let id = self.next_id();
        self.push_checked(Envelope::new(Kind::Control { id, op }, target, body))?;
        let worker = worker.unwrap_or_default().to_owned();
        self.waiting.insert(id, Waiter::Request { reply, worker });
        self.wake.timer |= self.deadlines.is_empty();
        self.deadlines
            .push_back((now + self.settings.request_timeout, id));
        Ok(id)
    }

    /// Sends a gossip body (no answer expected) if the link is up.
    pub fn gossip(&mut self, body: Message) {
        if self.phase == Phase::Up {
            let op = ControlOp::Members;
            let gossip = Envelope::new(Kind::Control { id: 0, op }, None, body);
            if let Err(error) = self.push(gossip) {
                self.refusal(error);
            }
        }
    }

    /// Makes worker `watcher` of this node watch the peer's worker `to`
    /// (`docs/protocol.md` §10.5), at `now`: `reply` gets the watched
    /// worker's reference (`#shard.index.generation`, as the peer names it)
    /// or why the watch failed (the request timeout at the latest). Once it
    /// is in force, its end comes out of [`poll_exit`](Self::poll_exit)
    /// once: the peer's notice, or `NodeLost` when the connection ends.
    pub fn watch(
        &mut self,
        now: Instant,
        watcher: WorkerRef,
        to: &RemoteAddress,
        reply: flume::Sender<Result<Message>>,
    ) -> Result<()> {
        self.need_version_2()?;
        self.admit(0)?;
        let target = Some(self.target(&to.worker)?);
        let id = self.next_id();
        let watch = Envelope::new(
            Kind::Control {
                id,
                op: ControlOp::Watch,
            },
            target,
            "",
        )
        .with_sender(WorkerAddr::Ref(WireRef::of(watcher)));
        self.push_checked(watch)?;
        let to = to.clone();
        self.waiting
            .insert(id, Waiter::Watch { reply, watcher, to });
        self.wake.timer |= self.deadlines.is_empty();
        self.deadlines
            .push_back((now + self.settings.request_timeout, id));
        Ok(())
    }

    /// Removes worker `watcher`'s watch of the peer's worker `to` (the name
    /// it was watched by, or its reference); `true` if it was in force, so
    /// that it will not fire.
    pub fn unwatch(&mut self, watcher: WorkerRef, to: &RemoteAddress) -> bool {
        let Some(id) = self.watches.remove(watcher, to) else {
            return false;
        };
        self.send_unwatch(id);
        true
    }

    /// Tells the peer to forget its watch `id` (no answer comes).
    fn send_unwatch(&mut self, id: u64) {
        if self.phase == Phase::Up {
            let unwatch = Envelope::new(
                Kind::Control {
                    id,
                    op: ControlOp::Unwatch,
                },
                None,
                "",
            );
            if let Err(error) = self.push(unwatch) {
                self.refusal(error);
            }
        }
    }

    /// Tells the peer that `who`, a worker of this node that its worker
    /// `watcher` watched under `id` ([`Incoming::Watch`]) on connection
    /// `conn`, ended (dropped if that connection is gone).
    pub fn exited(
        &mut self,
        conn: u64,
        id: u64,
        watcher: WireRef,
        who: WireRef,
        reason: &ExitReason,
    ) {
        if self.conn.as_ref().map(|c| c.seq) != Some(conn) || self.phase != Phase::Up {
            return;
        }
        let kind = Kind::Control {
            id,
            op: ControlOp::Exited,
        };
        let notice = Envelope::new(kind, Some(WorkerAddr::Ref(watcher)), encode_reason(reason))
            .with_sender(WorkerAddr::Ref(who));
        if let Err(error) = self.push(notice) {
            self.refusal(error);
        }
    }

    /// The next watch of this node's that fired, if any.
    pub fn poll_exit(&mut self) -> Option<Exit> {
        self.exits.pop_front()
    }

    /// Sends the answer to the peer's ask or request `id`, received on
    /// connection `conn` (dropped if that connection is gone). Answers are
    /// never refused for a full buffer: their number is bounded by the
    /// peer's requests.
    pub fn reply(&mut self, conn: u64, id: u64, answer: Result<Message, (ErrorCode, Message)>) {
        if self.conn.as_ref().map(|c| c.seq) != Some(conn) || self.phase != Phase::Up {
            return;
        }
        self.flush_settlements();
        let envelope = match answer {
            Ok(body) => Envelope::new(Kind::ReplyOk { id }, None, body),
            Err((code, text)) => Envelope::new(Kind::ReplyErr { id, code }, None, text),
        };
        match self.push(envelope) {
            Err(error @ EncodeError::TooLarge { .. }) => {
                let (code, text) = remote_error::encode(&self.refusal(error));
                let envelope = Envelope::new(Kind::ReplyErr { id, code }, None, text);
                if let Err(error) = self.push(envelope) {
                    self.refusal(error);
                }
            }
            Err(error) => {
                self.refusal(error);
            }
            Ok(()) => {}
        }
    }

    // ----- writing ------------------------------------------------------------

    /// The next chunk of encoded bytes to write, if any; seals the frame
    /// being filled once every full chunk is taken. Its bytes count against
    /// the outbound buffer until [`transmitted`](Self::transmitted).
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.flush_settlements();
        if self.out.sealed.is_empty() {
            if let Err(error) = self.out.cut() {
                self.close(LinkError::Encode(error));
                return None;
            }
        }
        let chunk = self.out.sealed.pop_front()?;
        self.out.sealed_len -= chunk.len();
        self.writing = chunk.len();
        Some(chunk)
    }

    /// The chunk [`poll_transmit`](Self::poll_transmit) handed out was
    /// written at `now`.
    pub fn transmitted(&mut self, now: Instant) {
        self.writing = 0;
        if let Some(conn) = &mut self.conn {
            // Pongs alone do not reset the interval, so that both ends of an
            // idle link send pings (and measure round trips).
            if std::mem::take(&mut conn.unwritten) {
                conn.last_tx = now;
            }
        }
        // Sends may wait for room in the buffer.
        if !self.backlog.is_empty() {
            self.release_backlog();
        }
    }

    /// Encodes the credits and reports gathered since the last write, ahead
    /// of anything else this node writes: a reply never overtakes the report
    /// of a send settled before it.
    fn flush_settlements(&mut self) {
        if !self.settlements.is_pending() || self.phase != Phase::Up {
            return;
        }
        let (drops, credits) = self.settlements.take();
        let reports = drops.into_iter().flat_map(|report| {
            flow::pieces(report.count).map(move |count| {
                let kind = Kind::Undeliverable {
                    count,
                    code: report.code,
                };
                Envelope::new(kind, report.target.clone(), report.text.clone())
            })
        });
        let credits = credits.into_iter().flat_map(|(target, bytes)| {
            flow::pieces(bytes)
                .map(move |bytes| Envelope::new(Kind::Credit { bytes }, target.clone(), ""))
        });
        for envelope in reports.chain(credits).collect::<Vec<_>>() {
            if let Err(error) = self.push(envelope) {
                self.refusal(error);
            }
        }
    }

    /// What the current connection has sent so far.
    pub fn sent(&self) -> Traffic {
        self.out
            .encoder
            .as_ref()
            .map(Encoder::traffic)
            .unwrap_or_default()
    }

    // ----- reading ------------------------------------------------------------

    /// Takes bytes read from the connection at `now`. Only the frames they
    /// complete (decrypted by [`poll_input`](Self::poll_input)) reset the
    /// idle timer.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if let Some(conn) = &mut self.conn {
            conn.fed_at = now;
            conn.decoder.feed(bytes);
        }
    }

    /// The next thing the peer sent that the driver acts on, or `None` once
    /// what was fed is used up. A protocol violation closes the connection.
    pub fn poll_input(&mut self) -> Option<Incoming<A>> {
        loop {
            let conn = self.conn.as_mut().filter(|c| !c.closed)?;
            let seq = conn.seq;
            let frames = conn.decoder.traffic().frames;
            let next = conn.decoder.next_envelope();
            if conn.decoder.traffic().frames != frames {
                conn.last_rx = conn.fed_at;
            }
            let envelope = match next {
                Ok(Some(envelope)) => envelope,
                Ok(None) => return None,
                Err(error) => {
                    self.close(LinkError::Protocol(error));
                    return None;
                }
            };
            let Envelope {
                kind,
                target,
                sender,
                body,
                ..
            } = envelope;
            let from = match &sender {
                Some(WorkerAddr::Ref(r)) => Some(*r),
                _ => None,
            };
            let answer = match kind {
                Kind::Send => {
                    let receipt = match self.receive_send(seq, &body) {
                        Ok(receipt) => receipt,
                        Err(violation) => {
                            self.close(LinkError::Protocol(violation));
                            return None;
                        }
                    };
                    return Some(Incoming::Send {
                        target,
                        from,
                        body,
                        receipt,
                        forced: receipt.is_some() && flow::in_reserve(self.unsettled),
                    });
                }
                Kind::Ask { id } => {
                    return Some(Incoming::Ask {
                        id,
                        target,
                        from,
                        body,
                    })
                }
                Kind::Control {
                    id,
                    op: ControlOp::Watch,
                } => match watch_request(target, sender) {
                    Ok((target, watcher)) => {
                        return Some(Incoming::Watch {
                            id,
                            target,
                            watcher,
                        })
                    }
                    Err(why) => {
                        let reply = Err((ErrorCode::InvalidMessage, Message::from_static(why)));
                        if let Some(conn) = self.conn.as_ref().map(|c| c.seq) {
                            self.reply(conn, id, reply);
                        }
                        return Some(Incoming::Malformed { id, why });
                    }
                },
                Kind::Control {
                    id,
                    op: ControlOp::Unwatch,
                } => return Some(Incoming::Unwatch { id }),
                Kind::Control {
                    id,
                    op: ControlOp::Exited,
                } => match self.exit_notice(id, sender, &body) {
                    Ok(answer) => answer,
                    Err(why) => return Some(Incoming::Malformed { id, why }),
                },
                Kind::Control { id, op } => {
                    return Some(Incoming::Control {
                        id,
                        op,
                        target,
                        body,
                    })
                }
                Kind::Heartbeat => {
                    self.heartbeat(&body);
                    None
                }
                Kind::ReplyOk { id } => self.answer_ok(id, body),
                Kind::ReplyErr { id, code } => self.failure(id, code, &body),
                Kind::Credit { bytes } => {
                    if !self.flow || !self.sent.give_back(&target, u64::from(bytes)) {
                        let violation = "a credit for more than this node sent";
                        self.close(LinkError::Protocol(ProtocolError::Malformed(violation)));
                        return None;
                    }
                    if !self.backlog.is_empty() {
                        self.release_backlog();
                    }
                    None
                }
                Kind::Undeliverable { count, code } => {
                    if !self.flow || count == 0 {
                        let violation = "an undeliverable report for no sends";
                        self.close(LinkError::Protocol(ProtocolError::Malformed(violation)));
                        return None;
                    }
                    return Some(self.undeliverable(target, count, code, &body));
                }
            };
            if let Some(answer) = answer {
                return Some(Incoming::Answer(answer));
            }
        }
    }

    /// Answers the peer's ping with a pong, or measures the round trip of
    /// this node's ping from its pong. Any other heartbeat text is ignored.
    fn heartbeat(&mut self, body: &Message) {
        let text = body.as_str();
        if let Some(token) = text.strip_prefix(PING) {
            if token.len() <= MAX_PING_TOKEN {
                let pong = Message::from(format!("{PONG}{token}"));
                if let Err(error) = self.push(Envelope::new(Kind::Heartbeat, None, pong)) {
                    self.refusal(error);
                }
            }
            return;
        }
        let Some(token) = text.strip_prefix(PONG).and_then(|t| t.parse::<u64>().ok()) else {
            return;
        };
        let Some(conn) = &mut self.conn else { return };
        let Some((_, sent_at)) = conn.ping.filter(|&(ping, _)| ping == token) else {
            return;
        };
        conn.ping = None;
        let rtt = conn.fed_at.saturating_duration_since(sent_at);
        let nanos = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
        self.rtt.record(nanos);
        self.new_rtt = Some(nanos);
    }

    /// The heartbeat round trips measured on this link so far (nanoseconds).
    pub fn round_trips(&self) -> RoundTrips {
        self.rtt
    }

    /// The round trip measured since the last call, if any, in nanoseconds:
    /// the time from a ping's [`handle_timeout`](Self::handle_timeout) to the
    /// [`handle_input`](Self::handle_input) of the bytes that held its pong.
    /// One ping waits for its pong at a time, so a driver that calls this
    /// after each run of [`poll_input`](Self::poll_input) misses no sample.
    pub fn take_round_trip(&mut self) -> Option<u64> {
        self.new_rtt.take()
    }

    /// Takes the window of a plain send from the peer on connection `seq`:
    /// its receipt, none without flow control, or the violation of a send
    /// beyond its window.
    fn receive_send(&mut self, seq: u64, body: &Message) -> Result<Option<Receipt>, ProtocolError> {
        if !self.flow {
            return Ok(None);
        }
        let cost = flow::cost(body.len());
        if !flow::fits_forced(self.unsettled, cost) {
            return Err(ProtocolError::Malformed(
                "a send beyond the link's delivery window",
            ));
        }
        self.unsettled += cost;
        Ok(Some(Receipt { conn: seq, cost }))
    }

    /// The peer's report that `count` sends to `target` failed with `code`.
    fn undeliverable(
        &self,
        target: Option<WorkerAddr>,
        count: u32,
        code: ErrorCode,
        text: &str,
    ) -> Incoming<A> {
        let peer = self.peer_label();
        let worker = match &target {
            Some(WorkerAddr::Name(name)) => name.to_string(),
            Some(WorkerAddr::Id(id)) => format!("#{id}"),
            Some(WorkerAddr::Ref(r)) => r.to_string(),
            None => "(no target)".to_owned(),
        };
        let error = remote_error::decode(code, text, &peer, &format!("{peer}/{worker}"), &worker);
        Incoming::Undeliverable {
            target,
            count: u64::from(count),
            error,
        }
    }

    /// Settles the peer's plain send to `target` that came with `receipt`:
    /// it is in the mailbox (`Ok`), or it cannot be delivered, for the
    /// reason given, which the peer is told. Either way its window goes back
    /// to the peer with the next write. A receipt of an earlier connection
    /// is ignored (the peer forgot that window with it).
    pub fn settle(
        &mut self,
        receipt: Receipt,
        target: &Option<WorkerAddr>,
        outcome: Result<(), (ErrorCode, Message)>,
    ) {
        if self.conn.as_ref().map(|c| c.seq) != Some(receipt.conn) {
            return;
        }
        debug_assert!(receipt.cost <= self.unsettled, "a receipt settled twice");
        self.unsettled = self.unsettled.saturating_sub(receipt.cost);
        if self.settlements.settle(target, receipt.cost, outcome) {
            self.wake.transmit = true;
        }
    }

    /// What the current connection has received so far.
    pub fn received(&self) -> Traffic {
        self.conn
            .as_ref()
            .map(|c| c.decoder.traffic())
            .unwrap_or_default()
    }

    // ----- watches ------------------------------------------------------------

    /// The answer `body` to this node's request `id`: for a watch, it is in
    /// force from now on (see [`Self::watch_resolved`]).
    fn answer_ok(&mut self, id: u64, body: Message) -> Option<Answer<A>> {
        if !matches!(self.waiting.get(&id), Some(Waiter::Watch { .. })) {
            return self.answer(id, Ok(body));
        }
        let who = body
            .strip_prefix('#')
            .and_then(|_| body.parse::<WorkerRef>().ok())
            .filter(|r| !r.is_remote())
            .map(WireRef::of);
        match who {
            Some(who) => self.watch_resolved(id, who).map(|(answer, _)| answer),
            None => {
                let peer = self.peer_label();
                let error = Error::InvalidMessage(format!(
                    "node {peer} answered a watch with {body:?}, not a worker reference"
                ));
                self.send_unwatch(id);
                self.answer(id, Err(error))
            }
        }
    }

    /// The peer resolved this node's watch `id` to its worker `who`: the
    /// watch is in force (unless its watcher already watches `who`, and
    /// the peer is told to forget this one). Returns the watcher's answer
    /// and whether the watch is in force.
    fn watch_resolved(&mut self, id: u64, who: WireRef) -> Option<(Answer<A>, bool)> {
        let waiter = self.waiting.remove(&id)?;
        let Waiter::Watch { watcher, to, .. } = &waiter else {
            self.waiting.insert(id, waiter);
            return None;
        };
        let fresh = self.watches.activate(id, *watcher, who, to.clone());
        if !fresh {
            self.send_unwatch(id);
        }
        let result = Ok(Message::from(who.to_string()));
        Some((Answer::reply(waiter, result), fresh))
    }

    /// The peer's notice that the worker of its watch `id` ended (it may
    /// come before the watch's answer: `sender` is then the answer). A
    /// notice for a watch this node does not hold (unwatched, expired, of an
    /// earlier connection) is dropped; a malformed one is an error.
    fn exit_notice(
        &mut self,
        id: u64,
        sender: Option<WorkerAddr>,
        body: &str,
    ) -> Result<Option<Answer<A>>, &'static str> {
        let reason = decode_reason(body).ok_or("an exit notice with an unknown reason")?;
        let mut answer = None;
        if matches!(self.waiting.get(&id), Some(Waiter::Watch { .. })) {
            let Some(WorkerAddr::Ref(who)) = sender else {
                return Err("an exit notice without its worker's reference");
            };
            let Some((resolved, fresh)) = self.watch_resolved(id, who) else {
                return Ok(None);
            };
            answer = Some(resolved);
            if !fresh {
                return Ok(answer);
            }
        }
        if let Some((watcher, who)) = self.watches.fire(id) {
            self.fired(watcher, who, reason);
        }
        Ok(answer)
    }

    /// Hands out (see [`poll_exit`](Self::poll_exit)) that `watcher`'s watch
    /// of the peer's worker `who` fired for `reason`.
    fn fired(&mut self, watcher: WorkerRef, who: WireRef, reason: ExitReason) {
        if let Some(node) = self.peer.clone() {
            self.exits.push_back(Exit {
                watcher,
                who,
                node,
                reason,
            });
            self.wake.exits = true;
        }
    }

    // ----- answers ------------------------------------------------------------

    /// The answer `result` for the ask or request `id`, if it is waiting.
    fn answer(&mut self, id: u64, result: Result<Message>) -> Option<Answer<A>> {
        let waiter = self.waiting.remove(&id)?;
        Some(Answer::reply(waiter, result))
    }

    /// The answer for a `reply err` with `code` and `text` for `id`.
    fn failure(&mut self, id: u64, code: ErrorCode, text: &str) -> Option<Answer<A>> {
        let peer = self.peer_label();
        let error = match self.waiting.get(&id)? {
            Waiter::Ask { to, .. } | Waiter::Watch { to, .. } => {
                remote_error::decode(code, text, &peer, &to.to_string(), &to.worker)
            }
            Waiter::Request { worker, .. } => {
                remote_error::decode(code, text, &peer, &format!("{peer}/{worker}"), worker)
            }
        };
        self.answer(id, Err(error))
    }

    /// Queues an answer for [`poll_answer`](Self::poll_answer).
    fn queue(&mut self, answer: Option<Answer<A>>) {
        if let Some(answer) = answer {
            self.answers.push_back(answer);
            self.wake.answers = true;
        }
    }

    /// The next answer to deliver that did not come with input: a failure
    /// (timeout, lost connection) or an ask forgotten because its asker left.
    pub fn poll_answer(&mut self) -> Option<Answer<A>> {
        self.answers.pop_front()
    }

    // ----- time ---------------------------------------------------------------

    /// When [`handle_timeout`](Self::handle_timeout) is next due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tick = self
            .conn
            .as_ref()
            .filter(|c| !c.closed)
            .map(|c| c.next_tick);
        let deadline = self.deadlines.front().map(|&(at, _)| at);
        match (tick, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Does what is due at `now`: on each heartbeat tick, closes a
    /// connection that received nothing for the heartbeat timeout, sends a
    /// heartbeat on one that sent nothing for the interval, and forgets the
    /// asks whose askers stopped waiting (their answers would be discarded,
    /// and a peer that never answers must not grow the table); fails the
    /// remote operations past their deadline. Returns how many asks it forgot.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        let mut forgotten = 0;
        let LinkSettings {
            heartbeat_interval: interval,
            heartbeat_timeout: timeout,
            ..
        } = self.settings;
        let tick = self.settings.tick();
        let ping = self.pings + 1;
        let due = self
            .conn
            .as_mut()
            .filter(|c| !c.closed && now >= c.next_tick)
            .map(|conn| {
                conn.next_tick = now + tick;
                let silent = now.duration_since(conn.last_rx) > timeout;
                let idle = !silent && now.duration_since(conn.last_tx) >= interval;
                if idle {
                    conn.last_tx = now;
                    // A ping still unanswered is forgotten: its pong, if it
                    // comes, no longer matches.
                    conn.ping = Some((ping, now));
                }
                (silent, idle)
            });
        match due {
            Some((true, _)) => self.close(LinkError::Silent(timeout)),
            Some((false, idle)) => {
                if idle {
                    self.pings = ping;
                    let body = Message::from(format!("{PING}{ping}"));
                    let heartbeat = Envelope::new(Kind::Heartbeat, None, body);
                    if let Err(error) = self.push(heartbeat) {
                        self.refusal(error);
                    }
                }
                forgotten = self.forget_abandoned_asks();
            }
            None => {}
        }
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            self.expire(id);
        }
        forgotten
    }

    /// Answers the asks whose askers left with `NoReply`; returns how many.
    fn forget_abandoned_asks(&mut self) -> usize {
        let abandoned: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| matches!(w, Waiter::Ask { asker, .. } if asker.is_abandoned()))
            .map(|(&id, _)| id)
            .collect();
        for &id in &abandoned {
            if let Some(Waiter::Ask { asker, to }) = self.waiting.remove(&id) {
                let result = Err(Error::NoReply(to.to_string()));
                let waiter = Waiter::Ask { asker, to };
                self.queue(Some(Answer::reply(waiter, result)));
            }
        }
        abandoned.len()
    }

    /// Fails the remote operation or watch `id` (if it still waits) with a
    /// timeout; the peer is told to forget such a watch.
    fn expire(&mut self, id: u64) {
        let worker = match self.waiting.get(&id) {
            Some(Waiter::Request { worker, .. }) => format!("{}/{worker}", self.peer_label()),
            Some(Waiter::Watch { to, .. }) => {
                let to = to.to_string();
                self.send_unwatch(id);
                to
            }
            _ => return,
        };
        let after = self.settings.request_timeout;
        let answer = self.answer(id, Err(Error::Timeout { worker, after }));
        self.queue(answer);
    }

    // ----- connection changes -------------------------------------------------

    /// Connection `seq` to `peer` is established at `now`, with `encoder`
    /// and `decoder` from its handshake: the link is up, and the messages
    /// accepted meanwhile are encoded. Any the encoder (or the peer's
    /// version) refuses fail their askers; the plain sends among them give
    /// their window back and are returned, with why, to be counted as
    /// dropped (their senders were told `Ok`).
    pub fn connected(
        &mut self,
        now: Instant,
        seq: u64,
        peer: &PeerInfo,
        encoder: Encoder,
        decoder: Decoder,
    ) -> Vec<Error> {
        self.peer = Some(peer.name.clone());
        self.version = Some(peer.version);
        self.send_limit = self.settings.max_message_size.min(peer.max_message_size);
        self.conn = Some(Connection {
            seq,
            decoder,
            last_rx: now,
            fed_at: now,
            last_tx: now,
            unwritten: false,
            ping: None,
            next_tick: now + self.settings.tick(),
            closed: false,
            reason: None,
        });
        self.phase = Phase::Up;
        self.flow = peer.version >= FLOW_CONTROL_VERSION;
        if !self.flow {
            self.sent.clear();
        }
        self.out.encoder = Some(encoder);
        self.out.early_bytes = 0;
        let mut refused = Vec::new();
        for mut envelope in std::mem::take(&mut self.out.early) {
            let (kind, target, cost) = (
                envelope.kind,
                envelope.target.clone(),
                flow::cost(envelope.body.len()),
            );
            let pushed = match self.need_version_2() {
                Err(error) if !version_1_compatible(&mut envelope) => Err(error),
                _ => self.push(envelope).map_err(|error| self.refusal(error)),
            };
            let Err(error) = pushed else { continue };
            match kind {
                Kind::Ask { id } | Kind::Control { id, .. } => {
                    let answer = self.answer(id, Err(error));
                    self.queue(answer);
                }
                Kind::Send => {
                    if self.flow {
                        self.sent.forget(&target, cost);
                    }
                    refused.push(error);
                }
                _ => {}
            }
        }
        self.release_backlog();
        self.wake.transmit = true;
        self.wake.timer = true;
        refused
    }

    /// Ends the current connection for `reason` (the first reason given
    /// wins); the driver then ends its tasks and calls
    /// [`disconnected`](Self::disconnected).
    pub fn close(&mut self, reason: LinkError) {
        if let Some(conn) = self.conn.as_mut().filter(|c| !c.closed) {
            conn.closed = true;
            conn.reason = Some(reason);
            self.wake.closed = true;
        }
    }

    /// True if there is no connection or it is over.
    pub fn is_closed(&self) -> bool {
        self.conn.as_ref().is_none_or(|c| c.closed)
    }

    /// Why the current connection ended.
    pub fn take_close_reason(&mut self) -> LinkError {
        self.conn
            .as_mut()
            .and_then(|c| c.reason.take())
            .unwrap_or(LinkError::Closed)
    }

    /// The connection (or the attempt to make one) is over and the link
    /// goes to phase `next`: every waiting ask and request, and every send
    /// waiting for room, fails with `ConnectionLost` (see
    /// [`poll_answer`](Self::poll_answer)), and unsent messages are dropped.
    /// Returns what became of the plain sends this node's senders were told
    /// `Ok` for, and that were not settled.
    pub fn disconnected(&mut self, next: Phase) -> Unsettled {
        for (watcher, who) in self.watches.drain() {
            self.fired(watcher, who, ExitReason::NodeLost);
        }
        let was_up = self.out.encoder.is_some();
        let unsettled = Unsettled {
            unsent: self
                .out
                .early
                .iter()
                .filter(|e| e.kind == Kind::Send)
                .count() as u64,
            // The sends kept before a connection came up hold window too;
            // they are the unsent ones.
            in_doubt: if self.flow && was_up {
                self.sent.unsettled_sends()
            } else {
                0
            },
        };
        self.phase = next;
        self.conn = None;
        self.writing = 0;
        self.flow = true;
        self.sent.clear();
        self.unsettled = 0;
        self.settlements.clear();
        self.out = Outbox::default();
        self.deadlines.clear();
        let lost = Error::ConnectionLost(self.peer_label());
        let waiting: Vec<Waiter<A>> = self.waiting.drain().map(|(_, w)| w).collect();
        for waiter in waiting {
            let result = Err(lost.clone());
            self.queue(Some(Answer::reply(waiter, result)));
        }
        for waiting in self.backlog.drain() {
            let result = Err(lost.clone());
            self.queue(Some(Answer(Answered::Taken(waiting.ready, result))));
        }
        unsettled
    }
}

/// True for the echo of a ping, which does not count as traffic for the
/// heartbeat interval.
fn is_pong(envelope: &Envelope) -> bool {
    envelope.kind == Kind::Heartbeat && envelope.body.as_str().starts_with(PONG)
}

/// The target and watcher of the peer's `watch` request, or why it is
/// malformed.
fn watch_request(
    target: Option<WorkerAddr>,
    sender: Option<WorkerAddr>,
) -> Result<(WorkerAddr, WireRef), &'static str> {
    let target = match target {
        Some(target @ (WorkerAddr::Name(_) | WorkerAddr::Ref(_))) => target,
        Some(WorkerAddr::Id(_)) => return Err("a watch target must be a name or a reference"),
        None => return Err("a watch needs a target"),
    };
    match sender {
        Some(WorkerAddr::Ref(watcher)) => Ok((target, watcher)),
        _ => Err("a watch needs its watcher's reference as the sender"),
    }
}

/// Makes `envelope`, kept before a connection that turned out to speak
/// version 1, fit for it: drops its sender reference; `false` if it cannot
/// go at all (a reference target, a watch operation).
fn version_1_compatible(envelope: &mut Envelope) -> bool {
    if matches!(envelope.sender, Some(WorkerAddr::Ref(_))) {
        envelope.sender = None;
    }
    let v2_op = matches!(
        envelope.kind,
        Kind::Control {
            op: ControlOp::Watch | ControlOp::Unwatch | ControlOp::Exited,
            ..
        }
    );
    !v2_op && !matches!(envelope.target, Some(WorkerAddr::Ref(_)))
}

#[cfg(test)]
mod tests;
