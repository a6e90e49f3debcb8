//! [`Backoff`]: the client's one retry pause, doubling from 20 ms to at most 1 s.
//!
//! Every retry loop of the client (dialling a restarting master, waiting for a lease or for
//! chunk locations after a master restart, a busy chunkserver) waits this way, and each loop
//! bounds its own total time by a deadline.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(20);
const LONGEST: Duration = Duration::from_secs(1);

/// Pauses between attempts: 20 ms, 40 ms, ... up to 1 s.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: FIRST }
    }

    /// The pause before the next attempt.
    pub(crate) fn next(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(LONGEST);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_a_second() {
        let mut b = Backoff::new();
        let pauses: Vec<u64> = (0..8).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(pauses, [20, 40, 80, 160, 320, 640, 1000, 1000]);
    }
}
