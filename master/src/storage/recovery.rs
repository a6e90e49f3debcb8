//! Opening a metadata directory: format it if new, else load the newest valid checkpoint and
//! replay every later log record.
//!
//! Invariants:
//! - Records are replayed in sequence order with no gap; a gap or an overlap between segments is
//!   an error, never skipped.
//! - A torn tail of the last segment (a crash mid-write: at most one unacknowledged batch, with no
//!   intact record of a later batch after the damage) is copied aside to
//!   `<segment>.torn-<offset>` and then cut off the file, so the next start sees a clean log and
//!   the bytes are kept for the operator; damage anywhere else is an error naming the file and
//!   offset, and the files are left as they are.
//! - The newest segment on disk is the one `LOG_HEAD` names, or a newer one; otherwise segments
//!   were lost and recovery refuses to start.
//! - Replay applies ops exactly as they were applied live: an op that failed live (its checks
//!   passed when it was logged, but an earlier op in the same batch changed the state) fails again
//!   and changes nothing.

use super::checkpoint::{list_checkpoints, load_checkpoint, write_checkpoint};
use super::log::{SegmentEnd, list_segments, read_segment};
use super::log_head;
use super::{StorageError, sync_dir};
use crate::namespace::Namespace;
use kfs_common::proto::Timestamp;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The state found in a metadata directory.
pub struct Recovered {
    pub ns: Namespace,
    /// Sequence number of the last op in `ns`; the log continues at `last_seq + 1`.
    pub last_seq: u64,
    /// The checkpoint recovery started from.
    pub checkpoint: PathBuf,
    pub checkpoint_seq: u64,
    /// Log records applied after the checkpoint.
    pub replayed: u64,
    /// Newer checkpoints that could not be read: recovery fell back to an older one and renamed
    /// them to `*.kfsckpt.corrupt`.
    pub skipped_checkpoints: Vec<StorageError>,
    /// What was cut off the end of the log, if anything.
    pub torn_tail: Option<String>,
    /// Whether the directory was new and has just been formatted.
    pub formatted: bool,
    pub elapsed: Duration,
}

