//! Number matching (docs/PROTOCOL.md §14): the page's number, never in the
//! token, must come back signed in the answer; a wrong one ends the
//! sign-in, a missing or unasked one is refused without ending it.

use axum::http::{Method, StatusCode};
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sesame_proto::{
    AccountKey, AccountName, EnrollRequest, LoginRequest, MatchNumber, RegisterRequest, ServiceId, Token,
};

use crate::{
    bus::RedisServer,
    support::{each_backend, request, Backend, Started, TestApp},
};

fn alice() -> AccountName {
    AccountName::parse("alice").expect("valid name")
}

/// A service that asks for the number, as every service made from now on
/// does.
async fn matching_service(app: &TestApp) -> ServiceId {
    let service = app.create_service("Example").await;
    turn_on(app, &service).await;
    service
}

/// Turns number matching on in the database, as an admin on any instance
/// would; this test app's cache of the service is dropped as the admin's
/// instance drops its own.
async fn turn_on(app: &TestApp, service: &ServiceId) {
    sqlx::query("UPDATE service SET number_matching = TRUE WHERE id = $1")
        .bind(service.to_string())
        .execute(&app.sql)
        .await
        .expect("turn number matching on");
    app.challenges.forget_service(service);
}

/// The number the challenge API gave the page that started `started`.
fn shown(started: &Started) -> MatchNumber {
    let number = started.json["number"].as_u64().expect("the page gets a number");
    MatchNumber::new(u32::try_from(number).expect("small")).expect("10 to 99")
}

/// Another number than `number`, as a person who never saw the page might
/// type.
fn other_than(number: MatchNumber) -> MatchNumber {
    MatchNumber::new(if number.get() == 99 { 10 } else { u32::from(number.get()) + 1 }).expect("10 to 99")
}

async fn status(app: &TestApp, started: &Started) -> Value {
    app.get(&format!("/api/challenges/{}", started.id), Some(&started.cookie)).await.json()
}

/// Registers alice on `service`, answering its number; returns her key.
async fn register_alice(app: &TestApp, service: &ServiceId) -> AccountKey {
    let started = app.start(service).await;
    let token = app.verify(&started.token);
    let key = AccountKey::generate(&mut OsRng);
    let answer = RegisterRequest::sign_matched(&token, &alice(), &key, Some(shown(&started)));
    let response = app.post_json("/api/authenticator/register", &answer).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    key
}

async fn login(app: &TestApp, token: &Token, key: &AccountKey, number: Option<MatchNumber>) -> (StatusCode, Value) {
    let response =
        app.post_json("/api/authenticator/login", &LoginRequest::sign_matched(token, &alice(), key, number)).await;
    (response.status, response.json())
}

#[tokio::test]
async fn the_page_gets_a_number_and_a_link_and_the_token_carries_neither() {
    each_backend(|app| async move {
        let service = matching_service(&app).await;
        let started = app.start(&service).await;
        let number = shown(&started);
        assert_eq!(started.json["link"], format!("http://sesame.test/app#{}", started.token));
        let token = app.verify(&started.token);
        // The context tells the authenticator to ask, and tells it nothing
        // else: not the number, in any member.
        let context = app.post_json("/api/authenticator/context", &json!({"token": token.as_str()})).await.json();
        assert_eq!(context["number_matching"], true);
        let members: Vec<&String> = context.as_object().expect("object").keys().collect();
        assert!(!members.iter().any(|m| m.contains("number") && *m != "number_matching"), "{context}");
        // No member holds it either (times are large numbers; a search of
        // the text for the digits could find them there).
        let values = context.as_object().expect("object").values();
        assert!(!values.into_iter().any(|v| v.as_u64() == Some(u64::from(number.get()))), "{context}");

        let plain = app.create_service("Plain").await;
        let started = app.start(&plain).await;
        assert!(started.json.get("number").is_none(), "{}", started.json);
        let token = app.verify(&started.token);
        let context = app.post_json("/api/authenticator/context", &json!({"token": token.as_str()})).await.json();
        assert!(context.get("number_matching").is_none(), "{context}");
    })
    .await;
}

