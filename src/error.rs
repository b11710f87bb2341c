//! The one error type of the crate.
//!
//! Being limited is not an error: a denied request is a [`Decision`](crate::Decision)
//! that says no. `Err` means bad configuration, a cost that can never fit, or a
//! backend that failed.

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

    /// The Redis backend failed: connection, script or reply.
    #[cfg(feature = "redis")]
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),

    /// The backend did not answer within the configured timeout.
    #[error("the backend did not answer within {0:?}")]
    Timeout(std::time::Duration),

    /// The backend answered with something tollgate does not understand.
    #[error("unexpected reply from the backend: {0}")]
    UnexpectedReply(String),
}

/// `Result` with tollgate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidConfig(message.into())
}
