//! An account's keys as their owner manages them on the account page: when
//! and from where each was added and last signed in, a name of the owner's
//! choosing, and removal, asked first on a page of its own that says what
//! goes with the key.
//!
//! Removing a key needs a recent sign-in (`session::RECENT_SIGN_IN_SECS`),
//! as adding one does: a browser left signed in must not let whoever sits
//! at it lock the owner out. Renaming does not.
//!
//! Every form is plain HTML, so all of it works without JavaScript. Every
//! POST refuses another site's `Origin`, as the account page's other forms
//! do (the session cookie is `SameSite=Lax`, which already keeps it off
//! cross-site POSTs), and acts only on a key of the account this browser is
//! signed in as: any other key, of another account or service, is as
//! unknown as one that never was.

use askama::Template;
use axum::{
    extract::{rejection::FormRejection, Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Redirect},
    routing::{get, post},
    Form, Router,
};
use serde::Deserialize;
use sesame_proto::KeyLabel;

use crate::{
    audit::{Actor, By},
    challenge::{session, Challenges, SignInState},
    clock::rfc3339,
    error::Error,
    http::{cookie, extract::ClientInfo},
    signin::enroll::{account_view, now, render, service_id, to_login, PageResult},
    signin::keys::{self, KeyInfo, KeyState},
    state::AppState,
};

pub fn router<S: SignInState>() -> Router<S> {
    Router::new()
        .route("/services/{id}/account/keys/{key_id}/label", post(rename))
        .route("/services/{id}/account/keys/{key_id}/remove", get(removal_page).post(remove))
}

/// One key as the account page lists it, and as the page that asks before
/// its removal shows it.
#[derive(Debug)]
pub(super) struct KeyRow {
    pub(super) id: String,
    /// Empty when the key has no name.
    pub(super) label: String,
    /// The fingerprint in groups of four, or `passkey`.
    pub(super) fingerprint: String,
    pub(super) pending: bool,
    pub(super) added_at: String,
    /// The address of the device that sent the key (for a passkey, the
    /// browser that made it), and its user agent; either may be empty.
    pub(super) added_from: String,
    pub(super) device: String,
    /// `None` before the key's first sign-in.
    pub(super) last_used_at: Option<String>,
    /// The browser that signed in with it last; empty when unknown.
    pub(super) last_used_from: String,
    /// What the name field shows: the name, or after a refusal what was
    /// sent.
    pub(super) field: String,
    /// Why a new name for this key was refused.
    pub(super) refusal: Option<Refusal>,
}

/// A refused form: the error's code and message.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) code: &'static str,
    pub(super) message: String,
}

/// A time as RFC 3339 with a space for its `T`, which the RFC allows for
/// readability (§5.6): a narrow cell may then break it between the date
/// and the time.
fn moment(secs: i64) -> String {
    rfc3339(secs).replacen('T', " ", 1)
}

impl From<KeyInfo> for KeyRow {
    fn from(k: KeyInfo) -> Self {
        Self {
            fingerprint: match (k.kind.as_str(), k.fingerprint.as_deref()) {
                ("passkey", _) => "passkey".to_owned(),
                (_, Some(fingerprint)) => keys::grouped(fingerprint),
                (_, None) => "(unreadable)".to_owned(),
            },
            pending: k.state == KeyState::Pending,
            added_at: moment(k.created_at),
            added_from: k.device_ip,
            device: k.device_user_agent,
            last_used_at: k.last_used_at.map(moment),
            last_used_from: k.last_used_ip,
            field: k.label.clone(),
            label: k.label,
            id: k.id,
            refusal: None,
        }
    }
}

/// The signed-in owner, as the audit log names them.
fn by_owner<'a>(state: &AppState, actor: &'a Actor, client: &'a ClientInfo) -> By<'a> {
    By { actor, client, at: now(state) }
}

/// The rename form. Its field is required: a form without it is malformed,
/// not a request to clear the name.
#[derive(Debug, Deserialize)]
struct LabelForm {
    label: String,
}

/// A key's new name as typed: white space around it goes, and an empty
/// name clears it. Anything else follows the rules of the name an
/// authenticator gives its key, as a passkey's name does: markup is
/// allowed (every page escapes it), control, direction and invisible
/// characters are not, nor more than 64 bytes.
fn new_label(text: &str) -> Result<Option<KeyLabel>, sesame_proto::Error> {
    match text.trim() {
        "" => Ok(None),
        text => KeyLabel::parse(text).map(Some),
    }
}

