//! The integration tests: one binary, so linking is paid once.

mod support;

#[cfg(feature = "cluster")]
mod cluster;
