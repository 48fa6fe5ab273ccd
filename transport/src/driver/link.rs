//! A link to one peer node as its shard sees it: the bounded outbound buffer
//! (messages are encoded into frames as they are sent, by the sending
//! worker's own shard), the asks and requests waiting for a reply, and the
//! link's phase. The I/O itself is in `connection.rs`.
//!
//! An *outbound* link is created on the first message to a node and lives on
//! (reconnecting, see `outbound.rs`) while the node is in the member list;
//! it carries this node's sends, asks and requests. An *inbound* link lives
//! as long as its one accepted connection and carries the peer's traffic and
//! this node's replies.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use myriad_engine::{Error, Message, RemoteAddress, Replier, Result};

use super::errors;
use super::signal::{Latch, Notify};
use super::LinkError;
use crate::codec::{EncodeError, Encoder};
use crate::envelope::{ControlOp, Envelope, ErrorCode, Kind, WorkerAddr};
use crate::handshake::PeerInfo;
use crate::stats::Traffic;
use crate::zone::NodeName;

/// Bytes counted for an envelope's header and framing while it waits for
/// the link to come up, on top of its body.
const ENVELOPE_COST: usize = 32;

/// Where a link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Connecting or handshaking: messages are kept until the link is up.
    Connecting,
    /// Established: messages are encoded and written.
    Up,
    /// The last attempt failed; waiting before the next. Messages are refused.
    Backoff,
    /// Gone for good.
    Closed,
}

/// An answer a link waits for.
enum Pending {
    /// An ask from a worker (or a thread) of this node.
    Ask { replier: Replier, to: RemoteAddress },
    /// A remote operation (`Zone::start_worker` and friends).
    Request {
        reply: flume::Sender<Result<Message>>,
        worker: String,
    },
}

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
    reason: RefCell<Option<LinkError>>,
    /// When something was last received.
    pub(crate) last_rx: Cell<Instant>,
    /// When something was last written.
    pub(crate) last_tx: Cell<Instant>,
}

impl Conn {
    /// A connection to `peer`, just established.
    pub(crate) fn new(seq: u64, peer: PeerInfo, peer_addr: Option<SocketAddr>) -> Self {
        let now = Instant::now();
        Conn {
            seq,
            peer,
            peer_addr,
            closed: Latch::default(),
            reason: RefCell::new(None),
            last_rx: Cell::new(now),
            last_tx: Cell::new(now),
        }
    }

    /// Ends the connection for `reason` (the first reason given wins).
    pub(crate) fn close(&self, reason: LinkError) {
        if !self.closed.is_set() {
            *self.reason.borrow_mut() = Some(reason);
            self.closed.set();
        }
    }

    /// Why the connection ended.
    pub(crate) fn take_reason(&self) -> LinkError {
        self.reason.borrow_mut().take().unwrap_or(LinkError::Closed)
    }
}

/// The encoder's output is taken in chunks of about this size, so that the
/// writer can write one while senders fill the next, and buffers of one size
/// are reused by the allocator instead of growing without end.
const OUTPUT_CHUNK: usize = 1 << 20;

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

/// A link to one peer node, owned by one shard.
pub(crate) struct Link {
    /// Unique among the links of this shard.
    pub(crate) id: u64,
    peer: RefCell<Option<NodeName>>,
    phase: Cell<Phase>,
    out: RefCell<Outbox>,
    /// Bytes the writer is writing right now.
    writing: Cell<usize>,
    buffer_limit: usize,
    own_max_message: u32,
    send_limit: Cell<u32>,
    pending: RefCell<HashMap<u64, Pending>>,
    next_id: Cell<u64>,
    /// Wakes the writer when there is something to write.
    pub(crate) writer: Notify,
    conn: RefCell<Option<Rc<Conn>>>,
    /// The last target name converted for the wire (senders often repeat it).
    last_target: RefCell<Option<(Arc<str>, WorkerAddr)>>,
}

impl Link {
    /// A link in phase `Connecting`; `peer` is known up front for outbound
    /// links, and learned from the handshake for inbound ones.
    pub(crate) fn new(
        id: u64,
        peer: Option<NodeName>,
        buffer_limit: usize,
        max_message: u32,
    ) -> Self {
        Link {
            id,
            peer: RefCell::new(peer),
            phase: Cell::new(Phase::Connecting),
            out: RefCell::default(),
            writing: Cell::new(0),
            buffer_limit,
            own_max_message: max_message,
            send_limit: Cell::new(max_message),
            pending: RefCell::default(),
            next_id: Cell::new(1),
            writer: Notify::default(),
            conn: RefCell::new(None),
            last_target: RefCell::new(None),
        }
    }

    /// The peer's name for messages, or `?` before the handshake.
    fn peer_label(&self) -> String {
        self.peer
            .borrow()
            .as_ref()
            .map_or_else(|| "?".to_owned(), NodeName::to_string)
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase.get()
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.set(phase);
    }

    // ----- sending ----------------------------------------------------------

