//! The client's retry pause: [`kfs_common::retry::Backoff`] from 20 ms doubling to at most 1 s.
//!
//! Every retry loop of the client (dialling a restarting master, waiting for a lease or for
//! chunk locations after a master restart, a busy chunkserver) waits this way, and each loop
//! bounds its own total time by a deadline.

use kfs_common::retry::Backoff;
use std::time::Duration;

/// A fresh client backoff: 20 ms, 40 ms, ... up to 1 s.
pub(crate) fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(20), Duration::from_secs(1))
}
