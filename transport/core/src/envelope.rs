//! The unit of traffic on a link: an [`Envelope`] says what kind of message it
//! is (send, ask, reply, heartbeat, control), which worker it is for, who sent
//! it, and carries the message text. This module also fixes the byte layout of
//! an envelope's header (`docs/protocol.md`, "Envelope").

use bytes::{BufMut, BytesMut};
use myriad_engine::plugin::WireRef;
use myriad_engine::Message;

use crate::error::{EncodeError, ProtocolError};
use crate::wire::{put_short_bytes, Reader};
use crate::zone::NodeName;

/// Defines a `u8`-coded wire enum with its decoding (unknown codes are a
/// protocol violation, not a panic).
macro_rules! wire_enum {
    (
        $(#[$meta:meta])* $name:ident as $what:literal {
            $($(#[$vmeta:meta])* $variant:ident = $code:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code,)+
        }

        impl $name {
            /// Every value, in wire-code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The byte that stands for this value on the wire.
            pub fn code(self) -> u8 {
                self as u8
            }

            fn from_code(value: u8) -> Result<Self, ProtocolError> {
                match value {
                    $($code => Ok($name::$variant),)+
                    _ => Err(ProtocolError::Unknown { what: $what, value }),
                }
            }
        }
    };
}

wire_enum! {
    /// Why a remote request failed; the envelope's body carries the details.
    ErrorCode as "error code" {
        /// Any other failure.
        Other = 0,
        /// The remote side gave up waiting.
        Timeout = 1,
        /// No live worker has the target name or id.
        NoSuchWorker = 2,
        /// The worker name is not acceptable.
        InvalidName = 3,
        /// A worker with that name is already running.
        NameTaken = 4,
        /// The target's mailbox is full; nothing was enqueued.
        MailboxFull = 5,
        /// The worker panicked or its handler failed.
        WorkerFailed = 6,
        /// The worker finished handling the ask without replying.
        NoReply = 7,
        /// The message was not acceptable to the receiver.
        InvalidMessage = 8,
        /// The message exceeds a limit on the receiving node.
        MessageTooLarge = 9,
        /// The receiving node knows no route onward.
        NoRoute = 10,
        /// The receiving node is shutting down.
        NodeStopped = 11,
        /// `start_worker` named a factory kind the node did not register.
        UnknownFactory = 12,
    }
}

wire_enum! {
    /// A node-level request carried by a [`Kind::Control`] envelope.
    ControlOp as "control operation" {
        /// Start a worker named by the target, made by the factory kind the body names.
        StartWorker = 1,
        /// Stop the worker named by the target.
        StopWorker = 2,
        /// List the node's workers; the reply body holds the list.
        ListWorkers = 3,
        /// Gossip: the body holds the sender's member list.
        Members = 4,
        /// Version 2: the sender (the watcher) watches the target; answered
        /// by a reply whose body is the watched worker's reference.
        Watch = 5,
        /// Version 2: the sender no longer watches; the id is the watch's
        /// (the id of its `Watch` request). No answer.
        Unwatch = 6,
        /// Version 2: the worker that is the sender ended; the target is the
        /// watcher, the id the watch's, the body why. No answer.
        Exited = 7,
    }
}

/// What an envelope is for. `id`s correlate asks and control requests with
/// their replies; they are chosen by the requesting side and unique per link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Fire and forget: deliver the body to the target.
    Send,
    /// Deliver the body to the target and expect a reply with the same `id`.
    Ask {
        /// Correlation id.
        id: u64,
    },
    /// The successful answer to the ask or control request `id`; body = reply text.
    ReplyOk {
        /// Correlation id.
        id: u64,
    },
    /// The failed answer to the ask or control request `id`; body = error text.
    ReplyErr {
        /// Correlation id.
        id: u64,
        /// What went wrong.
        code: ErrorCode,
    },
    /// Keeps an idle link alive and proves the peer is still there.
    Heartbeat,
    /// A node-level request (start/stop/list workers, gossip).
    Control {
        /// Correlation id for the reply (gossip, which expects none, uses 0).
        id: u64,
        /// The request.
        op: ControlOp,
    },
    /// Delivery flow control (protocol version 2): `bytes` of the
    /// receiver's delivery window for the target are free again — the
    /// sends that used them were settled (delivered or reported
    /// undeliverable).
    Credit {
        /// Window bytes given back (see `flow::cost`).
        bytes: u32,
    },
    /// Delivery flow control (protocol version 2): `count` sends to the
    /// target were not delivered, for the reason `code`; body = error text.
    Undeliverable {
        /// How many sends.
        count: u32,
        /// Why.
        code: ErrorCode,
    },
}

impl Kind {
    fn code(&self) -> u8 {
        match self {
            Kind::Send => 1,
            Kind::Ask { .. } => 2,
            Kind::ReplyOk { .. } => 3,
            Kind::ReplyErr { .. } => 4,
            Kind::Heartbeat => 5,
            Kind::Control { .. } => 6,
            Kind::Credit { .. } => 16,
            Kind::Undeliverable { .. } => 17,
        }
    }

    /// Bytes of the kind-specific fields after the kind and flags bytes.
    fn fields_len(&self) -> usize {
        match self {
            Kind::Send | Kind::Heartbeat => 0,
            Kind::Credit { .. } => 4,
            Kind::Undeliverable { .. } => 5,
            Kind::Ask { .. } | Kind::ReplyOk { .. } => 8,
            Kind::ReplyErr { .. } | Kind::Control { .. } => 9,
        }
    }

    /// Writes the kind-specific fields.
    fn put_fields(&self, buf: &mut BytesMut) {
        match *self {
            Kind::Send | Kind::Heartbeat => {}
            Kind::Ask { id } | Kind::ReplyOk { id } => buf.put_u64(id),
            Kind::ReplyErr { id, code } => {
                buf.put_u64(id);
                buf.put_u8(code.code());
            }
            Kind::Control { id, op } => {
                buf.put_u64(id);
                buf.put_u8(op.code());
            }
            Kind::Credit { bytes } => buf.put_u32(bytes),
            Kind::Undeliverable { count, code } => {
                buf.put_u32(count);
                buf.put_u8(code.code());
            }
        }
    }

    /// Reads the kind-specific fields of the kind whose code is `code`.
    fn read_fields(code: u8, r: &mut Reader) -> Result<Self, ProtocolError> {
        Ok(match code {
            1 => Kind::Send,
            2 => Kind::Ask { id: r.u64()? },
            3 => Kind::ReplyOk { id: r.u64()? },
            4 => Kind::ReplyErr {
                id: r.u64()?,
                code: ErrorCode::from_code(r.u8()?)?,
            },
            5 => Kind::Heartbeat,
            6 => Kind::Control {
                id: r.u64()?,
                op: ControlOp::from_code(r.u8()?)?,
            },
            16 => Kind::Credit { bytes: r.u32()? },
            17 => Kind::Undeliverable {
                count: r.u32()?,
                code: ErrorCode::from_code(r.u8()?)?,
            },
            value => {
                return Err(ProtocolError::Unknown {
                    what: "envelope kind",
                    value,
                })
            }
        })
    }
}

/// A worker as named on the wire: by its unique name on the receiving node,
/// by a numeric id that node handed out, or (version 2) by the reference its
/// own node made for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WorkerAddr {
    /// A worker name: 1 to 255 bytes of UTF-8.
    Name(Message),
    /// A numeric worker id.
    Id(u64),
    /// A worker reference (shard, slot, generation) of the node the worker
    /// lives on: the sender's node for a sender, the receiver for a target.
    Ref(WireRef),
}