/// Opens (or formats) the metadata directory `dir`, which the caller has locked.
pub fn recover(dir: &Path, now: Timestamp) -> Result<Recovered, StorageError> {
    let started = Instant::now();
    remove_temp_files(dir)?;
    let checkpoints = list_checkpoints(dir)?;
    let mut segments = list_segments(dir)?;
    let head = log_head::read(dir)?;
    if checkpoints.is_empty() {
        if !segments.is_empty() || head.is_some() {
            return Err(StorageError::Inconsistent {
                dir: dir.to_path_buf(),
                reason: "log segments but no checkpoint: the checkpoints were removed or lost"
                    .into(),
            });
        }
        let ns = Namespace::new(now);
        let checkpoint = write_checkpoint(dir, 0, &ns, now)?;
        return Ok(Recovered {
            ns,
            last_seq: 0,
            checkpoint,
            checkpoint_seq: 0,
            replayed: 0,
            skipped_checkpoints: Vec::new(),
            torn_tail: None,
            formatted: true,
            elapsed: started.elapsed(),
        });
    }

    if let Some(head) = head
        && segments.last().is_none_or(|newest| newest.first_seq < head)
    {
        return Err(StorageError::Inconsistent {
            dir: dir.to_path_buf(),
            reason: format!(
                "{} names {} as the newest log segment, but it is missing: records from {head} \
                 on are lost unless it is restored",
                log_head::FILE_NAME,
                super::log::segment_name(head)
            ),
        });
    }

    let mut skipped = Vec::new();
    let mut loaded = None;
    for candidate in &checkpoints {
        match load_checkpoint(&candidate.path) {
            Ok((header, ns)) => {
                loaded = Some((candidate.path.clone(), header.seq, ns));
                break;
            }
            Err(e) => skipped.push(e),
        }
    }
    let Some((checkpoint, checkpoint_seq, mut ns)) = loaded else {
        return Err(skipped.remove(0));
    };
    // Set unreadable newer checkpoints aside (kept for the operator to look at), so they are
    // neither counted among the checkpoints kept nor tried again.
    for bad in checkpoints.iter().take_while(|c| c.seq > checkpoint_seq) {
        let aside = bad.path.with_extension("kfsckpt.corrupt");
        std::fs::rename(&bad.path, &aside).map_err(StorageError::io(&bad.path))?;
    }

    // Segments wholly at or before the checkpoint need not be read.
    let first_needed = segments
        .windows(2)
        .position(|w| w[1].first_seq > checkpoint_seq + 1)
        .unwrap_or(segments.len().saturating_sub(1));
    // The segment before the newest, if any (LOG_HEAD names it if the newest is removed below).
    let previous_first_seq = segments.len().checked_sub(2).map(|i| segments[i].first_seq);
    segments.drain(..first_needed);
    if let Some(first) = segments.first()
        && first.first_seq > checkpoint_seq + 1
    {
        return Err(StorageError::Inconsistent {
            dir: dir.to_path_buf(),
            reason: format!(
                "records {} to {} are missing: the checkpoint ends at {checkpoint_seq} and the \
                 oldest log segment starts at {}",
                checkpoint_seq + 1,
                first.first_seq - 1,
                first.first_seq
            ),
        });
    }

    let mut last_seq = checkpoint_seq;
    let mut replayed = 0;
    let mut torn_tail = None;
    let count = segments.len();
    for (i, segment) in segments.iter().enumerate() {
        let is_last = i + 1 == count;
        if i > 0 && segment.first_seq != last_seq + 1 {
            return Err(StorageError::Inconsistent {
                dir: dir.to_path_buf(),
                reason: format!(
                    "{} starts at record {} but the previous segment ends at {last_seq}",
                    segment.path.display(),
                    segment.first_seq
                ),
            });
        }
        let mut records_in_segment = 0u64;
        let mut segment_last = 0;
        let end = read_segment(segment, is_last, |record| {
            records_in_segment += 1;
            segment_last = record.seq;
            if record.seq <= checkpoint_seq {
                return Ok(());
            }
            // Ops that failed live fail again here, changing nothing.
            let _ = ns.apply(&record.op);
            last_seq = record.seq;
            replayed += 1;
            Ok(())
        })?;
        last_seq = last_seq.max(segment_last);
        if let SegmentEnd::Torn { offset, dropped } = end {
            torn_tail = Some(format!(
                "cut {dropped} bytes of a torn write off {} at byte {offset}",
                segment.path.display()
            ));
            if dropped > 0 {
                set_aside(dir, &segment.path, offset)?;
            }
            if offset > 0 {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&segment.path)
                    .map_err(StorageError::io(&segment.path))?;
                file.set_len(offset)
                    .and_then(|()| file.sync_all())
                    .map_err(StorageError::io(&segment.path))?;
            }
        }
        if is_last && records_in_segment == 0 {
            // A segment started just before a crash: the next writer starts it anew. LOG_HEAD
            // first names the one before it, so a crash between the two steps leaves a LOG_HEAD
            // that is still true.
            match previous_first_seq {
                Some(previous) if head == Some(segment.first_seq) => {
                    log_head::write(dir, previous)?
                }
                None if head == Some(segment.first_seq) => log_head::remove(dir)?,
                _ => {}
            }
            std::fs::remove_file(&segment.path).map_err(StorageError::io(&segment.path))?;
            sync_dir(dir)?;
        }
    }
    Ok(Recovered {
        ns,
        last_seq,
        checkpoint,
        checkpoint_seq,
        replayed,
        skipped_checkpoints: skipped,
        torn_tail,
        formatted: false,
        elapsed: started.elapsed(),
    })
}

/// Copies the bytes of `segment` from `offset` on to `<segment>.torn-<offset>` (fsynced), so that
/// cutting them off the segment destroys nothing an operator may want to look at.
fn set_aside(dir: &Path, segment: &Path, offset: u64) -> Result<(), StorageError> {
    use std::io::Write;
    let mut name = segment.as_os_str().to_owned();
    name.push(format!(".torn-{offset}"));
    let aside = PathBuf::from(name);
    let bytes = super::log::read_from(segment, offset)?;
    std::fs::File::create(&aside)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .map_err(StorageError::io(&aside))?;
    sync_dir(dir)
}

/// Removes what a crash left of checkpoints being written.
fn remove_temp_files(dir: &Path) -> Result<(), StorageError> {
    for entry in std::fs::read_dir(dir).map_err(StorageError::io(dir))? {
        let path = entry.map_err(StorageError::io(dir))?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            std::fs::remove_file(&path).map_err(StorageError::io(&path))?;
        }
    }
    Ok(())
}

/// Removes checkpoints beyond the newest `keep`, and log segments whose every record is covered
/// by the oldest checkpoint kept. The current (newest) segment is never removed.
pub fn prune(dir: &Path, keep: usize) -> Result<(), StorageError> {
    let checkpoints = list_checkpoints(dir)?;
    let keep = keep.max(1);
    let Some(oldest_kept) = checkpoints[..keep.min(checkpoints.len())].last() else {
        return Ok(());
    };
    for old in checkpoints.iter().skip(keep) {
        std::fs::remove_file(&old.path).map_err(StorageError::io(&old.path))?;
    }
    for pair in list_segments(dir)?.windows(2) {
        // `pair[0]` holds records up to `pair[1].first_seq - 1`.
        if pair[1].first_seq <= oldest_kept.seq + 1 {
            std::fs::remove_file(&pair[0].path).map_err(StorageError::io(&pair[0].path))?;
        }
    }
    sync_dir(dir)
}
