//! [`Redis`]: the backend that many processes share.
//!
//! Each decision is one Lua script (`lua/`), run atomically by Redis on one
//! key per (limiter, user key): the same step as the in-memory backend, so
//! the two decide alike.

mod breaker;
mod builder;
#[cfg(feature = "cluster")]
mod cluster;
mod guard;
mod policy;
mod reply;
mod scripts;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager};

pub use self::breaker::{BreakerHealth, BreakerState, CircuitBreaker, Health};
pub use self::builder::RedisBuilder;
#[cfg(feature = "cluster")]
pub use self::cluster::ClusterConnection;
use self::guard::Guard;
pub use self::policy::FailurePolicy;
use crate::algorithm::{Algorithm, Parts, check_cost, combine, select};
use crate::clock::{Clock, micros};
use crate::error::redis_error;
use crate::{Breakdown, Decision, Error, InMemory, RateLimiter, Result};

/// A keyed rate limiter whose state lives in Redis, so that every process
/// using the same Redis and prefix shares one limit.
///
/// Each check is one atomic Lua script on one key, `<prefix><tag>:{<user
/// key>}` (for a [`Composite`](crate::Composite), one key per limit, all
/// under the user key's hash tag, still in one script call), which expires
/// once it reads as new again; a denial or a peek writes nothing. Time is the Redis server's `TIME` (opt out with
/// [`RedisBuilder::client_time`]). Cloning is cheap and clones share the
/// connection: concurrent checks are pipelined on it.
///
/// Runs on Tokio, with timers enabled (as `#[tokio::main]` does): each call
/// is bounded by [`tokio::time::timeout`].
///
/// A [circuit breaker](CircuitBreaker), on by default, stops calling Redis
/// while it is away: checks are then answered by the
/// [failure policy](FailurePolicy) at once, and [`health`](Self::health)
/// says so.
///
/// ```no_run
/// use tollgate::{FixedWindow, Rate, RateLimiter, Redis};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = Redis::builder(FixedWindow::new(Rate::per_minute(100))?)
///     .prefix("api:")
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// let decision = limiter.check("user:42").await?;
/// if !decision.is_allowed() {
///     // Answer 429, with Retry-After: decision.retry_after()
/// }
/// # Ok(()) }
/// ```
pub struct Redis<A: Algorithm, C = ConnectionManager> {
    inner: Arc<Inner<A>>,
    connection: C,
}

/// What clones share.
#[derive(Debug)]
struct Inner<A: Algorithm> {
    guard: Guard,
    algorithm: A,
    /// Each configuration (one, or one per plan) ready to run.
    configurations: Vec<scripts::Prepared>,
    /// Where every configuration keeps state, each once: what a reset deletes.
    every_key: Vec<scripts::KeyPart>,
    prefix: String,
    timeout: Duration,
    failure_policy: FailurePolicy,
    client_clock: Option<Arc<dyn Clock>>,
    fallback: Option<InMemory<A, Arc<dyn Clock>>>,
}

impl<A: Algorithm> Redis<A> {
    /// Starts building a limiter of `algorithm`.
    pub fn builder(algorithm: A) -> RedisBuilder<A> {
        RedisBuilder::new(algorithm)
    }
}

impl<A: Algorithm, C> Redis<A, C> {
    /// The algorithm this limiter runs.
    pub fn algorithm(&self) -> &A {
        &self.inner.algorithm
    }

    /// The prefix of every key this limiter writes.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The Redis key that holds `key`'s state: `<prefix><algorithm>:{<key>}`,
    /// where `<algorithm>` is a short tag (`fw`, `sl`, `tb`, `lb`), so that
    /// limiters of different algorithms never read each other's state.
    ///
    /// A [`Composite`](crate::Composite) keeps each limit's state in a key
    /// of its own, `<prefix><name>:<algorithm>:{<key>}`: this is its first
    /// limit's; [`redis_keys`](Self::redis_keys) gives them all.
    pub fn redis_key(&self, key: &str) -> String {
        let first = self.inner.configurations.first().and_then(|configuration| configuration.keys.first());
        first.map_or_else(String::new, |part| part.redis_key(&self.inner.prefix, key))
    }

