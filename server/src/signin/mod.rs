//! Signing in at a service, beside the challenges themselves
//! ([`crate::challenge`]): the authenticator's answers, the login and
//! account pages, adding an authenticator, the keys an account's owner
//! renames and removes, account keys and what each authenticator is told
//! of the others, profiles and recovery links.

pub mod authenticator;
pub mod devices;
pub mod enroll;
pub mod keys;
pub mod new_keys;
pub mod pages;
pub mod passkey;
pub mod profile;
pub mod recovery;
