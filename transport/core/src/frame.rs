//! Link framing: every message on a link, handshake or data, is a big-endian
//! `u16` length followed by that many bytes of one Noise message.
//!
//! `FrameReader` cuts an arbitrarily split TCP byte stream back into frames;
//! `write_frame` appends one. Its buffer never holds more than the driver fed
//! it, and a frame is at most 65,535 bytes, so no peer-claimed length can make
//! it allocate more.

use bytes::{Buf, BufMut, BytesMut};

/// Size of the length prefix in front of every frame.
pub const LEN_PREFIX: usize = 2;

/// The largest Noise message, and so the largest frame body.
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;

/// Size of the ChaCha20-Poly1305 tag at the end of every encrypted frame.
pub const TAG_LEN: usize = 16;

/// The most plaintext one data frame carries.
pub const MAX_FRAME_PLAINTEXT: usize = MAX_FRAME_LEN - TAG_LEN;

/// Reassembles frames from a byte stream split at arbitrary points.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    /// Appends bytes read from the stream.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The body of the next complete frame, if one has fully arrived.
    pub(crate) fn next_frame(&mut self) -> Option<BytesMut> {
        let len = usize::from(u16::from_be_bytes(
            self.buf.get(..LEN_PREFIX)?.try_into().ok()?,
        ));
        if self.buf.len() < LEN_PREFIX + len {
            return None;
        }
        self.buf.advance(LEN_PREFIX);
        Some(self.buf.split_to(len))
    }

    /// Everything buffered but not yet returned as a frame.
    pub(crate) fn take_rest(&mut self) -> BytesMut {
        self.buf.split()
    }

    /// Bytes buffered but not yet returned as frames.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Appends one frame to `out`: `fill` writes the body into a buffer of
/// `max_len` bytes (at most [`MAX_FRAME_LEN`]) and returns how many it used.
pub(crate) fn write_frame<E>(
    out: &mut BytesMut,
    max_len: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
) -> Result<(), E> {
    let start = out.len();
    out.reserve(LEN_PREFIX + max_len);
    out.put_u16(0);
    out.resize(start + LEN_PREFIX + max_len, 0);
    match fill(&mut out[start + LEN_PREFIX..]) {
        Ok(len) => {
            let prefix = u16::try_from(len).expect("a Noise message fits in 65535 bytes");
            out.truncate(start + LEN_PREFIX + len);
            out[start..start + LEN_PREFIX].copy_from_slice(&prefix.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split_of_the_stream() {
        let mut stream = BytesMut::new();
        for body in [&b"hello"[..], b"", b"world!"] {
            write_frame(&mut stream, body.len(), |buf| {
                buf.copy_from_slice(body);
                Ok::<_, ()>(body.len())
            })
            .unwrap();
        }
        assert_eq!(&stream[..7], b"\x00\x05hello");
        for split in 0..=stream.len() {
            let mut reader = FrameReader::default();
            let mut frames = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                reader.push(part);
                while let Some(frame) = reader.next_frame() {
                    frames.push(frame);
                }
            }
            assert_eq!(frames, [&b"hello"[..], b"", b"world!"]);
            assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn a_failed_fill_leaves_the_output_untouched() {
        let mut out = BytesMut::from(&b"xy"[..]);
        assert_eq!(write_frame(&mut out, 10, |_| Err("no")), Err("no"));
        assert_eq!(&out[..], b"xy");
    }
}
