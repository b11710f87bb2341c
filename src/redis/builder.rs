//! [`RedisBuilder`]: the options of a [`Redis`] limiter.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};

use super::breaker::CircuitBreaker;
use super::deny_cache::DenyCache;
use super::guard::Guard;
use super::{FailurePolicy, Inner, Redis, scripts};
use crate::acquire::Lines;
use crate::algorithm::{Algorithm, Parts};
use crate::clock::{Clock, MonotonicClock};
use crate::error::{invalid, redis_error};
use crate::observe::Observer;
use crate::{Error, InMemory, Result};

/// Builds a [`Redis`] limiter: [`Redis::builder`], the options, then
/// [`connect`](Self::connect) or [`build`](Self::build).
///
/// ```no_run
/// use std::time::Duration;
/// use tollgate::{FailurePolicy, Rate, Redis, TokenBucket};
///
/// # async fn run() -> tollgate::Result<()> {
/// let limiter = Redis::builder(TokenBucket::new(100, Rate::per_second(10))?)
///     .prefix("api:")
///     .timeout(Duration::from_millis(50))
///     .failure_policy(FailurePolicy::FallbackToMemory)
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `connect` or `build`"]
pub struct RedisBuilder<A: Algorithm> {
    algorithm: A,
    prefix: String,
    pub(super) timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) failure_policy: FailurePolicy,
    circuit_breaker: CircuitBreaker,
    client_clock: Option<Arc<dyn Clock>>,
    name: Option<Cow<'static, str>>,
    deny_cache: bool,
    deny_cache_capacity: usize,
    layout: scripts::Layout,
}

impl<A: Algorithm> RedisBuilder<A> {
    /// The prefix used when none is given.
    pub const DEFAULT_PREFIX: &'static str = "tollgate:";

    /// The per-call timeout used when none is given.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

    /// The connect timeout used when none is given.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

    /// The most denials the deny cache holds when not told otherwise.
    pub const DEFAULT_DENY_CACHE_CAPACITY: usize = 10_000;

    pub(super) fn new(algorithm: A) -> Self {
        Self {
            algorithm,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            failure_policy: FailurePolicy::default(),
            circuit_breaker: CircuitBreaker::new(),
            client_clock: None,
            name: None,
            deny_cache: true,
            deny_cache_capacity: Self::DEFAULT_DENY_CACHE_CAPACITY,
            layout: scripts::Layout::Standard,
        }
    }

    /// Names the limiter `name`, for logs and metrics (the `limiter` field
    /// of its events and label of its metrics; see docs/observability.md).
    /// The default is the algorithm's [`name`](Algorithm::name), such as
    /// `"token_bucket"`. Give each limiter of a process its own. The name
    /// is not part of any Redis key: [`prefix`](Self::prefix) is.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The start of every Redis key this limiter writes (default
    /// `"tollgate:"`): user key `k` is stored at `<prefix><tag>:{k}` (see
    /// [`Redis::redis_keys`]). Limiters with
    /// different prefixes never share state; give each limiter its own.
    ///
    /// A prefix may not contain `{` or `}` ([`build`](Self::build) and
    /// [`connect`](Self::connect) reject it), so that no two (prefix, user
    /// key) pairs share a Redis key.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one check or reset may take, script reload included (default
    /// 100 ms). After that it fails with [`Error::Timeout`](crate::Error::Timeout),
    /// and the failure policy decides.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long one attempt to open a connection may take, the handshake
    /// included (default 1 s): it bounds [`connect`](Self::connect) and
    /// [`connect_cluster`](Self::connect_cluster), against a closed port and
    /// a server that never answers alike, and each reconnection after.
    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// What a check answers when Redis fails, or while the circuit breaker
    /// is open (default [`FailurePolicy::ReturnError`]).
    pub fn failure_policy(mut self, failure_policy: FailurePolicy) -> Self {
        self.failure_policy = failure_policy;
        self
    }

    /// The circuit breaker that answers checks at once while Redis is away
    /// (default [`CircuitBreaker::new`]: on; [`CircuitBreaker::disabled`]
    /// turns it off). See [`CircuitBreaker`] for when it opens and how it
    /// closes.
    pub fn circuit_breaker(mut self, circuit_breaker: CircuitBreaker) -> Self {
        self.circuit_breaker = circuit_breaker;
        self
    }

