//! The data phase of a link: [`Encoder`] packs envelopes into encrypted frames,
//! [`Decoder`] turns the received byte stream back into envelopes.
//!
//! A frame's plaintext is a sequence of records. Small envelopes are packed
//! many to a frame (one AEAD operation and one length prefix for hundreds of
//! messages: this is where the throughput comes from). An envelope too big for
//! one frame is split into a *first* fragment and *next* fragments that follow
//! it in order, in the same or later frames; the receiver reassembles it.
//!
//! Both sides enforce a maximum message size. The encoder refuses an oversized
//! envelope with [`EncodeError::TooLarge`] and stays usable; a peer that sends
//! one gets [`ProtocolError::TooLarge`], like every other violation: the
//! decoder fails for good and the link is closed.
//!
//! Frames are decrypted in place in the receive buffer, and decoded bodies and
//! names are zero-copy slices of it (a reassembled body is one copy). So a body
//! keeps its part of the receive buffer alive: a consumer that holds messages
//! for long may prefer to copy small ones.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use myriad_engine::Message;

use crate::cipher::CipherState;
use crate::envelope::Envelope;
use crate::frame::{FrameReader, LEN_PREFIX, MAX_FRAME_LEN, MAX_FRAME_PLAINTEXT, TAG_LEN};
use crate::stats::{LinkStats, Traffic};
use crate::wire::Reader;

pub use crate::error::{EncodeError, ProtocolError};

/// The default maximum message (body) size: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 16 << 20;

/// A whole envelope: header, `u16` body length, body.
const RECORD_WHOLE: u8 = 1;
/// The start of a fragmented envelope: header, `u32` total body length,
/// `u16` chunk length, chunk.
const RECORD_FIRST: u8 = 2;
/// More of the fragmented envelope in progress: `u16` chunk length, chunk.
const RECORD_NEXT: u8 = 3;

/// A reassembly buffer is allocated up front for messages up to this size
/// (already checked against the limit); beyond it, it grows as data arrives.
const REASSEMBLY_RESERVE: usize = 1 << 20;

/// Overhead of a whole-envelope record besides the header: type byte and `u16` length.
const WHOLE_OVERHEAD: usize = 1 + 2;
/// Overhead of a first-fragment record besides the header: type, `u32` total, `u16` chunk.
const FIRST_OVERHEAD: usize = 1 + 4 + 2;
/// Overhead of a next-fragment record: type and `u16` chunk length.
const NEXT_OVERHEAD: usize = 1 + 2;

/// Packs envelopes into encrypted frames for one direction of a link.
///
/// [`push`](Self::push) appends an envelope to the frame being filled and seals
/// frames as they fill up; [`flush`](Self::flush) seals the partial frame and
/// hands over every sealed byte, ready to write to the socket in order.
/// Records are written straight into the output buffer and encrypted there.
pub struct Encoder {
    cipher: CipherState,
    /// Sealed frames, then the frame being filled (if `open`): its length
    /// prefix, still zero, and its plaintext so far.
    out: BytesMut,
    /// Where the frame being filled starts in `out`.
    open: Option<usize>,
    max_message_size: u32,
    traffic: Traffic,
    failed: bool,
}

impl Encoder {
    /// An encoder whose bodies may be at most `max_message_size` bytes.
    pub(crate) fn new(cipher: CipherState, max_message_size: u32) -> Self {
        Encoder {
            cipher,
            out: BytesMut::new(),
            open: None,
            max_message_size,
            traffic: Traffic::default(),
            failed: false,
        }
    }

