//! Signing in to the admin page with a Sesame authenticator, adding one
//! (with the confirmation code), and the sessions they open.

use sesame_proto::{
    AccountKey, AccountName, ChallengeId, ConfirmationCode, LoginRequest, RegisterRequest, UnverifiedToken,
};

use super::*;

/// The token text on a waiting page.
fn token_on(html: &str) -> String {
    let marker = r#"<p class="token" id="token">"#;
    let start = html.find(marker).unwrap_or_else(|| panic!("no token in {html}")) + marker.len();
    html[start..].split('<').next().expect("token text").to_owned()
}

/// The challenge of a waiting page, from its events URL.
fn challenge_on(html: &str) -> ChallengeId {
    let marker = r#"data-events-url="/api/challenges/"#;
    let start = html.find(marker).unwrap_or_else(|| panic!("no events URL in {html}")) + marker.len();
    html[start..].split('/').next().expect("id").parse().expect("a challenge id")
}

/// A hidden field's value on a page.
pub(super) fn hidden(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} field in {html}")) + marker.len();
    html[start..].split('"').next().expect("closing quote").to_owned()
}

fn action_on(html: &str) -> String {
    let marker = r#"<form method="post" action=""#;
    let start = html.find(marker).expect("a form") + marker.len();
    html[start..].split('"').next().expect("closing quote").to_owned()
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("name=value").to_owned()
}

async fn answer(h: &Harness, path: &str, body: Value) -> Reply {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    h.send(request).await
}

pub(super) async fn register(h: &Harness, token: &str, name: &str, key: &AccountKey) -> Reply {
    let token = UnverifiedToken::parse(token).expect("token").verify(h.state.identity.public_key()).expect("ours");
    let request = RegisterRequest::sign(&token, &AccountName::parse(name).expect("name"), key);
    answer(h, "/api/authenticator/register", serde_json::to_value(request).expect("json")).await
}

async fn login(h: &Harness, token: &str, name: &str, key: &AccountKey) -> Reply {
    let token = UnverifiedToken::parse(token).expect("token").verify(h.state.identity.public_key()).expect("ours");
    let request = LoginRequest::sign(&token, &AccountName::parse(name).expect("name"), key);
    answer(h, "/api/authenticator/login", serde_json::to_value(request).expect("json")).await
}

/// An admin's browser on the "Add an authenticator" page.
pub(super) struct Adding {
    /// Session and binding cookies.
    cookies: String,
    csrf: String,
    page: Reply,
}

