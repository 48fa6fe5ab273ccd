//! The bytes a [`StateStore`](crate::StateStore) keeps for one key: the
//! worker's state and its reminders, in a small versioned format of the
//! engine's own, so that the store stays a plain map of bytes.
//!
//! ```text
//! "MYV1" | state length u32 | state | reminder count u32 |
//!     per reminder: id u64 | due (ms since the Unix epoch) u64 | length u32 | message
//! ```
//! (integers little-endian). Anything else is corrupt, and decoding says
//! where.

use bytes::Bytes;

use crate::Message;

const MAGIC: &[u8; 4] = b"MYV1";

/// A message a worker asked to get later (`Context::remind_after`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reminder {
    /// Unique among the key's reminders.
    pub id: u64,
    /// When it is due, in milliseconds since the Unix epoch (it must survive
    /// a restart, so no `Instant`).
    pub due_ms: u64,
    pub msg: Message,
}

/// A key's stored record, decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub state: Vec<u8>,
    pub reminders: Vec<Reminder>,
}

/// Encodes a record.
pub(crate) fn encode(state: &[u8], reminders: &[Reminder]) -> Vec<u8> {
    let size = 12 + state.len() + reminders.iter().map(|r| 20 + r.msg.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(MAGIC);
    put_len(&mut out, state.len());
    out.extend_from_slice(state);
    put_len(&mut out, reminders.len());
    for r in reminders {
        out.extend_from_slice(&r.id.to_le_bytes());
        out.extend_from_slice(&r.due_ms.to_le_bytes());
        put_len(&mut out, r.msg.len());
        out.extend_from_slice(r.msg.as_bytes());
    }
    out
}

/// The earliest reminder's due time, which the store indexes so that a
/// restarted node finds the keys it must wake.
pub(crate) fn next_due(reminders: &[Reminder]) -> Option<u64> {
    reminders.iter().map(|r| r.due_ms).min()
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // State and messages are far below 4 GiB (messages are capped by the
    // transport, state by the store); a larger one is cut to garbage that
    // decoding reports, never a panic.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

/// Decodes a record, or says why the bytes are not one.
pub(crate) fn decode(bytes: &[u8]) -> Result<Record, String> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(4)? != MAGIC {
        return Err("it does not start with the record marker MYV1".into());
    }
    let state_len = reader.len()?;
    let state = reader.take(state_len)?.to_vec();
    let count = reader.len()?;
    // Each reminder takes at least 20 bytes: a count beyond that is corrupt
    // and must not size an allocation.
    if count > reader.left() / 20 {
        return Err(format!("it claims {count} reminders in {} bytes", reader.left()));
    }
    let mut reminders = Vec::with_capacity(count);
    for _ in 0..count {
        let id = reader.u64()?;
        let due_ms = reader.u64()?;
        let len = reader.len()?;
        let text = reader.take(len)?;
        let msg = Message::try_from(Bytes::copy_from_slice(text))
            .map_err(|e| format!("a reminder's message at byte {}: {e}", reader.at))?;
        reminders.push(Reminder { id, due_ms, msg });
    }
    if reader.left() != 0 {
        return Err(format!("{} bytes follow the record", reader.left()));
    }
    Ok(Record { state, reminders })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!("it ends at byte {} where {n} more were due", self.bytes.len()));
        };
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn len(&mut self) -> Result<usize, String> {
        let raw: [u8; 4] = self.take(4)?.try_into().map_err(|_| "short length")?;
        Ok(u32::from_le_bytes(raw) as usize)
    }

    fn u64(&mut self) -> Result<u64, String> {
        let raw: [u8; 8] = self.take(8)?.try_into().map_err(|_| "short integer")?;
        Ok(u64::from_le_bytes(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reminder(id: u64, due_ms: u64, text: &str) -> Reminder {
        Reminder {
            id,
            due_ms,
            msg: Message::from(text.to_owned()),
        }
    }

    #[test]
    fn a_record_round_trips() {
        let reminders = vec![reminder(1, 500, "wake"), reminder(2, 100, "")];
        let bytes = encode(b"{\"n\":1}", &reminders);
        let record = decode(&bytes).unwrap();
        assert_eq!(record.state, b"{\"n\":1}");
        assert_eq!(record.reminders, reminders);
        assert_eq!(next_due(&record.reminders), Some(100));
        assert_eq!(next_due(&[]), None);
    }

    #[test]
    fn garbage_is_reported_not_panicked_on() {
        let good = encode(b"state", &[reminder(1, 2, "m")]);
        assert!(decode(b"").unwrap_err().contains("ends at byte 0"));
        assert!(decode(b"JUNKJUNK").unwrap_err().contains("marker"));
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode(&trailing).unwrap_err().contains("follow"));
        let mut huge_count = encode(b"", &[]);
        huge_count[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge_count).unwrap_err().contains("claims"));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_record_round_trips(state in proptest::collection::vec(any::<u8>(), 0..64),
                                  texts in proptest::collection::vec(".{0,8}", 0..4)) {
            let reminders: Vec<_> = texts.iter().enumerate()
                .map(|(i, t)| reminder(i as u64, 7 * i as u64, t)).collect();
            let record = decode(&encode(&state, &reminders)).unwrap();
            prop_assert_eq!(record.state, state);
            prop_assert_eq!(record.reminders, reminders);
        }
    }
}