#[tokio::test]
async fn the_right_number_signs_in() {
    each_backend(|app| async move {
        let service = matching_service(&app).await;
        let key = register_alice(&app, &service).await;
        let started = app.start(&service).await;
        let token = app.verify(&started.token);
        let (code, body) = login(&app, &token, &key, Some(shown(&started))).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(status(&app, &started).await["status"], "completed");
    })
    .await;
}

#[tokio::test]
async fn a_wrong_number_ends_the_sign_in_and_the_page_says_why() {
    each_backend(|app| async move {
        let service = matching_service(&app).await;
        let key = register_alice(&app, &service).await;
        let started = app.start(&service).await;
        let token = app.verify(&started.token);
        let number = shown(&started);

        let (code, body) = login(&app, &token, &key, Some(other_than(number))).await;
        assert_eq!((code, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("wrong_number")), "{body}");
        let status = status(&app, &started).await;
        assert_eq!(status["status"], "denied");
        assert_eq!(status["hint"], "wrong_number");
        assert!(status["message"].as_str().expect("message").contains("not the one on this page"), "{status}");
        // The guess is spent: not even the right number completes it now.
        let (code, body) = login(&app, &token, &key, Some(number)).await;
        assert_eq!((code, body["error"].as_str()), (StatusCode::CONFLICT, Some("challenge_used")), "{body}");
        assert_eq!(app.count("SELECT COUNT(*) FROM sign_in_event WHERE kind = 'login'").await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_missing_number_is_refused_and_the_sign_in_waits() {
    each_backend(|app| async move {
        let service = matching_service(&app).await;
        let key = register_alice(&app, &service).await;
        let started = app.start(&service).await;
        let token = app.verify(&started.token);

        let (code, body) = login(&app, &token, &key, None).await;
        assert_eq!((code, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("number_required")), "{body}");
        assert_eq!(status(&app, &started).await["status"], "pending");
        let (code, body) = login(&app, &token, &key, Some(shown(&started))).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    })
    .await;
}

#[tokio::test]
async fn a_number_the_service_does_not_ask_for_is_refused_and_the_sign_in_waits() {
    each_backend(|app| async move {
        let service = app.create_service("Plain").await;
        let started = app.start(&service).await;
        let token = app.verify(&started.token);
        let key = AccountKey::generate(&mut OsRng);
        let number = MatchNumber::new(42).expect("valid");
        let answer = RegisterRequest::sign_matched(&token, &alice(), &key, Some(number));
        let response = app.post_json("/api/authenticator/register", &answer).await;
        response.assert_error(StatusCode::BAD_REQUEST, "unexpected_number");
        assert_eq!(status(&app, &started).await["status"], "pending");
        assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_number_is_signed_so_it_cannot_be_changed_on_the_way() {
    each_backend(|app| async move {
        let service = matching_service(&app).await;
        let key = register_alice(&app, &service).await;
        let started = app.start(&service).await;
        let token = app.verify(&started.token);
        let number = shown(&started);
        // Signed with a wrong number, sent with the right one: whoever
        // changed it cannot make the signature fit.
        let mut answer =
            serde_json::to_value(LoginRequest::sign_matched(&token, &alice(), &key, Some(other_than(number))))
                .expect("json");
        answer["number"] = number.get().into();
        let response = app.post_json("/api/authenticator/login", &answer).await;
        response.assert_error(StatusCode::UNAUTHORIZED, "bad_signature");
        assert_eq!(status(&app, &started).await["status"], "pending");

        for bad in [json!(9), json!(100)] {
            answer["number"] = bad;
            let response = app.post_json("/api/authenticator/login", &answer).await;
            response.assert_error(StatusCode::BAD_REQUEST, "invalid_number");
        }
        for bad in [json!(-1), json!("42"), json!(4.2), json!(1u64 << 40)] {
            answer["number"] = bad;
            let response = app.post_json("/api/authenticator/login", &answer).await;
            response.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
        }
        assert_eq!(status(&app, &started).await["status"], "pending");
    })
    .await;
}

#[tokio::test]
async fn an_enrollment_asks_for_no_number() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let key = crate::enroll::register(&app, &service, "alice").await;
        let session = crate::enroll::session(&app, &service, "alice", &key).await;
        turn_on(&app, &service).await;
        let waiting = crate::enroll::start_enrollment(&app, &service, &session).await;
        let token = app.verify(&waiting.token);
        let context = app.post_json("/api/authenticator/context", &json!({"token": token.as_str()})).await.json();
        assert!(context.get("number_matching").is_none(), "{context}");
        let new_key = AccountKey::generate(&mut OsRng);
        let answer = EnrollRequest::sign(&token, &alice(), &new_key, None);
        let response = app.post_json("/api/authenticator/enroll", &answer).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    })
    .await;
}

/// Instances that share a database read the setting with every challenge
/// they store, so a change made elsewhere holds at once, whatever this
/// instance has cached.
#[tokio::test]
async fn instances_sharing_a_database_see_a_change_at_once() {
    let redis = RedisServer::start();
    let app = TestApp::builder(Backend::Sqlite).redis(&redis.url()).build().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    assert!(started.json.get("number").is_none(), "{}", started.json);
    // Another instance's admin turns it on: only the database changes, and
    // this instance's cache still says off.
    sqlx::query("UPDATE service SET number_matching = TRUE WHERE id = $1")
        .bind(service.to_string())
        .execute(&app.sql)
        .await
        .expect("update");
    assert!(app.challenges.cached_service(&service).is_some_and(|cached| !cached.number_matching));
    let started = app.start(&service).await;
    let number = shown(&started);
    let token = app.verify(&started.token);
    let key = AccountKey::generate(&mut OsRng);
    let response = app
        .post_json("/api/authenticator/register", &RegisterRequest::sign_matched(&token, &alice(), &key, Some(number)))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
}

#[tokio::test]
async fn the_admin_api_turns_it_on_for_new_services_and_changes_it() {
    each_backend(|app| async move {
        let admin = |method: Method, uri: &str, body: Value| {
            let mut req = request(method, uri, None, Some(serde_json::to_vec(&body).expect("json")));
            req.headers_mut().insert("authorization", "Bearer test-admin-token-0123456789".parse().expect("header"));
            req
        };
        let created = app.send(admin(Method::POST, "/admin/api/services", json!({"name": "Mail"}))).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        assert_eq!(created.json()["number_matching"], true);
        let id = created.json()["id"].as_str().expect("id").to_owned();
        let started = app.start(&id.parse().expect("service id")).await;
        assert!(started.json["number"].is_u64(), "{}", started.json);

        let changed = app
            .send(admin(Method::PATCH, &format!("/admin/api/services/{id}"), json!({"number_matching": false})))
            .await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.text());
        assert_eq!(changed.json()["number_matching"], false);
        // The instance that changed it does not go on with its cached value.
        let started = app.start(&id.parse().expect("service id")).await;
        assert!(started.json.get("number").is_none(), "{}", started.json);
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_event WHERE action = 'service_changed'").await, 1);

        let off = app
            .send(admin(Method::POST, "/admin/api/services", json!({"name": "Old", "number_matching": false})))
            .await;
        assert_eq!(off.json()["number_matching"], false);

        let unknown = "00000000000000000000000000000000";
        let response = app
            .send(admin(Method::PATCH, &format!("/admin/api/services/{unknown}"), json!({"number_matching": true})))
            .await;
        response.assert_error(StatusCode::NOT_FOUND, "unknown_service");
        let response = app
            .send(admin(Method::PATCH, &format!("/admin/api/services/{id}"), json!({"number_matching": "yes"})))
            .await;
        response.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
        let response = app.send(admin(Method::PATCH, &format!("/admin/api/services/{id}"), json!({"colour": 1}))).await;
        response.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    })
    .await;
}
