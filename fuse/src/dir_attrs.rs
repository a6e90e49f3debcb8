//! [`DirAttrs`]: directories' attributes as this mount last had them from the master (at most
//! `ttl` ago), kept up to date with this mount's own changes in them. The kernel drops its copy
//! of a directory's attributes after every change in it and, mounted `default_permissions`,
//! asks for them again before the next one (to check the mode): answered from here, that
//! `getattr` costs no call to the master.
//!
//! Invariants:
//! - An entry is the master's answer, fetched at most `ttl` (`attr_timeout`) ago, with only
//!   this mount's later changes applied to it: its age bounds how stale it is for changes made
//!   elsewhere, as the kernel's own caching does (docs/consistency.md), and `attr_timeout=0`
//!   turns it off.
//! - Every change this mount makes stamps the directory on a clock before it is sent and again
//!   once answered (or failed); a fetch stores its answer only if it began after the last
//!   stamp (absent entries share one stamp, `floor`, which entries pushed out raise too). So a
//!   fetch that may have read the master before or during a change never lands after it.
//! - A name made in a directory (create, mkdir, symlink, mknod) patches the entry once the
//!   master answered ([`DirAttrs::made`]: its mtime and ctime become the new file's mtime, the
//!   master's time for the change, and a subdirectory adds a link), but only an entry stored
//!   before the change began (a later one may hold the change already: it is dropped); a
//!   remove, rmdir or rename takes the attributes the master answered with, read after it
//!   (`change_names`, [`DirAttrs::changed_to`]); any other change drops the entry on both
//!   sides of it ([`DirAttrs::changing`]).

use kfs_common::FileKind;
use kfs_common::proto::master::FileAttr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Directories whose attributes are kept (least recently used go first).
pub const MAX_DIRS: usize = 4096;

struct Entry {
    /// The attributes and when the master gave them; `None` while not known.
    attr: Option<(FileAttr, Instant)>,
    /// The clock when this mount last stamped the directory (a change began or ended).
    changed: u64,
    /// The clock when the fetch that stored `attr` began.
    stored: u64,
}

struct Inner {
    entries: lru::LruCache<u64, Entry>,
    clock: u64,
    /// The stamp of every directory without an entry: above every stamp of an entry pushed
    /// out, and of a change of a directory not kept.
    floor: u64,
}

impl Inner {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Stamps `ino` at `at`; forgets its attributes unless `keep`.
    fn stamp(&mut self, ino: u64, at: u64, keep: bool) {
        match self.entries.get_mut(&ino) {
            Some(entry) => {
                entry.changed = at;
                if !keep {
                    entry.attr = None;
                }
            }
            None => self.floor = self.floor.max(at),
        }
    }

    fn put(&mut self, ino: u64, entry: Entry) {
        if let Some((_, out)) = self.entries.push(ino, entry)
            && out.changed > self.floor
        {
            self.floor = out.changed;
        }
    }
}

pub struct DirAttrs {
    ttl: Duration,
    inner: Mutex<Inner>,
}

/// When a fetch began, for [`DirAttrs::store`].
#[derive(Clone, Copy, Debug)]
pub struct Fetch(u64);

/// When a change that [`DirAttrs::made`] will patch in began ([`DirAttrs::begin`]).
#[derive(Clone, Copy, Debug)]
pub struct Begun(u64);