    /// Every Redis key that may hold `key`'s state, each once: one for a
    /// plain algorithm, one per limit of a composite, and those of every
    /// plan for [`Plans`](crate::Plans). All share the hash tag `{<key>}`,
    /// so a cluster keeps them in one slot.
    pub fn redis_keys(&self, key: &str) -> Vec<String> {
        self.inner.every_key.iter().map(|part| part.redis_key(&self.inner.prefix, key)).collect()
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// What a check answers when Redis fails.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.inner.failure_policy
    }

    /// The state of the limiter's circuit breakers, for a readiness probe:
    /// [`Health::is_up`] is false while any is open, that is while checks (of
    /// some keys, on a cluster) are answered by the failure policy without
    /// reaching Redis. Reads a few atomics and locks; does no I/O.
    ///
    /// The breakers' probes run whether or not checks come, so a process
    /// that a readiness probe has taken out of traffic still sees Redis come
    /// back.
    pub fn health(&self) -> Health {
        self.inner.guard.health()
    }
}

/// The script a limiter runs and the configuration it sends, for benches
/// that call it directly. Not part of the stable API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct ScriptCall<'a> {
    /// The script's source.
    pub source: &'static str,
    /// `ARGV[3..]`.
    pub config: &'a [u64],
}

impl<A: Algorithm, C> Redis<A, C> {
    /// The script this limiter runs and its configuration, for benches.
    #[doc(hidden)]
    pub fn script_call(&self) -> ScriptCall<'_> {
        let default = &self.inner.configurations[0];
        ScriptCall { source: default.lua.source(), config: &default.config }
    }
}

impl<A: Algorithm, C: ConnectionLike + Clone + Send + Sync + 'static> Redis<A, C> {
    /// One script call in configuration `index`, bounded by the timeout:
    /// each limit's decision.
    async fn call(&self, index: usize, key: &str, cost: u64) -> Result<Vec<Decision>> {
        let inner = &*self.inner;
        let prepared = &inner.configurations[index];
        let now_us = inner.client_clock.as_ref().map(|clock| micros(clock.now()));
        let keys: Vec<String> = prepared.keys.iter().map(|part| part.redis_key(&inner.prefix, key)).collect();
        let mut connection = self.connection.clone();
        let call = scripts::invoke(&mut connection, prepared.lua, &keys, cost, now_us, &prepared.config);
        tokio::time::timeout(inner.timeout, call).await.unwrap_or(Err(Error::Timeout(inner.timeout)))
    }

    /// The decision of configuration `index` for a cost checked against its
    /// limit: from Redis, or as the failure policy says.
    async fn decide(&self, index: usize, key: &str, cost: u64) -> Result<Breakdown> {
        let inner = &*self.inner;
        let configuration = inner.algorithm.configuration(index);
        let error = match inner.guard.admit(|| self.redis_key(key)) {
            Ok(pass) => {
                let result = self.call(index, key, cost).await;
                inner.guard.record(pass, &result, &self.connection);
                match result {
                    Ok(parts) => {
                        return Ok(Breakdown::new(combine(&parts, configuration.limit), &configuration, &parts));
                    }
                    // State that makes no sense is not an outage: no policy guesses on it.
                    Err(error @ Error::InvalidState { .. }) => return Err(error),
                    Err(error) => error,
                }
            }
            Err(unavailable) => {
                yield_now_and_then().await;
                unavailable
            }
        };
        let limits: Vec<u64> = match configuration.parts {
            Parts::One(limit) => vec![limit.limit()],
            Parts::Several(named) => named.iter().map(|named| named.limit.limit()).collect(),
        };
        let fixed: Option<Vec<Decision>> =
            limits.into_iter().map(|limit| inner.failure_policy.fixed_decision(limit)).collect();
        if let Some(parts) = fixed {
            return Ok(Breakdown::new(combine(&parts, configuration.limit), &configuration, &parts));
        }
        match &inner.fallback {
            Some(fallback) => Ok(fallback.detailed_in(index, key, cost)),
            None => Err(error),
        }
    }
}

impl<A: Algorithm, C: Clone> Clone for Redis<A, C> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner), connection: self.connection.clone() }
    }
}

impl<A: Algorithm, C> fmt::Debug for Redis<A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection need not be `Debug` (not every connection type is).
        f.debug_struct("Redis").field("inner", &self.inner).field("connection", &std::any::type_name::<C>()).finish()
    }
}

