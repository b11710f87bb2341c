//! The [`RateLimiter`] trait: what every backend offers.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{Breakdown, Decision, Error, Result};

/// A keyed rate limiter: one allowance per key (a user, an IP, an API key).
///
/// Object safe, so a server can hold an `Arc<dyn RateLimiter>` and not care
/// which algorithm or backend is behind it.
///
/// ```
/// use std::sync::Arc;
/// use tollgate::{FixedWindow, InMemory, Rate, RateLimiter};
///
/// # tokio_test_block_on(async {
/// let limiter: Arc<dyn RateLimiter> = Arc::new(InMemory::new(FixedWindow::new(Rate::per_minute(2))?));
/// assert!(limiter.check("alice").await?.is_allowed());
/// assert!(limiter.check("alice").await?.is_allowed());
/// assert!(!limiter.check("alice").await?.is_allowed());
/// assert!(limiter.check("bob").await?.is_allowed());
/// # Ok::<(), tollgate::Error>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
///
/// ## Implementing it
///
/// A backend of your own, or a wrapper that answers without a limiter (a
/// cache, a test double), needs only tollgate: the attribute macro is
/// re-exported as [`tollgate::async_trait`](crate::async_trait), and
/// [`Decision::allow`] and [`Decision::deny`] build the answers.
///
/// ```
/// use std::time::Duration;
/// use tollgate::{Decision, RateLimiter};
///
/// /// Denies everything, as a test double for "the quota is spent".
/// #[derive(Debug)]
/// struct AlwaysLimited;
///
/// #[tollgate::async_trait]
/// impl RateLimiter for AlwaysLimited {
///     async fn check_n(&self, _key: &str, _cost: u64) -> tollgate::Result<Decision> {
///         Decision::deny(10, 0, Duration::from_secs(60), Duration::from_secs(60))
///     }
///
///     async fn reset(&self, _key: &str) -> tollgate::Result<()> {
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let decision = AlwaysLimited.check("anyone").await?;
/// assert_eq!(decision.retry_after(), Some(Duration::from_secs(60)));
/// # Ok::<(), tollgate::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait RateLimiter: fmt::Debug + Send + Sync {
    /// Asks to admit one request for `key`. Same as `check_n(key, 1)`.
    ///
    /// # Errors
    ///
    /// As [`check_n`](Self::check_n).
    ///
    /// # Cancel safety
    ///
    /// As [`check_n`](Self::check_n).
    async fn check(&self, key: &str) -> Result<Decision> {
        self.check_n(key, 1).await
    }

    /// Asks to admit a request that costs `cost` units for `key`. If it is
    /// allowed the cost is taken from the key's allowance; if it is denied,
    /// nothing changes. A `cost` of 0 is a peek: it reports the allowance and
    /// takes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::CostTooHigh`](crate::Error::CostTooHigh) when `cost` is more
    /// than the limiter could ever admit at once (before any backend call), and
    /// backend failures (for Redis, as its failure policy decides). Being
    /// limited is not an error: it is a denied [`Decision`].
    ///
    /// # Cancel safety
    ///
    /// In memory the decision is made before the first await, so the future
    /// either never ran or has completed. On a remote backend, dropping the
    /// future after the request was sent may leave the cost taken without
    /// the caller learning it: it errs towards limiting, never towards
    /// admitting too much.
    async fn check_n(&self, key: &str, cost: u64) -> Result<Decision>;

    /// As [`check_n`](Self::check_n), in the plan `plan` if it names one,
    /// and with each limit's own figures: one per limit of a
    /// [`Composite`](crate::Composite), for HTTP headers that show every
    /// policy. See [`Breakdown`].
    ///
    /// With `plan: None` a limiter of [`Plans`](crate::Plans) decides in
    /// the plan its resolver picks for `key`, as `check_n` does. The
    /// default implementation, for limiters that know no more, reports
    /// `check_n`'s decision as one unnamed limit.
    ///
    /// ```
    /// use tollgate::{Composite, FixedWindow, InMemory, Rate, RateLimiter, SlidingLog};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let limiter = InMemory::new(
    ///     Composite::new("per-minute", SlidingLog::new(Rate::per_minute(10))?)?
    ///         .with("per-hour", FixedWindow::new(Rate::per_hour(100))?)?,
    /// );
    /// let breakdown = limiter.check_detailed("alice", 1, None).await?;
    /// for limit in breakdown.limits() {
    ///     // RateLimit: "per-minute";r=9;t=60, "per-hour";r=99;t=...
    ///     println!("{:?} {} left", limit.name(), limit.decision().remaining());
    /// }
    /// assert_eq!(breakdown.decision().remaining(), 9);
    /// # Ok::<(), tollgate::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`check_n`](Self::check_n), and
    /// [`Error::UnknownPlan`](crate::Error::UnknownPlan) for a plan the
    /// limiter does not have (any plan, for a limiter without plans).
    ///
    /// # Cancel safety
    ///
    /// As [`check_n`](Self::check_n).
    async fn check_detailed(&self, key: &str, cost: u64, plan: Option<&str>) -> Result<Breakdown> {
        if let Some(plan) = plan {
            return Err(Error::UnknownPlan { plan: plan.to_owned() });
        }
        Ok(Breakdown::from(self.check_n(key, cost).await?))
    }

    /// Forgets `key`: its next request starts from a full allowance.
    ///
    /// # Errors
    ///
    /// Backend failures only.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the key reset or not, never in between.
    async fn reset(&self, key: &str) -> Result<()>;
}

#[async_trait]
impl<L: RateLimiter + ?Sized> RateLimiter for Arc<L> {
    async fn check(&self, key: &str) -> Result<Decision> {
        (**self).check(key).await
    }

    async fn check_n(&self, key: &str, cost: u64) -> Result<Decision> {
        (**self).check_n(key, cost).await
    }

    async fn check_detailed(&self, key: &str, cost: u64, plan: Option<&str>) -> Result<Breakdown> {
        (**self).check_detailed(key, cost, plan).await
    }

    async fn reset(&self, key: &str) -> Result<()> {
        (**self).reset(key).await
    }
}
