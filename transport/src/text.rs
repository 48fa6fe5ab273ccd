//! [`Text`]: UTF-8 held in `bytes::Bytes`, so message bodies and names decoded
//! from a frame are zero-copy slices of it, validated exactly once.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// Immutable UTF-8 text in a reference-counted buffer. Cloning is cheap.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(Bytes);

impl Text {
    /// Text from a static string, without copying it.
    pub const fn from_static(text: &'static str) -> Self {
        Text(Bytes::from_static(text.as_bytes()))
    }

    /// Validates `bytes` as UTF-8; gives them back if they are not.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, Bytes> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Text(bytes)),
            Err(_) => Err(bytes),
        }
    }

    /// The text.
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor takes a `str`/`String` or validates the
        // bytes with `std::str::from_utf8`, and `Bytes` is immutable, so the
        // contents stay valid UTF-8 for the whole life of the value.
        // Re-validating here would make every read O(len).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying UTF-8 bytes, without a copy.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The underlying UTF-8 bytes, without a copy.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text(Bytes::from(text))
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_utf8_is_kept_without_copying() {
        let bytes = Bytes::from("héllo wörld");
        let text = Text::from_utf8(bytes.slice(0..6)).unwrap();
        assert_eq!(text.as_str(), "héllo");
        assert_eq!(text.as_bytes().as_ptr(), bytes.as_ptr());
        assert_eq!(format!("{text} {text:?}"), "héllo \"héllo\"");
    }

    #[test]
    fn invalid_utf8_is_given_back() {
        let bytes = Bytes::from_static(b"ab\xffcd");
        assert_eq!(Text::from_utf8(bytes.clone()), Err(bytes));
        // A code point cut in half is not valid either.
        assert!(Text::from_utf8(Bytes::from("é").slice(0..1)).is_err());
    }
}
