//! [`RedisBuilder`]: the options of a [`Redis`] limiter.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};

use super::{FailurePolicy, Inner, Redis, scripts};
use crate::algorithm::Algorithm;
use crate::clock::{Clock, MonotonicClock};
use crate::error::{invalid, redis_error};
use crate::{InMemory, Result};

/// How long a connection manager waits between attempts to reconnect, at
/// most: after Redis comes back, checks succeed again within about this.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);

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
    failure_policy: FailurePolicy,
    client_clock: Option<Arc<dyn Clock>>,
}

impl<A: Algorithm> RedisBuilder<A> {
    /// The prefix used when none is given.
    pub const DEFAULT_PREFIX: &'static str = "tollgate:";

    /// The per-call timeout used when none is given.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

    pub(super) fn new(algorithm: A) -> Self {
        Self {
            algorithm,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
            failure_policy: FailurePolicy::default(),
            client_clock: None,
        }
    }

    /// The start of every Redis key this limiter writes (default
    /// `"tollgate:"`): user key `k` is stored at `<prefix>{k}`. Limiters with
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

    /// What a check answers when Redis fails (default
    /// [`FailurePolicy::ReturnError`]).
    pub fn failure_policy(mut self, failure_policy: FailurePolicy) -> Self {
        self.failure_policy = failure_policy;
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

    /// Opens a connection to `url` (such as `redis://127.0.0.1:6379`) and
    /// builds the limiter on it: a [`ConnectionManager`], which multiplexes
    /// concurrent checks on one connection and reconnects by itself after
    /// Redis restarts (retrying at most every 500 ms).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) as
    /// [`build`](Self::build) (checked before connecting), and
    /// [`Error::Backend`](crate::Error::Backend) for a bad URL or a server that
    /// cannot be reached, after the connection manager's retries (about 3 s
    /// for a closed port on loopback). To start while Redis is down and let
    /// the failure policy answer until it is up, [`build`](Self::build) on
    /// a connection manager made with
    /// [`ConnectionManager::new_lazy_with_config`] instead.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the connection being made; nothing else
    /// happens.
    pub async fn connect(self, url: &str) -> Result<Redis<A>> {
        self.validate()?;
        let client = redis::Client::open(url).map_err(redis_error)?;
        let config =
            ConnectionManagerConfig::new().set_max_delay(MAX_RECONNECT_DELAY).set_response_timeout(Some(self.timeout));
        let connection = ConnectionManager::new_with_config(client, config).await.map_err(redis_error)?;
        self.build(connection)
    }

    /// Builds the limiter on `connection`: any cheaply cloned async
    /// connection, such as a [`ConnectionManager`], a
    /// [`MultiplexedConnection`](redis::aio::MultiplexedConnection) or a
    /// cluster connection. Each call clones it, so concurrent checks share it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a prefix
    /// containing `{` or `}`, or a zero timeout.
    pub fn build<C>(self, connection: C) -> Result<Redis<A, C>>
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        self.validate()?;
        let limit = self.algorithm.as_limit();
        let fallback = (self.failure_policy == FailurePolicy::FallbackToMemory).then(|| {
            let clock = self.client_clock.clone().unwrap_or_else(|| Arc::new(MonotonicClock::new()));
            InMemory::with_clock(self.algorithm.clone(), clock)
        });
        let inner = Inner {
            algorithm: self.algorithm,
            lua: scripts::script(&limit),
            reserving: scripts::reserving(&limit),
            config: scripts::config(&limit),
            tag: scripts::tag(&limit),
            prefix: self.prefix,
            timeout: self.timeout,
            failure_policy: self.failure_policy,
            client_clock: self.client_clock,
            fallback,
            lines: Default::default(),
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
        Ok(())
    }
}
