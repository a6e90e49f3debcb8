//! The order of writes to a chunk: every replica applies a chunk's writes in the serial order the
//! primary gave them, so concurrent writes land in the same order everywhere.
//!
//! The primary numbers the writes of a chunk at a version 0, 1, 2, ...; each replica (the primary
//! included) applies write `n` only after write `n - 1`. A write waits at most `wait_limit` for
//! its turn. If an earlier write never arrives (its forwarding failed), or a write comes numbered
//! below writes already applied (the primary restarted and numbers afresh), the writes at that
//! version can no longer be ordered: they are refused with `LeaseExpired`, which is no replica's
//! failure. The writer then has the master move the chunk to a new version (dropping no replica),
//! which starts a new numbering everywhere.
//!
//! Invariants:
//! - a chunk's numbering is per version: a write at a newer version starts it afresh, and writes
//!   at an older version are refused as stale;
//! - every turn taken is finished (even when the write fails, or its request is cancelled: a
//!   dropped turn is finished), so one failed write never blocks the ones after it for longer
//!   than `wait_limit`.

use kfs_common::{ChunkId, ChunkVersion, KfsError, KfsResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Debug)]
struct State {
    version: ChunkVersion,
    next_assign: u64,
    next_apply: u64,
    /// Where the next append to a volume goes (on its primary), once one was placed.
    next_at: Option<u64>,
    last_used: Instant,
}

#[derive(Debug)]
struct Seq {
    state: Mutex<State>,
    turn: Notify,
}

/// Write order of every chunk being written; see the module docs.
#[derive(Debug)]
pub struct Sequencer {
    chunks: Mutex<HashMap<ChunkId, Arc<Seq>>>,
    wait_limit: Duration,
}

/// The right to apply one write now; [`Turn::finish`] passes it to the next write.
pub struct Turn {
    seq: Arc<Seq>,
    version: ChunkVersion,
    serial: u64,
}

impl Turn {
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Turn {
    /// A turn dropped unfinished (its request was cancelled mid-write) passes on too, so the
    /// writes after it are not held up waiting for it.
    fn drop(&mut self) {
        let mut st = self.seq.state.lock().expect("sequencer lock");
        if st.version == self.version && st.next_apply == self.serial {
            st.next_apply += 1;
        }
        drop(st);
        self.seq.turn.notify_waiters();
    }
}

impl Sequencer {
    pub fn new(wait_limit: Duration) -> Sequencer {
        Sequencer {
            chunks: Mutex::new(HashMap::new()),
            wait_limit,
        }
    }

