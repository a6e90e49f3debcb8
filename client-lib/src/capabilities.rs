//! The capabilities this client holds for the chunks it reads and writes: what the master's
//! `*_signed` answers carried, kept until they need renewal, and handed to the chunk calls.
//!
//! A chunk call asks [`Capabilities::for_call`]: with a capability that opens the call (and
//! is not within `RENEW_BEFORE_MS` of its expiry, counted by this client's clock from its
//! arrival) it goes out as the `*_with` call; on a
//! cluster whose master signs nothing (insecure) as the plain call; and on a secured cluster
//! with none held it fails at once with `CapabilityExpired`, which every path that asked the
//! master for the chunk takes as "ask again" (a read locates again, a write asks for its lease,
//! an append for its volume). That is how renewal is transparent: nothing a caller sees.
//!
//! Invariants: at most [`PER_CHUNK`] capabilities per chunk (the newest) and about
//! [`MAX_CHUNKS`] chunks are held; expired ones are dropped as new ones arrive.

use kfs_common::security::capability::{Access, Capability};
use kfs_common::{ChunkId, ChunkVersion, KfsError, KfsResult};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Capabilities held per chunk, at most (a volume's readers hold one per record read).
const PER_CHUNK: usize = 16;
/// Chunks with capabilities held, about at most.
const MAX_CHUNKS: usize = 1 << 16;

/// What a chunk call asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Need {
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    /// `None`: any access (a sync, a length).
    pub access: Option<Access>,
    pub offset: u64,
    pub len: u64,
}

impl Need {
    pub(crate) fn whole(chunk: ChunkId, version: ChunkVersion, access: Option<Access>) -> Need {
        Need {
            chunk,
            version,
            access,
            offset: 0,
            len: 0,
        }
    }
}

/// A capability held, and until when (by this client's clock, from its arrival) it is used.
struct Held {
    cap: Capability,
    until: Instant,
}

impl Held {
    fn usable(&self, now: Instant) -> bool {
        now < self.until
    }
}

#[derive(Default)]
pub(crate) struct Capabilities {
    held: Mutex<HashMap<ChunkId, Vec<Held>>>,
    /// Set once the master answered with a capability: it signs, so chunk calls need them.
    signing: AtomicBool,
}

impl Capabilities {
    /// Keeps what a signed answer carried.
    pub(crate) fn keep(&self, caps: Vec<Capability>) {
        if caps.is_empty() {
            return;
        }
        self.signing.store(true, Ordering::Release);
        let now = Instant::now();
        let mut held = self.held.lock().expect("capabilities lock");
        if held.len() >= MAX_CHUNKS {
            held.retain(|_, list| {
                list.retain(|h| h.usable(now));
                !list.is_empty()
            });
            if held.len() >= MAX_CHUNKS {
                held.clear();
            }
        }
        for cap in caps {
            let list = held.entry(cap.chunk).or_default();
            list.retain(|h| h.usable(now) && h.cap.version == cap.version);
            if list.len() >= PER_CHUNK {
                list.remove(0);
            }
            let until = now + Duration::from_millis(cap.usable_for_ms());
            list.push(Held { cap, until });
        }
    }

    /// Whether a call with `need` would find a capability (always, when the master signs none).
    pub(crate) fn holds(&self, need: Need) -> bool {
        self.for_call(need).is_ok()
    }

    /// The capability for a call, `None` for an unsigned call (the master signs nothing), or
    /// `CapabilityExpired` when one is needed and none held will do: ask the master again.
    pub(crate) fn for_call(&self, need: Need) -> KfsResult<Option<Capability>> {
        if !self.signing.load(Ordering::Acquire) {
            return Ok(None);
        }
        let now = Instant::now();
        let held = self.held.lock().expect("capabilities lock");
        let found = held.get(&need.chunk).and_then(|list| {
            list.iter()
                .filter(|h| {
                    let c = &h.cap;
                    c.version == need.version
                        && need.access.is_none_or(|a| a == c.access)
                        && (need.access.is_none() || c.covers(need.offset, need.len))
                        && h.usable(now)
                })
                .max_by_key(|h| h.until)
                .map(|h| h.cap.clone())
        });
        match found {
            Some(cap) => Ok(Some(cap)),
            None => Err(KfsError::CapabilityExpired { chunk: need.chunk }),
        }
    }

    /// Drops the capabilities held for `chunk` (a chunkserver refused one as expired).
    pub(crate) fn forget(&self, chunk: ChunkId) {
        self.held.lock().expect("capabilities lock").remove(&chunk);
    }
}
