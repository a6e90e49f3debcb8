//! The master's on-disk record types, one module per version, apart from every in-memory and
//! wire type.
//!
//! Nothing the master writes is encoded from a type used for anything else: a log record holds
//! an [`op_v1::Op`], not the namespace's [`crate::namespace::op::Op`] (which may embed protocol
//! types such as `proto::master::SetAttr`), and a checkpoint holds [`checkpoint_v1::Record`]s,
//! not the namespace map's keys and values. The in-memory types convert to and from the newest
//! stored version, field by field with no `..`, so a change to an in-memory or protocol type
//! fails to compile here instead of silently changing the disk format.
//!
//! Versions:
//! - **Log records** ([`log_record`]): `{seq, op}` in segment format 1, `{seq, batch_first, op}`
//!   in format 2 (the segment header names the format of all its records), and in format 3,
//!   written by this build, every record starts with its own version byte: record version 2 is
//!   `{seq, batch_first, op}` with a version-1 op, record version 3 the same with a version-2
//!   op, record version 4 with a version-3 op, record version 5 with a version-4 op, record
//!   version 6 with a version-5 op, record version 7 with a version-6 op, record version 8
//!   with a version-7 op. A record can so be read on its own (a replicated log's entry).
//! - **Ops** ([`op_v1`] to [`op_v5`]): version 1 in record versions 1 and 2; version 2 (every
//!   version-1 op as it was, and the ops of packed small files) in record version 3; version 3
//!   (every version-2 op as it was, and compaction's extent moves) in record version 4; version
//!   4 (every version-3 op as it was, and truncates) in record version 5; version 5 (every
//!   version-4 op as it was, and creates and mkdirs that name their owner) in record version 6;
//!   version 6 (every version-5 op as it was, and symbolic links and special files) in record
//!   version 7; version 7 (every version-6 op as it was, and hard links) in record version 8.
//! - **Checkpoints** ([`checkpoint_v1`] to [`checkpoint_v3`]): the checkpoint header's
//!   `format`; 3 (every version-2 record as it was, and the entries and attributes of symbolic
//!   links and special files) is written by this build; 2 (every version-1 record as it was,
//!   and small files' extents) and 1 are read and migrated.
//!
//! Rules: a `vN` module never changes once a build has written it. A new format is a new module
//! whose type implements [`Migrate`] from the one before; a value stored in an older version
//! is decoded as that version and migrated forward, one version at a time, to the newest
//! (garage's `Migrate` pattern). `tests/fixtures/` holds a metadata directory written by an
//! older build, which every build must still recover exactly (`t12_format_fixture`).

pub mod checkpoint_v1;
pub mod checkpoint_v2;
pub mod checkpoint_v3;
pub mod log_record;
pub mod op_v1;
pub mod op_v2;
pub mod op_v3;
pub mod op_v4;
pub mod op_v5;
pub mod op_v6;
pub mod op_v7;

use bincode::Options;
use serde::de::DeserializeOwned;

/// A stored format that replaced an older one (or the first of its kind).
pub trait Migrate: DeserializeOwned {
    /// The version stored with values of this format.
    const VERSION: u8;
    /// The format this one replaced; `Self` for the first format of its kind.
    type Previous: Migrate;
    /// This format's value for one stored in the previous format.
    fn migrate(previous: Self::Previous) -> Self;
}

/// Why a stored value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("version {version} is newer than this build reads (at most {newest})")]
    Newer { version: u8, newest: u8 },
    #[error("version {0} is unknown to this build")]
    Unknown(u8),
    #[error("undecodable: {0}")]
    Bincode(#[from] bincode::Error),
}

/// Decodes `bytes` stored in `version` of `T`'s kind as `T`, migrating an older version forward.
pub fn decode_migrating<T: Migrate>(version: u8, bytes: &[u8]) -> Result<T, DecodeError> {
    if version == T::VERSION {
        return Ok(super::codec().deserialize(bytes)?);
    }
    if version > T::VERSION {
        return Err(DecodeError::Newer {
            version,
            newest: T::VERSION,
        });
    }
    if <T::Previous as Migrate>::VERSION == T::VERSION {
        return Err(DecodeError::Unknown(version)); // older than the first format of this kind
    }
    decode_migrating::<T::Previous>(version, bytes).map(T::migrate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// Two versions of a made-up record, to check the migration chain itself.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct First {
        name: String,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Second {
        name: String,
        size: u64,
    }
    impl Migrate for First {
        const VERSION: u8 = 1;
        type Previous = First;
        fn migrate(previous: First) -> First {
            previous
        }
    }
    impl Migrate for Second {
        const VERSION: u8 = 2;
        type Previous = First;
        fn migrate(previous: First) -> Second {
            Second {
                name: previous.name,
                size: 0,
            }
        }
    }

    #[test]
    fn old_versions_migrate_forward_and_unknown_ones_are_refused() {
        let first = super::super::codec()
            .serialize(&First { name: "a".into() })
            .unwrap();
        let second = super::super::codec()
            .serialize(&Second {
                name: "b".into(),
                size: 7,
            })
            .unwrap();
        let want = |name: &str, size| Second {
            name: name.into(),
            size,
        };
        assert_eq!(decode_migrating::<Second>(1, &first).unwrap(), want("a", 0));
        assert_eq!(
            decode_migrating::<Second>(2, &second).unwrap(),
            want("b", 7)
        );
        assert!(matches!(
            decode_migrating::<Second>(3, &second),
            Err(DecodeError::Newer {
                version: 3,
                newest: 2
            })
        ));
        assert!(matches!(
            decode_migrating::<Second>(0, &first),
            Err(DecodeError::Unknown(0))
        ));
    }
}
