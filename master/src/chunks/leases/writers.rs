//! The files written under write leases, and when a writer last took or renewed a lease on
//! each: what `kfs fsck --open-files` lists and what the abandoned-file check
//! (`server/abandoned.rs`) looks at once a file's writer has gone quiet for longer than a lease.
//!
//! Volatile, as leases are: a restarted master knows no writer, and a file written before the
//! restart is looked at again only if written again.

use super::Leases;
use kfs_common::FileId;
use std::collections::HashMap;
use std::time::Instant;

impl Leases {
    /// Notes a lease taken or renewed on a chunk of `fid` at `now`.
    pub(super) fn note_writer(&self, fid: FileId, now: Instant) {
        self.writers.lock().expect("writers lock").insert(fid, now);
    }

    /// Every file written under a lease since it was last forgotten, with when its writer last
    /// took or renewed one.
    pub fn written_files(&self) -> HashMap<FileId, Instant> {
        self.writers.lock().expect("writers lock").clone()
    }

    /// Forgets `fid`, unless a writer took or renewed a lease on it after `seen`.
    pub fn forget_written(&self, fid: FileId, seen: Instant) {
        let mut writers = self.writers.lock().expect("writers lock");
        if writers.get(&fid).is_some_and(|last| *last <= seen) {
            writers.remove(&fid);
        }
    }

    /// How long a lease lasts.
    pub fn lease_duration(&self) -> std::time::Duration {
        self.config.duration
    }
}