impl From<&str> for WorkerAddr {
    fn from(name: &str) -> Self {
        WorkerAddr::Name(Message::from(name.to_owned()))
    }
}

impl From<u64> for WorkerAddr {
    fn from(id: u64) -> Self {
        WorkerAddr::Id(id)
    }
}

const ADDR_NONE: u8 = 0;
const ADDR_NAME: u8 = 1;
const ADDR_ID: u8 = 2;
const ADDR_REF: u8 = 3;

/// Bytes of an optional address on the wire; `field` names it in errors.
fn addr_len(addr: &Option<WorkerAddr>, field: &'static str) -> Result<usize, EncodeError> {
    Ok(match addr {
        None => 1,
        Some(WorkerAddr::Id(_)) => 9,
        Some(WorkerAddr::Ref(_)) => 11,
        Some(WorkerAddr::Name(name)) if (1..=255).contains(&name.len()) => 2 + name.len(),
        Some(WorkerAddr::Name(name)) => {
            return Err(EncodeError::BadName {
                field,
                len: name.len(),
            })
        }
    })
}

fn put_addr(buf: &mut BytesMut, addr: &Option<WorkerAddr>) {
    match addr {
        None => buf.put_u8(ADDR_NONE),
        Some(WorkerAddr::Name(name)) => {
            buf.put_u8(ADDR_NAME);
            put_short_bytes(buf, name.as_bytes());
        }
        Some(WorkerAddr::Id(id)) => {
            buf.put_u8(ADDR_ID);
            buf.put_u64(*id);
        }
        Some(WorkerAddr::Ref(r)) => {
            buf.put_u8(ADDR_REF);
            buf.put_u16(r.shard);
            buf.put_u32(r.index);
            buf.put_u32(r.generation);
        }
    }
}

