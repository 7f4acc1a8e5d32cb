//! The server's integration tests: one binary, one module per area.

mod admin;
mod authenticator;
mod bus;
mod challenge;
mod confusables;
mod devices;
mod enroll;
mod errors;
mod health;
mod limits;
mod new_keys;
mod number;
mod oidc;
mod openapi;
mod pages;
mod passkeys;
mod storage;
mod support;
mod sweep;
mod webapp;
