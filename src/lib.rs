//! # tollgate
//!
//! Rate limiting that stays exact under concurrency: five algorithms, each on
//! an in-memory backend (one process) and a Redis backend (many processes),
//! behind one async [`RateLimiter`] trait, with HTTP middleware for tower and
//! axum on top.
//!
//! ```
//! use tollgate::{InMemory, Rate, RateLimiter, TokenBucket};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let limiter = InMemory::new(TokenBucket::new(100, Rate::per_second(10))?);
//! let decision = limiter.check("user:42").await?;
//! if !decision.is_allowed() {
//!     // Answer 429, with Retry-After: decision.retry_after()
//! }
//! # Ok::<(), tollgate::Error>(())
//! # }).unwrap();
//! ```
//!
//! [`check`](RateLimiter::check) asks for one unit. A request that costs
//! more (a batch of 20 rows, a large upload) asks with
//! [`check_n(key, cost)`](RateLimiter::check_n): it is admitted whole or not
//! at all, and a cost of 0 peeks without taking anything.
//! [`InMemory::check_sync`] is the synchronous path.
//!
//! ## Choosing an algorithm
//!
//! | algorithm | admits | bursts | state per key |
//! |---|---|---|---|
//! | [`FixedWindow`] | `amount` per aligned window | up to 2 × `amount` across a window boundary | 16 bytes |
//! | [`SlidingLog`] | `amount` in *any* interval of `period` | none beyond `amount` | 8 bytes × `amount` |
//! | [`SlidingWindow`] | about `amount` in any interval of `period`: the previous window's count, weighted by its overlap, plus the current one's | at worst just under 2 × `amount` in one `period`, if a window's requests bunch at its end | 24 bytes |
//! | [`TokenBucket`] | `capacity` at once, then `rate` on average | up to `capacity` | 16 bytes |
//! | [`LeakyBucket`] | `rate`, queued up to `capacity` | none: it says how long to hold each request | 16 bytes |
//!
//! A [`LeakyBucket`] shapes rather than refuses: a request it can queue is
//! admitted with a [`Decision::wait`], how long to hold it before passing it
//! on, so that requests leave evenly spaced; only a full queue is denied.
//! A check of any other algorithm waits zero (a composite holding a leaky
//! bucket waits as long as it says). The tower middleware does the holding.
//!
//! ```
//! use std::time::Duration;
//! use tollgate::{InMemory, LeakyBucket, ManualClock, Rate};
//!
//! // nginx's `limit_req rate=10r/s burst=5`: a burst of 10 admits 6, to be
//! // held 0, 100, ..., 500 ms. (A clock that stands still, for exact waits.)
//! let clock = ManualClock::starting_at(Duration::from_secs(1_700_000_000));
//! let limiter = InMemory::with_clock(LeakyBucket::new(5, Rate::per_second(10))?, clock);
//! let waits: Vec<Duration> = (0..10)
//!     .map(|_| limiter.check_sync("user:42"))
//!     .filter(|decision| decision.is_allowed())
//!     .map(|decision| decision.wait())
//!     .collect();
//! assert_eq!(waits, (0..6).map(|i| Duration::from_millis(100 * i)).collect::<Vec<_>>());
//! # Ok::<(), tollgate::Error>(())
//! ```
//!
//! ## Several limits at once, and plans
//!
//! "10 a second and 1000 a day" is one [`Composite`]: named limits of any
//! algorithms, checked all or nothing, so a request the per-second limit
//! refuses takes nothing from the day. Per-customer quotas ("free" and
//! "pro") are [`Plans`]: each plan its own limits, the plan chosen per
//! request by the caller or by a function of the key. Both are
//! [`Algorithm`]s, so either backend takes them;
//! [`RateLimiter::check_detailed`] gives each limit's own figures (a
//! [`Breakdown`]). See `docs/quotas.md`.
//!
//! ```
//! use tollgate::{Composite, FixedWindow, InMemory, Rate, TokenBucket};
//!
//! let api = Composite::new("per-second", TokenBucket::new(10, Rate::per_second(10))?)?
//!     .with("per-day", FixedWindow::new(Rate::per_day(1_000))?)?;
//! let limiter = InMemory::new(api);
//! assert!(limiter.check_sync("user:42").is_allowed());
//! # Ok::<(), tollgate::Error>(())
//! ```
//!
//! ## Being limited is not an error
//!
//! A denied request is a [`Decision`] that says no, with
//! [`retry_after`](Decision::retry_after). `Err` is for a cost that can never
//! fit ([`Error::CostTooHigh`]) and for a backend that failed.
//!
//! ## Waiting instead of being told no
//!
//! Behind a client, a limiter decides *when*: with feature `acquire`,
//! `RateLimiter::acquire` resolves when the request may go. The token and
//! leaky buckets reserve the slot in one call (one script call on Redis), so
//! waiters are served in the order they asked, across processes. See
//! docs/acquire.md.
//!
//! ## HTTP middleware
//!
//! With feature `tower`, [`middleware::RateLimitLayer`] puts any limiter in
//! front of a tower service or an axum `Router` (add it with axum's
//! `route_layer`, so that unknown paths stay 404s): a denied request is
//! answered `429` with `Retry-After`, the IETF `RateLimit` headers and a JSON
//! problem body; a request without a key `400`; a failing limiter `503`. A
//! leaky bucket's admitted requests are held for their wait. See the
//! [`middleware`] module and docs/middleware.md.
//!
//! ## Features
//!
//! - `acquire`: [`RateLimiter::acquire`], which waits until a request may
//!   go, on Tokio's timer (docs/acquire.md).
//! - `redis`: the Redis backend (implies `acquire`).
//! - `cluster`: the Redis backend on a Redis Cluster,
//!   [`RedisBuilder::connect_cluster`] (implies `redis`).
//! - `tower`: [`middleware::RateLimitLayer`], HTTP middleware for tower and axum
//!   that answers 429 with `Retry-After` and the IETF `RateLimit` headers.
//! - `metrics`: counters of checks by limiter name and outcome, a latency
//!   histogram and a gauge of the keys held in memory, through the
//!   [`metrics`](https://docs.rs/metrics) facade, to whichever recorder the
//!   application installs.
//!
//! ## Logs and metrics
//!
//! Each decision is a `trace` event (target `tollgate::check`, with the
//! limiter's name, the key and the outcome); Redis failures that the
//! failure policy answered, the circuit breaker's transitions and the
//! middleware's misconfigured extractors are `warn`s, at most one a minute
//! per cause. A limiter is named with [`InMemory::named`] or
//! `RedisBuilder::name`, after its algorithm by default. See
//! docs/observability.md for every event and metric, and
//! `examples/observability.rs`.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

