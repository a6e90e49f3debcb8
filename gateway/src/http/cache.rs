//! The gateway's short-lived metadata cache: path -> what the master said about it.
//!
//! A GET of a file would otherwise ask the master (one `open`: attributes and the first chunks'
//! locations) before reading a chunkserver. An entry keeps the file's attributes and an open
//! [`FileReader`] with those locations, so a hit goes straight to a chunkserver; a path that
//! does not exist, or is a directory, is cached too.
//!
//! Staleness bound: an entry is used for at most `ttl` (default 1 s) after the master answered.
//! Within it, a file replaced, grown or removed by another client may still be served as it was
//! (its old length, or its old chunks while they last); a read that fails on a cached entry
//! (a chunk gone or at a new version) is retried once with fresh metadata. Writes through this
//! gateway drop the entries of the paths they change (and their parents) at once, and an answer
//! fetched while such a write happened is not cached. The cache holds at most `capacity`
//! entries: when full, expired ones are dropped, and if none had expired, all of them.

use kfs_client::{Client, FileReader};
use kfs_common::proto::master::FileAttr;
use kfs_common::{KfsError, KfsResult};
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a path is, as the master said.
#[derive(Clone)]
pub enum Meta {
    File { attr: FileAttr, file: FileReader },
    Dir,
    Missing,
}

/// A lookup's answer and whether it came from the cache.
pub struct Lookup {
    pub meta: Meta,
    pub cached: bool,
}

/// Cache hits and misses, for `/metrics`.
#[derive(Clone, Default)]
pub struct CacheCounters {
    pub hits: Counter,
    pub misses: Counter,
}

pub struct MetaCache {
    client: Client,
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, Meta)>>,
    /// Bumped by every `forget`: an answer fetched while it moved may predate a write through
    /// this gateway, so it is not cached.
    generation: AtomicU64,
    counters: CacheCounters,
}

impl MetaCache {
    /// A cache in front of `client`'s master; `ttl` zero turns caching off.
    pub fn new(client: Client, ttl: Duration, capacity: usize, counters: CacheCounters) -> Self {
        MetaCache {
            client,
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            counters,
        }
    }

    /// What `path` is: from the cache when the entry is younger than the TTL, else from the
    /// master (and then cached).
    pub async fn lookup(&self, path: &str) -> KfsResult<Lookup> {
        if !self.ttl.is_zero() {
            let entries = self.entries.lock().expect("cache lock");
            if let Some((at, meta)) = entries.get(path)
                && at.elapsed() < self.ttl
            {
                self.counters.hits.inc();
                return Ok(Lookup {
                    meta: meta.clone(),
                    cached: true,
                });
            }
        }
        self.counters.misses.inc();
        let generation = self.generation.load(Ordering::Acquire);
        let meta = self.fetch(path).await?;
        self.insert(path, meta.clone(), generation);
        Ok(Lookup {
            meta,
            cached: false,
        })
    }

    /// Asks the master, bypassing (and then refreshing) the cache.
    pub async fn refresh(&self, path: &str) -> KfsResult<Meta> {
        self.forget(path);
        let generation = self.generation.load(Ordering::Acquire);
        let meta = self.fetch(path).await?;
        self.insert(path, meta.clone(), generation);
        Ok(meta)
    }

    /// Drops the entry of `path` (after a write or delete through this gateway).
    pub fn forget(&self, path: &str) {
        let mut entries = self.entries.lock().expect("cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(path);
    }

    /// Drops the entries of `path` and of every directory above it (an upload may have created
    /// them).
    pub fn forget_with_parents(&self, path: &str) {
        let mut entries = self.entries.lock().expect("cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut at = path;
        loop {
            entries.remove(at);
            match at.rfind('/') {
                Some(0) if at != "/" => at = "/",
                Some(i) if i > 0 => at = &at[..i],
                _ => break,
            }
        }
    }

    /// One call to the master: a file's attributes and first chunks' locations, or what the
    /// path is instead.
    async fn fetch(&self, path: &str) -> KfsResult<Meta> {
        match self.client.open_with_attr(path).await {
            Ok((file, attr)) => Ok(Meta::File {
                attr,
                file: file.reader(),
            }),
            Err(KfsError::IsADirectory { .. }) => Ok(Meta::Dir),
            Err(KfsError::NotFound { .. }) => Ok(Meta::Missing),
            Err(e) => Err(e),
        }
    }

    /// Caches `meta` unless caching is off or a `forget` happened since `generation` was read.
    fn insert(&self, path: &str, meta: Meta, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().expect("cache lock");
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(path) {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(path.to_string(), (Instant::now(), meta));
    }
}
