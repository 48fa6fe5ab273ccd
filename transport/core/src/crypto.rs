//! The one place that chooses Noise's crypto providers: ring for ChaChaPoly,
//! SHA-256 and randomness (measured ~15x faster than the pure-Rust ones), and
//! snow's default provider (curve25519-dalek) for X25519, which ring cannot
//! do with a stored private key.

use ring::rand::{SecureRandom, SystemRandom};
use snow::params::{DHChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver, RingResolver};

/// Length of an X25519 key, private or public.
pub(crate) const KEY_LEN: usize = 32;

/// A snow builder whose primitives come from ring first, snow's defaults second.
pub(crate) fn builder<'a>(params: NoiseParams) -> snow::Builder<'a> {
    let resolver = FallbackResolver::new(Box::new(RingResolver), Box::new(DefaultResolver));
    snow::Builder::with_resolver(params, Box::new(resolver))
}

/// Fills `out` from the operating system's secure random source.
pub(crate) fn fill_random(out: &mut [u8]) -> Result<(), ring::error::Unspecified> {
    SystemRandom::new().fill(out)
}

/// The X25519 public key of `private` (clamped as X25519 requires).
pub(crate) fn x25519_public(private: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .expect("snow is built with the use-curve25519 feature");
    dh.set(private);
    let mut public = [0; KEY_LEN];
    public.copy_from_slice(dh.pubkey());
    public
}