    /// Takes the time from `clock` and passes it to the script, instead of
    /// using the Redis server's `TIME`. Deterministic tests use it with a
    /// [`ManualClock`](crate::ManualClock); in production, server time is
    /// better, since app servers' clocks drift apart.
    ///
    /// In this mode each key's TTL is computed on `clock` and lengthened by
    /// one second, as `clock` need not run at the server's pace.
    pub fn client_time(mut self, clock: impl Clock) -> Self {
        self.client_clock = Some(Arc::new(clock));
        self
    }

    /// Whether a denial Redis answered is kept in this process and
    /// answers the same key's checks until its `retry_after` has passed,
    /// without calling Redis (default on).
    ///
    /// A check ([`check`](crate::RateLimiter::check),
    /// [`check_n`](crate::RateLimiter::check_n),
    /// [`check_detailed`](crate::RateLimiter::check_detailed), and
    /// [`reserve`](crate::RateLimiter::reserve) for the algorithms that
    /// reserve nothing ahead, which is a check) of the same or a larger cost,
    /// in the same configuration (the same plan of [`Plans`](crate::Plans)),
    /// is denied from the cache, with the `retry_after` and `reset_after`
    /// that are left and the `remaining` Redis answered. A smaller cost, a
    /// reservation of a token or leaky bucket, the tries of
    /// [`acquire`](crate::RateLimiter::acquire) (whose timing stays
    /// Redis's) and any check after the retry moment go to Redis. Checks it answers are counted by
    /// [`Redis::deny_cache_saves`].
    ///
    /// It is exact: it only ever denies, and only what Redis would deny,
    /// because nothing but a reset makes a key admit earlier (time frees
    /// capacity, traffic takes it), and the retry moment is counted from
    /// the instant before the call was sent, on the [client
    /// clock](Self::client_time) or else a monotonic clock. So it never
    /// admits more than the limit. A denial the failure policy answered is
    /// not cached.
    ///
    /// [`reset`](crate::RateLimiter::reset) forgets the key's denials in
    /// this limiter. Not in others: a reset in another process (or by
    /// another limiter in this one), or a deployment that raises the limit,
    /// is seen here only when the cached denial expires. Turn the cache off
    /// where that matters.
    pub fn deny_cache(mut self, on: bool) -> Self {
        self.deny_cache = on;
        self
    }

    /// The most denials the [deny cache](Self::deny_cache) holds (default
    /// [`DEFAULT_DENY_CACHE_CAPACITY`](Self::DEFAULT_DENY_CACHE_CAPACITY),
    /// rounded up to a multiple of its 16 shards): when a shard is full of
    /// denials that have not expired, a new one is not cached.
    pub fn deny_cache_capacity(mut self, capacity: usize) -> Self {
        self.deny_cache_capacity = capacity;
        self
    }

    /// Writes each key in its algorithm's compact layout, where it has one
    /// (default off). The two counters have: a key then holds one integer,
    /// which Redis keeps inside the key itself, 32 bytes less than the
    /// standard layout (72 bytes a key, against 104; docs/redis.md, "Memory
    /// per key"). It is written while the window starts on a whole
    /// millisecond and its counts fit: for the
    /// [`FixedWindow`](crate::FixedWindow), fewer than a million units; for
    /// the [`SlidingWindow`](crate::SlidingWindow), fewer than a thousand in
    /// the window and in the one before it. Otherwise the standard layout
    /// is. The buckets and the sliding log write their standard layout.
    ///
    /// Every limiter of this version reads both layouts, whichever it
    /// writes. A version before it reads a compact key as
    /// [`Error::InvalidState`]: turn this on only once every process that
    /// shares the keys runs this version or a later one. Off, a rolling
    /// deploy from an earlier version is safe.
    pub fn compact_state(mut self, on: bool) -> Self {
        self.layout = if on { scripts::Layout::Compact } else { scripts::Layout::Standard };
        self
    }

