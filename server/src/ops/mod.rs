//! What an operator runs beside the service: the health probes, the
//! periodic sweep, and the backup command.

pub mod backup;
pub(crate) mod health;
pub mod sweep;
