//! Helpers shared by the integration tests.

#[cfg(feature = "redis")]
pub(crate) mod redis_server;
