//! The integration tests: one binary, so linking is paid once.

mod support;

mod bad_input;
#[cfg(feature = "cluster")]
mod cluster;
mod concurrency;
mod invariants;
#[cfg(feature = "tower")]
mod middleware;
mod models_match;
