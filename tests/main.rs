//! The integration tests: one binary, so linking is paid once.

mod conformance;
#[cfg(feature = "redis")]
mod differential;
#[cfg(feature = "redis")]
mod redis_backend;
mod support;
