//! End-to-end tests: real `sesame-server` and `sesame` processes over real HTTP.

mod authenticator;
mod backup;
mod bench;
mod browser;
mod console;
mod deployment;
mod enroll;
mod hostile;
mod keyring;
mod keystore_backup;
mod listener;
mod logs;
mod metrics;
mod oidc;
mod openapi;
mod operations;
mod packaging;
mod passkeys;
mod phone;
mod rekey;
mod scale;
mod sso;
mod statements;
mod sweep;
mod tls;
mod ui;
