//! Zones and node names: who a node is, and which peers it lets in.
//!
//! A zone is a set of nodes that trust each other. Its name goes into every
//! handshake's prologue; its optional secret becomes the Noise pre-shared key
//! (so only members complete a handshake); its optional list of pinned public
//! keys further restricts which nodes are admitted.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bytes::Bytes;
use ring::hkdf;
use zeroize::Zeroizing;

use crate::keys::PublicKey;
use myriad_engine::Message;

/// The longest node or zone name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The environment variable that names a node when the configuration does not.
pub const NODE_NAME_ENV: &str = "MYRIAD_NODE_NAME";

/// Where Linux publishes the host name (a pod's name under Kubernetes).
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// The shortest zone secret accepted, in bytes (see `docs/protocol.md`:
/// any node a member dials can guess the secret offline).
pub const MIN_SECRET_LEN: usize = 16;

/// The HKDF-SHA256 salt that separates zone keys from any other use of the secret.
const PSK_SALT: &[u8] = b"myriad/zone-psk/v1";

/// Length of the Noise pre-shared key.
pub(crate) const PSK_LEN: usize = 32;

/// Where a node name came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    /// Given explicitly (configuration or API).
    Explicit,
    /// The `MYRIAD_NODE_NAME` environment variable.
    Environment,
    /// The host name.
    HostName,
}

impl fmt::Display for NameSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameSource::Explicit => "the configured node name",
            NameSource::Environment => "MYRIAD_NODE_NAME",
            NameSource::HostName => "the host name",
        })
    }
}

/// A node name that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// The name is empty, too long or has characters outside `[A-Za-z0-9_.-]`.
    #[error(
        "{origin} {name:?} is not a valid node name: use 1 to 255 characters from A-Z a-z 0-9 _ . -"
    )]
    Invalid {
        /// The rejected name.
        name: String,
        /// Where it came from.
        origin: NameSource,
    },
    /// No name was configured, `MYRIAD_NODE_NAME` is unset and the host name is unreadable.
    #[error(
        "no node name configured, MYRIAD_NODE_NAME is unset and the host name could not be \
         read from {HOSTNAME_FILE}: {0}"
    )]
    NoHostName(#[source] io::Error),
}

/// A zone that cannot be configured as asked.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The zone name is empty, too long or has characters outside `[A-Za-z0-9_.-]`.
    #[error("{0:?} is not a valid zone name: use 1 to 255 characters from A-Z a-z 0-9 _ . -")]
    InvalidName(String),
    /// The secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error(
        "the zone secret from {origin} has {len} bytes; use at least {MIN_SECRET_LEN} \
         (32 random bytes are best, e.g. `head -c 32 /dev/urandom | base64`)"
    )]
    WeakSecret {
        /// Where the secret came from.
        origin: String,
        /// Its length after trimming whitespace.
        len: usize,
    },
    /// The secret file could not be read.
    #[error("zone secret file {path}: {source}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The environment variable meant to hold the secret is not set.
    #[error("the zone secret variable {0} is not set")]
    MissingEnv(String),
}

/// True if `name` is 1 to 255 bytes of `[A-Za-z0-9_.-]`.
fn is_valid_name(name: &[u8]) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A node's name: 1 to 255 characters from `[A-Za-z0-9_.-]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(Message);

impl NodeName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        Self::checked(name, NameSource::Explicit)
    }

    fn checked(name: &str, source: NameSource) -> Result<Self, NameError> {
        if is_valid_name(name.as_bytes()) {
            Ok(NodeName(Message::from(name.to_owned())))
        } else {
            Err(NameError::Invalid {
                name: name.to_owned(),
                origin: source,
            })
        }
    }

    /// Validates a name read from the wire, keeping it zero-copy.
    pub(crate) fn from_wire(bytes: Bytes) -> Option<Self> {
        if is_valid_name(&bytes) {
            Message::from_utf8(bytes).ok().map(NodeName)
        } else {
            None
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The name as a [`Message`] (validated UTF-8 in shared bytes).
    pub fn as_message(&self) -> &Message {
        &self.0
    }
}

impl FromStr for NodeName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        NodeName::new(s)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// This node's name: `explicit` if given, else `MYRIAD_NODE_NAME` if set and
/// not empty, else the host name (a pod's name under Kubernetes).
pub fn resolve_node_name(explicit: Option<&str>) -> Result<NodeName, NameError> {
    resolve_from(explicit, std::env::var_os(NODE_NAME_ENV), || {
        std::fs::read_to_string(HOSTNAME_FILE)
    })
}

/// [`resolve_node_name`] with its environment passed in, for tests.
fn resolve_from(
    explicit: Option<&str>,
    env: Option<OsString>,
    host_name: impl FnOnce() -> io::Result<String>,
) -> Result<NodeName, NameError> {
    if let Some(name) = explicit {
        return NodeName::checked(name, NameSource::Explicit);
    }
    if let Some(name) = env.filter(|v| !v.is_empty()) {
        let name = String::from_utf8_lossy(&name.into_vec()).into_owned();
        return NodeName::checked(&name, NameSource::Environment);
    }
    let host = host_name().map_err(NameError::NoHostName)?;
    NodeName::checked(host.trim(), NameSource::HostName)
}

/// A zone secret, before it is turned into a key. Leading and trailing ASCII
/// whitespace is trimmed (so a file written with `echo` works); it must then be
/// at least [`MIN_SECRET_LEN`] bytes. Wiped from memory when dropped.
pub struct ZoneSecret(Zeroizing<Vec<u8>>);

impl ZoneSecret {
    /// A secret from bytes in memory.
    pub fn from_bytes(secret: impl Into<Vec<u8>>) -> Result<Self, ZoneError> {
        Self::checked(Zeroizing::new(secret.into()), || "memory".to_owned())
    }

    /// A secret read from a file (e.g. a mounted Kubernetes secret).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ZoneError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ZoneError::SecretFile {
            path: path.to_owned(),
            source,
        })?;
        Self::checked(Zeroizing::new(bytes), || format!("file {}", path.display()))
    }

    /// A secret read from the environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, ZoneError> {
        let value = std::env::var_os(var).ok_or_else(|| ZoneError::MissingEnv(var.to_owned()))?;
        Self::checked(Zeroizing::new(value.into_vec()), || {
            format!("variable {var}")
        })
    }

    fn checked(
        mut bytes: Zeroizing<Vec<u8>>,
        origin: impl FnOnce() -> String,
    ) -> Result<Self, ZoneError> {
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        bytes.truncate(end);
        let start = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        bytes.drain(..start);
        if bytes.len() < MIN_SECRET_LEN {
            return Err(ZoneError::WeakSecret {
                origin: origin(),
                len: bytes.len(),
            });
        }
        Ok(ZoneSecret(bytes))
    }
}

