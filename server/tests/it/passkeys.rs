//! Passkeys through the JSON API, with a software authenticator
//! (`passkeys/soft.rs`): registration, sign-in, adding one to an account,
//! each service's policy, and every refusal with its error and nothing
//! half-written.

mod refused;
mod soft;

use axum::http::{Method, StatusCode};
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sesame_proto::{AccountKey, AccountName, LoginRequest, RegisterRequest, ServiceId};

use crate::support::{each_backend, request, TestApp, TestResponse};
use soft::SoftPasskey;

/// A started ceremony: its id, the cookie that binds it, its options.
struct Ceremony {
    id: String,
    cookie: String,
    options: Value,
}

async fn post(app: &TestApp, uri: &str, cookie: Option<&str>, body: &Value) -> TestResponse {
    app.send(request(Method::POST, uri, cookie, Some(serde_json::to_vec(body).expect("json")))).await
}

async fn start(app: &TestApp, service: &ServiceId, what: &str, cookie: Option<&str>, body: &Value) -> Ceremony {
    let response = post(app, &format!("/api/services/{service}/passkeys/{what}/start"), cookie, body).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let json = response.json();
    let id = json["ceremony"].as_str().expect("ceremony").to_owned();
    let name = format!("sesame_passkey_{id}");
    let value = response.cookie(&name).expect("binding cookie");
    let cookie = match cookie {
        Some(session) => format!("{name}={value}; {session}"),
        None => format!("{name}={value}"),
    };
    Ceremony { id, cookie, options: json["options"].clone() }
}

async fn finish(
    app: &TestApp,
    service: &ServiceId,
    what: &str,
    ceremony: &Ceremony,
    credential: &Value,
) -> TestResponse {
    let body = json!({"ceremony": ceremony.id, "credential": credential});
    post(app, &format!("/api/services/{service}/passkeys/{what}/finish"), Some(&ceremony.cookie), &body).await
}

/// A service that takes the kinds of key `kinds`: "Example", then
/// "Example 2" and so on.
async fn service(app: &TestApp, kinds: &str) -> ServiceId {
    let n = app.count("SELECT COUNT(*) FROM service WHERE name LIKE 'Example%'").await;
    let name = if n == 0 { "Example".to_owned() } else { format!("Example {}", n + 1) };
    let service = app.create_service(&name).await;
    sqlx::query("UPDATE service SET key_kinds = $1 WHERE id = $2")
        .bind(kinds.to_owned())
        .bind(service.to_string())
        .execute(&app.sql)
        .await
        .expect("policy");
    service
}

/// Registers `account` with `passkey`; returns the session cookie.
async fn register(app: &TestApp, service: &ServiceId, account: &str, passkey: &mut SoftPasskey) -> String {
    let ceremony = start(app, service, "register", None, &json!({"account": account})).await;
    let credential = passkey.create(&ceremony.options);
    let response = finish(app, service, "register", &ceremony, &credential).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let session = format!("sesame_session_{service}");
    format!("{session}={}", response.cookie(&session).expect("session cookie"))
}

async fn sign_in(app: &TestApp, service: &ServiceId, passkey: &mut SoftPasskey) -> TestResponse {
    let ceremony = start(app, service, "sign-in", None, &json!({})).await;
    let credential = passkey.get(&ceremony.options);
    finish(app, service, "sign-in", &ceremony, &credential).await
}

async fn amrs(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT amr FROM session ORDER BY created_at, amr").fetch_all(&app.sql).await.expect("amr")
}