#[async_trait]
impl<A: Algorithm, C: ConnectionLike + Clone + Send + Sync + 'static> RateLimiter for Redis<A, C> {
    /// Runs the algorithm's script for `key`.
    ///
    /// # Errors
    ///
    /// [`Error::CostTooHigh`] before any call to Redis. Then, with
    /// [`FailurePolicy::ReturnError`], [`Error::Backend`], [`Error::Timeout`]
    /// or [`Error::UnexpectedReply`], and [`Error::Unavailable`] at once,
    /// without calling Redis, while the circuit breaker is open; the other
    /// policies answer with a decision instead.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future after the script was sent may leave the cost
    /// taken without the caller learning it: it errs towards limiting.
    async fn check_n(&self, key: &str, cost: u64) -> Result<Decision> {
        let index = self.inner.algorithm.resolve(key);
        check_cost(&self.inner.algorithm, index, cost)?;
        Ok(self.decide(index, key, cost).await?.decision())
    }

    /// Runs the script of `plan` (or of `key`'s plan) for `key`: one call,
    /// whatever the number of limits.
    ///
    /// # Errors
    ///
    /// As [`check_n`](Self::check_n), and
    /// [`Error::UnknownPlan`] before any call to Redis.
    ///
    /// # Cancel safety
    ///
    /// As [`check_n`](Self::check_n).
    async fn check_detailed(&self, key: &str, cost: u64, plan: Option<&str>) -> Result<Breakdown> {
        let index = select(&self.inner.algorithm, key, plan)?;
        check_cost(&self.inner.algorithm, index, cost)?;
        self.decide(index, key, cost).await
    }

    /// Deletes `key`'s Redis keys (every limit's, in every plan, in one
    /// `DEL`) (and, with
    /// [`FailurePolicy::FallbackToMemory`], its in-memory state).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] or [`Error::Timeout`], and [`Error::Unavailable`]
    /// at once while the circuit breaker is open, whatever the failure
    /// policy: a reset is not a decision, and the caller should know it did
    /// not happen.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the key deleted or not.
    async fn reset(&self, key: &str) -> Result<()> {
        let inner = &*self.inner;
        if let Some(fallback) = &inner.fallback {
            fallback.reset_sync(key);
        }
        let redis_key = self.redis_key(key);
        let pass = match inner.guard.admit(|| redis_key.clone()) {
            Ok(pass) => pass,
            Err(unavailable) => {
                yield_now_and_then().await;
                return Err(unavailable);
            }
        };
        let mut connection = self.connection.clone();
        let mut delete = redis::cmd("DEL");
        delete.arg(self.redis_keys(key));
        let result = match tokio::time::timeout(inner.timeout, delete.exec_async(&mut connection)).await {
            Ok(result) => result.map_err(redis_error),
            Err(_) => Err(Error::Timeout(inner.timeout)),
        };
        inner.guard.record(pass, &result, &self.connection);
        result
    }
}

/// Gives the executor its turn now and then (when the task's cooperative
/// budget runs out): a call answered by an open breaker touches no socket,
/// so without this a task checking in a loop would never yield, and could
/// starve the others, the breaker's probes among them.
async fn yield_now_and_then() {
    tokio::task::coop::consume_budget().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rate, SlidingLog, TokenBucket};

    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}

    fn assert_limiter<L: RateLimiter + Send + Sync + Clone + 'static>() {}

    #[test]
    fn limiters_are_send_sync_clone_and_static() {
        assert_shareable::<Redis<TokenBucket>>();
        assert_limiter::<Redis<crate::Composite, redis::aio::MultiplexedConnection>>();
        assert_limiter::<Redis<crate::Plans>>();
        assert_limiter::<Redis<SlidingLog, redis::aio::MultiplexedConnection>>();
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn a_cluster_connection_can_carry_a_limiter() {
        assert_limiter::<Redis<TokenBucket, redis::cluster_async::ClusterConnection>>();
    }

    #[test]
    fn a_prefix_with_braces_and_a_zero_timeout_are_rejected_before_connecting() {
        let algorithm = || TokenBucket::new(1, Rate::per_second(1)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for builder in [
            Redis::builder(algorithm()).prefix("a{b"),
            Redis::builder(algorithm()).prefix("a}"),
            Redis::builder(algorithm()).timeout(Duration::ZERO),
        ] {
            // An unreachable URL: the configuration is rejected first.
            let error = runtime.block_on(builder.connect("redis://127.0.0.1:1")).unwrap_err();
            assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
        }
    }
}
