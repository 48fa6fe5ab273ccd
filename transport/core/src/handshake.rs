//! The Noise handshake that opens a link, as a state machine over bytes.
//!
//! Pattern `Noise_XXpsk3_25519_ChaChaPoly_SHA256` when the zone has a secret,
//! `Noise_XX_25519_ChaChaPoly_SHA256` otherwise. The prologue binds the
//! handshake generation and the zone name; the encrypted payloads of messages
//! 2 and 3 carry each side's node name, protocol version range, maximum
//! message size, shard and incarnation. After message 3 the responder sends
//! one empty encrypted frame, so the initiator learns that it was accepted
//! (a wrong zone secret only shows at message 3) before it sends anything.
//!
//! ```text
//! initiator                          responder
//!   msg1: e                    ->
//!                              <-    msg2: e, ee, s, es, payload
//!   msg3: s, se, [psk], payload ->   checks zone, pins, version
//!                              <-    confirmation: empty data frame
//!   checks zone, pins, version       (both: Done)
//! ```
//!
//! Nothing from the peer is handed out before [`Step::Done`]: until then only
//! handshake messages are parsed, and the data bytes that follow them wait in
//! the [`Decoder`] that `Done` returns.

use bytes::{BufMut, Bytes, BytesMut};
use snow::params::NoiseParams;
use std::cmp::{max, min};
use std::fmt;
use zeroize::Zeroizing;

use crate::cipher::CipherState;
use crate::codec::{Decoder, Encoder, DEFAULT_MAX_MESSAGE_SIZE};
use crate::crypto::{self, KEY_LEN};
use crate::error::ProtocolError;
use crate::frame::{write_frame, FrameReader, TAG_LEN};
use crate::keys::{PublicKey, StaticKeypair};
use crate::stats::HandshakeFailure;
use crate::wire::{put_short_bytes, Reader};
use crate::zone::{NodeName, ZoneConfig};

/// The newest link protocol version (frames and envelopes) this build speaks:
/// 2 adds worker references (address tag 3) and the watch operations.
pub const PROTOCOL_VERSION: u16 = 2;

/// The oldest link protocol version this build speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// The `(oldest, newest)` versions this build offers.
const VERSIONS: (u16, u16) = (MIN_PROTOCOL_VERSION, PROTOCOL_VERSION);

/// Start of every prologue: the handshake's own format generation. A peer with
/// another one fails the handshake with [`HandshakeError::Decrypt`].
pub const PROLOGUE_PREFIX: &[u8] = b"myriad-noise/1";

/// The Noise protocol name used when the zone has a secret.
pub const PATTERN_WITH_SECRET: &str = "Noise_XXpsk3_25519_ChaChaPoly_SHA256";

/// The Noise protocol name used when the zone has no secret.
pub const PATTERN_WITHOUT_SECRET: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// Length of message 1 without a PSK: the initiator's ephemeral key.
const MSG1_LEN: usize = KEY_LEN;

/// Length of message 1 with a PSK: the ephemeral key and an empty payload's tag.
const MSG1_PSK_LEN: usize = KEY_LEN + TAG_LEN;

/// Room for the Noise tokens around a payload (e, s with its tag, payload tag).
const NOISE_OVERHEAD: usize = KEY_LEN + KEY_LEN + TAG_LEN + TAG_LEN;

