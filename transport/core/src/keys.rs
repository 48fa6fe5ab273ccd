//! A node's static X25519 identity: generated in memory (tests) or loaded from
//! (and on first start written to) a key file readable only by its owner.
//!
//! The key file holds the private key as 64 lowercase hex digits and a newline.
//! It is created with mode `0600` (its directory, if missing, with `0700`), and
//! a file that group or others may read is refused, not silently used.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::crypto::{self, KEY_LEN};

/// Everything that can go wrong with a node's keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file (or its directory) could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The key file may be read by group or others.
    #[error(
        "key file {path} has mode {mode:04o}, so others may read the node's private key; \
         it must be readable by its owner only (chmod 600 {path})"
    )]
    InsecurePermissions {
        /// The refused file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file does not hold a key in the expected format.
    #[error("key file {path} does not hold an X25519 private key as 64 hex digits")]
    Malformed {
        /// The refused file.
        path: PathBuf,
    },
    /// A public key given as text is not 64 hex digits.
    #[error("{0:?} is not an X25519 public key (64 hex digits)")]
    InvalidPublicKey(String),
    /// The system's random number generator failed.
    #[error("the system random number generator failed")]
    Rng,
}

/// A node's X25519 public key: its identity inside a zone.
///
/// Displayed (and parsed) as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// A public key from its 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PublicKey(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        parse_hex(s.trim())
            .map(PublicKey)
            .ok_or_else(|| KeyError::InvalidPublicKey(s.to_owned()))
    }
}

/// A node's static X25519 keypair. The private half is wiped from memory when
/// the value is dropped and never shown by `Debug`.
#[derive(Clone)]
pub struct StaticKeypair {
    private: Zeroizing<[u8; KEY_LEN]>,
    public: PublicKey,
}

impl StaticKeypair {
    /// A fresh keypair from the system's secure random source, held in memory only.
    pub fn generate() -> Result<Self, KeyError> {
        let mut private = Zeroizing::new([0; KEY_LEN]);
        crypto::fill_random(private.as_mut()).map_err(|_| KeyError::Rng)?;
        Ok(Self::from_private(private))
    }

    /// The keypair whose private key is `private`.
    pub fn from_private_bytes(private: [u8; KEY_LEN]) -> Self {
        Self::from_private(Zeroizing::new(private))
    }

    fn from_private(private: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let public = PublicKey(crypto::x25519_public(&private));
        StaticKeypair { private, public }
    }

    /// Loads the keypair stored at `path`, refusing a file that group or others
    /// may read.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let io_err = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let file = fs::File::open(path).map_err(io_err)?;
        let mode = file.metadata().map_err(io_err)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        // A well-formed file is 65 bytes; read a little more to notice junk.
        let mut text = Zeroizing::new(String::new());
        file.take(256).read_to_string(&mut text).map_err(io_err)?;
        let private = parse_hex(text.trim()).ok_or_else(|| KeyError::Malformed {
            path: path.to_owned(),
        })?;
        Ok(Self::from_private_bytes(private))
    }

    /// Loads the keypair stored at `path`; if there is no such file, generates
    /// one and stores it there (mode `0600`, atomically: a concurrent starter
    /// ends up with the same key).
    pub fn load_or_generate(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        match Self::load(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            loaded => return loaded,
        }
        let pair = Self::generate()?;
        if pair.store_new(path)? {
            Ok(pair)
        } else {
            Self::load(path)
        }
    }

    /// Writes the key to a temporary file and links it to `path`, which must
    /// not exist. Returns `false` if someone else created `path` meanwhile.
    fn store_new(&self, path: &Path) -> Result<bool, KeyError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| KeyError::Io { path, source }
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let mut nonce = [0u8; 8];
        crypto::fill_random(&mut nonce).map_err(|_| KeyError::Rng)?;
        let tmp = dir.join(format!(
            ".myriad-key-{:016x}.tmp",
            u64::from_le_bytes(nonce)
        ));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut text = Zeroizing::new(to_hex(self.private.as_ref()));
            text.push('\n');
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::hard_link(&tmp, path)
        })();
        let _ = fs::remove_file(&tmp);
        match written {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// The public half: what peers see and what zones pin.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The private half, for the Noise handshake.
    pub(crate) fn private_bytes(&self) -> &[u8; KEY_LEN] {
        &self.private
    }
}

impl fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeypair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::scratch_dir;

    #[test]
    fn generated_keys_differ_and_match_their_public_half() {
        let a = StaticKeypair::generate().unwrap();
        let b = StaticKeypair::generate().unwrap();
        assert_ne!(a.public_key(), b.public_key());
        let again = StaticKeypair::from_private_bytes(*a.private_bytes());
        assert_eq!(again.public_key(), a.public_key());
    }

    #[test]
    fn public_key_matches_rfc7748_test_vector() {
        // RFC 7748, section 6.1: Alice's private and public keys.
        let private =
            parse_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").unwrap();
        let pair = StaticKeypair::from_private_bytes(private);
        assert_eq!(
            pair.public_key().to_string(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn public_key_hex_round_trips_and_rejects_junk() {
        let key = *StaticKeypair::generate().unwrap().public_key();
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert_eq!(text.to_uppercase().parse::<PublicKey>().unwrap(), key);
        for junk in [
            "",
            "abc",
            &text[1..],
            &format!("{text}00"),
            &"zz".repeat(32),
            &"é".repeat(32),
        ] {
            assert!(matches!(
                junk.parse::<PublicKey>(),
                Err(KeyError::InvalidPublicKey(_))
            ));
        }
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let pair = StaticKeypair::generate().unwrap();
        let shown = format!("{pair:?}");
        assert!(shown.contains(&pair.public_key().to_string()));
        assert!(!shown.contains(&to_hex(pair.private_bytes())));
    }

    #[test]
    fn load_or_generate_creates_a_private_file_then_reloads_it() {
        let dir = scratch_dir("keys");
        let path = dir.join("nested").join("node.key");
        let first = StaticKeypair::load_or_generate(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(fs::read_to_string(&path).unwrap().trim().len(), 64);
        let second = StaticKeypair::load_or_generate(&path).unwrap();
        assert_eq!(first.public_key(), second.public_key());
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = scratch_dir("keys-perm");
        let path = dir.join("node.key");
        StaticKeypair::load_or_generate(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = StaticKeypair::load_or_generate(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::InsecurePermissions { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_malformed_key_file_is_refused() {
        let dir = scratch_dir("keys-bad");
        let path = dir.join("node.key");
        fs::write(&path, "not a key\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            StaticKeypair::load(&path),
            Err(KeyError::Malformed { .. })
        ));
        fs::remove_dir_all(dir).unwrap();
    }
}
