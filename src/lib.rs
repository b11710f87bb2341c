//! # tollgate
//!
//! Rate limiting that stays exact under concurrency: five algorithms, each on
//! an in-memory backend (one process) and a Redis backend (many processes).
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