/// Why a handshake failed. Every failure closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// A handshake message failed authentication: the peer has another zone
    /// secret or zone name, or is not a Myriad node of this generation.
    #[error(
        "handshake failed to decrypt: the peer has a different zone secret or zone name \
         (or does not speak this protocol)"
    )]
    Decrypt,
    /// Exactly one side has a zone secret (seen by the responder in message 1).
    #[error("{}", if *local_has_secret {
        "this node has a zone secret and the peer has none"
    } else {
        "the peer uses a zone secret and this node has none"
    })]
    SecretMismatch {
        /// True if this node is the one with a secret.
        local_has_secret: bool,
    },
    /// The peer's protocol versions do not overlap ours.
    #[error("peer {name} speaks protocol versions {}..={}; this node speaks {}..={}", theirs.0, theirs.1, ours.0, ours.1)]
    Version {
        /// The peer's node name.
        name: NodeName,
        /// Our `(oldest, newest)` version.
        ours: (u16, u16),
        /// The peer's `(oldest, newest)` version.
        theirs: (u16, u16),
    },
    /// The zone pins public keys and the peer's is not among them.
    #[error("peer {name} has public key {key}, which this zone does not pin")]
    NotPinned {
        /// The name the peer gave.
        name: NodeName,
        /// Its static public key.
        key: PublicKey,
    },
    /// The peer has this node's own static key: the node dialled itself.
    #[error("the peer has this node's own public key: the node connected to itself")]
    SelfConnection,
    /// The peer claims this node's own name with another key: an impostor
    /// (or a second node configured with this node's name).
    #[error("a peer with public key {key} claims this node's own name {name}")]
    OwnName {
        /// This node's name, as the peer claimed it.
        name: NodeName,
        /// The peer's static public key.
        key: PublicKey,
    },
    /// The name the peer claims is bound to another key (the key this node
    /// first saw for that name): an impostor, or the node restarted with a
    /// new key before the zone forgot it (`docs/protocol.md` §9).
    #[error(
        "peer {name} has public key {key}, but that name belongs to the node with key {bound}"
    )]
    NameTaken {
        /// The name the peer claimed.
        name: NodeName,
        /// The peer's static public key.
        key: PublicKey,
        /// The key the name is bound to.
        bound: PublicKey,
    },
    /// A handshake message or payload that does not follow the layout.
    #[error("malformed handshake: {0}")]
    Malformed(&'static str),
    /// A message that has no place at this point of the handshake.
    #[error("unexpected handshake message: {0}")]
    Unexpected(&'static str),
    /// The peer closed the connection before it learned who we are.
    #[error(
        "the peer closed the connection during the handshake (is it in this zone, with a \
         zone secret exactly when this node has one?)"
    )]
    Closed,
    /// The peer closed the connection after seeing our credentials: it does
    /// not accept our zone secret, zone name, public key or versions.
    #[error(
        "the peer closed the connection after receiving our credentials: it does not accept \
         this node's zone secret, public key or protocol version (see its log)"
    )]
    Rejected,
    /// [`Handshake::feed`] was called after the handshake finished or failed.
    #[error("the handshake already finished or failed")]
    Finished,
    /// snow refused the local configuration (a bug, not a peer's doing).
    #[error("Noise setup failed: {0}")]
    Setup(#[source] snow::Error),
}

impl HandshakeError {
    /// The reason this failure is counted under in the metrics.
    pub fn reason(&self) -> HandshakeFailure {
        match self {
            HandshakeError::Decrypt
            | HandshakeError::SecretMismatch { .. }
            | HandshakeError::NotPinned { .. } => HandshakeFailure::Zone,
            HandshakeError::SelfConnection
            | HandshakeError::OwnName { .. }
            | HandshakeError::NameTaken { .. } => HandshakeFailure::Identity,
            HandshakeError::Version { .. } => HandshakeFailure::Version,
            HandshakeError::Malformed(_) | HandshakeError::Unexpected(_) => {
                HandshakeFailure::Malformed
            }
            HandshakeError::Closed => HandshakeFailure::Closed,
            HandshakeError::Rejected => HandshakeFailure::Rejected,
            HandshakeError::Finished | HandshakeError::Setup(_) => HandshakeFailure::Other,
        }
    }
}

/// What this node says about itself in a handshake, and how its links behave.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    node: NodeName,
    keypair: StaticKeypair,
    zone: ZoneConfig,
    shard: u16,
    shards: u16,
    incarnation: u64,
    max_message_size: u32,
    virtual_kinds: Vec<String>,
}

/// The most virtual kinds a node advertises in its handshake.
pub const MAX_ADVERTISED_KINDS: usize = 64;

