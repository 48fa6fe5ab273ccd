//! Bounds-checked big-endian reading of peer-supplied buffers, shared by the
//! handshake payload and the envelope decoder. Every read either succeeds or
//! reports [`Truncated`]; nothing here can panic or index out of bounds.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A read ran past the end of its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated;

/// A cursor over received bytes; slices it returns share the buffer (no copy).
#[derive(Debug, Default)]
pub(crate) struct Reader(Bytes);

impl Reader {
    /// A cursor at the start of `bytes`.
    pub(crate) fn new(bytes: Bytes) -> Self {
        Reader(bytes)
    }

    /// True if everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let head: [u8; N] = self
            .0
            .get(..N)
            .and_then(|head| head.try_into().ok())
            .ok_or(Truncated)?;
        self.0.advance(N);
        Ok(head)
    }

    /// The next byte.
    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        self.array::<1>().map(|[b]| b)
    }

    /// The next big-endian `u16`.
    pub(crate) fn u16(&mut self) -> Result<u16, Truncated> {
        self.array().map(u16::from_be_bytes)
    }

    /// The next big-endian `u32`.
    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        self.array().map(u32::from_be_bytes)
    }

    /// The next big-endian `u64`.
    pub(crate) fn u64(&mut self) -> Result<u64, Truncated> {
        self.array().map(u64::from_be_bytes)
    }

    /// The next `len` bytes, sharing the underlying buffer.
    pub(crate) fn bytes(&mut self, len: usize) -> Result<Bytes, Truncated> {
        if len > self.0.len() {
            return Err(Truncated);
        }
        Ok(self.0.split_to(len))
    }

    /// A `u8` length followed by that many bytes.
    pub(crate) fn short_bytes(&mut self) -> Result<Bytes, Truncated> {
        let len = self.u8()?;
        self.bytes(usize::from(len))
    }
}

/// Appends a `u8` length and `bytes`, which must be at most 255 bytes long.
pub(crate) fn put_short_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    let len = u8::try_from(bytes.len()).expect("caller checked the length");
    buf.put_u8(len);
    buf.put_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_fields_and_stops_at_the_end() {
        let mut r = Reader::new(Bytes::from_static(&[
            1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 2, b'h', b'i', 9,
        ]));
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.u64(), Ok(4));
        assert_eq!(r.short_bytes().unwrap(), &b"hi"[..]);
        assert_eq!(r.u16(), Err(Truncated));
        assert_eq!(r.bytes(2), Err(Truncated));
        assert_eq!(r.u8(), Ok(9));
        assert!(r.is_empty());
        assert_eq!(r.u8(), Err(Truncated));
        assert_eq!(
            Reader::new(Bytes::from_static(&[3, b'a'])).short_bytes(),
            Err(Truncated)
        );
    }
}
