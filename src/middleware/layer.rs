//! [`RateLimitLayer`]: the configuration, applied to a service.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::headers::{Naming, Shapes, ceil_secs, check_policy_name};
use super::key::PlanExtractor;
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
    pub(crate) plan: Option<PlanExtractor>,
    pub(crate) naming: Naming,
    pub(crate) headers: HeaderSet,
    pub(crate) shapes: Shapes,
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
        let naming = Naming { name: "default".to_owned(), window_secs: None, by_plan: false };
        Self {
            config: Arc::new(Config {
                limiter,
                key,
                missing_key: MissingKey::Reject,
                plan: None,
                naming,
                headers: HeaderSet::default(),
                shapes: Shapes::default(),
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
    /// and in the 429 body, for a limiter of one limit, and in the logs.
    /// Give each layer its own name when several limit the same request, so
    /// a client can tell their headers apart. The limits of a
    /// [`Composite`](crate::Composite) are named by their own names instead
    /// (see also [`policy_name_from_plan`](Self::policy_name_from_plan)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for an empty
    /// name or one with characters other than printable ASCII, `"` or `\`.
    pub fn policy_name(mut self, name: &str) -> Result<Self> {
        check_policy_name(name)?;
        Arc::make_mut(&mut self.config).naming.name = name.to_owned();
        Ok(self)
    }

    /// The time window advertised as `w` in `RateLimit-Policy`, in whole
    /// seconds rounded up (at least 1), for a limiter of one limit. Without
    /// it each limit advertises its own
    /// ([`Limit::window`](crate::Limit::window): the period of a window or
    /// log, the time a bucket takes to refill from empty), as tollgate's
    /// backends report it; a limiter of your own that does not report it
    /// advertises none (`w` is optional).
    pub fn window(mut self, window: Duration) -> Self {
        Arc::make_mut(&mut self.config).naming.window_secs = Some(ceil_secs(window).max(1));
        self
    }

    /// Chooses each request's [plan](crate::Plans) with `plan`, a function
    /// of the request's head (say, of its API key's prefix), before the
    /// limiter is asked. `None` leaves the choice to the limiter: its own
    /// resolver, or the default plan.
    ///
    /// A plan the limiter does not have is a misconfiguration of this
    /// server, not the client's doing: the request is answered `500
    /// Internal Server Error` (not 503, which invites retries that cannot
    /// succeed; not admitted unlimited, which would fail open), logged as a
    /// limiter error, with [`Error::UnknownPlan`](crate::Error::UnknownPlan)
    /// in the response's extensions.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate::middleware::{KeyExtractor, RateLimitLayer};
    /// use tollgate::{Composite, FixedWindow, InMemory, Plans, Rate, TokenBucket};
    ///
    /// let plans = Plans::new("free", TokenBucket::new(5, Rate::per_second(5))?)?
    ///     .plan("pro", TokenBucket::new(50, Rate::per_second(50))?)?;
    /// let layer = RateLimitLayer::new(Arc::new(InMemory::new(plans)), KeyExtractor::header(http::HeaderName::from_static("x-api-key")))
    ///     .plan_from_fn(|parts| {
    ///         let key = parts.headers.get("x-api-key")?.to_str().ok()?;
    ///         Some(if key.starts_with("pro_") { "pro" } else { "free" })
    ///     })
    ///     .policy_name_from_plan();
    /// # Ok::<(), tollgate::Error>(())
    /// ```
    pub fn plan_from_fn<F, R>(mut self, plan: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<R> + Send + Sync + 'static,
        R: Into<Cow<'static, str>>,
    {
        Arc::make_mut(&mut self.config).plan = Some(PlanExtractor::new(plan));
        self
    }

    /// Names the policies by the request's plan: `"pro"` for a plan of one
    /// limit, `"pro/per-day"` for the limit `per-day` of a composite plan.
    /// Responses of a limiter without plans are named as without this.
    pub fn policy_name_from_plan(mut self) -> Self {
        Arc::make_mut(&mut self.config).naming.by_plan = true;
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
