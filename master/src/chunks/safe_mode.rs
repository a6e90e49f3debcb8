//! Safe mode: after a restart, no deletion and no repair until enough chunks have reported a
//! replica.
//!
//! A master that recovered its namespace (rather than formatting one) starts in safe mode
//! ([`ChunkMap::with_repair`]'s `safe_mode_since`): no chunkserver has said hello yet, so every
//! chunk looks lost and every replica unknown. Safe mode ends once
//! [`RepairConfig::safe_mode_fraction`](super::RepairConfig) of the chunks have a live replica at
//! their version, or `safe_mode_max` after the start at the latest. Until then hello and heartbeat
//! replies carry no deletion (they wait in the servers' queues, `registry.rs`) and repair rounds
//! end at once, empty (`repair.rs`).
//!
//! The check walks every chunk, so heartbeats repeat it at most every [`SAFE_MODE_RECHECK`]; a
//! hello, which brings replicas, has the next check count again.
//!
//! Invariant: once ended, safe mode never comes back for this map.

use super::ChunkMap;
use kfs_common::proto::master::SafeModeStatus;
use std::time::{Duration, Instant};

/// How often, at most, heartbeats recount the chunks reported while in safe mode.
const SAFE_MODE_RECHECK: Duration = Duration::from_millis(200);

/// Safe mode's state; see the module docs.
#[derive(Clone, Debug)]
pub(super) struct SafeMode {
    /// When safe mode ends at the latest; `None` once it has ended.
    until: Option<Instant>,
    /// When safe mode was last found to go on (the check walks every chunk, so heartbeats do not
    /// repeat it more than every `SAFE_MODE_RECHECK`; a hello, which brings replicas, does).
    checked: Option<Instant>,
}

impl SafeMode {
    /// Safe mode until `until` at the latest; `None`: not in safe mode.
    pub(super) fn new(until: Option<Instant>) -> SafeMode {
        SafeMode {
            until,
            checked: None,
        }
    }

    /// Whether safe mode had not ended at the last check ([`ChunkMap::in_safe_mode`] checks).
    pub(super) fn is_on(&self) -> bool {
        self.until.is_some()
    }

    /// Has the next check count the reported chunks again (a hello brought replicas).
    pub(super) fn recount(&mut self) {
        self.checked = None;
    }
}

impl ChunkMap {
    /// Safe mode's state at `now` (`kfs admin safemode get`, the status page): whether it is
    /// on, how many chunks have reported against how many it waits for, and how long until it
    /// ends at the latest.
    pub fn safe_mode_status(&mut self, now: Instant) -> SafeModeStatus {
        let on = self.in_safe_mode(now);
        let (reported, remaining) = match self.safe_mode.until {
            Some(until) if on => (self.reported_chunks(), until.saturating_duration_since(now)),
            _ => (0, Duration::ZERO),
        };
        SafeModeStatus {
            on,
            reported,
            total: self.chunks.len() as u64,
            threshold: self.repair.safe_mode_fraction,
            remaining_ms: remaining.as_millis() as u64,
        }
    }

    /// Ends safe mode now (`kfs admin safemode leave`): the operator says the servers that have
    /// not reported are not coming back, so repair may begin. It does not come back.
    pub fn leave_safe_mode(&mut self) {
        if self.safe_mode.until.take().is_some() {
            tracing::warn!("safe mode ended by an operator: deletions and repairs may begin");
        }
    }

    /// Chunks with a live replica at their version.
    fn reported_chunks(&self) -> u64 {
        self.chunks
            .values()
            .filter(|s| {
                s.replicas
                    .iter()
                    .any(|r| self.servers[r.server].alive && r.version >= s.version)
            })
            .count() as u64
    }

    /// Whether the map is in safe mode at `now`; leaves it once enough chunks have a live
    /// replica or the time is up.
    pub fn in_safe_mode(&mut self, now: Instant) -> bool {
        let Some(until) = self.safe_mode.until else {
            return false;
        };
        if now < until
            && self
                .safe_mode
                .checked
                .is_some_and(|at| now.saturating_duration_since(at) < SAFE_MODE_RECHECK)
        {
            return true;
        }
        let reported = self.reported_chunks() as usize;
        let total = self.chunks.len();
        let enough = total == 0 || reported as f64 >= self.repair.safe_mode_fraction * total as f64;
        if enough || now >= until {
            tracing::info!(
                reported,
                total,
                timed_out = !enough,
                "leaving safe mode: deletions and repairs may begin"
            );
            self.safe_mode.until = None;
            return false;
        }
        self.safe_mode.checked = Some(now);
        true
    }
}