    /// The chunk's sequence, moved to `version` if that is newer; refuses older versions.
    fn seq(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<Arc<Seq>> {
        let seq = self
            .chunks
            .lock()
            .expect("sequencer lock")
            .entry(chunk)
            .or_insert_with(|| {
                Arc::new(Seq {
                    state: Mutex::new(State {
                        version,
                        next_assign: 0,
                        next_apply: 0,
                        next_at: None,
                        last_used: Instant::now(),
                    }),
                    turn: Notify::new(),
                })
            })
            .clone();
        let moved_on = {
            let mut st = seq.state.lock().expect("sequencer lock");
            if version < st.version {
                return Err(KfsError::StaleVersion {
                    chunk,
                    expected: version,
                    found: st.version,
                });
            }
            let moved_on = version > st.version;
            if moved_on {
                *st = State {
                    version,
                    next_assign: 0,
                    next_apply: 0,
                    next_at: None,
                    last_used: Instant::now(),
                };
            }
            st.last_used = Instant::now();
            moved_on
        };
        if moved_on {
            // Writes waiting at the old version learn they are stale.
            seq.turn.notify_waiters();
        }
        Ok(seq)
    }

    /// Numbers a new write of `chunk` at `version` (on the primary).
    pub fn assign(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<u64> {
        let seq = self.seq(chunk, version)?;
        let mut st = seq.state.lock().expect("sequencer lock");
        let serial = st.next_assign;
        st.next_assign += 1;
        Ok(serial)
    }

    /// Numbers a new append of a record of `len` bytes (padding included) to the volume `chunk`
    /// at `version` (on the primary) and places it: at the volume's end, `end` as the store
    /// holds it for the first append numbered, right after the previous one's record from then
    /// on. Appends are applied in their numbers' order, so each finds the volume ending where it
    /// was placed.
    pub fn assign_append(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        len: u64,
        end: u64,
    ) -> KfsResult<(u64, u64)> {
        let seq = self.seq(chunk, version)?;
        let mut st = seq.state.lock().expect("sequencer lock");
        let serial = st.next_assign;
        st.next_assign += 1;
        let at = *st.next_at.get_or_insert(end);
        st.next_at = Some(at + len);
        Ok((serial, at))
    }

    /// Waits until write `serial` of `chunk` at `version` may be applied.
    pub async fn turn(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        serial: u64,
    ) -> KfsResult<Turn> {
        let seq = self.seq(chunk, version)?;
        let deadline = tokio::time::Instant::now() + self.wait_limit;
        loop {
            let notified = seq.turn.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = seq.state.lock().expect("sequencer lock");
                if st.version != version {
                    return Err(KfsError::StaleVersion {
                        chunk,
                        expected: version,
                        found: st.version,
                    });
                }
                if st.next_apply == serial {
                    return Ok(Turn {
                        seq: seq.clone(),
                        version,
                        serial,
                    });
                }
                if st.next_apply > serial {
                    // The primary numbers afresh: it restarted and lost its numbering. Writes
                    // at this version can no longer be put in one order.
                    tracing::warn!(%chunk, %version, serial, applied = st.next_apply, "a write numbered before writes already applied: the primary lost its numbering");
                    return Err(KfsError::LeaseExpired { chunk });
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let expected = seq.state.lock().expect("sequencer lock").next_apply;
                tracing::warn!(%chunk, %version, serial, waited_for = expected, limit = ?self.wait_limit, "a write never came: writes at this version can no longer be ordered");
                return Err(KfsError::LeaseExpired { chunk });
            }
        }
    }

    /// Forgets a chunk (deleted).
    pub fn forget(&self, chunk: ChunkId) {
        self.chunks.lock().expect("sequencer lock").remove(&chunk);
    }

    /// Forgets chunks nobody wrote for `idle` (longer than any lease, so their writers hold
    /// no lease at their version any more).
    pub fn sweep(&self, idle: Duration) {
        let now = Instant::now();
        self.chunks
            .lock()
            .expect("sequencer lock")
            .retain(|_, seq| {
                Arc::strong_count(seq) > 1
                    || now.duration_since(seq.state.lock().expect("sequencer lock").last_used)
                        < idle
            });
    }

    /// Chunks with a numbering in memory.
    pub fn len(&self) -> usize {
        self.chunks.lock().expect("sequencer lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ChunkId = ChunkId(1);
    const V1: ChunkVersion = ChunkVersion(1);
    const V2: ChunkVersion = ChunkVersion(2);

    #[tokio::test]
    async fn writes_apply_in_serial_order_whatever_order_they_arrive_in() {
        let seq = Arc::new(Sequencer::new(Duration::from_secs(5)));
        let order = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = [3u64, 0, 2, 1]
            .into_iter()
            .map(|serial| {
                let (seq, order) = (seq.clone(), order.clone());
                tokio::spawn(async move {
                    let turn = seq.turn(C, V1, serial).await.unwrap();
                    order.lock().unwrap().push(serial);
                    turn.finish();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn a_newer_version_restarts_the_numbering_and_fences_the_old_one() {
        let seq = Sequencer::new(Duration::from_secs(5));
        assert_eq!(seq.assign(C, V1).unwrap(), 0);
        assert_eq!(seq.assign(C, V1).unwrap(), 1);
        seq.turn(C, V1, 0).await.unwrap().finish();
        assert_eq!(seq.assign(C, V2).unwrap(), 0);
        assert!(matches!(
            seq.assign(C, V1),
            Err(KfsError::StaleVersion { .. })
        ));
        assert!(matches!(
            seq.turn(C, V1, 1).await,
            Err(KfsError::StaleVersion { .. })
        ));
        seq.turn(C, V2, 0).await.unwrap().finish();
        assert!(matches!(
            seq.turn(C, V2, 0).await,
            Err(KfsError::LeaseExpired { .. })
        ));
    }

    #[tokio::test]
    async fn a_turn_dropped_unfinished_lets_the_next_write_go() {
        let seq = Sequencer::new(Duration::from_millis(50));
        drop(seq.turn(C, V1, 0).await.unwrap());
        seq.turn(C, V1, 1)
            .await
            .expect("write #1 is not held up")
            .finish();
    }

    #[tokio::test]
    async fn a_missing_write_fails_the_later_ones_after_the_wait_limit() {
        let seq = Sequencer::new(Duration::from_millis(50));
        let got = seq.turn(C, V1, 1).await;
        assert!(
            matches!(got, Err(KfsError::LeaseExpired { .. })),
            "{:?}",
            got.err()
        );
        seq.sweep(Duration::ZERO);
        assert!(seq.is_empty());
    }
}
