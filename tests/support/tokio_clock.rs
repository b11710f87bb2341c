//! [`TokioClock`]: a limiter's clock that reads Tokio's time.

use std::time::Duration;

use tollgate::Clock;

/// A clock that moves with Tokio's time: with paused time
/// (`#[tokio::test(start_paused = true)]`), a limiter on it sees time pass
/// exactly as its timers do, so waiting for a slot takes no real time and
/// lands on the µs.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: tokio::time::Instant,
    since_epoch_at_start: Duration,
}

impl TokioClock {
    /// A clock reading `since_epoch` now (on Tokio's clock, so call it in
    /// the runtime).
    pub fn starting_at(since_epoch: Duration) -> Self {
        Self { start: tokio::time::Instant::now(), since_epoch_at_start: since_epoch }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.since_epoch_at_start + self.start.elapsed()
    }
}
