//! HTTP rate limiting as a tower middleware [feature `tower`].
//!
//! [`RateLimitLayer`] puts any [`RateLimiter`](crate::RateLimiter) (either
//! backend, any algorithm) in front of a tower service, such as an axum
//! `Router`. For each request it finds a key ([`KeyExtractor`]), asks the
//! limiter, and then:
//!
//! - **allowed**: holds the request for [`Decision::wait`](crate::Decision::wait)
//!   (the leaky bucket's traffic shaping; zero for the other algorithms),
//!   calls the inner service, and adds the rate-limit headers to its
//!   response;
//! - **denied**: answers `429 Too Many Requests` itself, with `Retry-After`,
//!   the rate-limit headers and a JSON problem body;
//! - **no key**: answers `400 Bad Request`, or uses a fallback key
//!   ([`MissingKey`]);
//! - **limiter error** (after the backend's own failure policy, such as the
//!   Redis backend failing open, has had its say): answers `503 Service
//!   Unavailable` (with a `Retry-After` of the breaker's `retry_in` when the
//!   Redis circuit breaker is open), or `500 Internal Server Error` for a
//!   plan the limiter does not have (see [`RateLimitLayer::plan_from_fn`]),
//!   with the error as an `Arc<tollgate::Error>` in the response's
//!   extensions for logging layers. It never panics, and waits no longer
//!   than the backend's own timeout, or [`RateLimitLayer::check_timeout`] if
//!   that is set.
//!
//! The layer asks [`RateLimiter::check_detailed`](crate::RateLimiter::check_detailed)
//! (at once, without a future, where the limiter can answer at once:
//! [`check_now`](crate::RateLimiter::check_now) and
//! [`check_detailed_now`](crate::RateLimiter::check_detailed_now)), so a
//! [`Composite`](crate::Composite) shows each of its limits, and a request
//! can be decided in a [plan](crate::Plans) of its own.
//!
//! With axum, add the layer with `Router::route_layer`, not `Router::layer`:
//! `layer` also wraps the router's fallback, so a request to a path that
//! does not exist is limited too (answered 400 instead of 404 when it has no
//! key, and drawing on its key's allowance when it has one).
//!
//! ## Headers
//!
//! | header | written with | value |
//! |---|---|---|
//! | `RateLimit-Policy` | [`HeaderSet::Ietf`], [`HeaderSet::Both`] (default) | `"<name>";q=<limit>;w=<window>`, one item per limit |
//! | `RateLimit` | [`HeaderSet::Ietf`], [`HeaderSet::Both`] (default) | `"<name>";r=<remaining>;t=<seconds until the allowance is full>`, one item per limit |
//! | `X-RateLimit-Limit` | [`HeaderSet::XRateLimit`], [`HeaderSet::Both`] | the binding limit's limit |
//! | `X-RateLimit-Remaining` | [`HeaderSet::XRateLimit`], [`HeaderSet::Both`] | its remaining after this request |
//! | `X-RateLimit-Reset` | [`HeaderSet::XRateLimit`], [`HeaderSet::Both`] | seconds until its allowance is full |
//! | `Retry-After` | always, on 429 only | seconds until the same request would pass every limit |
//!
//! Every number of seconds is whole and rounded up; `Retry-After` is never 0.
//! `RateLimit-Policy` and `RateLimit` follow
//! [draft-ietf-httpapi-ratelimit-headers-11](https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/11/).
//! Items are named by [`RateLimitLayer::policy_name`] for a limiter of one
//! limit, by each limit's own name for a composite, or by the plan
//! ([`RateLimitLayer::policy_name_from_plan`]); `w` is each limit's own
//! window ([`RateLimitLayer::window`] overrides it for one limit). The
//! binding limit ([`Breakdown::binding`](crate::Breakdown::binding): the
//! longest wait when denied, else the fewest remaining) fills the
//! `X-RateLimit-*` trio and the 429 body's numbers. With several layers
//! each appends its own field line, while the trio shows the policy with
//! the fewest remaining.
//!
//! ## Logging
//!
//! The middleware logs through [`tracing`](https://docs.rs/tracing), under
//! the target `tollgate::middleware`, with the layer's `policy` name:
//! transitions, not traffic. A request answered 400 for want of a key is a
//! `warn` with the likely `cause` (such as `peer_ip()` finding no
//! `SocketAddr`, or the header the extractor reads being absent) the first
//! time, then at most once a minute with the count held back in between
//! (`suppressed`), and `debug` otherwise; the same for a limiter error
//! answered 503, per kind of error. A limiter that answers again after
//! failing is one `info`. A 429 is `trace`; an admitted request logs
//! nothing.
//!
//! With feature `metrics`, the layer counts the requests it answered in
//! `tollgate_http_requests_total{policy, outcome}`; the limiter counts its
//! checks under its own name (docs/observability.md).
//!
//! ## Cancellation
//!
//! A request held for the leaky bucket is a sleeping future: if the client
//! goes away, the server drops it, and it costs nothing more than the slot it
//! was admitted into. The inner service is never called for it.

mod headers;
mod key;
mod layer;
mod log;
mod service;
mod value;

pub use headers::HeaderSet;
pub use key::{KeyExtractor, MissingKey};
pub use layer::RateLimitLayer;
pub use service::{RateLimit, ResponseFuture};
