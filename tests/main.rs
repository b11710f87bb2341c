//! The integration tests: one binary, so linking is paid once.

#[cfg(feature = "tower")]
mod middleware;