impl LinkConfig {
    /// Links of node `node`, identified by `keypair`, in `zone`; shard 0 of 1,
    /// incarnation 0, [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub fn new(node: NodeName, keypair: StaticKeypair, zone: ZoneConfig) -> Self {
        LinkConfig {
            node,
            keypair,
            zone,
            shard: 0,
            shards: 1,
            incarnation: 0,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            virtual_kinds: Vec::new(),
        }
    }

    /// The virtual kinds this node registered, advertised to every peer in
    /// the handshake (an extension older peers skip) so that the zone
    /// places keys of these kinds on it. Kinds that are not 1 to 255 bytes,
    /// and all after the first [`MAX_ADVERTISED_KINDS`], are left out.
    pub fn with_virtual_kinds(mut self, kinds: impl IntoIterator<Item = String>) -> Self {
        self.virtual_kinds = kinds
            .into_iter()
            .filter(|k| (1..=255).contains(&k.len()))
            .take(MAX_ADVERTISED_KINDS)
            .collect();
        self
    }

    /// The virtual kinds this node advertises.
    pub fn virtual_kinds(&self) -> &[String] {
        &self.virtual_kinds
    }

    /// Links opened by shard `shard` of a node with `shards` shards.
    pub fn with_shard(mut self, shard: u16, shards: u16) -> Self {
        self.shard = shard;
        self.shards = shards;
        self
    }

    /// A number that changes each time the node starts (say, its start time
    /// in milliseconds), so peers tell a restarted node from the old one.
    pub fn with_incarnation(mut self, incarnation: u64) -> Self {
        self.incarnation = incarnation;
        self
    }

    /// The largest message body this node accepts (and offers to send).
    pub fn with_max_message_size(mut self, max_message_size: u32) -> Self {
        self.max_message_size = max_message_size;
        self
    }

    /// The node's name.
    pub fn node(&self) -> &NodeName {
        &self.node
    }

    /// The node's static keypair.
    pub fn keypair(&self) -> &StaticKeypair {
        &self.keypair
    }

    /// The node's zone.
    pub fn zone(&self) -> &ZoneConfig {
        &self.zone
    }

    /// The largest message body this node accepts.
    pub fn max_message_size(&self) -> u32 {
        self.max_message_size
    }
}

/// What the handshake established about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node name.
    pub name: NodeName,
    /// The peer's static public key (authenticated by the handshake).
    pub public_key: PublicKey,
    /// The protocol version the link speaks: the newest both sides know.
    pub version: u16,
    /// The peer's shard that owns its end of the link.
    pub shard: u16,
    /// How many shards the peer has.
    pub shards: u16,
    /// The peer's incarnation.
    pub incarnation: u64,
    /// The largest message body the peer accepts.
    pub max_message_size: u32,
    /// The virtual kinds the peer registered (empty from a peer that does
    /// not say).
    pub virtual_kinds: Vec<String>,
}

/// A link ready for data.
#[derive(Debug)]
pub struct Established {
    /// Who is on the other end.
    pub peer: PeerInfo,
    /// Encodes outgoing envelopes. Its first [`Encoder::flush`] may already
    /// hold bytes to send (the responder's confirmation).
    pub encoder: Encoder,
    /// Decodes incoming envelopes. It may already hold bytes that followed the
    /// handshake: drain it with [`Decoder::next_envelope`] before reading more.
    pub decoder: Decoder,
}

/// What the driver does next.
#[must_use]
#[derive(Debug)]
pub enum Step {
    /// Write these bytes to the peer, then keep feeding what it sends.
    Send(Bytes),
    /// Nothing to write; feed more bytes from the peer.
    Wait,
    /// The handshake succeeded: flush the encoder, drain the decoder, and run the link.
    Done(Box<Established>),
}

/// The fields of a handshake payload (`docs/protocol.md`, "Handshake payload").
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hello {
    versions: (u16, u16),
    max_message_size: u32,
    incarnation: u64,
    shard: u16,
    shards: u16,
    name: NodeName,
    /// Extension 1 (`EXT_VIRTUAL_KINDS`): the kinds the node registered.
    virtual_kinds: Vec<String>,
}

impl Hello {
    fn encode(&self) -> Bytes {
        let name = self.name.as_message().as_bytes();
        let mut buf = BytesMut::with_capacity(21 + name.len());
        buf.put_u16(self.versions.0);
        buf.put_u16(self.versions.1);
        buf.put_u32(self.max_message_size);
        buf.put_u64(self.incarnation);
        buf.put_u16(self.shard);
        buf.put_u16(self.shards);
        put_short_bytes(&mut buf, name);
        // Only if there are any: a node without virtual kinds sends the
        // payload older nodes send. At most MAX_ADVERTISED_KINDS (64), each
        // 1 to 255 bytes (LinkConfig keeps no other).
        if !self.virtual_kinds.is_empty() {
            let mut body = BytesMut::new();
            body.put_u8(self.virtual_kinds.len().min(MAX_ADVERTISED_KINDS) as u8);
            for kind in self.virtual_kinds.iter().take(MAX_ADVERTISED_KINDS) {
                put_short_bytes(&mut body, kind.as_bytes());
            }
            // At most 1 + 64 × 256 bytes: it fits the u16 length.
            buf.put_u8(EXT_VIRTUAL_KINDS);
            buf.put_u16(body.len() as u16);
            buf.put_slice(&body);
        }
        buf.freeze()
    }

