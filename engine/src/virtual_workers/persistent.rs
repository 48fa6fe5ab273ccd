//! [`Persistent`]: how a virtual worker's state becomes bytes and back.

use crate::BoxError;

/// State that a virtual worker keeps across deactivations: it turns into
/// bytes for the [`StateStore`](crate::StateStore) and back.
///
/// Every serde type (`Serialize + DeserializeOwned`) is `Persistent`, as
/// JSON; a type that is not serde may implement it by hand, in any format.
///
/// ```
/// use myriad_engine::Persistent;
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Counter { count: u64 }
///
/// let bytes = Counter { count: 7 }.to_bytes().unwrap();
/// assert_eq!(Counter::from_bytes(&bytes).unwrap(), Counter { count: 7 });
/// assert!(Counter::from_bytes(b"not json").is_err());
/// ```
pub trait Persistent: Sized + 'static {
    /// The state as bytes.
    fn to_bytes(&self) -> Result<Vec<u8>, BoxError>;
    /// The state from bytes that `to_bytes` made; an error for anything
    /// else (the stored state is then reported corrupt).
    fn from_bytes(bytes: &[u8]) -> Result<Self, BoxError>;
}

impl<T: serde::Serialize + serde::de::DeserializeOwned + 'static> Persistent for T {
    fn to_bytes(&self) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(self)?)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, BoxError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}
