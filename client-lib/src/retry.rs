//! [`RetryPolicy`]: how every retry loop of the client waits between attempts (dialling a
//! restarting master, waiting for a lease or for chunk locations after a master restart, a busy
//! chunkserver, a sync whose version moved): pauses from `first_pause` doubling up to
//! `longest_pause`, jittered so that many clients do not retry in step, on the one
//! `kfs_common::retry::Backoff` (`backon`'s exponential backoff). Set once, in [`ClientOptions::retry`](crate::ClientOptions::retry).
//!
//! Each loop bounds its own total time ([`RetryPolicy::for_up_to`]: `write_retry_for`,
//! `read_retry_for`, a call's deadline) and decides itself which errors are worth another try;
//! a pause never runs past the loop's deadline.

use kfs_common::clock::Clock;
use kfs_common::retry::Backoff;
use std::time::{Duration, Instant};

/// The client's retry pauses; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first pause. Default 20 ms.
    pub first_pause: Duration,
    /// No pause is longer. Default 1 s.
    pub longest_pause: Duration,
    /// Whether pauses are jittered (each up to twice as long, at random). Default yes.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_pause: Duration::from_millis(20),
            longest_pause: Duration::from_secs(1),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The retries of one loop that may go on for `total` from now.
    pub(crate) fn for_up_to(&self, total: Duration) -> Retries {
        self.until(Clock::system().now() + total)
    }

    /// The retries of one loop that may go on until `deadline`.
    pub(crate) fn until(&self, deadline: Instant) -> Retries {
        Retries {
            deadline,
            pauses: Backoff::with_jitter(self.first_pause, self.longest_pause, self.jitter),
        }
    }
}

/// The pauses of one retry loop, and its deadline.
pub(crate) struct Retries {
    deadline: Instant,
    pauses: Backoff,
}

impl Retries {
    /// Whether the loop may try again.
    pub(crate) fn time_left(&self) -> bool {
        Clock::system().now() < self.deadline
    }

    /// Time left until the deadline.
    pub(crate) fn left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Clock::system().now())
    }

    /// Waits before the next attempt (never past the deadline).
    pub(crate) async fn pause(&mut self) {
        let pause = self.pauses.next_pause();
        tokio::time::sleep(pause.min(self.left())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_has_time_left_until_its_deadline() {
        let policy = RetryPolicy::default();
        assert!(policy.for_up_to(Duration::from_secs(60)).time_left());
        assert!(!policy.for_up_to(Duration::ZERO).time_left());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_never_runs_past_the_deadline() {
        let policy = RetryPolicy {
            first_pause: Duration::from_secs(10),
            longest_pause: Duration::from_secs(10),
            jitter: false,
        };
        let mut retries = policy.for_up_to(Duration::from_secs(3));
        let started = tokio::time::Instant::now();
        retries.pause().await;
        assert!(started.elapsed() <= Duration::from_secs(3));
    }
}
