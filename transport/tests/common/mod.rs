//! Helpers shared by the integration tests: configurations, a loss-free
//! in-memory "network" that runs two handshakes against each other, and a
//! small deterministic random generator.

#![allow(dead_code)] // each test crate uses its own subset

use bytes::Bytes;
use myriad_transport::{
    Established, Handshake, HandshakeError, LinkConfig, NodeName, StaticKeypair, Step, ZoneConfig,
    ZoneSecret,
};

pub const SECRET: &str = "the zone secret, at least 16 bytes";

/// A zone named `name`, with `secret` if given.
pub fn zone(name: &str, secret: Option<&str>) -> ZoneConfig {
    let zone = ZoneConfig::new(name).unwrap();
    match secret {
        Some(s) => zone.with_secret(&ZoneSecret::from_bytes(s).unwrap()),
        None => zone,
    }
}

/// A node called `name` with a fresh key in `zone`.
pub fn node(name: &str, zone: ZoneConfig) -> LinkConfig {
    LinkConfig::new(
        NodeName::new(name).unwrap(),
        StaticKeypair::generate().unwrap(),
        zone,
    )
}

/// One side's result.
pub type Side = Result<Box<Established>, HandshakeError>;

/// What one side does with a chunk of input: `Some(result)` once it is over.
fn feed(hs: &mut Handshake, input: &[u8], chunk: usize, outbox: &mut Vec<u8>) -> Option<Side> {
    let mut parts = input.chunks(chunk.max(1));
    for part in parts.by_ref() {
        match hs.feed(part) {
            Ok(Step::Send(bytes)) => outbox.extend_from_slice(&bytes),
            Ok(Step::Wait) => {}
            Ok(Step::Done(mut link)) => {
                outbox.extend_from_slice(&link.encoder.flush().unwrap());
                for rest in parts {
                    link.decoder.feed(rest);
                }
                return Some(Ok(link));
            }
            Err(e) => return Some(Err(e)),
        }
    }
    None
}

/// Runs a handshake between `initiator` and `responder`, delivering bytes in
/// chunks of `chunk` bytes. A side that fails closes the connection, and the
/// other side is told with `peer_closed`.
pub fn handshake_chunked(
    initiator: &LinkConfig,
    responder: &LinkConfig,
    chunk: usize,
) -> (Side, Side) {
    let (mut ini, first) = Handshake::initiator(initiator).unwrap();
    let mut res = Handshake::responder(responder).unwrap();
    let (mut to_res, mut to_ini) = (first.to_vec(), Vec::new());
    let (mut ini_out, mut res_out): (Option<Side>, Option<Side>) = (None, None);
    while !(to_res.is_empty() && to_ini.is_empty()) {
        let input = std::mem::take(&mut to_res);
        if res_out.is_none() {
            res_out = feed(&mut res, &input, chunk, &mut to_ini);
        }
        let input = std::mem::take(&mut to_ini);
        if ini_out.is_none() {
            ini_out = feed(&mut ini, &input, chunk, &mut to_res);
        }
        // Nothing flows once either side has failed: it closed the connection.
        if matches!(ini_out, Some(Err(_))) || matches!(res_out, Some(Err(_))) {
            break;
        }
    }
    (
        ini_out.unwrap_or_else(|| Err(ini.peer_closed())),
        res_out.unwrap_or_else(|| Err(res.peer_closed())),
    )
}

/// [`handshake_chunked`] with whole writes delivered at once.
pub fn handshake(initiator: &LinkConfig, responder: &LinkConfig) -> (Side, Side) {
    handshake_chunked(initiator, responder, usize::MAX)
}

/// Two ends of an established link with default settings.
pub fn pair() -> (Box<Established>, Box<Established>) {
    let (a, b) = handshake(
        &node("alpha", zone("z", Some(SECRET))),
        &node("beta", zone("z", Some(SECRET))),
    );
    (a.unwrap(), b.unwrap())
}

/// Decodes everything `bytes` holds, fed in one piece.
pub fn decode_all(link: &mut Established, bytes: &Bytes) -> Vec<myriad_transport::Envelope> {
    link.decoder.feed(bytes);
    let mut out = Vec::new();
    while let Some(env) = link.decoder.next_envelope().unwrap() {
        out.push(env);
    }
    out
}

/// xorshift64*: a tiny deterministic generator for chunk sizes and contents.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A peer written from `docs/protocol.md` with snow and ring used directly.
pub mod spec {
    use super::SECRET;
    use bytes::{BufMut, BytesMut};
    use myriad_transport::{Envelope, Handshake, HandshakeError, LinkConfig, ProtocolError, Step};

    /// The zone PSK as the spec derives it: HKDF-SHA256(salt, secret, zone name).
    pub fn psk(secret: &str, zone: &str) -> [u8; 32] {
        use ring::hkdf;
        let prk =
            hkdf::Salt::new(hkdf::HKDF_SHA256, b"myriad/zone-psk/v1").extract(secret.as_bytes());
        let mut out = [0; 32];
        prk.expand(&[zone.as_bytes()], hkdf::HKDF_SHA256)
            .unwrap()
            .fill(&mut out)
            .unwrap();
        out
    }

    pub fn prologue(zone: &str) -> Vec<u8> {
        [
            b"myriad-noise/1".as_slice(),
            &[zone.len() as u8],
            zone.as_bytes(),
        ]
        .concat()
    }

