//! Sesame's authenticator: it keeps one Ed25519 key per account per service,
//! checks the tokens login pages show against the pinned server key, shows
//! who is asking, and signs register, login and deny answers.

pub mod backup;
mod cli;
mod commands;
mod error;
pub mod opt;
mod remote;
pub mod store;
mod system_keyring;
mod tls;
mod trust;
pub mod ui;
pub mod vault;
mod window;

pub use cli::run;
pub use error::Error;

/// The one-line text of an error, as printed after `sesame: `.
pub fn error_line(error: &Error) -> String {
    error::one_line(&error.to_string())
}
