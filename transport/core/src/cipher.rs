//! The data-phase cipher of a link: Noise's `CipherState` for ChaChaPoly
//! (ChaCha20-Poly1305 with nonce = 4 zero bytes ‖ 64-bit little-endian
//! counter, empty associated data), done in place with ring.
//!
//! snow's transport API copies every message between an input and an output
//! buffer; sealing the plaintext where the encoder wrote it and opening the
//! ciphertext where the stream buffer holds it saves two passes over every
//! byte. The keys come from snow's `Split()` of the finished handshake, and the
//! result is byte-for-byte what a snow `TransportState` produces (the
//! `spec_peer` tests talk to one).

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroizing;

use crate::crypto::KEY_LEN;

/// The counter has run out: 2^64 - 1 frames, after which Noise forbids reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CipherError;

/// One direction of a link: a key and the nonce of the next frame.
pub(crate) struct CipherState {
    key: LessSafeKey,
    nonce: u64,
}

impl CipherState {
    /// A cipher state at nonce 0 for `key`.
    pub(crate) fn new(key: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let key = UnboundKey::new(&CHACHA20_POLY1305, key.as_ref())
            .expect("ChaCha20-Poly1305 takes 32-byte keys");
        CipherState {
            key: LessSafeKey::new(key),
            nonce: 0,
        }
    }

    fn next_nonce(&mut self) -> Result<Nonce, CipherError> {
        if self.nonce == u64::MAX {
            return Err(CipherError);
        }
        let mut bytes = [0; 12];
        bytes[4..].copy_from_slice(&self.nonce.to_le_bytes());
        self.nonce += 1;
        Ok(Nonce::assume_unique_for_key(bytes))
    }

    /// Encrypts `plaintext` in place; returns the tag to append.
    pub(crate) fn seal(&mut self, plaintext: &mut [u8]) -> Result<Tag, CipherError> {
        let nonce = self.next_nonce()?;
        self.key
            .seal_in_place_separate_tag(nonce, Aad::empty(), plaintext)
            .map_err(|_| CipherError)
    }

    /// Decrypts and authenticates `frame` (ciphertext ‖ tag) in place; returns
    /// the length of the plaintext now at its start.
    pub(crate) fn open(&mut self, frame: &mut [u8]) -> Result<usize, CipherError> {
        let nonce = self.next_nonce()?;
        self.key
            .open_in_place(nonce, Aad::empty(), frame)
            .map(|plaintext| plaintext.len())
            .map_err(|_| CipherError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_in_order_only() {
        let key = || Zeroizing::new([7; KEY_LEN]);
        let (mut tx, mut rx) = (CipherState::new(key()), CipherState::new(key()));
        let mut frames = Vec::new();
        for text in [&b"one"[..], b"", b"three"] {
            let mut buf = text.to_vec();
            let tag = tx.seal(&mut buf).unwrap();
            buf.extend_from_slice(tag.as_ref());
            frames.push(buf);
        }
        let mut second = frames[1].clone();
        assert_eq!(rx.open(&mut second), Err(CipherError), "nonce 0 expected");
        let mut rx = CipherState::new(key());
        for (frame, text) in frames.iter_mut().zip([&b"one"[..], b"", b"three"]) {
            let len = rx.open(frame).unwrap();
            assert_eq!(&frame[..len], text);
        }
    }

    #[test]
    fn the_last_nonce_is_never_used() {
        let mut tx = CipherState::new(Zeroizing::new([1; KEY_LEN]));
        tx.nonce = u64::MAX - 1;
        assert!(tx.seal(&mut []).is_ok());
        assert_eq!(tx.seal(&mut []).err(), Some(CipherError));
        assert_eq!(tx.open(&mut [0; 16]), Err(CipherError));
    }
}
