//! The protocol crate's tests: RFC 8032 vectors, Sesame's own vectors (kept in
//! `shared/vectors/` as data), and one named test per property they pin down.

#![allow(clippy::unwrap_used)]

mod confirmation;
mod fixture;
mod fuzz_seeds;
mod grammar;
mod properties;
mod rfc8032;
mod vectors;
