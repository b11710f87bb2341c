//! The integration tests: one binary, so linking is paid once.

mod support;

mod bad_input;
mod concurrency;
mod invariants;
mod models_match;
