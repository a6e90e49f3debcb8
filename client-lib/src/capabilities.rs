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
//! Capabilities are held by chunk and the offset they open from (0 for a whole chunk, a
//! record's offset for a packed file's), so the readers of many files packed into one volume do
//! not push one another's out.
//!
//! Invariants: at most [`PER_PLACE`] capabilities per chunk and offset (the newest) and about
//! [`MAX_HELD`] places are held; expired ones are dropped as new ones arrive.

use kfs_common::security::capability::{Access, Capability};
use kfs_common::{ChunkId, ChunkVersion, KfsError, KfsResult};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Capabilities held per chunk and offset, at most (a read and a write one, versions apart).
const PER_PLACE: usize = 4;
/// Chunks and offsets with capabilities held, about at most.
const MAX_HELD: usize = 1 << 16;
/// What a chunk call asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Need {
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    /// `None`: any access (a sync, a length).
    pub access: Option<Access>,
    /// Where the bytes start: also where the capability must open from (0 for a chunk's, a
    /// record's offset for a packed file's), which is how it is found.
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

    /// Whether it opens the call `need` at `now`.
    fn opens(&self, need: &Need, now: Instant) -> bool {
        let c = &self.cap;
        c.version == need.version
            && need.access.is_none_or(|a| a == c.access)
            && (need.access.is_none() || c.covers(need.offset, need.len))
            && self.usable(now)
    }
}

#[derive(Default)]
pub(crate) struct Capabilities {
    /// By chunk and the offset each opens from.
    held: Mutex<BTreeMap<(ChunkId, u64), Vec<Held>>>,
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
        if held.len() >= MAX_HELD {
            held.retain(|_, list| {
                list.retain(|h| h.usable(now));
                !list.is_empty()
            });
            if held.len() >= MAX_HELD {
                held.clear();
            }
        }
        for cap in caps {
            let list = held.entry((cap.chunk, cap.offset)).or_default();
            list.retain(|h| h.usable(now) && h.cap.version == cap.version);
            if list.len() >= PER_PLACE {
                list.remove(0);
            }
            let until = now + Duration::from_millis(cap.usable_for_ms());
            list.push(Held { cap, until });
        }
    }

    /// Whether a call with `need` would find a capability (always, when the master signs none).
    pub(crate) fn holds(&self, need: Need) -> bool {
        if !self.signing.load(Ordering::Acquire) {
            return true;
        }
        let now = Instant::now();
        let held = self.held.lock().expect("capabilities lock");
        held.get(&(need.chunk, need.offset))
            .is_some_and(|list| list.iter().any(|h| h.opens(&need, now)))
    }

    /// The capability for a call, `None` for an unsigned call (the master signs nothing), or
    /// `CapabilityExpired` when one is needed and none held will do: ask the master again.
    pub(crate) fn for_call(&self, need: Need) -> KfsResult<Option<Capability>> {
        if !self.signing.load(Ordering::Acquire) {
            return Ok(None);
        }
        let now = Instant::now();
        let held = self.held.lock().expect("capabilities lock");
        let found = held.get(&(need.chunk, need.offset)).and_then(|list| {
            list.iter()
                .filter(|h| h.opens(&need, now))
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
        let mut held = self.held.lock().expect("capabilities lock");
        let places: Vec<_> = held
            .range((chunk, 0)..=(chunk, u64::MAX))
            .map(|(place, _)| *place)
            .collect();
        for place in places {
            held.remove(&place);
        }
    }
}
