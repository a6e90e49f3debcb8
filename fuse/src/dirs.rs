//! [`DirHandles`]: the directories the kernel has open, each listing fetched from the master a
//! page at a time as the kernel reads on.
//!
//! A listing's offsets are positions in it: `.` is 1, `..` 2, the first entry 3, and the
//! kernel's next read asks for what follows the offset it last got. Entries are fetched in
//! pages of [`PAGE`] names (`readdir` with attributes, so `readdirplus` answers without a
//! `stat` per entry) after the last name fetched; reading from offset 0 again (`rewinddir`)
//! fetches afresh. Names of open files hidden after an unlink ([`HIDDEN_PREFIX`]) are skipped.

use crate::state::HIDDEN_PREFIX;
use kfs_client::Client;
use kfs_common::KfsResult;
use kfs_common::proto::master::DirEntry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Names asked for per page.
pub const PAGE: u32 = 1024;

/// One open directory's listing, as far as it has been fetched.
pub struct Listing {
    pub path: String,
    pub entries: Vec<DirEntry>,
    /// Whether the master has more names after the last one fetched.
    pub more: bool,
    fetched: bool,
    /// The last name the master gave (hidden or not): where the next page starts.
    cursor: Option<String>,
}

impl Listing {
    /// Makes sure entry `index` (0-based among the directory's entries) is fetched, if it
    /// exists; returns it.
    pub async fn entry(&mut self, client: &Client, index: usize) -> KfsResult<Option<&DirEntry>> {
        while index >= self.entries.len() && (self.more || !self.fetched) {
            let page = client
                .list_page(&self.path, self.cursor.clone(), PAGE)
                .await?;
            self.fetched = true;
            self.more = page.more;
            if let Some(last) = page.entries.last() {
                self.cursor = Some(last.name.clone());
            } else {
                self.more = false;
            }
            self.entries.extend(
                page.entries
                    .into_iter()
                    .filter(|e| !e.name.starts_with(HIDDEN_PREFIX)),
            );
            if !self.more {
                break;
            }
        }
        Ok(self.entries.get(index))
    }

    /// Starts over (the kernel read from offset 0 again).
    pub fn rewind(&mut self) {
        if self.fetched {
            self.entries.clear();
            self.more = false;
            self.fetched = false;
            self.cursor = None;
        }
    }
}

/// A listing shared by the requests of one directory handle.
pub type SharedListing = Arc<tokio::sync::Mutex<Listing>>;

#[derive(Default)]
pub struct DirHandles {
    /// The last handle number given, and the open handles.
    table: Mutex<(u64, HashMap<u64, SharedListing>)>,
}

impl DirHandles {
    /// A new handle listing the directory at `path`.
    pub fn open(&self, path: String) -> u64 {
        let mut table = self.table.lock().expect("dir handles lock");
        table.0 += 1;
        let fh = table.0;
        let listing = Listing {
            path,
            entries: Vec::new(),
            more: false,
            fetched: false,
            cursor: None,
        };
        table
            .1
            .insert(fh, Arc::new(tokio::sync::Mutex::new(listing)));
        fh
    }

    pub fn get(&self, fh: u64) -> Option<SharedListing> {
        self.table
            .lock()
            .expect("dir handles lock")
            .1
            .get(&fh)
            .cloned()
    }

    pub fn release(&self, fh: u64) {
        self.table.lock().expect("dir handles lock").1.remove(&fh);
    }
}