    /// Decodes a payload; bytes after the known fields are ignored, so later
    /// versions can add fields.
    fn decode(payload: Bytes) -> Result<Self, HandshakeError> {
        let truncated = |_| HandshakeError::Malformed("truncated handshake payload");
        let mut r = Reader::new(payload);
        let versions = (r.u16().map_err(truncated)?, r.u16().map_err(truncated)?);
        let max_message_size = r.u32().map_err(truncated)?;
        let incarnation = r.u64().map_err(truncated)?;
        let shard = r.u16().map_err(truncated)?;
        let shards = r.u16().map_err(truncated)?;
        let name = NodeName::from_wire(r.short_bytes().map_err(truncated)?).ok_or(
            HandshakeError::Malformed("invalid node name in the handshake payload"),
        )?;
        if versions.0 > versions.1 {
            return Err(HandshakeError::Malformed("empty protocol version range"));
        }
        // Extensions: tag (u8), length (u16), body. A tag this node does
        // not know, or bytes that are no whole extension (a peer from
        // before extensions had tags), are skipped: the rest is ignored.
        let mut virtual_kinds = Vec::new();
        while !r.is_empty() {
            let (Ok(tag), Ok(len)) = (r.u8(), r.u16()) else {
                break;
            };
            let Ok(body) = r.bytes(usize::from(len)) else {
                break;
            };
            if tag == EXT_VIRTUAL_KINDS {
                virtual_kinds = decode_kinds(body)?;
            }
        }
        Ok(Hello {
            versions,
            max_message_size,
            incarnation,
            shard,
            shards,
            name,
            virtual_kinds,
        })
    }
}

/// The tag of the handshake extension that lists the virtual kinds.
const EXT_VIRTUAL_KINDS: u8 = 1;

/// The body of the virtual-kinds extension: a count (at most
/// [`MAX_ADVERTISED_KINDS`]), then each kind as short bytes of UTF-8.
fn decode_kinds(body: Bytes) -> Result<Vec<String>, HandshakeError> {
    let malformed =
        |_| HandshakeError::Malformed("truncated virtual kinds in the handshake payload");
    let mut r = Reader::new(body);
    let count = r.u8().map_err(malformed)?;
    if usize::from(count) > MAX_ADVERTISED_KINDS {
        return Err(HandshakeError::Malformed(
            "too many virtual kinds in the handshake payload",
        ));
    }
    let mut kinds = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let kind = r.short_bytes().map_err(malformed)?;
        let kind = String::from_utf8(kind.to_vec()).map_err(|_| {
            HandshakeError::Malformed("a virtual kind in the handshake payload is not UTF-8")
        })?;
        kinds.push(kind);
    }
    if !r.is_empty() {
        return Err(HandshakeError::Malformed(
            "bytes after the virtual kinds in the handshake payload",
        ));
    }
    Ok(kinds)
}

/// Where a handshake stands.
enum State {
    /// Responder, before message 1.
    AwaitMsg1(snow::HandshakeState),
    /// Initiator, after sending message 1.
    AwaitMsg2(snow::HandshakeState),
    /// Responder, after sending message 2.
    AwaitMsg3(snow::HandshakeState),
    /// Initiator, after sending message 3: waiting for the confirmation frame.
    AwaitConfirm(Box<Established>),
    /// Done or failed.
    Finished,
}

/// One side of a handshake. Create it with [`initiator`](Self::initiator)
/// (after connecting) or [`responder`](Self::responder) (after accepting) and
/// [`feed`](Self::feed) it everything the peer sends.
pub struct Handshake {
    state: State,
    frames: FrameReader,
    zone: ZoneConfig,
    local_key: PublicKey,
    local_name: NodeName,
    hello: Bytes,
    max_message_size: u32,
}

