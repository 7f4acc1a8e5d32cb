//! Applications that admit only the members of some groups ([`groups`]).
//!
//! Who signs in is known only after the sign-in, so the refusal comes then:
//! where a code would be issued (a fresh sign-in's finish, or a browser's
//! live session), an account in none of the application's groups gets a
//! page of Sesame's that says why, and its Continue button sends the
//! browser back to the application with `access_denied`. The button posts
//! the authorization request again with `prompt=none`, so the answer goes
//! back exactly as the request asked for it (its redirect URI, `state`,
//! response mode) and is decided afresh: still refused, or a code if the
//! account joined a group meanwhile.

use askama::Template;
use axum::response::Response;

use super::{
    client::Client,
    grant::{Request, SignedIn},
    groups,
    toward::{self, again},
};
use crate::{
    challenge::Challenges,
    error::{Error, Result},
    state::AppState,
};

/// The `error_description` that goes with `access_denied`.
pub(super) const DESCRIPTION: &str = "the account is not a member of any group this application admits";

/// Why an account may not use an application.
#[derive(Debug)]
pub(super) struct Refusal {
    service: String,
    account: String,
    application: String,
    /// The groups the application admits, sorted; never empty.
    groups: Vec<String>,
}

/// Whether `who` may use `client`: `None` when it may, else why not.
pub(super) async fn check(
    state: &AppState,
    challenges: &Challenges,
    client: &Client,
    who: &SignedIn,
) -> Result<Option<Refusal>> {
    if client.admits_everyone || groups::admits(&state.db, &client.client_id, &who.service_id, &who.account).await? {
        return Ok(None);
    }
    let groups = groups::of_application(&state.db, &client.client_id).await?;
    if groups.is_empty() {
        // Its last group went since the check: it admits everyone now.
        return Ok(None);
    }
    let service_id = who.service_id.parse().map_err(|_| Error::UnknownService)?;
    Ok(Some(Refusal {
        service: challenges.service_name(&service_id).await?,
        account: who.account.clone(),
        application: client.name.clone(),
        groups,
    }))
}

#[derive(Debug, Template)]
#[template(path = "oidc_denied.html")]
struct DeniedView<'a> {
    service: &'a str,
    account: &'a str,
    application: &'a str,
    /// "A", "A or B", "A, B or C".
    groups: String,
    /// The authorization request again, with `prompt=none`.
    fields: Vec<(&'static str, String)>,
}

impl Refusal {
    /// The page that says why, whose Continue button takes `request` back to
    /// the authorization endpoint with `prompt=none`.
    pub(super) fn page(&self, request: &Request) -> Result<Response> {
        let view = DeniedView {
            service: &self.service,
            account: &self.account,
            application: &self.application,
            groups: either(&self.groups),
            fields: again(request),
        };
        toward::page(&view, &request.redirect_uri)
    }
}

/// Names joined for a sentence: "A", "A or B", "A, B or C".
fn either(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_join_as_a_sentence() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(either(&names(&["Admins"])), "Admins");
        assert_eq!(either(&names(&["Admins", "Editors"])), "Admins or Editors");
        assert_eq!(either(&names(&["A", "B", "C"])), "A, B or C");
    }

    #[test]
    fn the_request_goes_again_with_prompt_none() {
        let request = Request {
            client_id: "c".to_owned(),
            redirect_uri: "https://app.example/cb".to_owned(),
            scope: "openid groups".to_owned(),
            state: Some("s".to_owned()),
            nonce: None,
            code_challenge: Some("x".repeat(43)),
            form_post: true,
        };
        let fields = again(&request);
        let get = |name: &str| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("prompt"), Some("none"));
        assert_eq!(get("response_mode"), Some("form_post"));
        assert_eq!(get("state"), Some("s"));
        assert_eq!(get("nonce"), None);
        assert_eq!(get("code_challenge_method"), Some("S256"));
    }
}
