//! [`Redis`]: the backend that many processes share.
//!
//! Each decision is one Lua script (`lua/`), run atomically by Redis on one
//! key per (limiter, user key): the same step as the in-memory backend, so
//! the two decide alike.

mod breaker;
mod builder;
#[cfg(feature = "cluster")]
mod cluster;
mod deny_cache;
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
use self::deny_cache::DenyCache;
use self::guard::Guard;
pub use self::policy::FailurePolicy;
use self::reply::Reply;
use crate::acquire::{GiveBack, Lines, Permit, TooLong, Try, system_time_us, wait_for_slot};
use crate::algorithm::{Algorithm, Parts, check_cost, combine, select};
use crate::clock::{Clock, micros};
use crate::error::redis_error;
use crate::observe::{Observed, Observer, Outcome};
use crate::rate::MAX_EXACT;
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
    /// The scripts that reserve and give back, for an algorithm that
    /// reserves ahead (a token or leaky bucket alone).
    reserving: Option<&'static scripts::Reserving>,
    /// This process's waiters for what reserves nothing ahead.
    lines: Lines,
    observer: Observer,
    /// The denials Redis has just answered, until they expire.
    deny_cache: Option<DenyCache>,
}

/// What a decision does with the deny cache: a check may be answered from
/// it; `acquire`'s tries only tell it what Redis answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cache {
    Answer,
    Fill,
}

/// Who answered a reservation.
enum Answer {
    /// The script, with the time it decided at.
    Redis(Reply),
    /// The failure policy, with a fixed decision.
    Policy(Decision),
    /// The failure policy, with the in-memory fallback's decision.
    Fallback(Decision),
}

impl Answer {
    fn decision(&self) -> Decision {
        match self {
            Answer::Redis(reply) => reply.decision,
            Answer::Policy(decision) | Answer::Fallback(decision) => *decision,
        }
    }
}

impl Observed for Answer {
    fn outcome(&self) -> Outcome {
        match self {
            Answer::Redis(reply) => reply.decision.outcome(),
            Answer::Policy(_) | Answer::Fallback(_) => Outcome::FailurePolicy,
        }
    }
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

