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
//!   Unavailable`, with the error as an `Arc<tollgate::Error>` in the
//!   response's extensions for logging layers. It never panics, and waits
//!   no longer than the backend's own timeout, or
//!   [`RateLimitLayer::check_timeout`] if that is set.
//!
//! ## Headers
//!
//! | header | value |
//! |---|---|
//! | `RateLimit-Policy` | `"<name>";q=<limit>;w=<window>` (`w` only if [`RateLimitLayer::window`] was set) |
//! | `RateLimit` | `"<name>";r=<remaining>;t=<seconds until the allowance is full>` |
//! | `X-RateLimit-Limit` | the limit |
//! | `X-RateLimit-Remaining` | remaining after this request |
//! | `X-RateLimit-Reset` | seconds until the allowance is full |
//! | `Retry-After` (429 only) | seconds until the same request would be admitted |
//!
//! Every number of seconds is whole and rounded up; `Retry-After` is never 0.
//! `RateLimit-Policy` and `RateLimit` follow
//! [draft-ietf-httpapi-ratelimit-headers-11](https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/11/):
//! with several layers each appends its own policy item, while the
//! `X-RateLimit-*` trio shows the policy with the fewest remaining.
//!
//! ## Cancellation
//!
//! A request held for the leaky bucket is a sleeping future: if the client
//! goes away, the server drops it, and it costs nothing more than the slot it
//! was admitted into. The inner service is never called for it.

mod headers;
mod key;
mod layer;
mod service;

pub use key::{KeyExtractor, MissingKey};
pub use layer::RateLimitLayer;
pub use service::{RateLimit, RateLimitBody, ResponseFuture};
