//! What the middleware tells the operator: transitions, not traffic.
//!
//! A misconfigured key extractor answers every request 400, and a backend
//! that is down answers every request 503: one `warn` per request would bury
//! the log when it matters most. So each cause gets one `warn` when it first
//! shows up, and at most one a minute after that, which also says how many
//! were left at `debug` in between; a limiter that answers again after
//! failing gets one `info`. Denials are traffic: `trace`.
//!
//! Events are under the target `tollgate::middleware` and carry the
//! layer's `policy` name.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use http::StatusCode;
use tokio::time::Instant;
use tracing::{debug, info, trace, warn};

use super::KeyExtractor;
use crate::Error;
use crate::observe::Gate;

/// The log state of one layer, shared by all its services.
#[derive(Debug)]
pub(crate) struct Log {
    /// Where the gates' clock starts. tokio's `Instant`, so that tests with
    /// paused time can step over an interval.
    start: Instant,
    missing_key: Gate,
    /// One per kind of limiter error: a timeout and a refused connection are
    /// different causes.
    limiter_errors: [Gate; 6],
    /// The limiter's last answer was an error.
    failing: AtomicBool,
}

/// A layer's configuration is cloned only while it is being built
/// (`Arc::make_mut`), before any request: a clone starts afresh.
impl Clone for Log {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl Log {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            missing_key: Gate::new(),
            limiter_errors: std::array::from_fn(|_| Gate::new()),
            failing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request without a key was answered 400.
    pub(crate) fn missing_key(&self, policy: &str, key: &KeyExtractor) {
        match self.missing_key.pass(self.now_ms()) {
            Some(suppressed) => warn!(
                target: "tollgate::middleware",
                policy,
                cause = %key.missing_cause(),
                suppressed,
                "a request without a rate-limit key was answered 400 Bad Request \
                 (at most one warning a minute for this; the rest are at debug)"
            ),
            None => debug!(
                target: "tollgate::middleware",
                policy,
                cause = %key.missing_cause(),
                "a request without a rate-limit key was answered 400 Bad Request"
            ),
        }
    }

    /// The limiter failed and the request was answered `status` (503, or
    /// 500 for a plan the limiter does not have).
    pub(crate) fn limiter_failed(&self, policy: &str, error: &Error, status: StatusCode) {
        self.failing.store(true, Relaxed);
        let gate = &self.limiter_errors[match error {
            Error::Timeout(_) => 0,
            Error::Backend { .. } => 1,
            Error::UnexpectedReply(_) => 2,
            Error::UnknownPlan { .. } => 3,
            Error::Unavailable { .. } => 4,
            _ => 5,
        }];
        match gate.pass(self.now_ms()) {
            Some(suppressed) => warn!(
                target: "tollgate::middleware",
                policy,
                %error,
                suppressed,
                "the rate limiter failed; the request was answered {status} \
                 (at most one warning a minute for this kind of error; the rest are at debug)"
            ),
            None => debug!(
                target: "tollgate::middleware",
                policy,
                %error,
                "the rate limiter failed; the request was answered {status}"
            ),
        }
    }

    /// The limiter answered. A relaxed load on the hot path: the flag is
    /// written only when the limiter fails.
    pub(crate) fn limiter_answered(&self, policy: &str) {
        if self.failing.load(Relaxed) && self.failing.swap(false, Relaxed) {
            info!(target: "tollgate::middleware", policy, "the rate limiter answers again");
        }
    }

    /// A request was denied: traffic, so `trace`.
    pub(crate) fn denied(policy: &str, retry_after_secs: u64) {
        trace!(target: "tollgate::middleware", policy, retry_after_secs, "429 Too Many Requests");
    }
}
