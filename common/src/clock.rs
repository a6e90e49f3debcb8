//! The clock that time-dependent decisions read: lease expiry and the grace after a restart,
//! chunkservers' heartbeat timeouts, safe mode's time limit.
//!
//! [`Clock::system`] is tokio's clock: the system's monotonic time, or, inside a tokio test
//! runtime whose time is paused (`tokio::time::pause()`, `start_paused`), the paused time that
//! the test advances. [`Clock::manual`] stands still until [`Clock::advance`] moves it, for unit
//! tests with no runtime at all. Code that decides by time takes its `now` from a `Clock` (or as
//! an argument from a caller that does), never from `Instant::now()` itself.
//!
//! Invariant: a clock never goes backwards; clones share one time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A source of `now`; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<Instant>>>,
}

impl Clock {
    /// Tokio's clock (the system's, unless a test paused it).
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that moves only when [`Clock::advance`]d, starting at the present moment.
    pub fn manual() -> Clock {
        Clock {
            manual: Some(Arc::new(Mutex::new(Instant::now()))),
        }
    }

    /// The present moment by this clock.
    pub fn now(&self) -> Instant {
        match &self.manual {
            Some(at) => *at.lock().unwrap_or_else(|p| p.into_inner()),
            None => tokio::time::Instant::now().into_std(),
        }
    }

    /// Moves a manual clock forward by `by`. Panics on the system clock (tests advance a paused
    /// runtime with `tokio::time::advance` instead).
    pub fn advance(&self, by: Duration) {
        let at = self
            .manual
            .as_ref()
            .expect("only a manual clock is advanced by hand");
        *at.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let clock = Clock::manual();
        let other = clock.clone();
        let start = clock.now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), start);
        other.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), start + Duration::from_secs(90));
    }

    #[tokio::test(start_paused = true)]
    async fn the_system_clock_follows_a_paused_runtime() {
        let clock = Clock::system();
        let start = clock.now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(clock.now() >= start + Duration::from_secs(3600));
    }
}
