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
use kfs_common::proto::master::{ChunkProblem, FsckProblem, FsckReport, FsckSummary};
use kfs_common::{ChunkId, FileId, KfsResult};
use std::collections::HashSet;
use std::time::Instant;

/// Problems `fsck` lists at most.
const FSCK_PROBLEMS: usize = 1000;

/// A chunk's health: the one classification fsck, repair rounds (so the status page and
/// `/metrics`) all use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Health {
    Healthy,
    Over,
    Under(Under),
    Missing,
}

/// Why an under-replicated chunk is not being repaired, if it is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Under {
    Repairable,
    /// A lease under which writes may still land, a lease being granted, or a copy in flight.
    Waiting,
    /// Fewer live, undrained servers than its factor: no copy can be placed.
    ShortOfServers,
}

impl ChunkMap {
    /// Live chunkservers that take new replicas (alive, not draining).
    pub(crate) fn live_servers(&self) -> usize {
        self.servers
            .iter()
            .filter(|s| s.alive && !s.draining)
            .count()
    }

    /// The health of `chunk` for a file of replication `factor`, and its live replicas
    /// (current, on live undrained servers); `live_servers` is [`ChunkMap::live_servers`].
    pub(crate) fn classify(
        &self,
        chunk: ChunkId,
        factor: usize,
        live_servers: usize,
        now: Instant,
    ) -> (Health, usize) {
        let (live, readable) = self.replica_counts(chunk);
        let health = if readable == 0 {
            Health::Missing
        } else if live < factor {
            // Too few servers first: waiting or not, no repair can happen.
            Health::Under(if live_servers < factor {
                Under::ShortOfServers
            } else if !self.repairable(chunk, now) {
                Under::Waiting
            } else {
                Under::Repairable
            })
        } else if live > factor {
            Health::Over
        } else {
            Health::Healthy
        };
        (health, live)
    }

    /// The health of the chunks of the files at or below `path` (`MasterService::fsck_path`),
    /// at most `limit` problems listed (0: all). A packed file's data is a record of its
    /// volume: the volume is counted (once), at the volume's factor.
    pub fn fsck_below(
        &self,
        ns: &Namespace,
        path: &str,
        limit: usize,
        now: Instant,
    ) -> KfsResult<FsckSummary> {
        let limit = if limit == 0 { usize::MAX } else { limit };
        let live_servers = self.live_servers();
        let mut summary = FsckSummary {
            path: path.to_string(),
            copies_in_flight: self.copies.len() as u64,
            safe_mode: self.safe_mode.is_on(),
            live_servers: live_servers as u64,
            ..Default::default()
        };
        // (file or volume set, offset, chunk, factor, path)
        let mut chunks: Vec<(FileId, u64, ChunkId, usize, String)> = Vec::new();
        let mut volumes = HashSet::new();
        for (fid, file_path) in ns.files_below(path)? {
            summary.files += 1;
            let factor = ns.replication_of(fid) as usize;
            for (offset, chunk, _) in ns.chunks(fid) {
                chunks.push((fid, offset, chunk, factor, file_path.clone()));
            }
            if let Some(extent) = ns.extent_of(fid)
                && volumes.insert(extent.volume)
                && let Some(volume_fid) = self.file_of(extent.volume)
            {
                let factor = ns.replication_of(volume_fid) as usize;
                let label = format!("{file_path} (packed into a volume of small files)");
                chunks.push((volume_fid, 0, extent.volume, factor, label));
            }
        }
        let in_scope: HashSet<ChunkId> = chunks.iter().map(|c| c.2).collect();
        for (_, offset, chunk, factor, file_path) in chunks {
            summary.chunks += 1;
            let (health, live) = self.classify(chunk, factor, live_servers, now);
            let state = match health {
                Health::Healthy => {
                    summary.healthy += 1;
                    continue;
                }
                Health::Over => {
                    summary.healthy += 1;
                    summary.over_replicated += 1;
                    continue;
                }
                Health::Missing => {
                    summary.missing += 1;
                    "missing"
                }
                Health::Under(why) => {
                    summary.under_replicated += 1;
                    match why {
                        Under::Repairable => "under_replicated",
                        Under::Waiting => {
                            summary.waiting += 1;
                            "waiting"
                        }
                        Under::ShortOfServers => {
                            summary.short_of_servers += 1;
                            "short_of_servers"
                        }
                    }
                }
            };
            if summary.problems.len() < limit {
                summary.problems.push(ChunkProblem {
                    path: file_path,
                    offset,
                    chunk,
                    live: live.min(255) as u8,
                    replication: factor.min(255) as u8,
                    state: state.into(),
                });
            } else {
                summary.more = true;
            }
        }
        summary.corrupt_replicas = self
            .servers
            .iter()
            .map(|s| s.corrupt.iter().filter(|c| in_scope.contains(c)).count() as u64)
            .sum();
        Ok(summary)
    }
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
