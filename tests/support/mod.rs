//! Helpers shared by the integration tests.

#[cfg(feature = "cluster")]
pub mod cluster;
