//! Waiting for permission: [`RateLimiter::acquire`](crate::RateLimiter::acquire)
//! and [`acquire_within`](crate::RateLimiter::acquire_within), which resolve
//! when a request may go, for clients and job workers that must wait their
//! turn rather than be told no.
//!
//! Every backend waits the same way, in [`wait_for_slot`]: it reserves, in
//! one call, the request's slot, then sleeps on one timer until the slot is
//! due. Algorithms that reserve nothing ahead (the fixed window and the
//! sliding log) are waited for by trying again when the denial says, one
//! waiter per key and process at a time, in the order the waiters came
//! ([`Lines`]). See docs/acquire.md.

mod lines;

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

pub(crate) use self::lines::Lines;
use crate::{Decision, Result};

/// Permission for a request to go: what
/// [`acquire`](crate::RateLimiter::acquire) resolves to, at the request's
/// slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permit {
    granted_at_us: u64,
    waited: Duration,
}

impl Permit {
    /// The request's slot: the time at which the limit let it go, on the
    /// limiter's clock (µs since the Unix epoch: Redis's `TIME` on the Redis
    /// backend by default, the limiter's [`Clock`](crate::Clock) in memory).
    ///
    /// These are the times the limit holds for, exactly: in any interval,
    /// the permits whose slots fall in it are what a check would have
    /// admitted. `acquire` returns a little after its slot (the timer's
    /// granularity, the time to wake a task), never before.
    pub const fn granted_at(&self) -> Duration {
        Duration::from_micros(self.granted_at_us)
    }

    /// How long `acquire` took, from the call until it returned.
    pub const fn waited(&self) -> Duration {
        self.waited
    }
}

/// What [`acquire_within`](crate::RateLimiter::acquire_within) answers
/// when the request's slot is further away than the wait it allows:
/// nothing was reserved and nothing was waited for (beyond, for the
/// algorithms that do not reserve, the time spent finding out).
///
/// Not an error of the limiter; it implements [`std::error::Error`] so that
/// a caller for whom giving up is one can pass it on with `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TooLong {
    wait: Duration,
}

impl TooLong {
    /// How long the request would have had to wait, counted from the call.
    /// Exact for the token and leaky buckets, which know the slot they would
    /// have reserved. For the fixed window and the sliding log, a lower
    /// bound: the earliest the request could have gone.
    pub const fn wait(&self) -> Duration {
        self.wait
    }
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the request would have had to wait {:?}, longer than it may", self.wait)
    }
}

impl std::error::Error for TooLong {}

/// Gives an unused reservation back: what a backend does when the future
/// waiting for the reservation's slot is dropped.
pub(crate) trait GiveBack {
    /// Gives it back, if that can be done exactly; best effort, no answer.
    fn give_back(self);
}

/// For backends that give nothing back.
#[derive(Debug)]
pub(crate) enum Keep {}

impl GiveBack for Keep {
    fn give_back(self) {
        match self {}
    }
}

/// One try at a slot.
#[derive(Debug)]
pub(crate) enum Try<G> {
    /// Reserved: the slot is `wait_us` after `at_us` (the limiter's clock
    /// when it decided). `unused` gives it back if the waiter leaves first.
    Reserved { at_us: u64, wait_us: u64, unused: Option<G> },
    /// Not reserved: the request would have to wait at least `wait_us`, and
    /// trying again before `retry_us` is pointless.
    NotYet { wait_us: u64, retry_us: u64 },
}

impl<G> Try<G> {
    /// A decision as a try: allowed, its slot is its wait away; denied, the
    /// request must wait its `retry_after`, and `reach_us` of that could be
    /// reserved by trying again (zero for algorithms that do not reserve).
    pub(crate) fn from_decision(decision: &Decision, at_us: u64, reach_us: u64, unused: Option<G>) -> Self {
        match decision.retry_after() {
            None => Try::Reserved {
                at_us,
                wait_us: micros(decision.wait()),
                unused: unused.filter(|_| !decision.wait().is_zero()),
            },
            Some(retry_after) => {
                let wait_us = micros(retry_after);
                Try::NotYet { wait_us, retry_us: wait_us.saturating_sub(reach_us).max(1) }
            }
        }
    }
}

/// Waits for a slot: tries with `reserve` (given the longest wait it may
/// reserve, µs), sleeps until the slot, and answers. With `line`, first
/// waits its turn among this process's waiters for the key.
///
/// A try that does not reserve is repeated when it says: beyond the
/// deadline, the answer is [`TooLong`]. An algorithm reserves at most
/// `reach_us` ahead, so a slot further away than that (but within the
/// deadline) is waited for until it is within reach.
pub(crate) async fn wait_for_slot<G, F, Fut>(
    max_wait: Duration,
    reach_us: u64,
    line: Option<(&Lines, &str)>,
    mut reserve: F,
) -> Result<Result<Permit, TooLong>>
where
    G: GiveBack,
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<Try<G>>>,
{
    let started = Instant::now();
    let deadline = started.checked_add(max_wait);
    let _place = match line {
        None => None,
        Some((lines, key)) => match deadline {
            None => Some(lines.join(key).await),
            Some(deadline) => match tokio::time::timeout_at(deadline, lines.join(key)).await {
                Ok(place) => Some(place),
                // Still behind others in line: it would have waited longer.
                Err(_) => return Ok(Err(TooLong { wait: started.elapsed() })),
            },
        },
    };
    loop {
        let left_us = deadline.map(|deadline| micros(deadline.saturating_duration_since(Instant::now())));
        let accept_us = left_us.map_or(reach_us, |left_us| left_us.min(reach_us));
        match reserve(accept_us).await? {
            Try::Reserved { at_us, wait_us, unused } => {
                let unused = Unused(unused);
                if wait_us > 0 {
                    tokio::time::sleep(Duration::from_micros(wait_us)).await;
                }
                unused.keep();
                let granted_at_us = at_us.saturating_add(wait_us);
                return Ok(Ok(Permit { granted_at_us, waited: started.elapsed() }));
            }
            Try::NotYet { wait_us, retry_us } => {
                if left_us.is_some_and(|left_us| wait_us > left_us) {
                    return Ok(Err(TooLong { wait: started.elapsed() + Duration::from_micros(wait_us) }));
                }
                tokio::time::sleep(Duration::from_micros(retry_us.max(1))).await;
            }
        }
    }
}

/// A reservation not yet used: given back if dropped before it is kept.
struct Unused<G: GiveBack>(Option<G>);

impl<G: GiveBack> Unused<G> {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl<G: GiveBack> Drop for Unused<G> {
    fn drop(&mut self) {
        if let Some(unused) = self.0.take() {
            unused.give_back();
        }
    }
}

/// Whole µs of `duration`, rounded down (a deadline is never overrun).
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The system's time, µs since the epoch: the slot's clock for limiters
/// that do not say which they decide on.
pub(crate) fn system_time_us() -> u64 {
    micros(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}