#[tokio::test]
async fn registers_then_signs_in_without_a_name_like_a_qr_sign_in() {
    each_backend(|app| async move {
        let service = service(&app, "both").await;
        let mut passkey = SoftPasskey::new();
        let cookie = register(&app, &service, "alice", &mut passkey).await;
        let page = app.get(&format!("/services/{service}"), Some(&cookie)).await;
        assert!(page.text().contains("alice"), "{}", page.text());

        app.clock.advance(60);
        let response = sign_in(&app, &service, &mut passkey).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(
            response.json(),
            json!({"account": "alice", "service_id": service.to_string(), "service_name": "Example"})
        );
        assert!(response.cookie(&format!("sesame_session_{service}")).is_some());
        // Bound to its device, user verified.
        assert_eq!(amrs(&app).await, ["hwk user", "hwk user"]);
        assert_eq!(app.count("SELECT COUNT(*) FROM sign_in_event WHERE kind IN ('register', 'login')").await, 2);
        let start = crate::support::START as i64;
        let stamps: (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT k.last_used_at, a.last_login_at FROM account_key k JOIN account a \
             ON a.service_id = k.service_id AND a.name = k.account WHERE k.kind = 'passkey'",
        )
        .fetch_one(&app.sql)
        .await
        .expect("stamps");
        assert_eq!(stamps, (Some(start + 60), Some(start + 60)));
        assert_eq!(app.count("SELECT sign_count FROM passkey").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM passkey_ceremony").await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_synced_passkey_without_verification_says_swk() {
    each_backend(|app| async move {
        let service = service(&app, "passkey").await;
        let mut passkey = SoftPasskey::new();
        passkey.backup_eligible = true;
        passkey.verifies = false;
        register(&app, &service, "alice", &mut passkey).await;
        assert_eq!(amrs(&app).await, ["swk"]);
    })
    .await;
}

#[tokio::test]
async fn each_service_takes_the_kinds_of_key_it_allows() {
    each_backend(|app| async move {
        // Sesame keys only (every service that existed before passkeys).
        let sesame_only = app.create_service("Sesame only").await;
        let response =
            post(&app, &format!("/api/services/{sesame_only}/passkeys/sign-in/start"), None, &json!({})).await;
        response.assert_error(StatusCode::FORBIDDEN, "passkeys_not_allowed");
        let response = post(
            &app,
            &format!("/api/services/{sesame_only}/passkeys/register/start"),
            None,
            &json!({"account": "bob"}),
        )
        .await;
        response.assert_error(StatusCode::FORBIDDEN, "passkeys_not_allowed");
        assert_eq!(app.count("SELECT COUNT(*) FROM passkey_ceremony").await, 0);

        // Passkeys only: a Sesame key neither registers nor signs in.
        let passkeys_only = service(&app, "both").await;
        let started = app.start(&passkeys_only).await;
        let key = AccountKey::generate(&mut OsRng);
        let alice = AccountName::parse("alice").expect("name");
        let token = app.verify(&started.token);
        let response = app.post_json("/api/authenticator/register", &RegisterRequest::sign(&token, &alice, &key)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        sqlx::query("UPDATE service SET key_kinds = 'passkey'").execute(&app.sql).await.expect("policy");
        let started = app.start(&passkeys_only).await;
        let token = app.verify(&started.token);
        let response = app.post_json("/api/authenticator/login", &LoginRequest::sign(&token, &alice, &key)).await;
        response.assert_error(StatusCode::FORBIDDEN, "sesame_keys_not_allowed");
        let started = app.start(&passkeys_only).await;
        let token = app.verify(&started.token);
        let carol = AccountName::parse("carol").expect("name");
        let response = app.post_json("/api/authenticator/register", &RegisterRequest::sign(&token, &carol, &key)).await;
        response.assert_error(StatusCode::FORBIDDEN, "sesame_keys_not_allowed");
        assert_eq!(app.count("SELECT COUNT(*) FROM account WHERE name = 'carol'").await, 0);
    })
    .await;
}

#[tokio::test]
async fn user_verification_required_and_not_done_is_refused() {
    each_backend(|app| async move {
        let service = service(&app, "both").await;
        sqlx::query("UPDATE service SET require_user_verification = TRUE").execute(&app.sql).await.expect("policy");
        let mut passkey = SoftPasskey::new();
        passkey.verifies = false;
        let ceremony = start(&app, &service, "register", None, &json!({"account": "alice"})).await;
        assert_eq!(ceremony.options["publicKey"]["authenticatorSelection"]["userVerification"], "required");
        let response = finish(&app, &service, "register", &ceremony, &passkey.create(&ceremony.options)).await;
        response.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
        assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 0);

        passkey.verifies = true;
        register(&app, &service, "alice", &mut passkey).await;
        passkey.verifies = false;
        sign_in(&app, &service, &mut passkey).await.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 1);
    })
    .await;
}

#[tokio::test]
async fn a_passkey_added_by_the_signed_in_owner_signs_in_too() {
    each_backend(|app| async move {
        let service = service(&app, "both").await;
        let mut first = SoftPasskey::new();
        let session = register(&app, &service, "alice", &mut first).await;
        let uri = format!("/api/services/{service}/passkeys/add/start");
        post(&app, &uri, None, &json!({})).await.assert_error(StatusCode::UNAUTHORIZED, "sign_in_required");

        let mut second = SoftPasskey::new();
        let ceremony = start(&app, &service, "add", Some(&session), &json!({"label": "Laptop"})).await;
        // The account's passkeys are excluded, and the handle is the account's.
        assert_eq!(ceremony.options["publicKey"]["excludeCredentials"].as_array().map(Vec::len), Some(1));
        let response = finish(&app, &service, "add", &ceremony, &second.create(&ceremony.options)).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
        assert_eq!(response.json()["label"], "Laptop");
        assert_eq!(second.user_handle, first.user_handle);
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_event WHERE action = 'key_enrolled'").await, 1);

        let response = sign_in(&app, &service, &mut second).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(response.json()["account"], "alice");
        // The same authenticator cannot be added twice.
        let ceremony = start(&app, &service, "add", Some(&session), &json!({})).await;
        let mut again = second;
        let response = finish(&app, &service, "add", &ceremony, &again.create(&ceremony.options)).await;
        response.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
        assert_eq!(app.count("SELECT COUNT(*) FROM passkey").await, 2);

        // Ten minutes after the sign-in, a browser left signed in adds
        // nothing: the person signs in again first.
        app.clock.advance(601);
        post(&app, &uri, Some(&session), &json!({})).await.assert_error(StatusCode::FORBIDDEN, "sign_in_again");
    })
    .await;
}

#[tokio::test]
async fn a_removed_passkey_signs_nobody_in() {
    each_backend(|app| async move {
        let service = service(&app, "both").await;
        let mut passkey = SoftPasskey::new();
        register(&app, &service, "alice", &mut passkey).await;
        let key: String = sqlx::query_scalar("SELECT id FROM account_key").fetch_one(&app.sql).await.expect("key");
        let response = app
            .send(
                request(
                    Method::DELETE,
                    &format!("/admin/api/services/{service}/accounts/alice/keys/{key}"),
                    None,
                    None,
                )
                .map_admin(&app),
            )
            .await;
        assert_eq!(response.status, StatusCode::NO_CONTENT, "{}", response.text());
        // Its sessions went with it.
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM passkey").await, 0);
        sign_in(&app, &service, &mut passkey).await.assert_error(StatusCode::UNAUTHORIZED, "unknown_passkey");
    })
    .await;
}

/// Adds the admin token to a request.
trait MapAdmin {
    fn map_admin(self, app: &TestApp) -> Self;
}

impl MapAdmin for axum::http::Request<axum::body::Body> {
    fn map_admin(mut self, app: &TestApp) -> Self {
        let _ = app;
        let token = "Bearer test-admin-token-0123456789";
        self.headers_mut().insert(axum::http::header::AUTHORIZATION, token.parse().expect("header"));
        self
    }
}

#[tokio::test]
async fn the_admin_api_sets_each_services_policy() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let patch = |body: Value| {
            let mut sent =
                request(Method::PATCH, &format!("/admin/api/services/{service}"), None, Some(body.to_string().into()));
            let bearer = "Bearer test-admin-token-0123456789".parse().expect("header");
            sent.headers_mut().insert(axum::http::header::AUTHORIZATION, bearer);
            app.send(sent)
        };
        let response = patch(json!({"key_kinds": "both", "require_user_verification": true})).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(
            (response.json()["key_kinds"].clone(), response.json()["require_user_verification"].clone()),
            (json!("both"), json!(true))
        );
        // What is left out stays as it is.
        let response = patch(json!({"number_matching": true})).await;
        assert_eq!(response.json()["key_kinds"], "both");
        assert_eq!(response.json()["require_user_verification"], true);
        patch(json!({"key_kinds": "some"})).await.assert_error(StatusCode::BAD_REQUEST, "invalid_key_kinds");
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_event WHERE action = 'service_changed'").await, 2);
        let ceremony = start(&app, &service, "register", None, &json!({"account": "alice"})).await;
        assert_eq!(ceremony.options["publicKey"]["authenticatorSelection"]["userVerification"], "required");
        assert_eq!(ceremony.options["publicKey"]["authenticatorSelection"]["residentKey"], "required");
        assert_eq!(ceremony.options["publicKey"]["rp"]["id"], "sesame.test");
    })
    .await;
}

