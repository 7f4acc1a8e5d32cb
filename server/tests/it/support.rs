//! Helpers shared by the server's tests.