    /// Queues `envelope`. Checks it first: on `TooLarge` or `BadName` nothing
    /// is queued and the encoder stays usable.
    pub fn push(&mut self, envelope: &Envelope) -> Result<(), EncodeError> {
        if self.failed {
            return Err(EncodeError::Crypto);
        }
        let header = envelope.header_len()?;
        let body = envelope.body.as_bytes();
        if body.len() > self.max_message_size as usize {
            return Err(EncodeError::TooLarge {
                size: body.len(),
                max: self.max_message_size,
            });
        }
        let whole = WHOLE_OVERHEAD + header + body.len();
        if whole <= MAX_FRAME_PLAINTEXT {
            self.reserve(whole)?;
            self.out.put_u8(RECORD_WHOLE);
            envelope.put_header(&mut self.out);
            self.put_chunk(body);
        } else {
            self.reserve(FIRST_OVERHEAD + header + 1)?;
            let chunk = body.len().min(self.space() - FIRST_OVERHEAD - header);
            self.out.put_u8(RECORD_FIRST);
            envelope.put_header(&mut self.out);
            let total = u32::try_from(body.len()).expect("bounded by max_message_size");
            self.out.put_u32(total);
            let mut rest = body.slice(..);
            self.put_chunk(&rest.split_to(chunk));
            while !rest.is_empty() {
                self.reserve(NEXT_OVERHEAD + 1)?;
                let chunk = rest.len().min(self.space() - NEXT_OVERHEAD);
                self.out.put_u8(RECORD_NEXT);
                self.put_chunk(&rest.split_to(chunk));
            }
        }
        self.traffic.envelopes += 1;
        Ok(())
    }

    /// Seals the partly filled frame, if any, and returns every sealed byte
    /// not handed out yet (empty if there is nothing to send).
    pub fn flush(&mut self) -> Result<Bytes, EncodeError> {
        if self.open.is_some() {
            self.seal()?;
        }
        Ok(self.out.split().freeze())
    }

    /// Plaintext bytes queued in the frame being filled.
    pub fn pending_len(&self) -> usize {
        self.open
            .map_or(0, |start| self.out.len() - start - LEN_PREFIX)
    }

    /// Sealed bytes waiting for [`flush`](Self::flush): with `pending_len`,
    /// what a driver bounds to apply backpressure.
    pub fn buffered_len(&self) -> usize {
        self.open.unwrap_or(self.out.len())
    }

    /// The largest body this encoder accepts.
    pub fn max_message_size(&self) -> u32 {
        self.max_message_size
    }

