//! Log records as stored, in every segment format, and their encoding.
//!
//! - Segment format 1: each frame's payload is a [`V1`], `{seq, op}`. Read only.
//! - Segment format 2: a [`V2`], `{seq, batch_first, op}`: the first record of the batch it was
//!   written (and fsynced) with. Read only.
//! - Segment format 3 (written by this build): the record's version byte, then that version's
//!   record: 2, a [`V2`]; 3, a [`V3`]; 4, a [`V4`]; 5, a [`V5`]; 6, a [`V6`]; 7, a [`V7`]; or
//!   8 ([`RECORD_VERSION`], written by this build), a [`V8`]. A record so names its own
//!   version, and a later record version can follow older ones in one segment.
//!
//! Ops are [`op_v1::Op`] in records of versions 1 and 2, [`op_v2::Op`] in version 3,
//! [`op_v3::Op`] in version 4, [`op_v4::Op`] in version 5, [`op_v5::Op`] in version 6,
//! [`op_v6::Op`] in version 7, [`op_v7::Op`] in version 8; every op is migrated to the newest
//! version, then converted to the namespace's op, here (`from_v1` to `from_v6`).

use super::{DecodeError, Migrate, op_v1, op_v2, op_v3, op_v4, op_v5, op_v6, op_v7};
use crate::namespace::op::Op;
use crate::storage::codec;
use bincode::Options;
use serde::{Deserialize, Serialize};

/// The record version this build writes (in segment format 3).
pub const RECORD_VERSION: u8 = 8;

/// Record version 1 (segment format 1).
#[derive(Serialize, Deserialize)]
pub struct V1 {
    pub seq: u64,
    pub op: op_v1::Op,
}

/// Record version 2 (segment formats 2 and 3).
#[derive(Serialize, Deserialize)]
pub struct V2 {
    pub seq: u64,
    pub batch_first: u64,
    pub op: op_v1::Op,
}

/// Record version 3 (segment format 3): ops of version 2.
#[derive(Serialize, Deserialize)]
pub struct V3 {
    pub seq: u64,
    pub batch_first: u64,
    pub op: op_v2::Op,
}

/// Record version 4 (segment format 3): ops of version 3.
#[derive(Serialize, Deserialize)]
pub struct V4 {
    pub seq: u64,
    pub batch_first: u64,
    pub op: op_v3::Op,
}

/// Record version 5 (segment format 3): ops of version 4.
#[derive(Serialize, Deserialize)]
pub struct V5 {
    pub seq: u64,
    pub batch_first: u64,
    pub op: op_v4::Op,
}

/// Record version 6 (segment format 3): ops of version 5.
#[derive(Serialize, Deserialize)]
pub struct V6 {
    pub seq: u64,
    pub batch_first: u64,
    pub op: op_v5::Op,
}

/// Record version 7 (segment format 3): ops of version 6.
#[derive(Serialize, Deserialize)]
pub struct V7 {
    pub seq: u64,
    pub batch_first: u64,
    pub op: op_v6::Op,
}

/// Record version 8 (segment format 3): ops of version 7.
#[derive(Serialize, Deserialize)]
pub struct V8 {
    pub seq: u64,
    pub batch_first: u64,
    pub op: op_v7::Op,
}

/// One log record, as read back (whatever its format).
#[derive(Debug)]
pub struct LogRecord {
    pub seq: u64,
    /// The first record of the batch this one was written with (`None` in record version 1,
    /// which did not record it).
    pub batch_first: Option<u64>,
    pub op: Op,
}

/// Appends the payload of the record `{seq, batch_first, op}` as segment format 3 stores it.
pub fn encode(seq: u64, batch_first: u64, op: &Op, out: &mut Vec<u8>) {
    out.push(RECORD_VERSION);
    let record = V8 {
        seq,
        batch_first,
        op: op_v7::Op::from(op),
    };
    codec()
        .serialize_into(&mut *out, &record)
        .expect("ops always encode");
}