impl Handshake {
    /// The dialling side. Returns the first message, to write at once.
    pub fn initiator(config: &LinkConfig) -> Result<(Self, Bytes), HandshakeError> {
        let mut noise = build(config, true)?;
        let mut first = BytesMut::new();
        write_noise(&mut noise, &[], &mut first)?;
        Ok((Self::new(config, State::AwaitMsg2(noise)), first.freeze()))
    }

    /// The accepting side.
    pub fn responder(config: &LinkConfig) -> Result<Self, HandshakeError> {
        let noise = build(config, false)?;
        Ok(Self::new(config, State::AwaitMsg1(noise)))
    }

    fn new(config: &LinkConfig, state: State) -> Self {
        let hello = Hello {
            versions: VERSIONS,
            max_message_size: config.max_message_size,
            incarnation: config.incarnation,
            shard: config.shard,
            shards: config.shards,
            name: config.node.clone(),
            virtual_kinds: config.virtual_kinds.clone(),
        };
        Handshake {
            state,
            frames: FrameReader::default(),
            zone: config.zone.clone(),
            local_key: *config.keypair.public_key(),
            local_name: config.node.clone(),
            hello: hello.encode(),
            max_message_size: config.max_message_size,
        }
    }

    /// Takes bytes from the peer, split anywhere. After an error the handshake
    /// is over: close the connection.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Step, HandshakeError> {
        match &mut self.state {
            State::Finished => return Err(HandshakeError::Finished),
            State::AwaitConfirm(link) => link.decoder.feed(bytes),
            _ => self.frames.push(bytes),
        }
        let mut out = BytesMut::new();
        loop {
            // Any early return leaves the state `Finished`: a failure is final.
            self.state = match std::mem::replace(&mut self.state, State::Finished) {
                State::AwaitMsg1(mut noise) => {
                    let Some(msg) = self.frames.next_frame() else {
                        self.state = State::AwaitMsg1(noise);
                        break;
                    };
                    check_msg1_len(msg.len(), self.zone.has_secret())?;
                    read_noise(&mut noise, &msg)?;
                    write_noise(&mut noise, &self.hello, &mut out)?;
                    State::AwaitMsg3(noise)
                }
                State::AwaitMsg2(mut noise) => {
                    let Some(msg) = self.frames.next_frame() else {
                        self.state = State::AwaitMsg2(noise);
                        break;
                    };
                    let payload = read_noise(&mut noise, &msg)?;
                    let peer = self.admit(&noise, payload)?;
                    write_noise(&mut noise, &self.hello, &mut out)?;
                    let (encoder, decoder) = self.split(noise, &peer)?;
                    State::AwaitConfirm(Box::new(Established {
                        peer,
                        encoder,
                        decoder,
                    }))
                }
                State::AwaitMsg3(mut noise) => {
                    let Some(msg) = self.frames.next_frame() else {
                        self.state = State::AwaitMsg3(noise);
                        break;
                    };
                    let payload = read_noise(&mut noise, &msg)?;
                    let peer = self.admit(&noise, payload)?;
                    let (mut encoder, decoder) = self.split(noise, &peer)?;
                    encoder
                        .seal()
                        .expect("a fresh cipher state has nonces to spare");
                    return Ok(done(
                        Box::new(Established {
                            peer,
                            encoder,
                            decoder,
                        }),
                        out,
                    ));
                }
                State::AwaitConfirm(mut link) => match link.decoder.confirmation() {
                    Ok(true) => return Ok(done(link, out)),
                    Ok(false) => {
                        self.state = State::AwaitConfirm(link);
                        break;
                    }
                    Err(ProtocolError::Decrypt) => return Err(HandshakeError::Decrypt),
                    Err(_) => {
                        return Err(HandshakeError::Unexpected(
                            "the confirmation frame must be empty",
                        ))
                    }
                },
                State::Finished => return Err(HandshakeError::Finished),
            };
        }
        Ok(if out.is_empty() {
            Step::Wait
        } else {
            Step::Send(out.freeze())
        })
    }

    /// Tells the handshake that the peer closed the connection (EOF), and
    /// returns the error that explains it best. The handshake is over.
    pub fn peer_closed(&mut self) -> HandshakeError {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::AwaitMsg1(_) | State::AwaitMsg2(_) => HandshakeError::Closed,
            State::AwaitMsg3(_) | State::AwaitConfirm(_) => HandshakeError::Rejected,
            State::Finished => HandshakeError::Finished,
        }
    }

    /// Where the handshake stands, for logs.
    fn stage(&self) -> &'static str {
        match self.state {
            State::AwaitMsg1(_) => "awaiting message 1",
            State::AwaitMsg2(_) => "awaiting message 2",
            State::AwaitMsg3(_) => "awaiting message 3",
            State::AwaitConfirm(_) => "awaiting the confirmation",
            State::Finished => "finished",
        }
    }

    /// Checks the peer's static key and payload against this node's zone.
    fn admit(
        &self,
        noise: &snow::HandshakeState,
        payload: Bytes,
    ) -> Result<PeerInfo, HandshakeError> {
        let key = noise
            .get_remote_static()
            .and_then(|key| <[u8; KEY_LEN]>::try_from(key).ok())
            .map(PublicKey::from_bytes)
            .ok_or(HandshakeError::Malformed("no static key"))?;
        let hello = Hello::decode(payload)?;
        if key == self.local_key {
            return Err(HandshakeError::SelfConnection);
        }
        if hello.name == self.local_name {
            return Err(HandshakeError::OwnName {
                name: hello.name,
                key,
            });
        }
        if !self.zone.admits(&key) {
            return Err(HandshakeError::NotPinned {
                name: hello.name,
                key,
            });
        }
        let oldest = max(VERSIONS.0, hello.versions.0);
        let newest = min(VERSIONS.1, hello.versions.1);
        if oldest > newest {
            return Err(HandshakeError::Version {
                name: hello.name,
                ours: VERSIONS,
                theirs: hello.versions,
            });
        }
        Ok(PeerInfo {
            name: hello.name,
            public_key: key,
            version: newest,
            shard: hello.shard,
            shards: hello.shards,
            incarnation: hello.incarnation,
            max_message_size: hello.max_message_size,
            virtual_kinds: hello.virtual_kinds,
        })
    }

    /// Turns the finished Noise state into the link's encoder and decoder; the
    /// bytes that followed the last handshake message go to the decoder.
    fn split(
        &mut self,
        mut noise: snow::HandshakeState,
        peer: &PeerInfo,
    ) -> Result<(Encoder, Decoder), HandshakeError> {
        if !noise.is_handshake_finished() {
            return Err(HandshakeError::Malformed("the handshake is not finished"));
        }
        // Noise's Split(): the first key encrypts initiator-to-responder traffic.
        let (first, second) = noise.dangerously_get_raw_split();
        let (first, second) = (Zeroizing::new(first), Zeroizing::new(second));
        let (send, receive) = if noise.is_initiator() {
            (first, second)
        } else {
            (second, first)
        };
        let encoder = Encoder::new(
            CipherState::new(send),
            min(self.max_message_size, peer.max_message_size),
        );
        let mut decoder = Decoder::new(CipherState::new(receive), self.max_message_size);
        decoder.feed(&self.frames.take_rest());
        Ok((encoder, decoder))
    }
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("stage", &self.stage())
            .field("zone", &self.zone.name())
            .finish_non_exhaustive()
    }
}

