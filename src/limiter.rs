//! The [`RateLimiter`] trait: what every backend offers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

#[cfg(feature = "acquire")]
use crate::acquire::{Keep, Permit, TooLong, Try, system_time_us};
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

    /// [`check_n`](Self::check_n) answered without waiting, by a plain
    /// limiter that can: `Some` only from a limiter that decides at once
    /// (in memory) and whose [`check_detailed`](Self::check_detailed) would
    /// report the same decision as its one, unnamed limit, in no plan (one
    /// algorithm, not a [`Composite`](crate::Composite) or
    /// [`Plans`](crate::Plans)), having decided exactly as `check_n` would.
    /// `None` from any other limiter, having done nothing. The default is
    /// `None`.
    ///
    /// The cheapest check there is, for a hot path that can use a
    /// [`Decision`] alone when the limiter is plain (the HTTP middleware,
    /// which learns each limit's window once from `check_detailed`): no
    /// future, and no [`Breakdown`] to allocate.
    ///
    /// ```
    /// use tollgate::{Composite, InMemory, Rate, RateLimiter, TokenBucket};
    ///
    /// let plain = InMemory::new(TokenBucket::new(10, Rate::per_second(10))?);
    /// assert_eq!(plain.check_now("alice", 1).expect("plain, in memory")?.remaining(), 9);
    /// let composite = InMemory::new(Composite::new("per-second", TokenBucket::new(10, Rate::per_second(10))?)?);
    /// assert!(composite.check_now("alice", 1).is_none());
    /// # Ok::<(), tollgate::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Inside the `Some`, as [`check_n`](Self::check_n).
    fn check_now(&self, key: &str, cost: u64) -> Option<Result<Decision>> {
        let _ = (key, cost);
        None
    }

    /// [`check_detailed`](Self::check_detailed) answered without waiting,
    /// by a limiter that can (in memory): `Some` with the answer, having
    /// decided exactly as `check_detailed` would; `None` from a limiter that
    /// has to wait (Redis) or does not say, having done nothing, and then the
    /// caller awaits `check_detailed`.
    ///
    /// For callers on a hot path that would otherwise box a future for an
    /// answer that is there already: the HTTP middleware asks this first.
    /// The default is `None`; a backend that decides in memory overrides it.
    ///
    /// ```
    /// use tollgate::{InMemory, Rate, RateLimiter, TokenBucket};
    ///
    /// let limiter = InMemory::new(TokenBucket::new(10, Rate::per_second(10))?);
    /// let breakdown = limiter.check_detailed_now("alice", 1, None).expect("in memory, at once")?;
    /// assert_eq!(breakdown.decision().remaining(), 9);
    /// # Ok::<(), tollgate::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Inside the `Some`, as [`check_detailed`](Self::check_detailed).
    fn check_detailed_now(&self, key: &str, cost: u64, plan: Option<&str>) -> Option<Result<Breakdown>> {
        let _ = (key, cost, plan);
        None
    }

    /// Reserves `cost` for `key` at the earliest slot at most `max_wait`
    /// away, without waiting for it: the primitive under `acquire` (feature
    /// `acquire`), for a caller that schedules work itself
    /// (as Go's `rate.Limiter.Reserve`).
    ///
    /// Allowed, the slot is reserved and the request may go after
    /// [`Decision::wait`]; the slot counts as taken for every check and
    /// reservation after it, so nobody jumps ahead. Denied, nothing changes,
    /// and [`retry_after`](Decision::retry_after) is how long the request
    /// would have had to wait. A `max_wait` of zero is a check (for the leaky
    /// bucket, one that may not be held: its departure must be now).
    ///
    /// The token and leaky buckets reserve ahead, up to their reach (the
    /// debt their meter holds stays within 2^53, so for most
    /// configurations, years). The fixed window and the sliding log reserve
    /// nothing ahead: for them this is [`check_n`](Self::check_n). A reserved
    /// slot cannot be given back, except by `acquire`'s cancellation; see
    /// docs/acquire.md.
    ///
    /// # Errors
    ///
    /// As [`check_n`](Self::check_n).
    ///
    /// # Cancel safety
    ///
    /// As [`check_n`](Self::check_n): a future dropped after a remote call
    /// was sent may leave the slot reserved, which errs towards limiting.
    async fn reserve(&self, key: &str, cost: u64, max_wait: Duration) -> Result<Decision> {
        let _ = max_wait;
        self.check_n(key, cost).await
    }

    /// Waits until a request of `cost` for `key` may go, however long that
    /// is, and resolves at its slot. Same as
    /// [`acquire_within`](Self::acquire_within) with no maximum wait.
    ///
    /// # Errors
    ///
    /// As [`acquire_within`](Self::acquire_within).
    ///
    /// # Cancel safety
    ///
    /// As [`acquire_within`](Self::acquire_within).
    #[cfg(feature = "acquire")]
    async fn acquire(&self, key: &str, cost: u64) -> Result<Permit> {
        loop {
            // No wait is too long for Duration::MAX: this loop never turns.
            if let Ok(permit) = self.acquire_within(key, cost, Duration::MAX).await? {
                return Ok(permit);
            }
        }
    }

    /// Waits until a request of `cost` for `key` may go, and resolves at its
    /// slot with a [`Permit`]; or, if the slot is further away than
    /// `max_wait`, answers [`TooLong`] at once, having reserved nothing.
    ///
    /// Waiting costs one timer per waiter and no polling. The token and
    /// leaky buckets reserve the slot in one call (one script call on
    /// Redis), so waiters are served in the order they called, across
    /// processes (on Redis, the order their calls reached it). The fixed
    /// window and the sliding log reserve nothing ahead: waiters of one
    /// process line up per key, in the order they called, and only the
    /// first tries again, when its denial says capacity frees; across
    /// processes, whoever tries first gets it. docs/acquire.md says what
    /// each algorithm does.
    ///
    /// The default implementation, for other backends, tries
    /// [`check_n`](Self::check_n) again whenever its `retry_after` says,
    /// with no line.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate::{InMemory, Rate, RateLimiter, TokenBucket};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// // A quota of 100 requests a second, in bursts of at most 10.
    /// let upstream = InMemory::new(TokenBucket::new(10, Rate::per_second(100))?);
    /// for _ in 0..20 {
    ///     let _permit = upstream.acquire("third-party-api", 1).await?;
    ///     // send the request
    /// }
    /// match upstream.acquire_within("third-party-api", 10, Duration::from_millis(20)).await? {
    ///     Ok(_permit) => { /* send the batch */ }
    ///     Err(too_long) => assert!(too_long.wait() > Duration::from_millis(20)),
    /// }
    /// # Ok::<(), tollgate::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::CostTooHigh`](crate::Error::CostTooHigh) when `cost` can
    /// never be admitted, before anything else; then as
    /// [`check_n`](Self::check_n), at any of the tries. Having to wait too
    /// long is not an error: it is the inner `Err(TooLong)`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future never lets more through than the limit. While it
    /// waits for a reserved slot, dropping it gives the slot back if that
    /// is exact: the reservation is the newest for its key, so that no slot
    /// promised to another waiter moves (in memory at once; on Redis by one
    /// more script call, made in the background, best effort). Otherwise the
    /// slot stays taken and goes unused, which errs towards limiting. A
    /// future dropped while its call to a remote backend is in flight may
    /// leave its slot reserved, likewise.
    #[cfg(feature = "acquire")]
    async fn acquire_within(&self, key: &str, cost: u64, max_wait: Duration) -> Result<Result<Permit, TooLong>> {
        crate::acquire::wait_for_slot::<Keep, _, _>(max_wait, 0, None, |_| async move {
            let decision = self.check_n(key, cost).await?;
            Ok(Try::from_decision(&decision, system_time_us(), 0, None))
        })
        .await
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

    fn check_now(&self, key: &str, cost: u64) -> Option<Result<Decision>> {
        (**self).check_now(key, cost)
    }

    fn check_detailed_now(&self, key: &str, cost: u64, plan: Option<&str>) -> Option<Result<Breakdown>> {
        (**self).check_detailed_now(key, cost, plan)
    }

    async fn reserve(&self, key: &str, cost: u64, max_wait: Duration) -> Result<Decision> {
        (**self).reserve(key, cost, max_wait).await
    }

    #[cfg(feature = "acquire")]
    async fn acquire(&self, key: &str, cost: u64) -> Result<Permit> {
        (**self).acquire(key, cost).await
    }

    #[cfg(feature = "acquire")]
    async fn acquire_within(&self, key: &str, cost: u64, max_wait: Duration) -> Result<Result<Permit, TooLong>> {
        (**self).acquire_within(key, cost, max_wait).await
    }

    async fn reset(&self, key: &str) -> Result<()> {
        (**self).reset(key).await
    }
}