// The README's and docs/'s Rust snippets, compiled (and run, unless they
// need a server: `no_run`) by `cargo test --all-features --doc`, so that none
// of them rots. Each is gated on the features its snippets use.
#[cfg(doctest)]
mod doc_snippets {
    #[cfg(all(feature = "redis", feature = "tower"))]
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[cfg(feature = "redis")]
    #[doc = include_str!("../docs/acquire.md")]
    struct Acquire;
    #[doc = include_str!("../docs/algorithms.md")]
    struct Algorithms;
    #[doc = include_str!("../docs/benchmarks.md")]
    struct Benchmarks;
    #[cfg(feature = "cluster")]
    #[doc = include_str!("../docs/cluster.md")]
    struct Cluster;
    #[cfg(feature = "tower")]
    #[doc = include_str!("../docs/middleware.md")]
    struct Middleware;
    #[cfg(feature = "metrics")]
    #[doc = include_str!("../docs/observability.md")]
    struct Observability;
    #[cfg(feature = "redis")]
    #[doc = include_str!("../docs/outages.md")]
    struct Outages;
    #[cfg(feature = "redis")]
    #[doc = include_str!("../docs/quotas.md")]
    struct Quotas;
    #[cfg(feature = "redis")]
    #[doc = include_str!("../docs/redis.md")]
    struct Redis;
}

#[cfg(feature = "acquire")]
mod acquire;
mod algorithm;
mod breakdown;
mod clock;
mod decision;
mod error;
mod limiter;
mod memory;
#[cfg(feature = "tower")]
pub mod middleware;
mod observe;
mod rate;
// The backend's folder and module are `redis`, like the crate it drives:
// inside this crate, `::redis` is that crate and `self::redis` this module.
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "cluster")]
pub use self::redis::ClusterConnection;
#[cfg(feature = "redis")]
pub use self::redis::{BreakerHealth, BreakerState, CircuitBreaker, FailurePolicy, Health, Redis, RedisBuilder};
#[cfg(feature = "acquire")]
pub use acquire::{Permit, TooLong};
pub use algorithm::all::*;
pub use algorithm::{Algorithm, Composite, Limit, Plans};
/// The attribute macro that implementing [`RateLimiter`] takes, re-exported
/// so that a backend of your own needs no dependency on `async-trait`:
/// `#[tollgate::async_trait] impl RateLimiter for MyBackend { .. }`.
pub use async_trait::async_trait;
pub use breakdown::{Breakdown, LimitDecision};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use decision::Decision;
pub use error::{Error, Result};
pub use limiter::RateLimiter;
pub use memory::InMemory;
pub use rate::Rate;