/// Decodes one record's payload from a segment of format `segment_format`.
pub fn decode(segment_format: u32, payload: &[u8]) -> Result<LogRecord, DecodeError> {
    let (version, body) = match segment_format {
        1 => (1, payload),
        2 => (2, payload),
        _ => match payload.split_first() {
            Some((version, body)) => (*version, body),
            None => return Err(DecodeError::Unknown(0)),
        },
    };
    match version {
        1 => {
            let r: V1 = codec().deserialize(body)?;
            Ok(LogRecord {
                seq: r.seq,
                batch_first: None,
                op: from_v1(r.op),
            })
        }
        2 => {
            let r: V2 = codec().deserialize(body)?;
            Ok(LogRecord {
                seq: r.seq,
                batch_first: Some(r.batch_first),
                op: from_v1(r.op),
            })
        }
        3 => {
            let r: V3 = codec().deserialize(body)?;
            Ok(LogRecord {
                seq: r.seq,
                batch_first: Some(r.batch_first),
                op: from_v2(r.op),
            })
        }
        4 => {
            let r: V4 = codec().deserialize(body)?;
            Ok(LogRecord {
                seq: r.seq,
                batch_first: Some(r.batch_first),
                op: from_v3(r.op),
            })
        }
        5 => {
            let r: V5 = codec().deserialize(body)?;
            Ok(LogRecord {
                seq: r.seq,
                batch_first: Some(r.batch_first),
                op: from_v4(r.op),
            })
        }
        6 => {
            let r: V6 = codec().deserialize(body)?;
            Ok(LogRecord {
                seq: r.seq,
                batch_first: Some(r.batch_first),
                op: from_v5(r.op),
            })
        }
        7 => {
            let r: V7 = codec().deserialize(body)?;
            Ok(LogRecord {
                seq: r.seq,
                batch_first: Some(r.batch_first),
                op: from_v6(r.op),
            })
        }
        8 => {
            let r: V8 = codec().deserialize(body)?;
            Ok(LogRecord {
                seq: r.seq,
                batch_first: Some(r.batch_first),
                op: Op::from(r.op),
            })
        }
        v if v > RECORD_VERSION => Err(DecodeError::Newer {
            version: v,
            newest: RECORD_VERSION,
        }),
        v => Err(DecodeError::Unknown(v)),
    }
}

// The namespace's op for a stored op of each version, migrated forward one version at a time
// (see [`super::Migrate`]).
fn from_v6(op: op_v6::Op) -> Op {
    Op::from(op_v7::Op::migrate(op))
}
fn from_v5(op: op_v5::Op) -> Op {
    from_v6(op_v6::Op::migrate(op))
}
fn from_v4(op: op_v4::Op) -> Op {
    from_v5(op_v5::Op::migrate(op))
}
fn from_v3(op: op_v3::Op) -> Op {
    from_v4(op_v4::Op::migrate(op))
}
fn from_v2(op: op_v2::Op) -> Op {
    from_v3(op_v3::Op::migrate(op))
}
fn from_v1(op: op_v1::Op) -> Op {
    from_v2(op_v2::Op::migrate(op))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kfs_common::FileId;

    fn op() -> Op {
        Op::Mkdir {
            path: "/a".into(),
            parents: true,
            mode: 0o755,
            owner: 0,
            group: 0,
            first_fid: FileId(9),
            time: 5,
        }
    }

    #[test]
    fn records_round_trip_and_name_their_version() {
        let mut bytes = Vec::new();
        encode(3, 2, &op(), &mut bytes);
        assert_eq!(bytes[0], RECORD_VERSION);
        let r = decode(3, &bytes).unwrap();
        assert_eq!((r.seq, r.batch_first, r.op), (3, Some(2), op()));
        // Format 2 stored a version-2 record without the version byte; format 3 may hold one
        // with the byte. Both migrate to the same op.
        let v2 = codec()
            .serialize(&V2 {
                seq: 3,
                batch_first: 2,
                op: op_v1::Op::from(&op()),
            })
            .unwrap();
        let r = decode(2, &v2).unwrap();
        assert_eq!((r.seq, r.batch_first, r.op), (3, Some(2), op()));
        let r = decode(3, &[&[2u8][..], &v2].concat()).unwrap();
        assert_eq!((r.seq, r.batch_first, r.op), (3, Some(2), op()));
    }

    #[test]
    fn a_record_of_a_newer_version_is_refused_by_name() {
        let mut bytes = Vec::new();
        encode(3, 2, &op(), &mut bytes);
        bytes[0] = RECORD_VERSION + 1;
        let e = decode(3, &bytes).unwrap_err();
        assert!(e.to_string().contains("newer than this build reads"), "{e}");
        assert!(decode(3, &[]).is_err());
    }
}
