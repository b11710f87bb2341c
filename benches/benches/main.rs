//! tollgate's benches: one criterion binary, a module per area.
//!
//! `cargo bench --bench benches -- memory/` runs the in-memory store against
//! governor; `cargo bench --features redis --bench benches -- redis/` the
//! Redis backend against raw EVALSHA, `-- deny_cache/` the Redis deny cache
//! under 64 tasks hammering exhausted keys; `cargo bench --features tower --bench
//! benches -- middleware/` the tower middleware in an axum router against
//! static headers and tower_governor; `-- quotas/` composites and plans
//! against one algorithm alone; `-- observe/` what logs and metrics add to a
//! check. See docs/benchmarks.md, docs/middleware.md
//! and docs/quotas.md for the figures and the exact commands.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

// The list of algorithms and their specs, shared with the tests.
#[allow(dead_code, unused_imports, unused_macros, unreachable_pub)]
#[path = "../../tests/support/algorithms.rs"]
mod algorithms;
#[cfg(feature = "redis")]
mod deny_cache;
mod memory;
#[cfg(feature = "tower")]
mod middleware;
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/support/models.rs"]
mod models;
mod observe;
mod quotas;
#[cfg(feature = "redis")]
mod redis_backend;
#[cfg(feature = "redis")]
mod redis_cost;
#[cfg(feature = "redis")]
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/support/redis_server.rs"]
mod redis_server;

/// Short runs by default: the benches share a small, busy machine, so a
/// comparison is repeated rather than measured once for long. Command-line
/// options (`--warm-up-time`, `--measurement-time`) override these.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .without_plots()
}

/// The middleware benches, when the middleware is built.
fn middleware(c: &mut Criterion) {
    #[cfg(feature = "tower")]
    middleware::benches(c);
    #[cfg(not(feature = "tower"))]
    let _ = c;
}

/// The Redis benches, when the backend is built.
fn redis(c: &mut Criterion) {
    #[cfg(feature = "redis")]
    redis_backend::benches(c);
    #[cfg(feature = "redis")]
    redis_cost::benches(c);
    #[cfg(feature = "redis")]
    deny_cache::benches(c);
    #[cfg(not(feature = "redis"))]
    let _ = c;
}

criterion_group! {
    name = benches;
    config = config();
    targets = memory::benches, redis, middleware, quotas::benches, observe::benches
}
criterion_main!(benches);