impl Adding {
    pub(super) async fn start(h: &Harness) -> Self {
        let (session, csrf) = h.sign_in().await;
        let page = h.post_form("/admin/authenticators", Some(&session), &[("csrf", &csrf)]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        Self { cookies: format!("{session}; {}", page.binding()), csrf, page }
    }

    pub(super) fn token(&self) -> String {
        token_on(&self.page.text)
    }

    fn challenge(&self) -> ChallengeId {
        challenge_on(&self.page.text)
    }

    /// What the page shows once the challenge ends (the script, or the
    /// Continue button, posts this form).
    pub(super) async fn proceed(&self, h: &Harness) -> Reply {
        h.post_form(&action_on(&self.page.text), Some(&self.cookies), &[("csrf", &self.csrf)]).await
    }

    /// The admin refuses the key shown on the confirmation page.
    pub(super) async fn reject(&self, h: &Harness) -> Reply {
        let action = format!("/admin/authenticators/{}/reject", self.challenge());
        h.post_form(&action, Some(&self.cookies), &[("csrf", &self.csrf)]).await
    }

    async fn confirm(&self, h: &Harness, key_id: &str) -> Reply {
        let action = format!("/admin/authenticators/{}/confirm", self.challenge());
        h.post_form(&action, Some(&self.cookies), &[("csrf", &self.csrf), ("key_id", key_id)]).await
    }
}

/// A signed-in admin adds `key` as `name`, comparing the codes and
/// confirming.
pub(super) async fn add(h: &Harness, name: &str, key: &AccountKey) {
    let adding = Adding::start(h).await;
    let reply = register(h, &adding.token(), name, key).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["key_state"], "pending");
    let shown = adding.proceed(h).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    let code = ConfirmationCode::of(&adding.challenge(), &key.public_key());
    assert!(shown.text.contains(&format!(r#"id="confirmation-code">{code}</p>"#)), "{}", shown.text);
    let done = adding.confirm(h, &hidden(&shown.text, "key_id")).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(done.location(), "/admin?done=authenticator_added");
}

/// Starts an admin sign-in in a fresh browser: its cookies (double-submit
/// and binding), its CSRF value and the waiting page.
async fn start(h: &Harness) -> (String, String, Reply) {
    let (pre_cookie, pre_csrf) = h.sign_in_form().await;
    let page = h.post_form("/admin/sesame", Some(&pre_cookie), &[("csrf", &pre_csrf)]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    (format!("{pre_cookie}; {}", page.binding()), pre_csrf, page)
}

/// Signs in to the admin page with `key`; returns the admin session cookie.
pub(super) async fn sign_in_with(h: &Harness, name: &str, key: &AccountKey) -> String {
    let (cookies, csrf, page) = start(h).await;
    let reply = login(h, &token_on(&page.text), name, key).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let done = h.post_form(&action_on(&page.text), Some(&cookies), &[("csrf", &csrf)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    cookie_pair(&done.set_cookie("sesame_admin").expect("admin session"))
}

/// Whether `cookie` still opens the admin page.
async fn is_signed_in(h: &Harness, cookie: &str) -> bool {
    h.page("/admin", Some(cookie)).await.text.contains("New service")
}

#[tokio::test]
async fn signs_in_with_an_added_authenticator() {
    let h = harness().await;
    let key = AccountKey::generate(&mut OsRng);
    add(&h, "laptop", &key).await;
    let (session, _) = h.sign_in().await;
    assert!(h.page("/admin", Some(&session)).await.text.contains("<td>laptop</td>"));

    let (cookies, csrf, page) = start(&h).await;
    let action = action_on(&page.text);
    // Continuing before approving shows a fresh code and no session.
    let early = h.post_form(&action, Some(&cookies), &[("csrf", &csrf)]).await;
    assert_eq!(early.status, StatusCode::OK);
    assert!(early.text.contains("Not approved yet"), "{}", early.text);
    assert!(early.set_cookie("sesame_admin").is_none());

    let reply = login(&h, &token_on(&early.text), "laptop", &key).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    // Another browser, without the binding cookie, cannot use the result.
    let (other_pre, other_csrf) = h.sign_in_form().await;
    let stolen = h.post_form(&action, Some(&other_pre), &[("csrf", &other_csrf)]).await;
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED);
    assert!(stolen.set_cookie("sesame_admin").is_none());

    let done = h.post_form(&action, Some(&cookies), &[("csrf", &csrf)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let admin = cookie_pair(&done.set_cookie("sesame_admin").expect("admin session"));
    assert!(h.page("/admin", Some(&admin)).await.text.contains("New service"));
    // One completed sign-in gives one session.
    let again = h.post_form(&action, Some(&cookies), &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.set_cookie("sesame_admin").is_none());
}

#[tokio::test]
async fn a_public_admin_challenge_takes_no_new_keys() {
    let h = harness().await;
    let (_, _, page) = start(&h).await;
    let reply = register(&h, &token_on(&page.text), "intruder", &AccountKey::generate(&mut OsRng)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.error_code(), "registration_closed");
    assert_eq!(h.count("SELECT COUNT(*) FROM account").await, 0);

    // Nor does one started through the public challenge API.
    let id: String = sqlx::query_scalar("SELECT id FROM service WHERE builtin")
        .fetch_one(&h.sql)
        .await
        .expect("the admin service exists");
    let started =
        h.send(Request::post(format!("/api/services/{id}/challenges")).body(Body::empty()).expect("request")).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
    let token = started.json()["token"].as_str().expect("token").to_owned();
    let reply = register(&h, &token, "intruder", &AccountKey::generate(&mut OsRng)).await;
    assert_eq!(reply.error_code(), "registration_closed");
    // The built-in service is not one the API manages.
    assert_eq!(h.api(Method::GET, "/admin/api/services", None).await.json(), json!([]));
    let delete = h.api(Method::DELETE, &format!("/admin/api/services/{id}"), None).await;
    assert_eq!(delete.error_code(), "unknown_service");
}

#[tokio::test]
async fn a_removed_authenticator_cannot_sign_in() {
    let h = harness().await;
    let key = AccountKey::generate(&mut OsRng);
    add(&h, "old phone", &key).await;
    let (session, csrf) = h.sign_in().await;
    let refused = h.post_form("/admin/authenticators/delete", Some(&session), &[("name", "old phone")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let reply = h
        .post_form("/admin/authenticators/delete", Some(&session), &[("csrf", &csrf), ("name", "old phone"), CONFIRMED])
        .await;
    assert_eq!(reply.location(), "/admin?done=authenticator_removed");
    let (_, _, page) = start(&h).await;
    let reply = login(&h, &token_on(&page.text), "old phone", &key).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error_code(), "unknown_account");
}

#[tokio::test]
async fn adding_needs_a_signed_in_admin_and_the_csrf_token() {
    let h = harness().await;
    let anonymous = h.post_form("/admin/authenticators", None, &[("csrf", "x")]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let (session, _) = h.sign_in().await;
    let forged = h.post_form("/admin/authenticators", Some(&session), &[("csrf", "x")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // No challenge was issued: none is held, none is a row.
    assert_eq!(h.count("SELECT COUNT(*) FROM challenge").await, 0);
    let held = match h.challenges.pending() {
        sesame_server::challenge::pending::Pending::Memory(memory) => memory.len(),
        sesame_server::challenge::pending::Pending::Table => 0,
    };
    assert_eq!(held, 0);
}

#[tokio::test]
async fn a_glimpsed_token_gives_no_admin_access_without_confirmation() {
    let h = harness().await;
    let adding = Adding::start(&h).await;
    // Someone who saw the admin's screen registers first, with their key.
    let eve = AccountKey::generate(&mut OsRng);
    let raced = register(&h, &adding.token(), "eve", &eve).await;
    assert_eq!(raced.status, StatusCode::OK, "{}", raced.text);
    assert_eq!(raced.json()["key_state"], "pending");
    // The admin's own authenticator then finds the challenge used.
    let admin_key = AccountKey::generate(&mut OsRng);
    let late = register(&h, &adding.token(), "admin laptop", &admin_key).await;
    assert_eq!((late.status, late.error_code().as_str()), (StatusCode::CONFLICT, "challenge_used"));

    // Until confirmed, eve's key signs nobody in.
    let (cookies, csrf, page) = start(&h).await;
    let refused = login(&h, &token_on(&page.text), "eve", &eve).await;
    assert_eq!((refused.status, refused.error_code().as_str()), (StatusCode::FORBIDDEN, "key_pending"));
    let no_session = h.post_form(&action_on(&page.text), Some(&cookies), &[("csrf", &csrf)]).await;
    assert!(no_session.set_cookie("sesame_admin").is_none());

    // The page shows eve's code, not one the admin's authenticator could
    // show, and names the key and the device that sent it.
    let shown = adding.proceed(&h).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    let eve_code = ConfirmationCode::of(&adding.challenge(), &eve.public_key());
    assert!(shown.text.contains(&eve_code.to_string()), "{}", shown.text);
    let fingerprint = eve.public_key().key_id().to_string();
    assert!(shown.text.contains(&fingerprint[..4]), "{}", shown.text);
    assert!(shown.text.contains("<strong>eve</strong>"), "{}", shown.text);
    assert!(!shown.text.contains(&ConfirmationCode::of(&adding.challenge(), &admin_key.public_key()).to_string()));

    // The admin refuses: the key and the account it created are gone.
    let action = format!("/admin/authenticators/{}/reject", adding.challenge());
    let rejected = h.post_form(&action, Some(&adding.cookies), &[("csrf", &adding.csrf)]).await;
    assert_eq!(rejected.location(), "/admin?done=authenticator_rejected");
    assert_eq!(h.count("SELECT COUNT(*) FROM account").await, 0);
    assert_eq!(h.count("SELECT COUNT(*) FROM account_key").await, 0);
    let (_, _, page) = start(&h).await;
    let gone = login(&h, &token_on(&page.text), "eve", &eve).await;
    assert_eq!(gone.error_code(), "unknown_account");
}

#[tokio::test]
async fn only_the_browser_that_added_a_key_can_confirm_it() {
    let h = harness().await;
    let adding = Adding::start(&h).await;
    let key = AccountKey::generate(&mut OsRng);
    assert_eq!(register(&h, &adding.token(), "phone", &key).await.status, StatusCode::OK);
    let key_id: String = sqlx::query_scalar("SELECT id FROM account_key").fetch_one(&h.sql).await.expect("key");
    let confirm = format!("/admin/authenticators/{}/confirm", adding.challenge());

    // Another admin session, without this challenge's binding cookie.
    let (other, other_csrf) = h.sign_in().await;
    let stranger = h.post_form(&confirm, Some(&other), &[("csrf", &other_csrf), ("key_id", &key_id)]).await;
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED, "{}", stranger.text);
    // The right browser without the CSRF token.
    let forged = h.post_form(&confirm, Some(&adding.cookies), &[("key_id", &key_id)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    // Another key id than the one shown.
    let wrong = adding.confirm(&h, &"0".repeat(32)).await;
    assert_eq!(wrong.status, StatusCode::CONFLICT, "{}", wrong.text);
    assert_eq!(h.count("SELECT COUNT(*) FROM account_key WHERE state = 'pending'").await, 1);

    assert_eq!(adding.confirm(&h, &key_id).await.location(), "/admin?done=authenticator_added");
    // Confirming twice changes nothing and says so.
    assert_eq!(adding.confirm(&h, &key_id).await.status, StatusCode::CONFLICT);
    assert!(is_signed_in(&h, &sign_in_with(&h, "phone", &key).await).await);
}

#[tokio::test]
async fn removing_an_authenticator_ends_the_sessions_it_opened() {
    let h = harness().await;
    let key = AccountKey::generate(&mut OsRng);
    add(&h, "laptop", &key).await;
    let by_key = sign_in_with(&h, "laptop", &key).await;
    let (by_token, csrf) = h.sign_in().await;
    assert!(is_signed_in(&h, &by_key).await);

    let removed = h
        .post_form("/admin/authenticators/delete", Some(&by_token), &[("csrf", &csrf), ("name", "laptop"), CONFIRMED])
        .await;
    assert_eq!(removed.location(), "/admin?done=authenticator_removed");
    assert!(!is_signed_in(&h, &by_key).await, "the key's session must end with it");
    assert!(is_signed_in(&h, &by_token).await, "other sessions live on");
}

#[tokio::test]
async fn a_new_admin_token_ends_the_sessions_the_old_one_opened() {
    let h = harness().await;
    let key = AccountKey::generate(&mut OsRng);
    add(&h, "laptop", &key).await;
    let by_key = sign_in_with(&h, "laptop", &key).await;
    let (by_token, _) = h.sign_in().await;

    // The same database, served again with another token.
    let state = h.state.with(|s| s.admin_token = Arc::new(AdminToken::new("another-admin-token-98765")));
    let restarted = Harness::single(state, h.sql.clone(), Box::new(()));
    assert!(!is_signed_in(&restarted, &by_token).await, "a token session must not outlive its token");
    assert!(is_signed_in(&restarted, &by_key).await, "a key session does not depend on the token");
    // And back on the old token, the old session is live again only because
    // the token is the same one: nothing was deleted for it.
    assert!(is_signed_in(&h, &by_token).await);
}

#[tokio::test]
async fn the_admin_page_lists_sessions_and_ends_any_of_them() {
    let h = harness().await;
    let (mine, csrf) = h.sign_in().await;
    let (theirs, _) = h.sign_in().await;
    let page = h.page("/admin", Some(&mine)).await.text;
    let table = &page[page.find(r#"<table id="sessions">"#).expect("the sessions list")..];
    assert_eq!(table.matches(r#"name="handle""#).count(), 2, "{table}");
    assert!(table.contains("(this browser)"), "{table}");

    // End the other browser's session: the one not marked as this browser.
    let rows: Vec<&str> = table.split("<tr>").filter(|row| row.contains(r#"name="handle""#)).collect();
    let other = rows.iter().find(|row| !row.contains("(this browser)")).expect("the other session");
    let handle = hidden(other, "handle");
    let ended = h.post_form("/admin/sessions/end", Some(&mine), &[("csrf", &csrf), ("handle", &handle)]).await;
    assert_eq!(ended.location(), "/admin?done=session_ended");
    assert!(!is_signed_in(&h, &theirs).await);
    assert!(is_signed_in(&h, &mine).await);
    // Ending it again, or a made-up handle, is a clear error.
    let again = h.post_form("/admin/sessions/end", Some(&mine), &[("csrf", &csrf), ("handle", &handle)]).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    let forged = h.post_form("/admin/sessions/end", Some(&mine), &[("handle", &handle)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

/// A PostgreSQL harness for a race, with what drops its database, or None
/// when no PostgreSQL is set.
async fn postgres_harness() -> Option<(Harness, support::Cleanup)> {
    let app = support::postgres_for_a_race().await?;
    let cleanup = app.cleanup_handle();
    Some((Harness::over(app), cleanup))
}

/// On PostgreSQL, refusing a registration deletes its account once no key is
/// left, and deleting an account takes its keys with it. A key added to
/// that account by a transaction still in flight (an enrollment through a
/// recovery link) must be waited for and seen, and the account kept.
#[tokio::test]
async fn refusing_a_key_on_postgres_keeps_the_account_when_a_key_is_added_meanwhile() {
    let Some((h, cleanup)) = postgres_harness().await else { return };
    let adding = Adding::start(&h).await;
    let eve = AccountKey::generate(&mut OsRng);
    assert_eq!(register(&h, &adding.token(), "eve", &eve).await.status, StatusCode::OK);
    let service: String =
        sqlx::query_scalar("SELECT service_id FROM account_key").fetch_one(&h.sql).await.expect("key");

    let mut enrolling = h.sql.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO account_key (id, service_id, account, public_key, state, added_by, created_at) \
         VALUES ($1, $2, 'eve', $3, 'pending', 'enroll', $4)",
    )
    .bind(sesame_server::signin::keys::new_id())
    .bind(&service)
    .bind(AccountKey::generate(&mut OsRng).public_key().to_bytes().to_vec())
    .bind(START as i64)
    .execute(&mut *enrolling)
    .await
    .expect("a key enrolled, not yet committed");
    let (rejected, ()) = tokio::join!(adding.reject(&h), async {
        support::until_waiting_on_locks(&h.sql, 1).await;
        enrolling.commit().await.expect("commit the enrollment");
    });
    assert_eq!(rejected.location(), "/admin?done=authenticator_rejected");
    assert_eq!(h.count("SELECT COUNT(*) FROM account WHERE name = 'eve'").await, 1, "the account went");
    assert_eq!(h.count("SELECT COUNT(*) FROM account_key WHERE added_by = 'enroll'").await, 1, "the new key went");
    assert_eq!(h.count("SELECT COUNT(*) FROM account_key WHERE added_by = 'register'").await, 0);
    drop(h);
    cleanup.run().await;
}

/// On PostgreSQL, an admin authenticator removed, or returned to pending,
/// while its sign-in opens a session must be waited for and seen: no
/// session, and a refusal rather than a server error.
#[tokio::test]
async fn an_admin_key_changed_while_its_session_opens_on_postgres_opens_none() {
    let Some((h, cleanup)) = postgres_harness().await else { return };
    let meanwhile = [
        (
            "UPDATE account_key SET state = 'pending' WHERE id = $1",
            StatusCode::FORBIDDEN,
            "this key waits for confirmation",
        ),
        ("DELETE FROM account_key WHERE id = $1", StatusCode::NOT_FOUND, "no such account at this service"),
    ];
    for (n, (change, status, error)) in meanwhile.into_iter().enumerate() {
        let (name, key) = (format!("laptop {n}"), AccountKey::generate(&mut OsRng));
        add(&h, &name, &key).await;
        let key_id: String = sqlx::query_scalar("SELECT id FROM account_key WHERE account = $1")
            .bind(&name)
            .fetch_one(&h.sql)
            .await
            .expect("the key");
        let (cookies, csrf, page) = start(&h).await;
        assert_eq!(login(&h, &token_on(&page.text), &name, &key).await.status, StatusCode::OK);

        let mut held = h.sql.begin().await.expect("begin");
        sqlx::query(change).bind(&key_id).execute(&mut *held).await.expect("change the key");
        let (action, fields) = (action_on(&page.text), [("csrf", csrf.as_str())]);
        let (done, ()) = tokio::join!(h.post_form(&action, Some(&cookies), &fields), async {
            support::until_waiting_on_locks(&h.sql, 1).await;
            held.commit().await.expect("commit the change");
        });
        // The admin page explains a refusal on a page of its own.
        assert_eq!(done.status, status, "{change}: {}", done.text);
        assert!(done.text.contains(error), "{change}: {}", done.text);
        assert!(done.set_cookie("sesame_admin").is_none(), "{change}");
        let opened = h.count(&format!("SELECT COUNT(*) FROM admin_session WHERE key_id = '{key_id}'")).await;
        assert_eq!(opened, 0, "{change}");
    }
    drop(h);
    cleanup.run().await;
}
