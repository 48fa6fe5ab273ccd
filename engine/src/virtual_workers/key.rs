//! [`Key`]: the address of a virtual worker, a kind and an id.

use std::fmt;
use std::sync::Arc;

use crate::address::{fnv1a, validate_name};
use crate::{Error, Result};

/// The longest id a key may have, in bytes.
pub const MAX_KEY_ID_LEN: usize = 1024;

/// The address of a virtual worker: its kind (registered with
/// [`NodeConfig::virtual_kind`](crate::NodeConfig::virtual_kind)) and its
/// id within the kind, such as `Key::new("agent", "customer-42")`.
///
/// A key needs no start: the first message sent to it activates its worker
/// on its home shard, and later messages go straight to it. It is one
/// shared string (`kind:id`), cheap to clone.
///
/// ```
/// use myriad_engine::Key;
/// let key = Key::new("agent", "customer-42");
/// assert_eq!((key.kind(), key.id()), ("agent", "customer-42"));
/// assert_eq!(key.to_string(), "agent:customer-42");
/// assert_eq!("agent:customer-42".parse::<Key>().unwrap(), key);
/// ```
///
/// A key is two words (it rides in cross-shard ring entries whose size is
/// fixed): its kind and id are found at the first `:`, which a kind never
/// contains.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// `kind:id`.
    text: Arc<str>,
}

impl Key {
    /// The key `id` of kind `kind`. A malformed key (see [`Key::check`]) is
    /// refused when a message is sent to it; a `:` in `kind` becomes a
    /// space, which no kind may contain either.
    pub fn new(kind: &str, id: &str) -> Key {
        let text = if kind.contains(':') {
            format!("{}:{id}", kind.replace(':', " "))
        } else {
            format!("{kind}:{id}")
        };
        Key { text: Arc::from(text) }
    }

    fn split(&self) -> (&str, &str) {
        // Every key is built with a `:` after its kind.
        self.text.split_once(':').unwrap_or((&self.text, ""))
    }

    /// The kind of worker this key names.
    pub fn kind(&self) -> &str {
        self.split().0
    }

    /// The key's id within its kind.
    pub fn id(&self) -> &str {
        self.split().1
    }

    /// `kind:id`, as stored.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Checks that the key is well formed: its kind is a valid worker name
    /// (`[A-Za-z0-9_-]`, 1 to 255 characters) and its id is 1 to
    /// [`MAX_KEY_ID_LEN`] bytes of text without control characters.
    pub fn check(&self) -> Result<()> {
        validate_name(self.kind())?;
        let id = self.id();
        let invalid = |reason| {
            Err(Error::InvalidName {
                name: self.to_string(),
                reason,
            })
        };
        if id.is_empty() {
            return invalid("a key's id must not be empty");
        }
        if id.len() > MAX_KEY_ID_LEN {
            return invalid("a key's id must be at most 1024 bytes");
        }
        if id.chars().any(char::is_control) {
            return invalid("a key's id must not contain control characters");
        }
        Ok(())
    }

    /// The shard of a node of `shards` shards where this key's worker
    /// lives: every shard computes it alone, as for names.
    pub fn home_shard(&self, shards: usize) -> usize {
        // The modulo keeps the value below `shards`, which is a usize.
        (fnv1a(self.text.as_bytes()) % shards.max(1) as u64) as usize
    }

    /// The node among `members` (the live nodes of the zone that registered
    /// this key's kind) that is this key's home: the one every node sends
    /// its messages to, by rendezvous hashing with a fixed hash; `None` if
    /// `members` is empty. Operators and tests use it to tell where a key
    /// lives.
    ///
    /// ```
    /// use myriad_engine::Key;
    /// let key = Key::new("agent", "customer-42");
    /// let home = key.home_node(&["a", "b", "c"]).unwrap();
    /// assert_eq!(key.home_node(&["c", "b", "a"]), Some(home));
    /// ```
    pub fn home_node<'a>(&self, members: &[&'a str]) -> Option<&'a str> {
        super::placement::home_node(self, members.iter().copied())
    }

    /// The shared text, as the registry's map holds it.
    pub(crate) fn text(&self) -> &Arc<str> {
        &self.text
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.text)
    }
}

impl std::str::FromStr for Key {
    type Err = Error;
    /// Parses `kind:id` (the `Display` form) and checks it.
    fn from_str(s: &str) -> Result<Key> {
        let (kind, id) = s.split_once(':').ok_or_else(|| Error::InvalidName {
            name: s.to_owned(),
            reason: "a key is written kind:id",
        })?;
        let key = Key::new(kind, id);
        key.check()?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_splits_into_kind_and_id_even_when_the_id_has_colons() {
        let key = Key::new("agent", "a:b:c");
        assert_eq!((key.kind(), key.id()), ("agent", "a:b:c"));
        assert_eq!("agent:a:b:c".parse::<Key>().unwrap(), key);
        key.check().unwrap();
    }

    #[test]
    fn malformed_keys_are_refused_with_the_reason() {
        for (kind, id) in [("", "x"), ("a b", "x"), ("a:b", "x"), ("agent", ""), ("agent", "x\ny")] {
            let err = Key::new(kind, id).check().unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{kind:?} {id:?}: {err}");
        }
        let long = "x".repeat(MAX_KEY_ID_LEN + 1);
        assert!(Key::new("agent", &long).check().is_err());
        assert!("no-colon".parse::<Key>().is_err());
        assert_eq!(std::mem::size_of::<Key>(), 16, "a key is two words");
    }

    #[test]
    fn home_shard_is_stable_and_spreads() {
        let key = Key::new("agent", "customer-42");
        assert_eq!(key.home_shard(4), key.clone().home_shard(4));
        let spread: std::collections::HashSet<_> = (0..100)
            .map(|i| Key::new("agent", &i.to_string()).home_shard(4))
            .collect();
        assert_eq!(spread.len(), 4);
    }
}
