//! [`FailurePolicy`]: what a check answers when Redis does not.

use std::time::Duration;

use crate::Decision;

/// What a [`Redis`](super::Redis) limiter answers when the Redis server
/// fails or does not answer within the timeout (a connection error, a
/// timeout, an error from the script, or a reply it does not understand).
///
/// The choice is between availability and the limit: with `Allow`, an outage
/// lifts every limit; with `Deny`, it stops all traffic; with
/// `FallbackToMemory`, each process limits on its own, so N processes admit
/// up to N times the limit until Redis is back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Return the error ([`Error::Backend`](crate::Error::Backend),
    /// [`Error::Timeout`](crate::Error::Timeout) or
    /// [`Error::UnexpectedReply`](crate::Error::UnexpectedReply)) and let the
    /// caller decide. The default.
    #[default]
    ReturnError,

    /// Admit the request. Nothing is recorded anywhere, so the decision
    /// reports the full allowance: `remaining == limit`, and a zero
    /// `reset_after` and `wait`.
    Allow,

    /// Deny the request, with `remaining == 0` and `retry_after` (and
    /// `reset_after`) of [`DENY_RETRY_AFTER`](Self::DENY_RETRY_AFTER): long
    /// enough that clients do not hammer a struggling backend, short enough
    /// to recover quickly once it is back.
    Deny,

    /// Decide with an in-memory limiter of the same algorithm kept inside the
    /// limiter (and created with it). Its state is per process and is not
    /// merged back: once Redis answers again, decisions come from Redis's
    /// state as it was.
    FallbackToMemory,
}

impl FailurePolicy {
    /// The `retry_after` of a request denied by [`Deny`](Self::Deny): one
    /// second, the smallest `Retry-After` an HTTP header can say.
    pub const DENY_RETRY_AFTER: Duration = Duration::from_secs(1);

    /// The decision of `Allow` or `Deny` for an algorithm whose limit is `limit`.
    pub(super) fn fixed_decision(self, limit: u64) -> Option<Decision> {
        let deny_us = Self::DENY_RETRY_AFTER.as_micros() as u64;
        match self {
            Self::Allow => Some(Decision::allowed(limit, limit, 0, 0)),
            Self::Deny => Some(Decision::denied(limit, 0, deny_us, deny_us)),
            Self::ReturnError | Self::FallbackToMemory => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_reports_the_full_allowance_and_deny_a_retry_after_of_one_second() {
        let allowed = FailurePolicy::Allow.fixed_decision(10).unwrap();
        assert_eq!((allowed.is_allowed(), allowed.remaining(), allowed.reset_after()), (true, 10, Duration::ZERO));
        let denied = FailurePolicy::Deny.fixed_decision(10).unwrap();
        assert_eq!((denied.is_allowed(), denied.remaining()), (false, 0));
        assert_eq!(denied.retry_after(), Some(Duration::from_secs(1)));
        assert_eq!(FailurePolicy::default(), FailurePolicy::ReturnError);
    }
}