fn read_addr(r: &mut Reader) -> Result<Option<WorkerAddr>, ProtocolError> {
    match r.u8()? {
        ADDR_NONE => Ok(None),
        ADDR_NAME => {
            let name = r.short_bytes()?;
            if name.is_empty() {
                return Err(ProtocolError::Malformed("empty worker name"));
            }
            let name =
                Message::from_utf8(name).map_err(|_| ProtocolError::InvalidUtf8("worker name"))?;
            Ok(Some(WorkerAddr::Name(name)))
        }
        ADDR_ID => Ok(Some(WorkerAddr::Id(r.u64()?))),
        ADDR_REF => Ok(Some(WorkerAddr::Ref(WireRef {
            shard: r.u16()?,
            index: r.u32()?,
            generation: r.u32()?,
        }))),
        value => Err(ProtocolError::Unknown {
            what: "address tag",
            value,
        }),
    }
}

const FLAG_SENDER_NODE: u8 = 1;
const FLAG_SHARD: u8 = 2;

/// One message on a link, with what the receiving node needs to route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// What the envelope is for.
    pub kind: Kind,
    /// The worker it is for (none for replies, heartbeats, most control requests).
    pub target: Option<WorkerAddr>,
    /// The worker that sent it, if any.
    pub sender: Option<WorkerAddr>,
    /// The node the sender lives on, if not the link's peer itself.
    pub sender_node: Option<NodeName>,
    /// The shard of the receiving node the sender believes the target lives on.
    pub shard: Option<u16>,
    /// The message text (the factory kind, a worker list or a member list for
    /// control requests). At most the link's maximum message size.
    pub body: Message,
}

impl Envelope {
    /// An envelope of `kind` for `target` carrying `body`, with no sender,
    /// sender node or shard hint.
    pub fn new(kind: Kind, target: Option<WorkerAddr>, body: impl Into<Message>) -> Self {
        Envelope {
            kind,
            target,
            sender: None,
            sender_node: None,
            shard: None,
            body: body.into(),
        }
    }

    /// An empty heartbeat.
    pub fn heartbeat() -> Self {
        Envelope::new(Kind::Heartbeat, None, Message::default())
    }