impl fmt::Debug for ZoneSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ZoneSecret(..)")
    }
}

/// The Noise PSK of `zone`: HKDF-SHA256 with salt `myriad/zone-psk/v1`, the
/// secret as input key material and the zone name as info.
fn derive_psk(secret: &[u8], zone: &str) -> Zeroizing<[u8; PSK_LEN]> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, PSK_SALT).extract(secret);
    let mut psk = Zeroizing::new([0; PSK_LEN]);
    prk.expand(&[zone.as_bytes()], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(psk.as_mut()))
        .expect("HKDF-SHA256 always yields 32 bytes");
    psk
}

/// The zone a node belongs to: name, optional secret, optional pinned keys.
///
/// With neither secret nor pinned keys, any node that knows the zone name is
/// admitted: use that only on a trusted network (a node of such a zone
/// listens beyond loopback only with `TransportConfig::allow_open_zone`).
#[derive(Clone)]
pub struct ZoneConfig {
    name: String,
    psk: Option<Zeroizing<[u8; PSK_LEN]>>,
    pinned: Option<BTreeSet<PublicKey>>,
}

impl ZoneConfig {
    /// A zone called `name` (1 to 255 characters from `[A-Za-z0-9_.-]`), open
    /// to any node until a secret or pinned keys are added.
    pub fn new(name: &str) -> Result<Self, ZoneError> {
        if !is_valid_name(name.as_bytes()) {
            return Err(ZoneError::InvalidName(name.to_owned()));
        }
        Ok(ZoneConfig {
            name: name.to_owned(),
            psk: None,
            pinned: None,
        })
    }

    /// Requires peers to know `secret` (handshakes switch to `XXpsk3`).
    pub fn with_secret(mut self, secret: &ZoneSecret) -> Self {
        self.psk = Some(derive_psk(&secret.0, &self.name));
        self
    }

    /// Admits only peers whose static public key is one of `keys`.
    pub fn with_pinned_keys(mut self, keys: impl IntoIterator<Item = PublicKey>) -> Self {
        self.pinned = Some(keys.into_iter().collect());
        self
    }

    /// The zone's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True if the zone has a secret.
    pub fn has_secret(&self) -> bool {
        self.psk.is_some()
    }

    /// The pinned keys, if the zone pins any.
    pub fn pinned_keys(&self) -> Option<&BTreeSet<PublicKey>> {
        self.pinned.as_ref()
    }

    /// True if a peer with static key `key` may join (always, without pins).
    pub fn admits(&self, key: &PublicKey) -> bool {
        self.pinned.as_ref().is_none_or(|keys| keys.contains(key))
    }

    /// The Noise pre-shared key, if the zone has a secret.
    pub(crate) fn psk(&self) -> Option<&[u8; PSK_LEN]> {
        self.psk.as_deref()
    }
}

