//! [`KnownNames`]: the names each recently listed directory holds, so that a lookup of a name
//! it does not hold (every new file's, before it is created) is answered "no such file"
//! without a call to the master.
//!
//! Invariants:
//! - A name is taken as absent only while its directory's listing, begun at most `ttl`
//!   (`-o negative_timeout`, off by default) ago, lacked it and this mount has not made it
//!   since: a file another client makes may be missed for that long (which is why it is off
//!   unless asked for: by default a file closed elsewhere opens here at once).
//! - A name this mount makes (every reply that names a file, [`KnownNames::add`]) is added,
//!   also while the listing is in flight (kept aside and added when it lands); a name is taken
//!   out only once the master has removed it. A name kept that no longer exists only sends its
//!   lookups to the master.
//! - Positive lookups always ask the master (the attributes must be fresh); only directories
//!   of at most [`MAX_NAMES`] names, and at most [`MAX_DIRS`] directories, are kept.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Directories whose names are kept at once (least recently used go first).
pub const MAX_DIRS: usize = 64;
/// Larger directories are not kept: their lookups go to the master.
pub const MAX_NAMES: usize = 4096;

enum Dir {
    /// Being listed since `since`; names this mount made meanwhile.
    Listing { since: Instant, added: Vec<String> },
    /// Listed as of `since`, with this mount's changes after.
    Known {
        since: Instant,
        names: HashSet<String>,
    },
    /// Too large (or its listing failed) as of `since`: not listed again until it is stale.
    Unkept { since: Instant },
}

impl Dir {
    fn since(&self) -> Instant {
        match self {
            Dir::Listing { since, .. } | Dir::Known { since, .. } | Dir::Unkept { since } => *since,
        }
    }
}

pub struct KnownNames {
    ttl: Duration,
    dirs: Mutex<lru::LruCache<u64, Dir>>,
}

impl KnownNames {
    pub fn new(ttl: Duration) -> KnownNames {
        KnownNames {
            ttl,
            dirs: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(MAX_DIRS).expect("non-zero"),
            )),
        }
    }

    fn fresh(&self, dir: &Dir) -> bool {
        dir.since().elapsed() < self.ttl
    }

    /// Whether `name` is known not to be in directory `dir` (answer "no such file").
    pub fn absent(&self, dir: u64, name: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let mut dirs = self.dirs.lock().expect("known names lock");
        match dirs.get(&dir) {
            Some(d @ Dir::Known { names, .. }) if self.fresh(d) => !names.contains(name),
            _ => false,
        }
    }

    /// Called when the master said `dir` has no such name: whether the caller should list
    /// `dir` now (nothing fresh is kept of it and no listing is in flight) and then call
    /// [`KnownNames::listed`].
    pub fn should_list(&self, dir: u64) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let mut dirs = self.dirs.lock().expect("known names lock");
        if dirs.get(&dir).is_some_and(|d| self.fresh(d)) {
            return false;
        }
        dirs.put(
            dir,
            Dir::Listing {
                since: Instant::now(),
                added: Vec::new(),
            },
        );
        true
    }

    /// The listing of `dir` begun by [`KnownNames::should_list`] landed: its names, or
    /// `None` if it was too large or failed.
    pub fn listed(&self, dir: u64, listed: Option<HashSet<String>>) {
        let mut dirs = self.dirs.lock().expect("known names lock");
        let Some(Dir::Listing { since, added }) = dirs.pop(&dir) else {
            // Forgotten meanwhile (removed, or pushed out): nothing to keep.
            return;
        };
        let kept = match listed {
            Some(mut names) => {
                names.extend(added);
                Dir::Known { since, names }
            }
            None => Dir::Unkept { since },
        };
        dirs.put(dir, kept);
    }

    /// This mount made (or found) `name` in `dir`.
    pub fn add(&self, dir: u64, name: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let mut dirs = self.dirs.lock().expect("known names lock");
        match dirs.peek_mut(&dir) {
            Some(Dir::Listing { added, .. }) => added.push(name.to_string()),
            Some(Dir::Known { names, .. }) => {
                names.insert(name.to_string());
            }
            Some(Dir::Unkept { .. }) | None => {}
        }
    }

    /// The master removed `name` from `dir` for this mount.
    pub fn removed(&self, dir: u64, name: &str) {
        let mut dirs = self.dirs.lock().expect("known names lock");
        if let Some(Dir::Known { names, .. }) = dirs.peek_mut(&dir) {
            names.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Option<HashSet<String>> {
        Some(list.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn only_names_missing_from_a_fresh_listing_are_absent() {
        let known = KnownNames::new(Duration::from_secs(60));
        assert!(!known.absent(1, "a"), "nothing is known before a listing");
        assert!(known.should_list(1));
        assert!(!known.should_list(1), "one listing at a time");
        // Made while the listing was in flight: kept.
        known.add(1, "made");
        assert!(!known.absent(1, "b"), "nothing is known while listing");
        known.listed(1, names(&["a"]));
        assert!(!known.absent(1, "a"));
        assert!(!known.absent(1, "made"));
        assert!(known.absent(1, "b"));
        known.add(1, "b");
        assert!(!known.absent(1, "b"));
        known.removed(1, "a");
        assert!(known.absent(1, "a"));
        assert!(!known.should_list(1), "still fresh");
    }

    #[test]
    fn stale_large_and_disabled_listings_answer_nothing() {
        let known = KnownNames::new(Duration::from_millis(30));
        assert!(known.should_list(1));
        known.listed(1, names(&[]));
        assert!(known.absent(1, "x"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!known.absent(1, "x"), "stale");
        assert!(known.should_list(1), "listed again once stale");
        known.listed(1, None);
        assert!(!known.absent(1, "x"), "too large: not kept");
        assert!(
            !known.should_list(1),
            "not listed again while that is fresh"
        );
        let off = KnownNames::new(Duration::ZERO);
        assert!(!off.should_list(1));
        assert!(!off.absent(1, "x"));
    }

    #[test]
    fn at_most_max_dirs_are_kept() {
        let known = KnownNames::new(Duration::from_secs(60));
        for dir in 0..(MAX_DIRS as u64 + 10) {
            assert!(known.should_list(dir));
            known.listed(dir, names(&[]));
        }
        assert_eq!(known.dirs.lock().unwrap().len(), MAX_DIRS);
        assert!(!known.absent(0, "x"), "the oldest went first");
        assert!(known.absent(MAX_DIRS as u64 + 9, "x"));
    }
}