/// Completes a handshake; `out` (handshake bytes not yet handed to the
/// driver) goes out before anything the encoder holds.
fn done(mut link: Box<Established>, out: BytesMut) -> Step {
    if !out.is_empty() {
        link.encoder.prepend(out);
    }
    Step::Done(link)
}

/// The prologue: [`PROLOGUE_PREFIX`], the zone name's length as one byte, the zone name.
fn prologue(zone: &str) -> Vec<u8> {
    let mut prologue = BytesMut::with_capacity(PROLOGUE_PREFIX.len() + 1 + zone.len());
    prologue.put_slice(PROLOGUE_PREFIX);
    put_short_bytes(&mut prologue, zone.as_bytes());
    prologue.to_vec()
}

fn build(config: &LinkConfig, initiator: bool) -> Result<snow::HandshakeState, HandshakeError> {
    let pattern = if config.zone.has_secret() {
        PATTERN_WITH_SECRET
    } else {
        PATTERN_WITHOUT_SECRET
    };
    let params: NoiseParams = pattern.parse().map_err(HandshakeError::Setup)?;
    let prologue = prologue(config.zone.name());
    let mut builder = crypto::builder(params)
        .local_private_key(config.keypair.private_bytes())
        .and_then(|b| b.prologue(&prologue))
        .map_err(HandshakeError::Setup)?;
    if let Some(psk) = config.zone.psk() {
        builder = builder.psk(3, psk).map_err(HandshakeError::Setup)?;
    }
    let noise = if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    };
    noise.map_err(HandshakeError::Setup)
}