impl DirAttrs {
    pub fn new(ttl: Duration) -> DirAttrs {
        DirAttrs {
            ttl,
            inner: Mutex::new(Inner {
                entries: lru::LruCache::new(NonZeroUsize::new(MAX_DIRS).expect("non-zero")),
                clock: 0,
                floor: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("directory attributes lock")
    }

    /// Directory `ino`'s attributes if kept and fresh, with how long they stay so.
    pub fn get(&self, ino: u64) -> Option<(FileAttr, Duration)> {
        let mut inner = self.lock();
        let (attr, at) = inner.entries.get(&ino)?.attr.as_ref()?;
        let left = self.ttl.checked_sub(at.elapsed())?;
        Some((attr.clone(), left))
    }

    /// Call before asking the master for attributes that [`DirAttrs::store`] may keep.
    pub fn fetching(&self) -> Fetch {
        Fetch(self.lock().tick())
    }

    /// Keeps the master's answer `attr` for inode `ino` (if a directory's) to a fetch begun at
    /// `fetch`, unless this mount stamped that directory since.
    pub fn store(&self, ino: u64, fetch: Fetch, attr: &FileAttr) {
        if attr.kind != FileKind::Dir || self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        let changed = match inner.entries.peek(&ino) {
            Some(entry) => entry.changed,
            None => inner.floor,
        };
        if changed >= fetch.0 {
            return;
        }
        let entry = Entry {
            attr: Some((attr.clone(), Instant::now())),
            changed,
            stored: fetch.0,
        };
        inner.put(ino, entry);
    }

    /// A change of directory `ino` (or in it) whose effect is not known here is about to be
    /// sent, or was answered (call it on both sides, and after a failure): forget its
    /// attributes.
    pub fn changing(&self, ino: u64) {
        let mut inner = self.lock();
        let at = inner.tick();
        inner.stamp(ino, at, false);
    }

    /// A change that makes a name in directory `ino` is about to be sent (then call
    /// [`DirAttrs::made`] on success, [`DirAttrs::changing`] on failure).
    pub fn begin(&self, ino: u64) -> Begun {
        let mut inner = self.lock();
        let at = inner.tick();
        inner.stamp(ino, at, true);
        Begun(at)
    }

    /// The master made `child` in directory `ino` for this mount, in a change begun at
    /// `begun`: the directory's mtime and ctime are the child's mtime now, and a subdirectory
    /// is one link more (patched only into attributes fetched before the change began).
    pub fn made(&self, ino: u64, begun: Begun, child: &FileAttr) {
        let mut inner = self.lock();
        let at = inner.tick();
        inner.stamp(ino, at, true);
        let Some(entry) = inner.entries.peek_mut(&ino) else {
            return;
        };
        match &mut entry.attr {
            Some((attr, _)) if entry.stored < begun.0 => {
                attr.mtime = child.mtime;
                attr.ctime = child.mtime;
                if child.kind == FileKind::Dir {
                    attr.nlink += 1;
                }
            }
            _ => entry.attr = None,
        }
    }

    /// The master's attributes of inode `ino`, read right after this mount's change of it (or
    /// in it) was applied: kept (if a directory's) as a fresh answer that no fetch begun
    /// before replaces.
    pub fn changed_to(&self, ino: u64, attr: &FileAttr) {
        let mut inner = self.lock();
        let at = inner.tick();
        if attr.kind != FileKind::Dir || self.ttl.is_zero() {
            inner.stamp(ino, at, false);
            return;
        }
        let entry = Entry {
            attr: Some((attr.clone(), Instant::now())),
            changed: at,
            stored: at,
        };
        inner.put(ino, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kfs_common::FileId;

    fn dir(mtime: i64, nlink: u32) -> FileAttr {
        FileAttr {
            fid: FileId(7),
            kind: FileKind::Dir,
            size: 0,
            mode: 0o755,
            owner: 0,
            group: 0,
            replication: 0,
            mtime,
            atime: mtime,
            nlink,
            ctime: mtime,
        }
    }

    /// What a patch changes: mtime, ctime, links.
    fn times(attrs: &DirAttrs, ino: u64) -> (i64, i64, u32) {
        let (a, _) = attrs.get(ino).unwrap();
        (a.mtime, a.ctime, a.nlink)
    }

    fn made(kind: FileKind, mtime: i64) -> FileAttr {
        FileAttr {
            kind,
            ..dir(mtime, 1)
        }
    }

    #[test]
    fn a_name_made_patches_the_directory_and_other_changes_drop_it() {
        let attrs = DirAttrs::new(Duration::from_secs(60));
        assert!(attrs.get(1).is_none());
        attrs.store(1, attrs.fetching(), &dir(10, 2));
        assert_eq!(attrs.get(1).unwrap().0, dir(10, 2));
        let begun = attrs.begin(1);
        assert_eq!(
            attrs.get(1).unwrap().0,
            dir(10, 2),
            "kept while the change is in flight"
        );
        attrs.made(1, begun, &made(FileKind::File, 20));
        assert_eq!(times(&attrs, 1), (20, 20, 2));
        let begun = attrs.begin(1);
        attrs.made(1, begun, &made(FileKind::Dir, 30));
        assert_eq!(times(&attrs, 1), (30, 30, 3));
        attrs.changing(1);
        assert!(attrs.get(1).is_none());
        // What the master answered after a change: kept, and no earlier fetch replaces it.
        let early = attrs.fetching();
        attrs.changed_to(1, &dir(40, 2));
        attrs.store(1, early, &dir(35, 2));
        assert_eq!(times(&attrs, 1), (40, 40, 2));
        // Only directories are kept.
        attrs.store(2, attrs.fetching(), &made(FileKind::File, 5));
        assert!(attrs.get(2).is_none());
    }

    #[test]
    fn an_answer_older_than_a_change_is_not_kept() {
        let attrs = DirAttrs::new(Duration::from_secs(60));
        // Begun before the change: refused.
        let early = attrs.fetching();
        attrs.changing(1);
        attrs.store(1, early, &dir(10, 2));
        assert!(attrs.get(1).is_none(), "fetched before the change");
        // Begun while the change was in flight: refused too (stamped again when answered).
        let during = attrs.fetching();
        attrs.changing(1);
        attrs.store(1, during, &dir(10, 2));
        assert!(attrs.get(1).is_none(), "fetched during the change");
        // A patch lands only on what was fetched before the change began.
        attrs.store(1, attrs.fetching(), &dir(11, 2));
        let begun = attrs.begin(1);
        let early = attrs.fetching();
        attrs.made(1, begun, &made(FileKind::File, 20));
        attrs.store(1, early, &dir(11, 2));
        assert_eq!(times(&attrs, 1), (20, 20, 2), "the patch stays");
        // Stored during the change (it may hold it already): dropped, never patched twice.
        let begun = attrs.begin(1);
        let during = attrs.fetching();
        attrs.store(1, during, &dir(25, 3));
        attrs.made(1, begun, &made(FileKind::Dir, 25));
        assert!(attrs.get(1).is_none());
        // A directory not kept: a fetch begun before its change stays out once it is.
        let early = attrs.fetching();
        let begun = attrs.begin(2);
        attrs.made(2, begun, &made(FileKind::File, 5));
        attrs.store(2, early, &dir(1, 2));
        assert!(attrs.get(2).is_none());
        // An entry pushed out still keeps older answers out.
        let early = attrs.fetching();
        attrs.changing(1);
        for ino in 100..100 + MAX_DIRS as u64 {
            attrs.store(ino, attrs.fetching(), &dir(1, 2));
        }
        attrs.store(1, early, &dir(11, 2));
        assert!(attrs.get(1).is_none());
    }

    #[test]
    fn stale_and_disabled_entries_answer_nothing() {
        let attrs = DirAttrs::new(Duration::from_millis(30));
        attrs.store(1, attrs.fetching(), &dir(10, 2));
        let (_, left) = attrs.get(1).unwrap();
        assert!(left <= Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(40));
        assert!(attrs.get(1).is_none());
        let off = DirAttrs::new(Duration::ZERO);
        off.store(1, off.fetching(), &dir(10, 2));
        assert!(off.get(1).is_none());
    }
}