#[tokio::test]
async fn passkeys_of_another_relying_party_id_are_counted_for_the_start_up_warning() {
    each_backend(|app| async move {
        let service = service(&app, "both").await;
        register(&app, &service, "alice", &mut SoftPasskey::new()).await;
        let db = &app.state.db;
        assert_eq!(sesame_server::signin::passkey::store::foreign(db, "sesame.test").await.expect("count"), 0);
        assert_eq!(sesame_server::signin::passkey::store::foreign(db, "login.example.com").await.expect("count"), 1);
        sesame_server::signin::passkey::on_start(&app.state).await.expect("start-up check");
    })
    .await;
}

#[tokio::test]
async fn the_owner_removes_a_passkey_from_the_account_page_and_nothing_else() {
    each_backend(|app| async move {
        let service = service(&app, "both").await;
        let mut first = SoftPasskey::new();
        let alice = register(&app, &service, "alice", &mut first).await;
        let bob = register(&app, &service, "bob", &mut SoftPasskey::new()).await;
        let key_of = |account: &'static str| {
            let sql = app.sql.clone();
            async move {
                sqlx::query_scalar::<_, String>("SELECT id FROM account_key WHERE account = $1")
                    .bind(account)
                    .fetch_one(&sql)
                    .await
                    .expect("key")
            }
        };
        let (alices, bobs) = (key_of("alice").await, key_of("bob").await);
        let remove = |key: &str| format!("/services/{service}/account/keys/{key}/remove");

        // Not signed in (sent to sign in first); another account's passkey;
        // no key at all. (A form's refusals are pages, with the JSON API's
        // status.)
        assert_eq!(app.post(&remove(&alices), None).await.status, StatusCode::SEE_OTHER);
        assert_eq!(app.post(&remove(&bobs), Some(&alice)).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.post(&remove("nonsense"), Some(&alice)).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.count("SELECT COUNT(*) FROM passkey").await, 2);

        let response = app.post(&remove(&alices), Some(&alice)).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.text());
        assert_eq!(app.count("SELECT COUNT(*) FROM passkey").await, 1);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_event WHERE action = 'key_removed' AND target = 'alice'").await,
            1
        );
        // Its session went with it; Bob's stays.
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 1);
        sign_in(&app, &service, &mut first).await.assert_error(StatusCode::UNAUTHORIZED, "unknown_passkey");
        let page = app.get(&format!("/services/{service}"), Some(&bob)).await;
        assert!(page.text().contains("bob"), "Bob is still signed in");
    })
    .await;
}