    /// Checks that a message of `size` bytes may be sent now.
    fn admit(&self, size: usize) -> Result<()> {
        match self.phase.get() {
            Phase::Connecting | Phase::Up => {}
            Phase::Backoff | Phase::Closed => return Err(Error::ConnectionLost(self.peer_label())),
        }
        let max = self.send_limit.get();
        if size > max as usize {
            return Err(Error::MessageTooLarge {
                size,
                max: max as usize,
            });
        }
        if self.out.borrow().buffered() + self.writing.get() >= self.buffer_limit {
            let peer = self.peer_label();
            return Err(Error::MailboxFull(format!("link to node {peer}")));
        }
        Ok(())
    }

    /// The wire address of worker `name`.
    fn target(&self, name: &Arc<str>) -> Result<WorkerAddr> {
        if let Some((last, addr)) = &*self.last_target.borrow() {
            if Arc::ptr_eq(last, name) || **last == **name {
                return Ok(addr.clone());
            }
        }
        if name.is_empty() || name.len() > crate::zone::MAX_NAME_LEN {
            return Err(Error::InvalidName {
                name: name.to_string(),
                reason: "a remote worker name must be 1 to 255 bytes",
            });
        }
        let addr = WorkerAddr::Name(Message::from(name.to_string()));
        *self.last_target.borrow_mut() = Some((name.clone(), addr.clone()));
        Ok(addr)
    }

    fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1).max(1));
        id
    }

    /// Encodes `envelope` (or keeps it until the link is up) and wakes the
    /// writer if it had nothing to write.
    fn push(&self, envelope: Envelope) -> Result<(), EncodeError> {
        let mut out = self.out.borrow_mut();
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
        if idle {
            self.writer.notify();
        }
        Ok(())
    }

    /// [`push`](Self::push), with the encoder's refusal as an engine error.
    fn push_checked(&self, envelope: Envelope) -> Result<()> {
        self.push(envelope).map_err(|error| self.refusal(error))
    }

    /// The engine error for an envelope the encoder refused. A crypto
    /// failure also ends the connection.
    fn refusal(&self, error: EncodeError) -> Error {
        match error {
            EncodeError::TooLarge { size, max } => Error::MessageTooLarge {
                size,
                max: max as usize,
            },
            EncodeError::BadName { .. } => Error::InvalidMessage(error.to_string()),
            EncodeError::Crypto => {
                if let Some(conn) = &*self.conn.borrow() {
                    conn.close(LinkError::Encode(error));
                }
                Error::ConnectionLost(self.peer_label())
            }
        }
    }

    /// Sends `msg` to worker `to` (an ask if `reply` holds a replier, which
    /// is then taken). Refuses it, leaving `reply` alone, when the link is
    /// down, the message too large, or the outbound buffer full.
    pub(crate) fn send(
        &self,
        to: &RemoteAddress,
        msg: Message,
        reply: &mut Option<Replier>,
    ) -> Result<()> {
        self.admit(msg.len())?;
        let target = Some(self.target(&to.worker)?);
        let Some(replier) = reply.take() else {
            return self.push_checked(Envelope::new(Kind::Send, target, msg));
        };
        let id = self.next_id();
        match self.push_checked(Envelope::new(Kind::Ask { id }, target, msg)) {
            Ok(()) => {
                let to = to.clone();
                self.pending
                    .borrow_mut()
                    .insert(id, Pending::Ask { replier, to });
                Ok(())
            }
            Err(error) => {
                *reply = Some(replier);
                Err(error)
            }
        }
    }

    /// Sends a remote operation whose answer goes to `reply`; returns its id.
    pub(crate) fn request(
        &self,
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
        self.pending
            .borrow_mut()
            .insert(id, Pending::Request { reply, worker });
        Ok(id)
    }

    /// Sends a gossip body (no answer expected).
    pub(crate) fn gossip(&self, body: Message) {
        if self.phase.get() == Phase::Up {
            let op = ControlOp::Members;
            let gossip = Envelope::new(Kind::Control { id: 0, op }, None, body);
            if let Err(error) = self.push(gossip) {
                self.refusal(error);
            }
        }
    }

    /// Forgets the asks whose askers stopped waiting (timed out or
    /// cancelled): their answers would be discarded anyway, and a peer that
    /// never answers must not grow this table. Returns how many.
    pub(crate) fn forget_abandoned_asks(&self) -> usize {
        let abandoned: Vec<Pending> = {
            let mut pending = self.pending.borrow_mut();
            let ids: Vec<u64> = pending
                .iter()
                .filter(
                    |(_, p)| matches!(p, Pending::Ask { replier, .. } if replier.is_abandoned()),
                )
                .map(|(&id, _)| id)
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        // Dropped after the table's borrow ends: a dropped replier answers
        // `NoReply`, which its gone asker ignores.
        abandoned.len()
    }

    /// Sends a heartbeat.
    pub(crate) fn heartbeat(&self) {
        if let Err(error) = self.push(Envelope::heartbeat()) {
            self.refusal(error);
        }
    }

    /// Sends the answer to the peer's ask or request `id`, received on
    /// connection `conn` (dropped if that connection is gone). Answers are
    /// never refused for a full buffer: their number is bounded by the
    /// peer's requests.
    pub(crate) fn reply(&self, conn: u64, id: u64, answer: Result<Message, (ErrorCode, Message)>) {
        let current = self.conn.borrow().as_ref().map(|c| c.seq);
        if current != Some(conn) || self.phase.get() != Phase::Up {
            return;
        }
        let envelope = match answer {
            Ok(body) => Envelope::new(Kind::ReplyOk { id }, None, body),
            Err((code, text)) => Envelope::new(Kind::ReplyErr { id, code }, None, text),
        };
        match self.push(envelope) {
            Err(error @ EncodeError::TooLarge { .. }) => {
                let (code, text) = errors::encode(&self.refusal(error));
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

    /// The next chunk of encoded bytes for the writer (empty if there are
    /// none); seals the frame being filled once every full chunk is taken.
    pub(crate) fn take_output(&self) -> Result<Bytes, LinkError> {
        let mut out = self.out.borrow_mut();
        if out.sealed.is_empty() {
            out.cut().map_err(LinkError::Encode)?;
        }
        let chunk = out.sealed.pop_front().unwrap_or_default();
        out.sealed_len -= chunk.len();
        Ok(chunk)
    }

    /// Records how many bytes the writer is writing (they count against the
    /// outbound buffer until written).
    pub(crate) fn set_writing(&self, bytes: usize) {
        self.writing.set(bytes);
    }

    /// What this link's current connection has sent so far.
    pub(crate) fn sent(&self) -> Traffic {
        let out = self.out.borrow();
        out.encoder
            .as_ref()
            .map(Encoder::traffic)
            .unwrap_or_default()
    }

    // ----- answers ----------------------------------------------------------

    /// Completes the ask or request `id` with `result`.
    fn finish(&self, id: u64, result: Result<Message>) {
        let pending = self.pending.borrow_mut().remove(&id);
        match pending {
            Some(Pending::Ask { replier, .. }) => replier.complete(result),
            Some(Pending::Request { reply, .. }) => {
                // The requester may have given up.
                let _ = reply.send(result);
            }
            None => {}
        }
    }

    /// A `reply ok` for `id` arrived.
    pub(crate) fn answered(&self, id: u64, body: Message) {
        self.finish(id, Ok(body));
    }

    /// A `reply err` for `id` arrived.
    pub(crate) fn failed(&self, id: u64, code: ErrorCode, text: &str) {
        let peer = self.peer_label();
        let error = match self.pending.borrow().get(&id) {
            Some(Pending::Ask { to, .. }) => {
                errors::decode(code, text, &peer, &to.to_string(), &to.worker)
            }
            Some(Pending::Request { worker, .. }) => {
                errors::decode(code, text, &peer, &format!("{peer}/{worker}"), worker)
            }
            None => return,
        };
        self.finish(id, Err(error));
    }

    /// The request `id` took too long.
    pub(crate) fn expire(&self, id: u64, after: std::time::Duration) {
        let worker = match self.pending.borrow().get(&id) {
            Some(Pending::Request { worker, .. }) => format!("{}/{worker}", self.peer_label()),
            _ => return,
        };
        self.finish(id, Err(Error::Timeout { worker, after }));
    }

    // ----- connection changes -------------------------------------------------

    /// `conn` is established, `encoder` encodes for it: the link is up, and
    /// the messages accepted meanwhile are encoded.
    pub(crate) fn connected(&self, conn: Rc<Conn>, encoder: Encoder) {
        *self.peer.borrow_mut() = Some(conn.peer.name.clone());
        self.send_limit
            .set(self.own_max_message.min(conn.peer.max_message_size));
        *self.conn.borrow_mut() = Some(conn);
        self.phase.set(Phase::Up);
        let early = {
            let mut out = self.out.borrow_mut();
            out.encoder = Some(encoder);
            out.early_bytes = 0;
            std::mem::take(&mut out.early)
        };
        for envelope in early {
            let kind = envelope.kind;
            if let Err(error) = self.push(envelope) {
                let error = self.refusal(error);
                if let Kind::Ask { id } | Kind::Control { id, .. } = kind {
                    self.finish(id, Err(error));
                }
            }
        }
        self.writer.notify();
    }

    /// The connection (or the attempt to make one) is over: every waiting
    /// ask and request fails with `ConnectionLost`, and unsent messages are
    /// dropped (returns how many plain sends had waited for the link to
    /// come up).
    pub(crate) fn disconnected(&self, next: Phase) -> usize {
        self.phase.set(next);
        self.conn.borrow_mut().take();
        let early = std::mem::take(&mut *self.out.borrow_mut()).early;
        let dropped = early.iter().filter(|e| e.kind == Kind::Send).count();
        let pending: Vec<Pending> = self.pending.borrow_mut().drain().map(|(_, p)| p).collect();
        let lost = Error::ConnectionLost(self.peer_label());
        for pending in pending {
            match pending {
                Pending::Ask { replier, .. } => replier.complete(Err(lost.clone())),
                Pending::Request { reply, .. } => {
                    let _ = reply.send(Err(lost.clone()));
                }
            }
        }
        dropped
    }
}