/// "Rename" on the account page: names one of the account's keys, or
/// clears its name, and goes back to the page. A refused name shows the
/// page again with what was sent and why, next to its key.
async fn rename(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path((id, key_id)): Path<(String, String)>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Result<Form<LabelForm>, FormRejection>,
) -> PageResult {
    let service_id = service_id(&id)?;
    cookie::check_origin(&state.settings.origin, &headers)?;
    let Some(who) = session::of_browser(&state, &service_id, &headers).await? else {
        return Ok(to_login(&service_id));
    };
    let Ok(Form(body)) = body else {
        return Err(Error::bad_request("invalid_form", "the form was incomplete or malformed; reload the page").into());
    };
    let label = match new_label(&body.label) {
        Ok(label) => label,
        Err(refused) => {
            let mut view = account_view(&state, &challenges, &service_id, who.account).await?;
            // A name for a key the account does not have is refused as
            // that, whatever the name.
            let row = view.keys.iter_mut().find(|k| k.id == key_id).ok_or(Error::UnknownKey)?;
            row.refusal = Some(Refusal {
                code: refused.code(),
                message: "A name is at most 64 bytes of text, without control characters, characters that turn \
                          the direction of text, or invisible ones. Nothing was changed."
                    .to_owned(),
            });
            row.field = body.label;
            return render(StatusCode::BAD_REQUEST, &view);
        }
    };
    let actor = Actor::Account(who.account.clone());
    let by = by_owner(&state, &actor, &client);
    keys::rename(&state.db, &service_id.to_string(), &who.account, &key_id, label.as_ref(), &by).await?;
    tracing::info!(service = %service_id, key = %key_id, "key renamed from the account page");
    Ok(Redirect::to(&format!("/services/{service_id}/account?done=key_renamed")).into_response())
}

/// The page that asks before a key is removed.
#[derive(Template)]
#[template(path = "key_remove.html")]
struct RemovalView {
    service_id: String,
    service_name: String,
    account: String,
    key: KeyRow,
    /// The live sessions the key opened, which end with it.
    sessions: i64,
    /// This browser's own session is one of them: removing the key signs
    /// it out.
    own_session: bool,
    /// No other active key is left: nobody signs in as the account after
    /// this, until an admin helps.
    last_active: bool,
    /// The sign-in is too old to remove a key
    /// (`session::RECENT_SIGN_IN_SECS`): the page asks for a new one
    /// instead of offering the button.
    sign_in_again: bool,
}

/// "Remove…" on the account page: what goes with the key, and a button that
/// removes it. A page of its own rather than a script's dialog, so that it
/// works without JavaScript and says all of it.
async fn removal_page(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path((id, key_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> PageResult {
    let service_id = service_id(&id)?;
    let Some(who) = session::of_browser(&state, &service_id, &headers).await? else {
        return Ok(to_login(&service_id));
    };
    let removal = keys::removal(&state.db, &service_id.to_string(), &who.account, &key_id, now(&state)).await?;
    let view = RemovalView {
        service_id: service_id.to_string(),
        service_name: challenges.service_name(&service_id).await?,
        own_session: who.key_id.as_deref() == Some(key_id.as_str()),
        sign_in_again: who.recent(now(&state)).is_err(),
        account: who.account,
        key: KeyRow::from(removal.key),
        sessions: removal.sessions,
        last_active: removal.last_active,
    };
    render(StatusCode::OK, &view)
}

/// The confirmation page's button: removes the key, whichever kind, active
/// or pending; the sessions, codes and tokens it opened go with it. Back to
/// the account page, or, when this browser's own session went with the
/// key, to the login page.
async fn remove(
    State(state): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
    client: ClientInfo,
    headers: HeaderMap,
) -> PageResult {
    let service_id = service_id(&id)?;
    cookie::check_origin(&state.settings.origin, &headers)?;
    let Some(who) = session::of_browser(&state, &service_id, &headers).await? else {
        return Ok(to_login(&service_id));
    };
    who.recent(now(&state))?;
    let actor = Actor::Account(who.account.clone());
    let by = by_owner(&state, &actor, &client);
    // A second press finds no key: `unknown_key`, and nothing else goes.
    keys::remove(&state.db, &service_id.to_string(), &who.account, &key_id, &by).await?;
    tracing::info!(service = %service_id, key = %key_id, "key removed from the account page");
    if who.key_id.as_deref() == Some(key_id.as_str()) {
        // The session row went with the key; the cookie goes too.
        let mut response = to_login(&service_id);
        response.headers_mut().append(header::SET_COOKIE, session::clear_cookie(&state.settings.origin, &service_id));
        return Ok(response);
    }
    Ok(Redirect::to(&format!("/services/{service_id}/account?done=key_removed")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_blank_name_clears_the_name() {
        assert_eq!(new_label(""), Ok(None));
        assert_eq!(new_label(" \t "), Ok(None));
    }

    #[test]
    fn a_name_is_trimmed_and_may_hold_markup() {
        assert_eq!(new_label("  work laptop ").map(|l| l.map(String::from)), Ok(Some("work laptop".to_owned())));
        let markup = "<script>alert(1)</script>";
        assert_eq!(new_label(markup).map(|l| l.map(String::from)), Ok(Some(markup.to_owned())));
    }

    #[test]
    fn rejects_names_an_authenticator_could_not_send() {
        for bad in ["a\u{202e}b", "a\u{0}b", "tab\there", "zero\u{200b}width", &"x".repeat(65), &"é".repeat(33)] {
            assert_eq!(new_label(bad), Err(sesame_proto::Error::InvalidKeyLabel), "{bad:?}");
        }
    }
}