    /// The same envelope, sent by worker `sender`.
    pub fn with_sender(mut self, sender: WorkerAddr) -> Self {
        self.sender = Some(sender);
        self
    }

    /// The same envelope, from a worker on node `node`.
    pub fn with_sender_node(mut self, node: NodeName) -> Self {
        self.sender_node = Some(node);
        self
    }

    /// The same envelope, hinting that its target lives on shard `shard`.
    pub fn with_shard(mut self, shard: u16) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Bytes of the header [`put_header`](Self::put_header) writes; checks names.
    pub(crate) fn header_len(&self) -> Result<usize, EncodeError> {
        Ok(2 + self.kind.fields_len()
            + addr_len(&self.target, "target worker")?
            + addr_len(&self.sender, "sender worker")?
            + self
                .sender_node
                .as_ref()
                .map_or(0, |node| 1 + node.as_str().len())
            + self.shard.map_or(0, |_| 2))
    }

    /// Writes everything but the body; [`header_len`](Self::header_len) must have succeeded.
    pub(crate) fn put_header(&self, buf: &mut BytesMut) {
        let flags = self.sender_node.as_ref().map_or(0, |_| FLAG_SENDER_NODE)
            | self.shard.map_or(0, |_| FLAG_SHARD);
        buf.put_u8(self.kind.code());
        buf.put_u8(flags);
        self.kind.put_fields(buf);
        put_addr(buf, &self.target);
        put_addr(buf, &self.sender);
        if let Some(node) = &self.sender_node {
            put_short_bytes(buf, node.as_message().as_bytes());
        }
        if let Some(shard) = self.shard {
            buf.put_u16(shard);
        }
    }

