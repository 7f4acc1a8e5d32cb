//! The notice an admin page shows after a redirect. It travels as a fixed
//! code in the query string (`?done=service_deleted`), never as text, so a
//! crafted link cannot put words on the admin page.

use axum::extract::{rejection::QueryRejection, Query};
use serde::Deserialize;

use crate::error::Error;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Notice {
    done: Option<String>,
    error: Option<String>,
    /// The page of a service's accounts, from 1.
    page: Option<String>,
    /// With `error=service_exists`: the name of the service the refused
    /// name is, or looks like. Shown only when a service of that name is
    /// on the page, so a crafted link cannot put other words there.
    existing: Option<String>,
}

impl Notice {
    pub(super) fn from(query: Result<Query<Notice>, QueryRejection>) -> Self {
        query.map(|Query(n)| n).unwrap_or_default()
    }

    /// The page of accounts asked for, from 0; the first without `page`.
    pub(super) fn page(&self) -> Result<i64, Error> {
        match self.page.as_deref() {
            None => Ok(0),
            Some(page) => match page.parse::<i64>() {
                Ok(page) if (1..=i64::from(u32::MAX)).contains(&page) => Ok(page - 1),
                _ => Err(Error::bad_request("invalid_page", "a page of accounts is a number from 1")),
            },
        }
    }

    pub(super) fn done(&self) -> Option<&'static str> {
        match self.done.as_deref()? {
            "created" => Some("Service created."),
            "number_matching_on" => Some("Number matching is on: sign-ins started from now on ask for the page's number."),
            "number_matching_off" => Some("Number matching is off: sign-ins started from now on ask for no number."),
            "key_kinds_changed" => Some("Saved: the kinds of key that sign in hold from the next sign-in on."),
            "service_deleted" => Some("Service deleted, with its accounts and sign-in history."),
            "account_deleted" => Some("Account deleted."),
            "key_removed" => Some("Key removed: it can no longer sign in, and its sessions have ended."),
            "link_revoked" => Some("Recovery link revoked: it can no longer add an authenticator."),
            "authenticator_added" => Some("Authenticator confirmed: it can now sign in to this page."),
            "authenticator_rejected" => Some("Authenticator refused: its key and account were removed."),
            "authenticator_removed" => {
                Some("Authenticator removed: it can no longer sign in to this page, and its sessions have ended.")
            }
            "session_ended" => Some("Session ended."),
            "profile_saved" => Some("Profile saved."),
            "groups_saved" => Some("Groups saved."),
            "group_created" => Some("Group added."),
            "group_renamed" => Some("Group renamed."),
            "group_deleted" => Some(
                "Group deleted, with its memberships; an application left with no group admits every account.",
            ),
            "application_created" => Some("Application added."),
            "application_saved" => Some("Application saved."),
            "application_removed" => Some(
                "Application removed, with its codes and tokens; the service's other applications and its sessions \
                 stay.",
            ),
            "keys_rotated" => Some(
                "Signing keys rotated: the next keys sign from now on, and the previous ones stay published until the next rotation.",
            ),
            _ => None,
        }
    }

    /// The error, naming the existing service when a name was refused for
    /// being, or looking like, its name and `is_service` confirms that a
    /// service of that name exists.
    pub(super) fn error_naming(&self, is_service: impl Fn(&str) -> bool) -> Option<String> {
        match (self.error.as_deref(), self.existing.as_deref()) {
            (Some("service_exists"), Some(name)) if is_service(name) => {
                Some(format!("That name is taken: it is, or looks the same as, the name of the service \"{name}\"."))
            }
            _ => self.error().map(str::to_owned),
        }
    }

    pub(super) fn error(&self) -> Option<&'static str> {
        match self.error.as_deref()? {
            "service_exists" => Some("A service with that name, or with one that looks the same, already exists."),
            "authenticator_not_added" => {
                Some("No authenticator was added: the request was refused, cancelled or timed out.")
            }
            "invalid_service_name" => {
                Some("A service name is 1 to 64 bytes, without control characters or spaces at either end.")
            }
            _ => None,
        }
    }
}