    pub fn frame(body: &[u8]) -> Vec<u8> {
        [&(body.len() as u16).to_be_bytes()[..], body].concat()
    }

    /// Splits one frame off the front of `stream`.
    pub fn unframe(stream: &mut &[u8]) -> Vec<u8> {
        let len = usize::from(u16::from_be_bytes([stream[0], stream[1]]));
        let body = stream[2..2 + len].to_vec();
        *stream = &stream[2 + len..];
        body
    }

    /// A handshake payload as the spec lays it out.
    pub fn hello(versions: (u16, u16), max: u32, name: &str, extra: &[u8]) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_u16(versions.0);
        b.put_u16(versions.1);
        b.put_u32(max);
        b.put_u64(42); // incarnation
        b.put_u16(1); // shard
        b.put_u16(2); // shards
        b.put_u8(name.len() as u8);
        b.put_slice(name.as_bytes());
        b.put_slice(extra);
        b.to_vec()
    }

    /// The spec's initiator, with the zone secret `SECRET`, against `responder`.
    /// Returns the hand-made side's transport state and what the responder said.
    pub fn dial(
        responder: &LinkConfig,
        payload: &[u8],
    ) -> (Option<snow::TransportState>, Result<Step, HandshakeError>) {
        let params: snow::params::NoiseParams =
            "Noise_XXpsk3_25519_ChaChaPoly_SHA256".parse().unwrap();
        let key = snow::Builder::new(params.clone())
            .generate_keypair()
            .unwrap();
        let (psk, prologue) = (psk(SECRET, "z"), prologue("z"));
        let mut hs = snow::Builder::new(params)
            .local_private_key(&key.private)
            .unwrap()
            .prologue(&prologue)
            .unwrap()
            .psk(3, &psk)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut res = Handshake::responder(responder).unwrap();
        let mut buf = vec![0; 65535];

        let n = hs.write_message(&[], &mut buf).unwrap();
        assert_eq!(n, 48, "message 1 is e plus the tag of an empty payload");
        let Ok(Step::Send(msg2)) = res.feed(&frame(&buf[..n])) else {
            panic!("no message 2")
        };
        let mut stream = &msg2[..];
        let n = hs.read_message(&unframe(&mut stream), &mut buf).unwrap();
        assert!(stream.is_empty());
        // The responder's payload, field by field.
        let got = &buf[..n];
        let name = responder.node().as_str().as_bytes();
        assert_eq!(got.len(), 21 + name.len());
        assert_eq!(got[..4], [0, 1, 0, 2], "versions 1..=2");
        assert_eq!(got[4..8], responder.max_message_size().to_be_bytes());
        assert_eq!(got[8..16], 0u64.to_be_bytes(), "incarnation");
        assert_eq!(got[16..20], [0, 0, 0, 1], "shard 0 of 1");
        assert_eq!((got[20], &got[21..]), (name.len() as u8, name));

        let n = hs.write_message(payload, &mut buf).unwrap();
        let step = res.feed(&frame(&buf[..n]));
        let transport = hs.into_transport_mode().ok();
        (transport, step)
    }

    /// A link whose far end is the hand-made peer.
    pub struct Link {
        pub ours: Box<myriad_transport::Established>,
        pub theirs: snow::TransportState,
    }

    impl Link {
        pub fn open(responder: &LinkConfig) -> Link {
            let (theirs, step) = dial(responder, &hello((1, 2), 16 << 20, "hand", &[]));
            let Ok(Step::Done(mut ours)) = step else {
                panic!("handshake failed")
            };
            let mut theirs = theirs.unwrap();
            // The confirmation: one frame with an empty payload, 16 bytes of tag.
            let out = ours.encoder.flush().unwrap();
            assert_eq!(out.len(), 2 + 16);
            let mut stream = &out[..];
            let mut buf = [0; 64];
            assert_eq!(theirs.read_message(&unframe(&mut stream), &mut buf), Ok(0));
            Link { ours, theirs }
        }

        /// Sends one frame holding `plaintext` to our decoder; returns what it decodes.
        pub fn send(&mut self, plaintext: &[u8]) -> (Vec<Envelope>, Option<ProtocolError>) {
            let mut buf = vec![0; plaintext.len() + 16];
            let n = self.theirs.write_message(plaintext, &mut buf).unwrap();
            self.ours.decoder.feed(&frame(&buf[..n]));
            let mut got = Vec::new();
            loop {
                match self.ours.decoder.next_envelope() {
                    Ok(Some(env)) => got.push(env),
                    Ok(None) => return (got, None),
                    Err(e) => return (got, Some(e)),
                }
            }
        }

        /// Reads every frame our encoder flushed, as plaintexts.
        pub fn receive(&mut self) -> Vec<Vec<u8>> {
            let out = self.ours.encoder.flush().unwrap();
            let mut stream = &out[..];
            let mut frames = Vec::new();
            while !stream.is_empty() {
                let mut buf = vec![0; 65535];
                let n = self
                    .theirs
                    .read_message(&unframe(&mut stream), &mut buf)
                    .unwrap();
                frames.push(buf[..n].to_vec());
            }
            frames
        }
    }

    /// A whole-envelope record: Send to worker name `to` with `body`.
    pub fn whole_send(to: &str, body: &[u8]) -> Vec<u8> {
        let mut r = vec![1, 1, 0, 1, to.len() as u8];
        r.extend_from_slice(to.as_bytes());
        r.push(0); // no sender
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }
}
