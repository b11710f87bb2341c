//! [`RateLimitLayer`]: the configuration, applied to a service.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::headers::{ConstantFields, Policy, ceil_secs, check_policy_name};
use super::log::Log;
use super::{HeaderSet, KeyExtractor, MissingKey, RateLimit};
use crate::observe::Requests;
use crate::{RateLimiter, Result};

/// Wraps services in [`RateLimit`]: one limiter, one key extractor, shared by
/// every service the layer makes and every clone of them.
///
/// With axum, add it with `Router::route_layer`, not `Router::layer`:
/// `route_layer` limits the routes that matched, while `layer` also wraps
/// the fallback, so a request to an unknown path is limited too: without a
/// key it is answered 400 instead of 404, and with one it uses up quota.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use http::HeaderName;
/// use tollgate::middleware::{KeyExtractor, MissingKey, RateLimitLayer};
/// use tollgate::{InMemory, Rate, SlidingLog};
///
/// let limiter = Arc::new(InMemory::new(SlidingLog::new(Rate::per_minute(60))?));
/// let layer = RateLimitLayer::new(limiter, KeyExtractor::header(HeaderName::from_static("x-api-key")))
///     .on_missing_key(MissingKey::Fallback("anonymous".into()))
///     .policy_name("per-key")?
///     .window(Duration::from_secs(60));
/// let app: axum::Router = axum::Router::new()
///     .route("/api/hello", axum::routing::get(|| async { "hello" }))
///     .route_layer(layer); // not .layer(..): unknown paths answer 404, and cost nothing
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    config: Arc<Config>,
}

/// What every service of one layer shares.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) limiter: Arc<dyn RateLimiter>,
    pub(crate) key: KeyExtractor,
    pub(crate) missing_key: MissingKey,
    pub(crate) policy: Policy,
    pub(crate) headers: HeaderSet,
    pub(crate) constant: ConstantFields,
    pub(crate) check_timeout: Option<Duration>,
    pub(crate) log: Log,
    pub(crate) requests: Requests,
}

impl RateLimitLayer {
    /// Limits requests with `limiter`, one allowance per key that `key`
    /// finds. Requests without a key are rejected with 400 (see
    /// [`on_missing_key`](Self::on_missing_key)); the policy is named
    /// `"default"`, advertises no window, and the IETF draft's header fields
    /// are written ([`HeaderSet::Ietf`]).
    pub fn new(limiter: Arc<dyn RateLimiter>, key: KeyExtractor) -> Self {
        let policy = Policy { name: "default".to_owned(), window_secs: None };
        Self {
            config: Arc::new(Config {
                limiter,
                key,
                missing_key: MissingKey::Reject,
                policy,
                headers: HeaderSet::default(),
                constant: ConstantFields::default(),
                check_timeout: None,
                log: Log::new(),
                requests: Requests::default(),
            }),
        }
    }

    /// What to do with a request that has no key: reject it with 400, or use
    /// a fallback key.
    pub fn on_missing_key(mut self, missing_key: MissingKey) -> Self {
        Arc::make_mut(&mut self.config).missing_key = missing_key;
        self
    }

    /// The policy's name in the `RateLimit-Policy` and `RateLimit` headers
    /// and in the 429 body. Give each layer its own name when several limit
    /// the same request, so a client can tell their headers apart.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for an empty
    /// name or one with characters other than printable ASCII, `"` or `\`.
    pub fn policy_name(mut self, name: &str) -> Result<Self> {
        check_policy_name(name)?;
        Arc::make_mut(&mut self.config).policy.name = name.to_owned();
        Ok(self)
    }

    /// The time window advertised as `w` in `RateLimit-Policy`, in whole
    /// seconds rounded up (at least 1). The limiter's algorithm is hidden
    /// behind `dyn RateLimiter`, so the layer cannot infer it: pass the
    /// rate's period for windows and logs, or the time a bucket takes to
    /// refill from empty. Without it `w` is left out (it is optional).
    pub fn window(mut self, window: Duration) -> Self {
        Arc::make_mut(&mut self.config).policy.window_secs = Some(ceil_secs(window).max(1));
        self
    }

    /// Which rate-limit header fields to write: the IETF draft's pair (the
    /// default), the `X-RateLimit-*` trio, or both; see [`HeaderSet`].
    pub fn headers(mut self, headers: HeaderSet) -> Self {
        Arc::make_mut(&mut self.config).headers = headers;
        self
    }

    /// The longest the layer waits for the limiter's answer; after that the
    /// request is answered 503 as if the limiter had failed with
    /// [`Error::Timeout`](crate::Error::Timeout). Off by default: the
    /// in-memory limiter answers at once, and the Redis backend has a
    /// timeout of its own. Set it to bound a backend you do not trust to
    /// give up. A check cut short may still have taken its cost (see
    /// [`RateLimiter::check_n`]'s cancel safety): it errs towards limiting.
    ///
    /// The leaky bucket's hold is not part of the check and is not cut
    /// short.
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.config).check_timeout = Some(timeout);
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.config))
    }
}
