//! What the integration tests share.

pub mod algorithms;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod composites;
#[cfg(feature = "redis")]
pub(crate) mod deployment;
#[cfg(any(feature = "tower", feature = "metrics"))]
pub mod logs;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod models;
#[cfg(feature = "redis")]
pub mod redis_server;
#[cfg(feature = "acquire")]
pub mod tokio_clock;

/// `cases` per property, with failures kept beside each test file, in
/// `tests/<file>.regressions` (committed, so a case that once failed is
/// tried first, forever).
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, FileFailurePersistence};
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}