    /// The limiter's name in logs and metrics: see [`RedisBuilder::name`].
    pub fn name(&self) -> &str {
        self.inner.observer.name()
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

    /// How many checks the [deny cache](RedisBuilder::deny_cache) has
    /// answered without calling Redis: the Redis calls it saved, since the
    /// limiter was built (clones share the count). Zero when it is off.
    pub fn deny_cache_saves(&self) -> u64 {
        self.inner.deny_cache.as_ref().map_or(0, DenyCache::saves)
    }

    /// How many denials the [deny cache](RedisBuilder::deny_cache) holds
    /// now, expired ones not yet pruned included: never more than its
    /// [capacity](RedisBuilder::deny_cache_capacity) (rounded up to a
    /// multiple of its shard count, 16). Locks each shard in turn.
    pub fn deny_cache_entries(&self) -> usize {
        self.inner.deny_cache.as_ref().map_or(0, DenyCache::len)
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

/// The script a limiter runs and the arguments it sends, for benches that
/// call it directly. Not part of the stable API.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct ScriptCall {
    /// The script's source.
    pub source: &'static str,
    /// `ARGV`, as sent for a cost of 1 on the server's clock: the request,
    /// with the configuration packed after it.
    pub args: Vec<Vec<u8>>,
}

impl<A: Algorithm, C> Redis<A, C> {
    /// The script this limiter runs and its arguments, for benches.
    #[doc(hidden)]
    pub fn script_call(&self) -> ScriptCall {
        let default = &self.inner.configurations[0];
        let request = default.request(1, None);
        ScriptCall { source: default.lua.source(), args: [vec![request.bytes()], default.args.clone()].concat() }
    }
}

impl<A: Algorithm, C: ConnectionLike + Clone + Send + Sync + 'static> Redis<A, C> {
    /// One script call in configuration `index`, bounded by the timeout:
    /// each limit's decision.
    /// `now_us` is the client clock's time, read by the caller.
    async fn call(&self, index: usize, key: &str, cost: u64, now_us: Option<u64>) -> Result<(Vec<Decision>, u64)> {
        let inner = &*self.inner;
        let prepared = &inner.configurations[index];
        let keys: Vec<String> = prepared.keys.iter().map(|part| part.redis_key(&inner.prefix, key)).collect();
        let mut connection = self.connection.clone();
        let request = prepared.request(cost, now_us);
        let call = scripts::invoke(&mut connection, prepared.lua, &keys, request, &prepared.args);
        tokio::time::timeout(inner.timeout, call).await.unwrap_or(Err(Error::Timeout(inner.timeout)))
    }

    /// One reserving script call for `key`, bounded by the timeout: a slot
    /// at most `max_wait_us` away.
    async fn call_reserve(
        &self,
        reserving: &scripts::Reserving,
        key: &str,
        cost: u64,
        max_wait_us: u64,
    ) -> Result<Reply> {
        let inner = &*self.inner;
        let now_us = inner.client_clock.as_ref().map(|clock| micros(clock.now()));
        let mut connection = self.connection.clone();
        // Sent exactly (Lua's doubles hold integers to 2^53); the script caps it at the reach, as the step does.
        let max_wait_us = [max_wait_us.min(MAX_EXACT)];
        let prepared = &inner.configurations[0];
        let request = prepared.request(cost, now_us);
        let redis_key = self.redis_key(key);
        let call =
            scripts::decide(&mut connection, &reserving.reserve, &redis_key, request, &prepared.args, &max_wait_us);
        tokio::time::timeout(inner.timeout, call).await.unwrap_or(Err(Error::Timeout(inner.timeout)))
    }

    /// A reservation, by an algorithm that reserves ahead, answered by the
    /// script or, if Redis fails, by the failure policy.
    async fn reserve_answer(
        &self,
        reserving: &scripts::Reserving,
        key: &str,
        cost: u64,
        max_wait_us: u64,
    ) -> Result<Answer> {
        let inner = &*self.inner;
        let observation = inner.observer.start(key, cost);
        let error = match inner.guard.admit(|| self.redis_key(key)) {
            Ok(pass) => {
                let result = self.call_reserve(reserving, key, cost, max_wait_us).await;
                inner.guard.record(pass, &result, &self.connection);
                match result {
                    Ok(reply) => return observation.answered(Ok(Answer::Redis(reply))),
                    // State that makes no sense is not an outage: no policy guesses on it.
                    Err(error @ Error::InvalidState { .. }) => return observation.answered(Err(error)),
                    Err(error) => error,
                }
            }
            Err(unavailable) => {
                yield_now_and_then().await;
                unavailable
            }
        };
        let policy = inner.failure_policy;
        if let Some(decision) = policy.fixed_decision(inner.algorithm.limit()) {
            return Ok(observation.by_policy(Answer::Policy(decision), policy, &error));
        }
        match &inner.fallback {
            Some(fallback) => fallback
                .reserve_us(key, cost, max_wait_us)
                .map(|decision| observation.by_policy(Answer::Fallback(decision), policy, &error)),
            None => observation.answered(Err(error)),
        }
    }

    /// The time now as this limiter would decide on it without Redis: its
    /// client clock, or the system's.
    fn local_now_us(&self) -> u64 {
        self.inner.client_clock.as_ref().map_or_else(system_time_us, |clock| micros(clock.now()))
    }

    /// The decision of configuration `index` for a cost checked against its
    /// limit: from the deny cache (if `cache` says so), from Redis, or as
    /// the failure policy says.
    async fn decide(&self, index: usize, key: &str, cost: u64, cache: Cache) -> Result<Breakdown> {
        Ok(self.decide_at(index, key, cost, cache).await?.0)
    }

    /// [`decide`](Self::decide), with the time the script decided at (µs
    /// since the epoch, on the clock the script read) when Redis answered.
    async fn decide_at(&self, index: usize, key: &str, cost: u64, cache: Cache) -> Result<(Breakdown, Option<u64>)> {
        let inner = &*self.inner;
        let configuration = inner.algorithm.configuration(index);
        let observation = inner.observer.start(key, cost);
        // The client clock is read once: the script decides at this time, and a denial is cached from it.
        let client_now = inner.client_clock.as_ref().map(|clock| clock.now());
        let sent = inner.deny_cache.as_ref().map(|cache| cache.start(client_now));
        if let (Some(deny_cache), Some(sent), Cache::Answer) = (&inner.deny_cache, &sent, cache)
            && let Some(parts) = deny_cache.answer(sent, index, key, cost)
        {
            // Answered without I/O: a task checking in a loop must still give others their turn.
            inner.observer.deny_cache_saved();
            yield_now_and_then().await;
            let breakdown = Breakdown::new(combine(&parts, configuration.limit), &configuration, &parts);
            return Ok((observation.answered(breakdown), None));
        }
        let error = match inner.guard.admit(|| self.redis_key(key)) {
            Ok(pass) => {
                let result = self.call(index, key, cost, client_now.map(micros)).await;
                inner.guard.record(pass, &result, &self.connection);
                match result {
                    Ok((parts, decided_at_us)) => {
                        let decision = combine(&parts, configuration.limit);
                        if let (Some(deny_cache), Some(sent)) = (&inner.deny_cache, &sent) {
                            deny_cache.record(sent, index, key, cost, &decision, &parts);
                        }
                        let breakdown = Breakdown::new(decision, &configuration, &parts);
                        return Ok((observation.answered(breakdown), Some(decided_at_us)));
                    }
                    // State that makes no sense is not an outage: no policy guesses on it.
                    Err(error @ Error::InvalidState { .. }) => {
                        return observation.answered(Err::<Breakdown, _>(error)).map(|breakdown| (breakdown, None));
                    }
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
        let policy = inner.failure_policy;
        let fixed: Option<Vec<Decision>> = limits.into_iter().map(|limit| policy.fixed_decision(limit)).collect();
        if let Some(parts) = fixed {
            let breakdown = Breakdown::new(combine(&parts, configuration.limit), &configuration, &parts);
            return Ok((observation.by_policy(breakdown, policy, &error), None));
        }
        match &inner.fallback {
            Some(fallback) => Ok((observation.by_policy(fallback.detailed_in(index, key, cost), policy, &error), None)),
            None => observation.answered(Err::<Breakdown, _>(error)).map(|breakdown| (breakdown, None)),
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
        Ok(self.decide(index, key, cost, Cache::Answer).await?.decision())
    }

    /// Runs the algorithm's reserving script for `key`: the token and leaky
    /// buckets reserve ahead; the others check.
    ///
    /// # Errors
    ///
    /// As [`check_n`](Self::check_n); with
    /// [`FailurePolicy::FallbackToMemory`], the fallback reserves in this
    /// process.
    ///
    /// # Cancel safety
    ///
    /// As [`check_n`](Self::check_n): the slot may stay reserved.
    async fn reserve(&self, key: &str, cost: u64, max_wait: Duration) -> Result<Decision> {
        let Some(reserving) = self.inner.reserving else { return self.check_n(key, cost).await };
        check_cost(&self.inner.algorithm, 0, cost)?;
        let max_wait_us = u64::try_from(max_wait.as_micros()).unwrap_or(u64::MAX);
        Ok(self.reserve_answer(reserving, key, cost, max_wait_us).await?.decision())
    }

    /// One script call reserves the slot (the token and leaky buckets), in
    /// the order the calls reach Redis, from every process; then one timer
    /// until the slot. The other algorithms, composites and plans wait in a
    /// line per key and process: only its head calls Redis, when its denial
    /// says capacity frees.
    ///
    /// When Redis fails, the failure policy answers each try:
    /// [`FailurePolicy::Allow`] lets the request go at once;
    /// [`FailurePolicy::Deny`] tries again after
    /// [`DENY_RETRY_AFTER`](FailurePolicy::DENY_RETRY_AFTER), within the
    /// maximum wait; [`FailurePolicy::FallbackToMemory`] reserves in this
    /// process.
    ///
    /// # Errors
    ///
    /// [`Error::CostTooHigh`] before any call; then as
    /// [`check_n`](Self::check_n), at any try.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits for a slot reserved on Redis
    /// spawns one more script call (on the current Tokio runtime, bounded by
    /// the timeout, its outcome ignored) that gives the slot back if its
    /// reservation is still the newest for the key: written in the same µs
    /// with that slot, which identifies it exactly when the rate is at most
    /// one unit per µs (faster rates give nothing back). Otherwise, and if
    /// that call fails, the slot goes unused: it errs towards limiting.
    async fn acquire_within(&self, key: &str, cost: u64, max_wait: Duration) -> Result<Result<Permit, TooLong>> {
        let inner = &*self.inner;
        let index = inner.algorithm.resolve(key);
        check_cost(&inner.algorithm, index, cost)?;
        let reserving = inner.reserving;
        let reach_us = if reserving.is_some() { inner.algorithm.reach_us() } else { 0 };
        let line = (reach_us == 0).then_some((&inner.lines, key));
        wait_for_slot(max_wait, reach_us, line, |accept_us| async move {
            let Some(reserving) = reserving else {
                // Nothing reserved ahead: a check, whose retry-after says when to try again.
                // Not from the deny cache: its retry moment is exact, but the line's timing stays Redis's.
                // Granted when the script decided (its clock, as a reservation's slot is), not when the reply came.
                let (breakdown, decided_at_us) = self.decide_at(index, key, cost, Cache::Fill).await?;
                let at_us = decided_at_us.unwrap_or_else(|| self.local_now_us());
                return Ok(Try::from_decision(&breakdown.decision(), at_us, 0, None));
            };
            Ok(match self.reserve_answer(reserving, key, cost, accept_us).await? {
                Answer::Redis(Reply { decision, decided_at_us }) => {
                    let unused = (decision.is_allowed() && !decision.wait().is_zero() && cost > 0).then(|| Unreserve {
                        redis: self.clone(),
                        key: key.to_owned(),
                        cost,
                        at_us: decided_at_us,
                        wait_us: u64::try_from(decision.wait().as_micros()).unwrap_or(u64::MAX),
                    });
                    Try::from_decision(&decision, decided_at_us, reach_us, unused)
                }
                Answer::Fallback(decision) => Try::from_decision(&decision, self.local_now_us(), reach_us, None),
                // The policy's retry-after is a time to try again, not a slot out of reach.
                Answer::Policy(decision) => Try::from_decision(&decision, self.local_now_us(), 0, None),
            })
        })
        .await
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
        self.decide(index, key, cost, Cache::Answer).await
    }

    /// Deletes `key`'s Redis keys (every limit's, in every plan, in one
    /// `DEL`) (and, with
    /// [`FailurePolicy::FallbackToMemory`], its in-memory state), and
    /// forgets its denials in this limiter's
    /// [deny cache](RedisBuilder::deny_cache), before the `DEL` and again
    /// after it, so that no denial Redis answered before the reset is kept.
    /// Other limiters (other processes, or another limiter of the same
    /// prefix in this one) answer their cached denials until they expire.
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
    /// Dropping the future may leave the key deleted or not, and a denial
    /// answered meanwhile cached until it expires.
    async fn reset(&self, key: &str) -> Result<()> {
        let inner = &*self.inner;
        if let Some(cache) = &inner.deny_cache {
            cache.forget(key, inner.configurations.len());
        }
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
        // After the DEL (done or not): a denial sent before it is not cached after this.
        if let Some(cache) = &inner.deny_cache {
            cache.forget(key, inner.configurations.len());
        }
        result
    }
}

/// A slot reserved on Redis and not used: given back by one more script
/// call, in the background.
struct Unreserve<A: Algorithm, C> {
    redis: Redis<A, C>,
    key: String,
    cost: u64,
    at_us: u64,
    wait_us: u64,
}

impl<A: Algorithm, C: ConnectionLike + Clone + Send + Sync + 'static> GiveBack for Unreserve<A, C> {
    fn give_back(self) {
        // A future dropped outside a runtime (at its shutdown) gives nothing back.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let Unreserve { redis, key, cost, at_us, wait_us } = self;
            let inner = &*redis.inner;
            let Some(reserving) = inner.reserving else { return };
            let now_us = inner.client_clock.as_ref().map(|clock| micros(clock.now()));
            let mut connection = redis.connection.clone();
            let keys = [redis.redis_key(&key)];
            let appended = [at_us, wait_us];
            let prepared = &inner.configurations[0];
            let request = prepared.request(cost, now_us);
            let call =
                scripts::run::<_, u8>(&mut connection, &reserving.give_back, &keys, request, &prepared.args, &appended);
            // Best effort: if it fails, the slot goes unused.
            let _ = tokio::time::timeout(inner.timeout, call).await;
            // A slot given back lets the key admit sooner than a denial cached meanwhile said.
            if let Some(cache) = &inner.deny_cache {
                cache.forget(&key, 1);
            }
        });
    }
}

/// Gives the executor its turn now and then (when the task's cooperative
/// budget runs out): a call answered by an open breaker, or by the deny
/// cache, touches no socket,
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
