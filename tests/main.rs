//! The integration tests: one binary, so linking is paid once.

mod support;

#[cfg(feature = "acquire")]
mod acquire;
mod bad_input;
#[cfg(feature = "cluster")]
mod cluster;
mod concurrency;
mod conformance;
#[cfg(feature = "redis")]
mod deny_cache;
#[cfg(feature = "redis")]
mod differential;
#[cfg(feature = "redis")]
mod faults;
mod invariants;
#[cfg(feature = "redis")]
mod load;
#[cfg(feature = "tower")]
mod middleware;
mod models_match;
#[cfg(feature = "metrics")]
mod observability;
#[cfg(feature = "redis")]
mod outages;
mod quotas;
#[cfg(feature = "redis")]
mod quotas_differential;
#[cfg(feature = "redis")]
mod quotas_redis;
#[cfg(feature = "redis")]
mod redis_backend;
#[cfg(feature = "redis")]
mod shared_state;
