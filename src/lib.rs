//! # tollgate
//!
//! Rate limiting that stays exact under concurrency: four algorithms, each on
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
//! | [`TokenBucket`] | `capacity` at once, then `rate` on average | up to `capacity` | 16 bytes |
//! | [`LeakyBucket`] | `rate`, queued up to `capacity` | none: it says how long to hold each request | 16 bytes |
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

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

#[cfg(feature = "acquire")]
mod acquire;
mod algorithm;
mod clock;
mod decision;
mod error;
mod limiter;
mod memory;
#[cfg(feature = "tower")]
pub mod middleware;
mod rate;
#[cfg(feature = "redis")]
#[path = "redis/mod.rs"]
mod redis_backend;

#[cfg(feature = "acquire")]
pub use acquire::{Permit, TooLong};
pub use algorithm::{Algorithm, FixedWindow, LeakyBucket, Limit, SlidingLog, TokenBucket};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use decision::Decision;
pub use error::{Error, Result};
pub use limiter::RateLimiter;
pub use memory::InMemory;
pub use rate::Rate;
#[cfg(feature = "cluster")]
pub use redis_backend::ClusterConnection;
#[cfg(feature = "redis")]
pub use redis_backend::{FailurePolicy, Redis, RedisBuilder};