/// Message 1 is a bare ephemeral key, plus the tag of its empty payload when
/// the pattern has a PSK: its length tells whether the initiator has a secret.
fn check_msg1_len(len: usize, local_has_secret: bool) -> Result<(), HandshakeError> {
    match (len, local_has_secret) {
        (MSG1_LEN, false) | (MSG1_PSK_LEN, true) => Ok(()),
        (MSG1_PSK_LEN, false) | (MSG1_LEN, true) => {
            Err(HandshakeError::SecretMismatch { local_has_secret })
        }
        _ => Err(HandshakeError::Malformed("message 1 has the wrong length")),
    }
}

/// Reads one handshake message; returns its (decrypted) payload.
fn read_noise(noise: &mut snow::HandshakeState, msg: &[u8]) -> Result<Bytes, HandshakeError> {
    let mut payload = vec![0; msg.len()];
    let len = noise.read_message(msg, &mut payload).map_err(|e| match e {
        snow::Error::Decrypt => HandshakeError::Decrypt,
        _ => HandshakeError::Malformed("a handshake message has the wrong length"),
    })?;
    payload.truncate(len);
    Ok(Bytes::from(payload))
}

/// Appends one handshake message carrying `payload` as a frame to `out`.
fn write_noise(
    noise: &mut snow::HandshakeState,
    payload: &[u8],
    out: &mut BytesMut,
) -> Result<(), HandshakeError> {
    write_frame(out, payload.len() + NOISE_OVERHEAD, |buf| {
        noise.write_message(payload, buf)
    })
    .map_err(HandshakeError::Setup)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(kinds: &[&str]) -> Hello {
        Hello {
            versions: VERSIONS,
            max_message_size: 1000,
            incarnation: 7,
            shard: 1,
            shards: 2,
            name: NodeName::new("a").unwrap(),
            virtual_kinds: kinds.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn the_virtual_kinds_round_trip_and_a_payload_without_them_means_none() {
        let with = hello(&["agent", "cart"]);
        assert_eq!(Hello::decode(with.encode()).unwrap(), with);
        // No kinds: the payload ends after the name, as before the field.
        let without = hello(&[]);
        let old = without.encode();
        assert_eq!(old.len(), 21 + 1, "nothing after the one-byte name");
        assert_eq!(Hello::decode(old).unwrap(), without);
    }

    #[test]
    fn too_many_or_truncated_virtual_kinds_are_malformed_and_other_extensions_ignored() {
        let base = hello(&[]).encode().to_vec();
        let with = |ext: &[u8]| {
            let mut payload = base.clone();
            payload.extend_from_slice(ext);
            Hello::decode(Bytes::from(payload))
        };
        let malformed =
            |r: Result<Hello, HandshakeError>| matches!(r, Err(HandshakeError::Malformed(_)));
        assert!(malformed(with(&[EXT_VIRTUAL_KINDS, 0, 1, 65])), "65 kinds");
        assert!(
            malformed(with(&[EXT_VIRTUAL_KINDS, 0, 2, 1, 3])),
            "a kind cut short"
        );
        assert!(
            malformed(with(&[EXT_VIRTUAL_KINDS, 0, 3, 1, 1, 0xff])),
            "not UTF-8"
        );
        // Another tag, then the kinds: the first is skipped.
        let kinds = with(&[9, 0, 2, 7, 7, EXT_VIRTUAL_KINDS, 0, 3, 1, 1, b'k']).unwrap();
        assert_eq!(kinds.virtual_kinds, ["k"]);
        // Bytes that are no whole extension are ignored.
        assert!(with(b"future fields").unwrap().virtual_kinds.is_empty());
    }
}