impl fmt::Debug for ZoneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneConfig")
            .field("name", &self.name)
            .field("secret", &self.psk.as_ref().map(|_| ".."))
            .field("pinned", &self.pinned)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::scratch_dir;

    const SECRET: &[u8] = b"correct horse battery staple";

    fn no_host() -> io::Result<String> {
        Err(io::Error::other("no host"))
    }

    #[test]
    fn node_names_follow_the_charset() {
        for good in ["a", "runner-1", "pod_7.example", &"x".repeat(255)] {
            assert_eq!(NodeName::new(good).unwrap().as_str(), good);
        }
        for bad in ["", "a b", "a/b", "é", "a\n", &"x".repeat(256)] {
            let err = NodeName::new(bad).unwrap_err();
            assert!(err.to_string().contains("not a valid node name"), "{err}");
        }
        assert!(NodeName::from_wire(Bytes::from_static(b"ok.name")).is_some());
        assert!(NodeName::from_wire(Bytes::from_static(b"\xff")).is_none());
    }

    #[test]
    fn node_name_resolution_prefers_explicit_then_env_then_host() {
        let env = || Some(OsString::from("from-env"));
        let host = || Ok("from-host\n".to_owned());
        assert_eq!(
            resolve_from(Some("given"), env(), host).unwrap().as_str(),
            "given"
        );
        assert_eq!(
            resolve_from(None, env(), host).unwrap().as_str(),
            "from-env"
        );
        assert_eq!(
            resolve_from(None, Some(OsString::new()), host)
                .unwrap()
                .as_str(),
            "from-host"
        );
        assert_eq!(
            resolve_from(None, None, host).unwrap().as_str(),
            "from-host"
        );
        assert!(matches!(
            resolve_from(None, None, no_host),
            Err(NameError::NoHostName(_))
        ));
        let err = resolve_from(None, Some(OsString::from("bad name")), host).unwrap_err();
        assert!(
            err.to_string().starts_with("MYRIAD_NODE_NAME \"bad name\""),
            "{err}"
        );
    }

    #[test]
    fn the_real_host_name_resolves() {
        // Whatever this machine is called, it is a valid node name or a clear error.
        match resolve_node_name(Some("explicit")) {
            Ok(name) => assert_eq!(name.as_str(), "explicit"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn zone_names_are_checked() {
        assert!(ZoneConfig::new("prod.eu-1").is_ok());
        assert!(matches!(
            ZoneConfig::new("prod eu"),
            Err(ZoneError::InvalidName(_))
        ));
    }

    #[test]
    fn secrets_are_trimmed_and_must_not_be_weak() {
        let a = ZoneSecret::from_bytes(SECRET).unwrap();
        let b = ZoneSecret::from_bytes([b"\n  ", SECRET, b" \n"].concat()).unwrap();
        assert_eq!(*a.0, *b.0);
        let err = ZoneSecret::from_bytes("short\n").unwrap_err();
        assert!(matches!(err, ZoneError::WeakSecret { len: 5, .. }), "{err}");
        assert!(matches!(
            ZoneSecret::from_bytes("   "),
            Err(ZoneError::WeakSecret { len: 0, .. })
        ));
        assert_eq!(format!("{a:?}"), "ZoneSecret(..)");
    }

    #[test]
    fn secrets_come_from_files_and_the_environment() {
        let dir = scratch_dir("zone");
        let path = dir.join("secret");
        std::fs::write(&path, [SECRET, b"\n"].concat()).unwrap();
        assert_eq!(*ZoneSecret::from_file(&path).unwrap().0, SECRET);
        assert!(matches!(
            ZoneSecret::from_file(dir.join("missing")),
            Err(ZoneError::SecretFile { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();

        let var = "MYRIAD_TRANSPORT_TEST_ZONE_SECRET";
        assert!(matches!(
            ZoneSecret::from_env(var),
            Err(ZoneError::MissingEnv(_))
        ));
        // No other test touches this variable.
        std::env::set_var(var, std::str::from_utf8(SECRET).unwrap());
        assert_eq!(*ZoneSecret::from_env(var).unwrap().0, SECRET);
        std::env::remove_var(var);
    }

    #[test]
    fn the_psk_depends_on_secret_and_zone_name() {
        let secret = ZoneSecret::from_bytes(SECRET).unwrap();
        let other = ZoneSecret::from_bytes(b"another secret of some length".to_vec()).unwrap();
        let psk = |zone: &str, s: &ZoneSecret| {
            *ZoneConfig::new(zone).unwrap().with_secret(s).psk().unwrap()
        };
        assert_eq!(psk("z", &secret), psk("z", &secret));
        assert_ne!(psk("z", &secret), psk("y", &secret));
        assert_ne!(psk("z", &secret), psk("z", &other));
        // Known answer (also in docs/protocol.md), computed independently with
        // Python's hmac module.
        let hex: String = psk("demo", &secret)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, PSK_TEST_VECTOR);
        assert!(ZoneConfig::new("z").unwrap().psk().is_none());
    }

    const PSK_TEST_VECTOR: &str =
        "b0a2f0c8bde5cef7f4cddb791df22b1ef743ea88f5a3c433f036a277b7846567";

    #[test]
    fn pins_restrict_admission() {
        let a = PublicKey::from_bytes([1; 32]);
        let b = PublicKey::from_bytes([2; 32]);
        let open = ZoneConfig::new("z").unwrap();
        assert!(open.admits(&a) && open.pinned_keys().is_none());
        let pinned = open.with_pinned_keys([a]);
        assert!(pinned.admits(&a));
        assert!(!pinned.admits(&b));
        assert!(!format!("{pinned:?}").contains("secret: Some"));
    }
}
