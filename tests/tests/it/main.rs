//! End-to-end tests: real `sesame-server` and `sesame` processes over real HTTP.

mod authenticator;
mod browser;
mod deployment;
mod hostile;
mod logs;
mod operations;
mod scale;
mod sweep;
mod ui;