    /// Opens a connection to `url` (such as `redis://127.0.0.1:6379`) and
    /// builds the limiter on it: a [`ConnectionManager`], which multiplexes
    /// concurrent checks on one connection and connects again when it is
    /// lost (one attempt at a time, each bounded by the
    /// [connect timeout](Self::connect_timeout); while Redis is away, the
    /// circuit breaker's probes pace the attempts).
    ///
    /// Connecting takes at most the connect timeout (default 1 s), against a
    /// closed port and a server that never answers alike. When Redis cannot
    /// be reached, a limiter with a failure policy other than
    /// [`FailurePolicy::ReturnError`] is returned all the same: its circuit
    /// breaker starts open, so its checks follow the policy at once, and it
    /// uses Redis as soon as a probe finds it on that address.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] as [`build`](Self::build) (checked before
    /// connecting), and [`Error::Backend`] for a bad URL, whatever the
    /// policy. With [`FailurePolicy::ReturnError`], also [`Error::Backend`]
    /// when Redis cannot be reached (a refused connection fails at once) and
    /// [`Error::Timeout`] when it did not answer within the connect timeout.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the connection being made; nothing else
    /// happens.
    pub async fn connect(self, url: &str) -> Result<Redis<A>> {
        self.validate()?;
        let client = redis::Client::open(url).map_err(redis_error)?;
        // One attempt per connection: a closed port is refused at once, and
        // the circuit breaker paces the attempts while Redis is away.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.timeout));
        let connecting = ConnectionManager::new_with_config(client.clone(), config.clone());
        let error = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(connection)) => return self.build(connection),
            Ok(Err(error)) if error.is_timeout() => Error::Timeout(self.connect_timeout),
            Ok(Err(error)) => redis_error(error),
            Err(_) => Error::Timeout(self.connect_timeout),
        };
        if self.failure_policy == FailurePolicy::ReturnError {
            return Err(error);
        }
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(redis_error)?;
        let limiter = self.build(connection)?;
        limiter.inner.guard.open_unreachable(&limiter.connection);
        Ok(limiter)
    }

    /// Builds the limiter on `connection`: any cheaply cloned async
    /// connection, such as a [`ConnectionManager`], a
    /// [`MultiplexedConnection`](redis::aio::MultiplexedConnection) or a
    /// cluster connection. Each call clones it, so concurrent checks share it.
    ///
    /// The [circuit breaker](CircuitBreaker) probes `connection` with `PING`
    /// (on a [`ClusterConnection`](super::ClusterConnection), each master
    /// has a breaker, probed with `EXISTS` on a key it serves).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a prefix containing `{` or `}`, a zero
    /// timeout or connect timeout, a zero deny cache capacity, or circuit
    /// breaker settings that
    /// [`CircuitBreaker`] rejects.
    pub fn build<C>(self, connection: C) -> Result<Redis<A, C>>
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        self.validate()?;
        let configurations: Vec<_> = (0..self.algorithm.configurations())
            .map(|index| scripts::prepare(&self.algorithm.configuration(index), self.layout))
            .collect();
        let mut every_key: Vec<scripts::KeyPart> = Vec::new();
        for part in configurations.iter().flat_map(|configuration| &configuration.keys) {
            if !every_key.contains(part) {
                every_key.push(part.clone());
            }
        }
        let name = self.name.unwrap_or(Cow::Borrowed(self.algorithm.name()));
        let fallback = (self.failure_policy == FailurePolicy::FallbackToMemory).then(|| {
            let clock = self.client_clock.clone().unwrap_or_else(|| Arc::new(MonotonicClock::new()));
            // Its checks are this limiter's (`failure_policy`); its keys are
            // the `tollgate_memory_keys` of this name.
            InMemory::with_clock(self.algorithm.clone(), clock).named(name.clone())
        });
        // A token or leaky bucket alone reserves ahead in one script call.
        let reserving = match self.algorithm.configuration(0).parts {
            Parts::One(limit) if self.algorithm.configurations() == 1 => scripts::reserving(&limit),
            _ => None,
        };
        let deny_cache = self.deny_cache.then(|| DenyCache::new(self.deny_cache_capacity, self.client_clock.is_some()));
        let guard = Guard::new(&self.circuit_breaker, self.timeout, &self.prefix, &connection);
        let inner = Inner {
            guard,
            algorithm: self.algorithm,
            configurations,
            every_key,
            prefix: self.prefix,
            timeout: self.timeout,
            failure_policy: self.failure_policy,
            client_clock: self.client_clock,
            fallback,
            reserving,
            lines: Lines::default(),
            observer: Observer::new(name),
            deny_cache,
        };
        Ok(Redis { inner: Arc::new(inner), connection })
    }

    pub(super) fn validate(&self) -> Result<()> {
        if self.prefix.contains(['{', '}']) {
            return Err(invalid(format!(
                "a Redis key prefix may not contain '{{' or '}}' (the user key is wrapped in them), not {:?}",
                self.prefix
            )));
        }
        if self.timeout.is_zero() {
            return Err(invalid("the Redis timeout must be more than zero"));
        }
        if self.deny_cache && self.deny_cache_capacity == 0 {
            return Err(invalid("the deny cache's capacity must be at least 1 (turn it off with deny_cache(false))"));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("the Redis connect timeout must be more than zero"));
        }
        self.circuit_breaker.validate()
    }
}
