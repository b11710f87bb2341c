//! The one error type of the crate.
//!
//! Being limited is not an error: a denied request is a [`Decision`](crate::Decision)
//! that says no. `Err` means bad configuration, a cost that can never fit, or a
//! backend that failed.

use std::time::Duration;

/// Everything that can go wrong in tollgate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration can never work: a zero amount, period or capacity, or
    /// numbers too large for exact arithmetic. Returned by constructors only.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// The request costs more than the limiter can ever admit at once, so
    /// retrying would never help.
    #[error("a cost of {cost} can never be admitted: the most this limiter admits at once is {max}")]
    CostTooHigh {
        /// The cost asked for.
        cost: u64,
        /// The largest cost the limiter can ever admit.
        max: u64,
    },

    /// The caller asked for a plan the limiter does not have: a name that
    /// none of its [`Plans`](crate::Plans) has, or any plan at all of a
    /// limiter without plans. (A plan that a resolver names but the limiter
    /// does not have is the default plan instead: the resolver is
    /// configuration, and a check cannot fail on it.)
    #[error("this limiter has no plan named {plan:?}")]
    UnknownPlan {
        /// The plan asked for.
        plan: String,
    },

    /// The backend failed: a connection, protocol or server error. The
    /// client library's own error is the `source`, boxed, so that its
    /// version is not part of tollgate's API.
    #[error("{backend}: {source}")]
    Backend {
        /// Which backend: `"redis"`, or a custom backend's name.
        backend: &'static str,
        /// What the client library reported.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The backend did not answer within the configured timeout.
    #[error("the backend did not answer within {0:?}")]
    Timeout(Duration),

    /// The backend was not asked: its circuit breaker is open, because the
    /// backend (for Redis Cluster, the master holding the key) has been
    /// failing, so tollgate answers at once rather than wait out another
    /// timeout. One probe at a time looks for the backend; once it answers,
    /// checks go to it again.
    ///
    /// Returned by checks under
    /// [`FailurePolicy::ReturnError`](crate::FailurePolicy::ReturnError), and
    /// by resets whatever the policy.
    #[error("{backend} is unavailable: its circuit breaker is open, and the next probe is due in {retry_in:?}")]
    Unavailable {
        /// Which backend: `"redis"`.
        backend: &'static str,
        /// How long until the breaker next probes the backend (never zero):
        /// no answer can change before then.
        retry_in: Duration,
    },

    /// The backend answered with something tollgate does not understand.
    #[error("unexpected reply from the backend: {0}")]
    UnexpectedReply(String),

    /// A key holds state this limiter cannot read: a value written by hand
    /// or by another program, or numbers out of range. (Another algorithm's
    /// state never meets this one: their keys differ.)
    ///
    /// Not a backend failure, so no failure policy applies: admitting or
    /// denying on state that makes no sense would be a guess. The key is
    /// left as it is; [`RateLimiter::reset`](crate::RateLimiter::reset)
    /// deletes it.
    #[error("the state at {key:?} cannot be read: {reason}")]
    InvalidState {
        /// The backend's key, such as a Redis key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// `Result` with tollgate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidConfig(message.into())
}

impl Error {
    /// A backend failure of `backend`, keeping `source` as the cause.
    pub fn backend(backend: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend { backend, source: source.into() }
    }
}

/// A redis-rs error as tollgate's: kept private, so no `From` impl puts
/// redis-rs in the public API.
#[cfg(feature = "redis")]
pub(crate) fn redis_error(error: redis::RedisError) -> Error {
    Error::backend("redis", error)
}
