//! [`Backoff`]: the one retry pause of every KFS loop that tries again (a client dialling a
//! restarting master or waiting for a lease, a chunkserver saying hello to its master):
//! doubling from a first pause up to a longest one, optionally jittered, on `backon`'s
//! exponential backoff. Each loop bounds its own total time.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;

/// Pauses between attempts: `first`, twice that, ... up to `longest`.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    pauses: ExponentialBackoff,
}

impl Backoff {
    /// Pauses without jitter.
    pub fn new(first: Duration, longest: Duration) -> Backoff {
        Backoff::with_jitter(first, longest, false)
    }

    /// Pauses each made up to twice as long at random with `jitter`, so that many peers
    /// retrying at once do not retry in step.
    pub fn with_jitter(first: Duration, longest: Duration, jitter: bool) -> Backoff {
        let mut builder = ExponentialBuilder::default()
            .with_min_delay(first)
            .with_max_delay(longest)
            .with_factor(2.0)
            .without_max_times();
        if jitter {
            builder = builder.with_jitter();
        }
        Backoff {
            pauses: builder.build(),
            builder,
        }
    }

    /// The pause before the next attempt.
    pub fn next_pause(&mut self) -> Duration {
        self.pauses.next().unwrap_or_default()
    }

    /// Starts again from the first pause (after a success).
    pub fn reset(&mut self) {
        self.pauses = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(b: &mut Backoff, n: usize) -> Vec<u64> {
        (0..n).map(|_| b.next_pause().as_millis() as u64).collect()
    }

    #[test]
    fn pauses_double_up_to_the_longest_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(20), Duration::from_secs(1));
        let want = [20, 40, 80, 160, 320, 640, 1000, 1000];
        // (backon computes in floating point: a millisecond either way.)
        let near = |got: &[u64]| got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 1);
        let pauses = millis(&mut b, 8);
        assert!(near(&pauses), "{pauses:?}");
        b.reset();
        assert!(near(&millis(&mut b, 1)));
        // Jittered pauses stay within twice the plain ones.
        let mut j = Backoff::with_jitter(Duration::from_millis(20), Duration::from_secs(1), true);
        for (p, w) in millis(&mut j, 8).into_iter().zip(want) {
            assert!(
                (w.saturating_sub(1)..=2 * w + 1).contains(&p),
                "{p} for {w}"
            );
        }
    }
}