    /// What this encoder has sent so far (bytes and frames once sealed).
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Places `bytes` in front of everything sealed so far (handshake output
    /// that must reach the peer before the first frame).
    pub(crate) fn prepend(&mut self, mut bytes: BytesMut) {
        bytes.extend_from_slice(&self.out);
        self.open = self.open.map(|start| start + bytes.len() - self.out.len());
        self.out = bytes;
    }

    /// Seals the frame being filled, or an empty one if none is (an empty
    /// frame is the responder's handshake confirmation).
    pub(crate) fn seal(&mut self) -> Result<(), EncodeError> {
        self.begin();
        let start = self.open.take().expect("begin opened a frame");
        let sealed = self.cipher.seal(&mut self.out[start + LEN_PREFIX..]);
        let Ok(tag) = sealed else {
            self.failed = true;
            self.out.truncate(start);
            return Err(EncodeError::Crypto);
        };
        self.out.extend_from_slice(tag.as_ref());
        let len = self.out.len() - start - LEN_PREFIX;
        let prefix = u16::try_from(len).expect("a frame is at most 65535 bytes");
        self.out[start..start + LEN_PREFIX].copy_from_slice(&prefix.to_be_bytes());
        self.traffic.bytes += (LEN_PREFIX + len) as u64;
        self.traffic.frames += 1;
        Ok(())
    }

    /// Opens a frame at the end of `out` unless one is open, with room for a
    /// whole frame so filling it never reallocates.
    fn begin(&mut self) {
        if self.open.is_none() {
            self.out.reserve(LEN_PREFIX + MAX_FRAME_LEN);
            self.open = Some(self.out.len());
            self.out.put_u16(0);
        }
    }

    fn space(&self) -> usize {
        MAX_FRAME_PLAINTEXT - self.pending_len()
    }

    /// Makes room for `len` more plaintext bytes (at most a frame's worth):
    /// seals the current frame if they do not fit, and opens one.
    fn reserve(&mut self, len: usize) -> Result<(), EncodeError> {
        if len > self.space() {
            self.seal()?;
        }
        self.begin();
        Ok(())
    }

    /// Appends a `u16` length and `chunk` (at most a frame's worth).
    fn put_chunk(&mut self, chunk: &[u8]) {
        let len = u16::try_from(chunk.len()).expect("a chunk fits in a frame");
        self.out.put_u16(len);
        self.out.put_slice(chunk);
    }
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("pending_len", &self.pending_len())
            .field("buffered_len", &self.buffered_len())
            .field("max_message_size", &self.max_message_size)
            .field("traffic", &self.traffic)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// An envelope whose body is arriving in fragments.
struct Partial {
    envelope: Envelope,
    body: BytesMut,
    total: usize,
}

/// Turns the byte stream received on a link back into envelopes.
///
/// [`feed`](Self::feed) it whatever the socket returned, split anywhere, then
/// call [`next_envelope`](Self::next_envelope) until it returns `Ok(None)`.
/// After an error it keeps returning that error: close the link.
pub struct Decoder {
    cipher: CipherState,
    frames: FrameReader,
    /// The undecoded rest of the current frame's plaintext.
    current: Reader,
    partial: Option<Partial>,
    max_message_size: u32,
    traffic: Traffic,
    error: Option<ProtocolError>,
}

impl Decoder {
    /// A decoder that accepts bodies of at most `max_message_size` bytes.
    pub(crate) fn new(cipher: CipherState, max_message_size: u32) -> Self {
        Decoder {
            cipher,
            frames: FrameReader::default(),
            current: Reader::default(),
            partial: None,
            max_message_size,
            traffic: Traffic::default(),
            error: None,
        }
    }

    /// Buffers bytes read from the socket (ignored once the decoder has failed).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            self.frames.push(bytes);
            self.traffic.bytes += bytes.len() as u64;
        }
    }

