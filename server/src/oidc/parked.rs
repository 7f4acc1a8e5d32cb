//! Authorization requests parked beside their login page's challenge, in
//! memory, on a single instance.
//!
//! A parked request lives as long as its page: from the authorization
//! request until the page finishes, seconds later, or its challenge
//! expires. On one instance the challenge itself is held in memory while
//! it is pending (`challenge::pending`), and the request needs no more
//! durability than it: if the process dies, the page's challenge can no
//! longer be answered either, and the person starts again from the
//! application. So it is kept here, and the database sees nothing of it:
//! two synced writes fewer on every OIDC sign-in (docs/BENCHMARKS.md).
//! With several instances the finish may reach another instance than the
//! authorization request did, and requests stay rows of `oidc_request`
//! ([`super::grant::park`]), as pending challenges stay rows of
//! `challenge`.
//!
//! A request is taken once: of racing finishes of one page, one gets it.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use sesame_proto::ChallengeId;

use super::grant::Request;
use crate::{
    challenge::pending,
    error::{Error, Result},
};

/// Parked requests, by the id of their page's challenge.
#[derive(Debug, Default)]
pub struct Parked {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    requests: HashMap<ChallengeId, (Request, i64)>,
    /// When expired requests were last dropped (Unix seconds).
    purged_at: i64,
}

/// How often, at most, a parking drops the requests whose page expired.
const PURGE_EVERY_SECS: i64 = 10;

impl Parked {
    /// Parks `request` for the page of challenge `id`, until `until` (Unix
    /// seconds). Refuses, as the challenges do, when as many requests are
    /// held as there may be pending challenges.
    pub fn park(&self, id: ChallengeId, request: Request, now: i64, until: i64) -> Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if now - inner.purged_at >= PURGE_EVERY_SECS || inner.requests.len() >= pending::CAPACITY {
            inner.requests.retain(|_, (_, until)| *until > now);
            inner.purged_at = now;
        }
        if inner.requests.len() >= pending::CAPACITY {
            return Err(Error::Unavailable);
        }
        inner.requests.insert(id, (request, until));
        Ok(())
    }

    /// Takes the request parked for challenge `id`, once.
    pub fn take(&self, id: &ChallengeId, now: i64) -> Option<Request> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.requests.remove(id).filter(|(_, until)| *until > now).map(|(request, _)| request)
    }

    /// How many requests are held.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::OsRng;

    use super::*;

    fn request() -> Request {
        Request {
            client_id: "c".to_owned(),
            redirect_uri: "https://app.example/cb".to_owned(),
            scope: "openid".to_owned(),
            state: Some("s".to_owned()),
            nonce: None,
            code_challenge: None,
            form_post: false,
        }
    }

    #[test]
    fn a_request_is_taken_once_and_not_after_its_time() {
        let parked = Parked::default();
        let (once, late) = (ChallengeId::random(&mut OsRng), ChallengeId::random(&mut OsRng));
        parked.park(once, request(), 100, 200).expect("parked");
        parked.park(late, request(), 100, 200).expect("parked");
        assert_eq!(parked.take(&once, 150).map(|r| r.redirect_uri).as_deref(), Some("https://app.example/cb"));
        assert!(parked.take(&once, 150).is_none(), "taken twice");
        assert!(parked.take(&late, 200).is_none(), "taken after its time");
        assert!(parked.is_empty());
    }

    #[test]
    fn expired_requests_are_dropped_as_others_are_parked() {
        let parked = Parked::default();
        parked.park(ChallengeId::random(&mut OsRng), request(), 100, 110).expect("parked");
        parked.park(ChallengeId::random(&mut OsRng), request(), 105, 300).expect("parked");
        assert_eq!(parked.len(), 2);
        // Ten seconds on, the first is past its time and goes.
        parked.park(ChallengeId::random(&mut OsRng), request(), 115, 300).expect("parked");
        assert_eq!(parked.len(), 2);
    }
}
