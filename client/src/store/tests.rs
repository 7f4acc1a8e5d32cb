//! Keystore tests on real files.
