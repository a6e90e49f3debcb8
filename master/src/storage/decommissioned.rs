//! `DECOMMISSIONED`: the chunkservers an operator is draining, so the marks outlive a master
//! restart (as HDFS's exclude file does). One server id per line (32 hex digits); written whole
//! to a temp file, fsynced, renamed over the old one, the directory fsynced: a crash leaves the
//! old list or the new, never a mix. A missing file is an empty list.

use super::{StorageError, sync_dir};
use kfs_common::ServerId;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

const NAME: &str = "DECOMMISSIONED";

/// The servers marked for draining in the metadata directory `dir`.
pub fn load(dir: &Path) -> Result<BTreeSet<ServerId>, StorageError> {
    let path = dir.join(NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(StorageError::io(&path)(e)),
    };
    let mut ids = BTreeSet::new();
    let mut offset = 0u64;
    for line in text.lines() {
        let id = line.trim();
        if !id.is_empty() {
            let parsed = u128::from_str_radix(id, 16)
                .map_err(|e| StorageError::corrupt(&path, offset, format!("'{id}': {e}")))?;
            ids.insert(ServerId(parsed));
        }
        offset += line.len() as u64 + 1;
    }
    Ok(ids)
}

/// Replaces the list in `dir` with `ids`, durably.
pub fn save(dir: &Path, ids: &BTreeSet<ServerId>) -> Result<(), StorageError> {
    let path = dir.join(NAME);
    let temp = dir.join(format!("{NAME}.tmp"));
    let mut text = String::new();
    for id in ids {
        text.push_str(&format!("{id}\n"));
    }
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    };
    write().map_err(StorageError::io(&temp))?;
    std::fs::rename(&temp, &path).map_err(StorageError::io(&path))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let ids: BTreeSet<ServerId> = [ServerId(1), ServerId(u128::MAX)].into();
        save(dir.path(), &ids).unwrap();
        assert_eq!(load(dir.path()).unwrap(), ids);
        save(dir.path(), &BTreeSet::new()).unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        std::fs::write(dir.path().join(NAME), "00ff\nnot-hex\n").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("DECOMMISSIONED") && e.contains("byte 5"), "{e}");
    }
}