    /// The next complete envelope, `Ok(None)` if more bytes are needed, or the
    /// protocol violation that ended this link.
    pub fn next_envelope(&mut self) -> Result<Option<Envelope>, ProtocolError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let next = self.decode();
        if let Err(error) = &next {
            self.error = Some(error.clone());
        }
        next
    }

    /// Received bytes not yet decrypted: what a driver bounds to stop reading.
    pub fn buffered_len(&self) -> usize {
        self.frames.buffered()
    }

    /// What this decoder has received so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// The error that ended this link, if any.
    pub fn error(&self) -> Option<&ProtocolError> {
        self.error.as_ref()
    }

    /// Opens the first frame from the responder, which must be empty: it
    /// proves the responder accepted the handshake. `Ok(false)` if it has not
    /// fully arrived yet.
    pub(crate) fn confirmation(&mut self) -> Result<bool, ProtocolError> {
        let Some(frame) = self.frames.next_frame() else {
            return Ok(false);
        };
        self.open(frame)?;
        if self.current.is_empty() {
            Ok(true)
        } else {
            Err(ProtocolError::Malformed(
                "the handshake confirmation frame must be empty",
            ))
        }
    }

    fn decode(&mut self) -> Result<Option<Envelope>, ProtocolError> {
        loop {
            if self.current.is_empty() {
                match self.frames.next_frame() {
                    Some(frame) => self.open(frame)?,
                    None => return Ok(None),
                }
            } else if let Some(envelope) = self.record()? {
                self.traffic.envelopes += 1;
                return Ok(Some(envelope));
            }
        }
    }

    /// Decrypts one frame, in place, into `current`.
    fn open(&mut self, mut frame: BytesMut) -> Result<(), ProtocolError> {
        if frame.len() < TAG_LEN {
            return Err(ProtocolError::ShortFrame(frame.len()));
        }
        let len = self
            .cipher
            .open(&mut frame)
            .map_err(|_| ProtocolError::Decrypt)?;
        frame.truncate(len);
        self.traffic.frames += 1;
        self.current = Reader::new(frame.freeze());
        Ok(())
    }

    /// Decodes one record of `current`; an envelope if it completes one.
    fn record(&mut self) -> Result<Option<Envelope>, ProtocolError> {
        match self.current.u8()? {
            RECORD_WHOLE => {
                self.no_partial()?;
                let mut envelope = Envelope::read_header(&mut self.current)?;
                let len = self.current.u16()?;
                self.check_size(u64::from(len))?;
                envelope.body = body_text(self.current.bytes(usize::from(len))?)?;
                Ok(Some(envelope))
            }
            RECORD_FIRST => {
                self.no_partial()?;
                let envelope = Envelope::read_header(&mut self.current)?;
                let total = self.current.u32()?;
                self.check_size(u64::from(total))?;
                let total = total as usize;
                let partial = Partial {
                    envelope,
                    body: BytesMut::with_capacity(total.min(REASSEMBLY_RESERVE)),
                    total,
                };
                self.next_chunk(partial)
            }
            RECORD_NEXT => {
                let partial = self.partial.take().ok_or(ProtocolError::Malformed(
                    "a fragment continues no fragmented message",
                ))?;
                self.next_chunk(partial)
            }
            value => Err(ProtocolError::Unknown {
                what: "record type",
                value,
            }),
        }
    }

    /// Reads a `u16`-prefixed chunk of `partial`'s body; returns the envelope
    /// once the body is complete.
    fn next_chunk(&mut self, mut partial: Partial) -> Result<Option<Envelope>, ProtocolError> {
        let chunk = self.current.u16().map(usize::from)?;
        if chunk == 0 || chunk > partial.total - partial.body.len() {
            return Err(ProtocolError::Malformed(
                "a fragment is empty or longer than the rest of its message",
            ));
        }
        partial.body.extend_from_slice(&self.current.bytes(chunk)?);
        if partial.body.len() < partial.total {
            self.partial = Some(partial);
            return Ok(None);
        }
        let mut envelope = partial.envelope;
        envelope.body = body_text(partial.body.freeze())?;
        Ok(Some(envelope))
    }

    fn no_partial(&self) -> Result<(), ProtocolError> {
        match self.partial {
            Some(_) => Err(ProtocolError::Malformed(
                "a new message began before the fragmented one ended",
            )),
            None => Ok(()),
        }
    }

    /// Refuses a body larger than this node accepts, before reading it.
    fn check_size(&self, size: u64) -> Result<(), ProtocolError> {
        if size > u64::from(self.max_message_size) {
            return Err(ProtocolError::TooLarge {
                size,
                max: self.max_message_size,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("buffered_len", &self.buffered_len())
            .field("reassembling", &self.partial.is_some())
            .field("max_message_size", &self.max_message_size)
            .field("traffic", &self.traffic)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

fn body_text(body: Bytes) -> Result<Message, ProtocolError> {
    Message::from_utf8(body).map_err(|_| ProtocolError::InvalidUtf8("message body"))
}

impl LinkStats {
    /// The statistics of the link served by `encoder` and `decoder`.
    pub fn of(encoder: &Encoder, decoder: &Decoder) -> Self {
        let error = decoder.error();
        LinkStats {
            sent: encoder.traffic(),
            received: decoder.traffic(),
            decrypt_failures: u64::from(matches!(error, Some(ProtocolError::Decrypt))),
            protocol_errors: u64::from(matches!(error, Some(e) if *e != ProtocolError::Decrypt)),
            ..LinkStats::default()
        }
    }
}
