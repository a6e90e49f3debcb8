//! Telling a torn write from corruption at the end of the last log segment.
//!
//! A crash can leave the last batch partly written: its bytes reach the disk in any order (a
//! power cut may keep a later page of the batch and lose an earlier one), so damage may be
//! followed by intact records *of the same batch*. It can never be followed by an intact record
//! of a *later* batch: a batch is written only after the one before it was fsynced and
//! acknowledged. So [`check_torn`] scans every byte after the damage for intact frames, and
//! finds corruption when one holds a record of another batch.
//!
//! Format-1 segments do not say which batch a record belongs to: there any intact record after
//! the damage counts as evidence of corruption (refusing to start is safe; cutting acknowledged
//! records off is not).

use super::frame::{HEADER_LEN, MAX_PAYLOAD};

/// What an intact frame after the damage holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intact {
    pub seq: u64,
    /// The first record of its batch, where the format records it.
    pub batch_first: Option<u64>,
}

/// Checks that the damaged bytes `tail` (from byte `offset` of the segment to its end, where the
/// record `expected` should have started) can be a torn write: `Err` says which intact record
/// proves otherwise. `decode` turns an intact frame's payload into its record, or `None` if it is
/// not one.
pub fn check_torn(
    tail: &[u8],
    offset: u64,
    expected: u64,
    decode: impl Fn(&[u8]) -> Option<Intact>,
) -> Result<(), String> {
    let mut at = 1;
    while at + HEADER_LEN <= tail.len() {
        let Some(payload) = frame_at(&tail[at..]) else {
            at += 1;
            continue;
        };
        let Some(record) = decode(payload) else {
            at += 1;
            continue;
        };
        let same_batch = match record.batch_first {
            Some(first) => first <= expected && record.seq > expected,
            None => false,
        };
        if !same_batch {
            return Err(format!(
                "an intact record {} (of a batch begun at {}) follows at byte {}: this is \
                 corruption, not a torn write",
                record.seq,
                record
                    .batch_first
                    .map_or_else(|| "an unknown record".to_string(), |f| f.to_string()),
                offset + at as u64
            ));
        }
        at += HEADER_LEN + payload.len();
    }
    Ok(())
}

/// The payload of an intact frame starting at `bytes[0]`, if there is one.
fn frame_at(bytes: &[u8]) -> Option<&[u8]> {
    let len_bytes: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes);
    if len > MAX_PAYLOAD {
        return None;
    }
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let payload = bytes.get(HEADER_LEN..HEADER_LEN + len as usize)?;
    (crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload) == crc).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::frame::write_frame;

    /// Frames whose payload is `[seq, batch_first]`.
    fn frames(records: &[(u8, u8)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, first) in records {
            write_frame(&mut out, &[*seq, *first]);
        }
        out
    }

    fn decode(payload: &[u8]) -> Option<Intact> {
        match payload {
            [seq, first] => Some(Intact {
                seq: u64::from(*seq),
                batch_first: Some(u64::from(*first)),
            }),
            _ => None,
        }
    }

    #[test]
    fn damage_followed_only_by_its_own_batch_is_torn() {
        // Records 5, 6, 7 of the batch begun at 5; record 5's frame is damaged.
        let mut tail = frames(&[(5, 5), (6, 5), (7, 5)]);
        tail[3] ^= 1;
        assert_eq!(check_torn(&tail, 100, 5, decode), Ok(()));
        // Nothing intact at all: torn.
        assert_eq!(check_torn(&[0u8; 4096], 100, 5, decode), Ok(()));
    }

    #[test]
    fn a_later_batch_after_the_damage_is_corruption() {
        let mut tail = frames(&[(5, 5), (6, 6), (7, 6)]);
        tail[3] ^= 1;
        let err = check_torn(&tail, 100, 5, decode).unwrap_err();
        assert!(
            err.contains("record 6") && err.contains("byte 110"),
            "{err}"
        );
        // Zeros in the middle of a log, then later batches: corruption.
        let mut tail = vec![0u8; 64];
        tail.extend(frames(&[(9, 9)]));
        assert!(check_torn(&tail, 0, 5, decode).is_err());
    }

    #[test]
    fn format_1_records_after_damage_are_always_corruption() {
        let mut tail = frames(&[(5, 5), (6, 5)]);
        tail[3] ^= 1;
        let no_batch = |p: &[u8]| {
            decode(p).map(|r| Intact {
                batch_first: None,
                ..r
            })
        };
        assert!(check_torn(&tail, 0, 5, no_batch).is_err());
    }
}
