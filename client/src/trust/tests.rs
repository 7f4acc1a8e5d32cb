//! Token trust tests.
