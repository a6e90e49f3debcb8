//! `fsck`: the health of every chunk, the map's replicas counted against the namespace's
//! replication factors.
//!
//! A chunk is *missing* with no readable replica (current, on a live server), *under-replicated*
//! with fewer counting replicas (readable, and not on a draining server) than its file's factor,
//! *over-replicated* (and healthy) with more. Under-replicated and missing chunks are listed by
//! path, at most [`FSCK_PROBLEMS`] of them.
//!
//! Invariant: fsck only reads (the map and the namespace); it decides and changes nothing.

use super::ChunkMap;
use crate::namespace::Namespace;
use kfs_common::proto::master::{FsckProblem, FsckReport};

/// Problems `fsck` lists at most.
const FSCK_PROBLEMS: usize = 1000;

impl ChunkMap {
    /// The health of every chunk; see `MasterService::fsck`.
    pub fn fsck(&self, ns: &Namespace) -> FsckReport {
        let mut report = FsckReport {
            files: ns.counters().files,
            ..Default::default()
        };
        let mut problems = Vec::new();
        for (fid, offset, chunk, _) in ns.all_chunks() {
            report.chunks += 1;
            let replication = ns.replication_of(fid);
            let (live, readable) = self.replica_counts(chunk);
            match live {
                _ if readable == 0 => report.missing += 1,
                n if n < replication as usize => report.under_replicated += 1,
                n if n > replication as usize => {
                    report.over_replicated += 1;
                    report.healthy += 1;
                }
                _ => report.healthy += 1,
            }
            if live < replication as usize && problems.len() < FSCK_PROBLEMS {
                problems.push((fid, offset, chunk, live as u8, replication));
            }
        }
        report.copies_in_flight = self.copies.len() as u64;
        report.safe_mode = self.safe_mode.is_on();
        report.corrupt_replicas = self
            .servers
            .iter()
            .map(|s| {
                s.corrupt
                    .iter()
                    .filter(|c| self.chunks.contains_key(c))
                    .count() as u64
            })
            .sum();
        let wanted = problems.iter().map(|p| p.0).collect();
        let paths = ns.paths_of(&wanted);
        report.problems = problems
            .into_iter()
            .map(|(fid, offset, chunk, live, replication)| FsckProblem {
                path: paths.get(&fid).cloned().unwrap_or_else(|| {
                    match crate::namespace::record::volume_set_replication(fid) {
                        Some(r) => format!("(a volume of small files, replication {r})"),
                        None => fid.to_string(),
                    }
                }),
                offset,
                chunk,
                live,
                replication,
            })
            .collect();
        report
    }
}
