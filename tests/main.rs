//! The integration tests: one binary, so linking is paid once.
