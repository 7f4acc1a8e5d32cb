//! What a challenge needs to know of its service, cached per instance.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

use sesame_proto::ServiceId;

/// What a challenge needs to know of its service.
#[derive(Debug, Clone)]
pub struct CachedService {
    pub name: Arc<str>,
    /// The built-in "Sesame admin" service, which takes no new accounts from
    /// a challenge anyone can start.
    pub builtin: bool,
    /// Whether its sign-ins ask for the number the page shows (PROTOCOL.md
    /// §14). This one can change: the instance that changes it forgets its
    /// entry, and an instance that shares the database with others reads it
    /// afresh for every challenge (`Challenges::insert_row`).
    pub number_matching: bool,
}

/// The names of services, kept in memory because every challenge and every
/// redeemed session needs one.
///
/// A service's name and whether it is built in never change after it is created
/// (number matching can; see [`CachedService::number_matching`]), and its id is random
/// and never reused, so a cached name is never wrong; it can only outlive
/// its service. That needs no invalidation across instances: whatever an
/// instance then does with the deleted service's id writes a row that refers
/// to the service, and the foreign key refuses it (`unknown_service`), just
/// as it does when a deletion races a request today. The instance that
/// deletes a service drops its own entry, and the map grows only with the
/// services that exist.
#[derive(Debug, Clone, Default)]
pub struct ServiceNames(Arc<RwLock<HashMap<ServiceId, CachedService>>>);

impl ServiceNames {
    pub fn get(&self, id: &ServiceId) -> Option<CachedService> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    pub fn insert(&self, id: ServiceId, service: CachedService) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).insert(id, service);
    }

    pub fn forget(&self, id: &ServiceId) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).remove(id);
    }
}
