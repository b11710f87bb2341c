//! The integration tests: one binary, so linking is paid once.

mod support;

mod bad_input;
mod concurrency;
mod conformance;
#[cfg(feature = "redis")]
mod differential;
mod invariants;
#[cfg(feature = "tower")]
mod middleware;
mod models_match;
#[cfg(feature = "redis")]
mod redis_backend;