    /// Reads a header; the body is left empty for the caller to fill.
    pub(crate) fn read_header(r: &mut Reader) -> Result<Self, ProtocolError> {
        let code = r.u8()?;
        let flags = r.u8()?;
        if flags & !(FLAG_SENDER_NODE | FLAG_SHARD) != 0 {
            return Err(ProtocolError::Unknown {
                what: "envelope flags",
                value: flags,
            });
        }
        let kind = Kind::read_fields(code, r)?;
        let target = read_addr(r)?;
        let sender = read_addr(r)?;
        let sender_node = if flags & FLAG_SENDER_NODE != 0 {
            let name = NodeName::from_wire(r.short_bytes()?)
                .ok_or(ProtocolError::Malformed("invalid sender node name"))?;
            Some(name)
        } else {
            None
        };
        let shard = if flags & FLAG_SHARD != 0 {
            Some(r.u16()?)
        } else {
            None
        };
        Ok(Envelope {
            kind,
            target,
            sender,
            sender_node,
            shard,
            body: Message::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(env: &Envelope) -> Envelope {
        let mut buf = BytesMut::new();
        env.put_header(&mut buf);
        assert_eq!(buf.len(), env.header_len().unwrap());
        let mut r = Reader::new(buf.freeze());
        let back = Envelope::read_header(&mut r).unwrap();
        assert!(r.is_empty());
        back
    }

    #[test]
    fn every_kind_and_field_round_trips() {
        let mut kinds = vec![
            Kind::Send,
            Kind::Heartbeat,
            Kind::Ask { id: 7 },
            Kind::ReplyOk { id: u64::MAX },
        ];
        kinds.extend(
            ErrorCode::ALL
                .iter()
                .map(|&code| Kind::ReplyErr { id: 1, code }),
        );
        kinds.extend(ControlOp::ALL.iter().map(|&op| Kind::Control { id: 2, op }));
        kinds.push(Kind::Credit { bytes: u32::MAX });
        kinds.extend(
            ErrorCode::ALL
                .iter()
                .map(|&code| Kind::Undeliverable { count: 3, code }),
        );
        for kind in kinds {
            let bare = Envelope::new(kind, None, "");
            assert_eq!(round_trip(&bare), bare);
            let full = Envelope::new(kind, Some("greeter".into()), "")
                .with_sender(WorkerAddr::Id(42))
                .with_sender_node(NodeName::new("node-a").unwrap())
                .with_shard(3);
            assert_eq!(round_trip(&full), full);
            let by_ref = WorkerAddr::Ref(WireRef {
                shard: 0xfffe,
                index: u32::MAX,
                generation: 7,
            });
            let refs = Envelope::new(kind, Some(by_ref.clone()), "").with_sender(by_ref);
            assert_eq!(refs.header_len().unwrap(), 2 + kind.fields_len() + 22);
            assert_eq!(round_trip(&refs), refs);
        }
    }

    #[test]
    fn a_bare_send_header_is_four_bytes() {
        assert_eq!(Envelope::new(Kind::Send, None, "").header_len().unwrap(), 4);
    }

    #[test]
    fn bad_worker_names_are_refused_before_encoding() {
        let long = Envelope::new(
            Kind::Send,
            Some(WorkerAddr::from("x".repeat(256).as_str())),
            "",
        );
        assert_eq!(
            long.header_len(),
            Err(EncodeError::BadName {
                field: "target worker",
                len: 256
            })
        );
        let empty = Envelope::new(Kind::Send, None, "").with_sender("".into());
        assert_eq!(
            empty.header_len(),
            Err(EncodeError::BadName {
                field: "sender worker",
                len: 0
            })
        );
    }

    #[test]
    fn unknown_codes_are_errors() {
        let cases: [(&[u8], &str); 7] = [
            (&[9, 0, 0, 0], "envelope kind"),
            (&[7, 0, 0, 0], "envelope kind"),
            (&[1, 4, 0, 0], "envelope flags"),
            (&[1, 0, 4, 0], "address tag"),
            (&[4, 0, 0, 0, 0, 0, 0, 0, 0, 1, 99, 0, 0], "error code"),
            (
                &[6, 0, 0, 0, 0, 0, 0, 0, 0, 1, 99, 0, 0],
                "control operation",
            ),
            (&[17, 0, 0, 0, 0, 1, 99, 0, 0], "error code"),
        ];
        for (bytes, what) in cases {
            let err = Envelope::read_header(&mut Reader::new(bytes::Bytes::from_static(bytes)))
                .unwrap_err();
            assert!(
                matches!(err, ProtocolError::Unknown { what: w, .. } if w == what),
                "{err:?}"
            );
        }
    }

    #[test]
    fn flow_control_fields_cut_short_are_errors() {
        for bytes in [&[16, 0, 0, 0, 1][..], &[17, 0, 0, 0, 0, 1], &[16, 0]] {
            let err = Envelope::read_header(&mut Reader::new(bytes::Bytes::from_static(bytes)))
                .unwrap_err();
            assert_eq!(err, ProtocolError::Truncated, "{bytes:?}");
        }
    }

    #[test]
    fn bad_names_on_the_wire_are_errors() {
        let cases: [(&[u8], ProtocolError); 5] = [
            (
                &[1, 0, 1, 0, 0],
                ProtocolError::Malformed("empty worker name"),
            ),
            (
                &[1, 0, 1, 1, 0xff, 0],
                ProtocolError::InvalidUtf8("worker name"),
            ),
            (
                &[1, 1, 0, 0, 1, b'/'],
                ProtocolError::Malformed("invalid sender node name"),
            ),
            (&[1, 0, 1, 5, b'a'], ProtocolError::Truncated),
            (
                &[1, 0, 3, 0, 1, 0, 0, 0, 2, 0, 0, 0],
                ProtocolError::Truncated,
            ),
        ];
        for (bytes, want) in cases {
            let got = Envelope::read_header(&mut Reader::new(bytes::Bytes::from_static(bytes)));
            assert_eq!(got, Err(want));
        }
    }
}
