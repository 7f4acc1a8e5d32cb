//! The authenticator API: the happy paths, and every refusal with its own
//! error code and nothing left behind.

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sesame_proto::{
    wire::ServerKeyInfo, AccountKey, AccountName, DenyRequest, LoginRequest, RegisterRequest, ServiceId,
};

use crate::support::{each_backend, random_b64, request, Backend, TestApp, USER_AGENT};

fn name(text: &str) -> AccountName {
    AccountName::parse(text).expect("valid name")
}

/// Registers `account` at `service` through a whole challenge; returns the
/// key.
async fn register(app: &TestApp, service: &ServiceId, account: &str) -> AccountKey {
    let started = app.start(service).await;
    let key = AccountKey::generate(&mut OsRng);
    let token = app.verify(&started.token);
    let response =
        app.post_json("/api/authenticator/register", &RegisterRequest::sign(&token, &name(account), &key)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    key
}

#[tokio::test]
async fn well_known_publishes_the_token_key() {
    let app = TestApp::new().await;
    let response = app.get("/.well-known/sesame", None).await;
    assert_eq!(response.status, StatusCode::OK);
    let info: ServerKeyInfo = serde_json::from_slice(&response.body).expect("ServerKeyInfo");
    let key = app.state.identity.public_key();
    assert_eq!(info.version, 1);
    assert_eq!(info.origin, "http://sesame.test");
    assert_eq!(info.public_key, key.to_base64());
    assert_eq!(info.key_id, key.key_id().to_string());
}

#[tokio::test]
async fn registers_then_logs_in_and_the_browser_sees_it() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let started = app.start(&service).await;
        let key = AccountKey::generate(&mut OsRng);
        let token = app.verify(&started.token);

        let response = app.post_json("/api/authenticator/register", &RegisterRequest::sign(&token, &name("alice"), &key)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(response.json(), json!({"status": "completed", "purpose": "register", "account": "alice"}));
        let status = app.get(&format!("/api/challenges/{}", started.id), Some(&started.cookie)).await.json();
        assert_eq!(status["status"], "completed");
        assert_eq!(status["hint"], "register");
        assert_eq!(status["message"], "Signed in as alice.");

        let started = app.start(&service).await;
        let token = app.verify(&started.token);
        let response = app.post_json("/api/authenticator/login", &LoginRequest::sign(&token, &name("alice"), &key)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(response.json(), json!({"status": "completed", "purpose": "login", "account": "alice"}));
        let status = app.get(&format!("/api/challenges/{}", started.id), Some(&started.cookie)).await.json();
        assert_eq!(
            status,
            json!({"status": "completed", "hint": "login", "purpose": "login", "account": "alice", "message": "Signed in as alice."})
        );
        let last_login: Option<i64> = sqlx::query_scalar("SELECT last_login_at FROM account WHERE name = 'alice'")
            .fetch_one(&app.sql)
            .await
            .expect("account");
        assert_eq!(last_login, Some(crate::support::START as i64));
        assert_eq!(app.count("SELECT COUNT(*) FROM sign_in_event WHERE kind IN ('register', 'login')").await, 2);
    })
    .await;
}

#[tokio::test]
async fn context_shows_who_asks_and_marks_the_challenge_opened() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let started = app.start(&service).await;
        let response = app.post_json("/api/authenticator/context", &json!({"token": started.token})).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        let context = response.json();
        assert_eq!(context["challenge_id"], started.id.as_str());
        assert_eq!(context["service_id"], service.to_string());
        assert_eq!(context["service_name"], "Example");
        assert_eq!(context["origin"], "http://sesame.test");
        assert_eq!(context["status"], "pending");
        assert_eq!(context["ip"], "0.0.0.0");
        assert_eq!(context["user_agent"], USER_AGENT);
        assert_eq!(context["requested_at"], crate::support::START);
        let status = app.get(&format!("/api/challenges/{}", started.id), Some(&started.cookie)).await.json();
        assert_eq!(status["hint"], "opened");
        assert_eq!(status["message"], "Your authenticator has the request. Check the details there and approve.");
    })
    .await;
}

/// An authenticator that goes away while its login is being written (its
/// request dropped, as hyper drops it when the connection closes) still
/// has its result published: the page waiting for it is told at once, not
/// when the challenge would have expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_whose_authenticator_goes_away_while_it_is_written_is_still_published() {
    use tower::ServiceExt as _;

    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let key = register(&app, &service, "alice").await;
    let started = app.start(&service).await;
    let mut told = app.state.bus.subscribe(started.id.parse().expect("an id")).await.expect("subscribe");

    // While a registration holds the writer's turn, the login's write waits
    // in the writer's queue; the request is dropped there.
    let turn = app.state.db.begin_write().await.expect("the writer's turn");
    let login = LoginRequest::sign(&app.verify(&started.token), &name("alice"), &key);
    let body = serde_json::to_vec(&login).expect("serialise");
    let answering =
        tokio::spawn(app.router().oneshot(request(Method::POST, "/api/authenticator/login", None, Some(body))));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.state.db.waiting_writes() == 0 {
        assert!(std::time::Instant::now() < deadline, "the login never reached the writer");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    answering.abort();
    assert!(answering.await.expect_err("aborted").is_cancelled());
    drop(turn);

    tokio::time::timeout(std::time::Duration::from_secs(10), told.changed())
        .await
        .expect("the completed login was never published");
    assert_eq!(app.stored(&started.id).await.0, "completed");
}

#[tokio::test]
async fn deny_ends_the_challenge() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    let token = app.verify(&started.token);
    let response =
        app.post_json("/api/authenticator/deny", &DenyRequest::sign(&token, &AccountKey::generate(&mut OsRng))).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.json(), json!({"status": "denied"}));
    assert_eq!(app.stored(&started.id).await, ("denied".into(), "user_denied".into(), None));
    let status = app.get(&format!("/api/challenges/{}", started.id), Some(&started.cookie)).await.json();
    assert_eq!(status["message"], "The sign-in was refused in the authenticator.");
}

#[tokio::test]
async fn rejects_replayed_submission() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let started = app.start(&service).await;
        let token = app.verify(&started.token);
        let request = RegisterRequest::sign(&token, &name("alice"), &AccountKey::generate(&mut OsRng));
        assert_eq!(app.post_json("/api/authenticator/register", &request).await.status, StatusCode::OK);
        app.post_json("/api/authenticator/register", &request)
            .await
            .assert_error(StatusCode::CONFLICT, "challenge_used");
        // Another name on the same used token does not get in either.
        let other = RegisterRequest::sign(&token, &name("bob"), &AccountKey::generate(&mut OsRng));
        app.post_json("/api/authenticator/register", &other).await.assert_error(StatusCode::CONFLICT, "challenge_used");
        assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 1);
    })
    .await;
}

#[tokio::test]
async fn rejects_stale_code() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    app.clock.advance(31);
    let token = app.verify(&started.token);
    let request = RegisterRequest::sign(&token, &name("alice"), &AccountKey::generate(&mut OsRng));
    app.post_json("/api/authenticator/register", &request).await.assert_error(StatusCode::GONE, "stale_code");
    assert_eq!(app.stored(&started.id).await.0, "pending");
    assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 0);

    // The code the page shows now is accepted.
    let token = app.verify(&app.current_token(&started.id).await);
    let request = RegisterRequest::sign(&token, &name("alice"), &AccountKey::generate(&mut OsRng));
    assert_eq!(app.post_json("/api/authenticator/register", &request).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rejects_expired_challenge_with_token_expired() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    app.clock.advance(300);
    // The token carries the challenge's expiry, and the token's lifetime is
    // checked before the challenge is loaded (PROTOCOL.md §6.6).
    let token = app.verify(&app.current_token(&started.id).await);
    let request = LoginRequest::sign(&token, &name("alice"), &AccountKey::generate(&mut OsRng));
    app.post_json("/api/authenticator/login", &request).await.assert_error(StatusCode::GONE, "token_expired");
    assert_eq!(app.stored(&started.id).await.0, "pending");
    // Once the browser has looked, the challenge is stored as expired.
    let status = app.get(&format!("/api/challenges/{}", started.id), Some(&started.cookie)).await.json();
    assert_eq!(status["status"], "expired");
}

#[tokio::test]
async fn rejects_signature_for_other_service() {
    let app = TestApp::new().await;
    let first = app.create_service("First").await;
    let second = app.create_service("Second").await;
    let started = app.start(&first).await;
    let other = app.start(&second).await;
    let key = AccountKey::generate(&mut OsRng);
    let mut request = RegisterRequest::sign(&app.verify(&other.token), &name("alice"), &key);
    request.token = started.token.clone();
    app.post_json("/api/authenticator/register", &request)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "bad_signature");
    assert_eq!(app.stored(&started.id).await.0, "pending");
    assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 0);
}

#[tokio::test]
async fn rejects_signature_for_other_purpose() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    let key = AccountKey::generate(&mut OsRng);
    let login = LoginRequest::sign(&app.verify(&started.token), &name("alice"), &key);
    let request = json!({
        "token": started.token, "account": "alice", "public_key": key.public_key().to_base64(), "signature": login.signature,
    });
    app.post_json("/api/authenticator/register", &request)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "bad_signature");
    assert_eq!(app.stored(&started.id).await.0, "pending");
    assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 0);
}

#[tokio::test]
async fn rejects_tampered_token() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    let base_end = started.token.rfind('.').expect("fresh part");
    // A character inside the server signature, well away from the last one
    // (whose unused bits must stay zero).
    let at = base_end - 10;
    let mut bytes = started.token.clone().into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).expect("ASCII");
    let request = json!({"token": tampered, "account": "alice", "signature": random_b64(64)});
    app.post_json("/api/authenticator/login", &request)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_token_signature");
    assert_eq!(app.stored(&started.id).await.0, "pending");
}

#[tokio::test]
async fn rejects_forged_code() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    let base = &started.token[..started.token.rfind('.').expect("fresh part")];
    // Step 0 with a code nobody but the server could have computed.
    let mut fresh = [0u8; 14];
    fresh[4..].copy_from_slice(&[7; 10]);
    let forged = format!("{base}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fresh));
    let request = RegisterRequest::sign(&app.verify(&forged), &name("alice"), &AccountKey::generate(&mut OsRng));
    app.post_json("/api/authenticator/register", &request).await.assert_error(StatusCode::BAD_REQUEST, "bad_code");
    assert_eq!(app.stored(&started.id).await.0, "pending");
    assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 0);
}

#[tokio::test]
async fn rejects_unknown_account() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let started = app.start(&service).await;
        let request =
            LoginRequest::sign(&app.verify(&started.token), &name("nobody"), &AccountKey::generate(&mut OsRng));
        app.post_json("/api/authenticator/login", &request)
            .await
            .assert_error(StatusCode::NOT_FOUND, "unknown_account");
        assert_eq!(app.stored(&started.id).await.0, "pending");
    })
    .await;
}

#[tokio::test]
async fn rejects_login_with_another_accounts_key() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    register(&app, &service, "alice").await;
    let started = app.start(&service).await;
    let request = LoginRequest::sign(&app.verify(&started.token), &name("alice"), &AccountKey::generate(&mut OsRng));
    app.post_json("/api/authenticator/login", &request).await.assert_error(StatusCode::UNAUTHORIZED, "bad_signature");
    assert_eq!(app.stored(&started.id).await.0, "pending");
}

#[tokio::test]
async fn duplicate_account_keeps_the_challenge_pending() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        register(&app, &service, "alice").await;
        let started = app.start(&service).await;
        let token = app.verify(&started.token);
        let request = RegisterRequest::sign(&token, &name("alice"), &AccountKey::generate(&mut OsRng));
        app.post_json("/api/authenticator/register", &request)
            .await
            .assert_error(StatusCode::CONFLICT, "account_exists");
        assert_eq!(app.stored(&started.id).await, ("pending".into(), "outstanding".into(), None));
        assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM sign_in_event").await, 1);
        // The user picks another name with the same token.
        let request = RegisterRequest::sign(&token, &name("alice2"), &AccountKey::generate(&mut OsRng));
        assert_eq!(app.post_json("/api/authenticator/register", &request).await.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn rejects_bad_bodies_with_their_own_codes() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    let send = |body: Vec<u8>| request(Method::POST, "/api/authenticator/register", None, Some(body));

    app.send(send(b"{not json".to_vec())).await.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    app.send(send(br#"{"token": "x"}"#.to_vec())).await.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    let big = serde_json::to_vec(&json!({"token": "a".repeat(20_000)})).expect("json");
    app.send(send(big)).await.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");

    let mut plain = send(br#"{"token": "x"}"#.to_vec());
    plain.headers_mut().insert("content-type", "text/plain".parse().expect("header"));
    app.send(plain).await.assert_error(StatusCode::BAD_REQUEST, "unsupported_media_type");

    // A small-order public key (the identity point) is refused as weak.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let weak = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(weak);
    let request = json!({"token": started.token, "account": "alice", "public_key": weak, "signature": random_b64(64)});
    app.post_json("/api/authenticator/register", &request)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "weak_public_key");

    app.post_json("/api/authenticator/login", &json!({"token": "hello", "account": "a", "signature": "x"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "not_a_token");
    assert_eq!(app.stored(&started.id).await.0, "pending");
    assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 0);
}

#[tokio::test]
async fn rejects_token_of_another_server() {
    let app = TestApp::new().await;
    let other = TestApp::new().await;
    let service = other.create_service("Example").await;
    let started = other.start(&service).await;
    let request = json!({"token": started.token});
    app.post_json("/api/authenticator/context", &request)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "unknown_signing_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_complete_the_challenge_once() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let key = register(&app, &service, "alice").await;
        let started = app.start(&service).await;
        let request = LoginRequest::sign(&app.verify(&started.token), &name("alice"), &key);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let router = app.router();
            let body = serde_json::to_vec(&request).expect("json");
            tasks.push(tokio::spawn(async move {
                use http_body_util::BodyExt as _;
                use tower::ServiceExt as _;
                let response = router
                    .oneshot(crate::support::request(Method::POST, "/api/authenticator/login", None, Some(body)))
                    .await
                    .expect("response");
                let status = response.status();
                let body = response.into_body().collect().await.expect("body").to_bytes();
                (status, serde_json::from_slice::<Value>(&body).expect("json"))
            }));
        }
        let mut ok = 0;
        for task in tasks {
            let (status, body) = task.await.expect("task");
            match status {
                StatusCode::OK => ok += 1,
                StatusCode::CONFLICT => assert_eq!(body["error"], "challenge_used"),
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert_eq!(ok, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM sign_in_event WHERE kind = 'login'").await, 1);
    })
    .await;
}

#[tokio::test]
async fn submissions_are_rate_limited_with_a_retry_after() {
    let app = TestApp::builder(Backend::Sqlite).rate_limit(20).build().await;
    let request = json!({"token": "not a token"});
    for _ in 0..20 {
        app.post_json("/api/authenticator/context", &request)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "not_a_token");
    }
    let refused = app.post_json("/api/authenticator/context", &request).await;
    refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(refused.headers["retry-after"], "3");
}

#[tokio::test]
async fn closed_registration_is_refused_before_consuming() {
    let app = TestApp::new().await;
    // A built-in service (the admin page's) takes no new accounts from a
    // challenge anyone can start.
    let service = sesame_proto::ServiceId::random(&mut OsRng);
    sqlx::query("INSERT INTO service (id, name, builtin, created_at) VALUES ($1, 'Built in', TRUE, 0)")
        .bind(service.to_string())
        .execute(&app.sql)
        .await
        .expect("a built-in service");
    let started = app.start(&service).await;
    assert!(!app.held(&started.id).await.allow_register);
    let request = RegisterRequest::sign(&app.verify(&started.token), &name("alice"), &AccountKey::generate(&mut OsRng));
    app.post_json("/api/authenticator/register", &request)
        .await
        .assert_error(StatusCode::FORBIDDEN, "registration_closed");
    assert_eq!(app.stored(&started.id).await.0, "pending");
    assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 0);
}

/// The window between reading an account's keys and recording the login: a
/// key removed in it must not sign in. The ended challenge is written only
/// while the key is still active, in the same statement, whether the pending
/// challenge was held in memory (one instance) or was a row (several); the
/// refusal is `unknown_account`, and the challenge stays pending for
/// another answer.
#[tokio::test]
async fn a_login_whose_key_went_after_it_was_read_is_refused_and_the_challenge_stays_pending() {
    use sesame_server::{
        challenge::{self, pending::Pending, row::Final},
        http::extract::ClientInfo,
    };
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let signed_with = register(&app, &service, "alice").await.public_key().to_bytes();
        let key_id: String = sqlx::query_scalar("SELECT id FROM account_key WHERE account = 'alice'")
            .fetch_one(&app.sql)
            .await
            .expect("alice's key");
        let in_table = app.challenges.keeping_pending(Pending::Table);
        let key_state = |state: &'static str| {
            sqlx::query("UPDATE account_key SET state = $2 WHERE id = $1")
                .bind(key_id.clone())
                .bind(state)
                .execute(&app.sql)
        };
        let key_bytes = |public_key: [u8; 32]| {
            sqlx::query("UPDATE account_key SET public_key = $2 WHERE id = $1")
                .bind(key_id.clone())
                .bind(public_key.to_vec())
                .execute(&app.sql)
        };
        let outcome = Final::logged_in("alice".into(), key_id.clone(), signed_with);
        let state = &app.state;
        for challenges in [app.challenges.clone(), in_table] {
            let client = ClientInfo { ip: "127.0.0.1".parse().expect("ip"), user_agent: USER_AGENT.to_owned() };
            let issued =
                challenge::issue(state, &challenges, &service.to_string(), &client).await.expect("a challenge");
            let row = challenges.load(&issued.id).await.expect("held");
            let now = state.clock.now();

            // The key is read, then removed, then the login is recorded.
            key_state("pending").await.expect("take the key away");
            let mut tx = state.db.begin_write().await.expect("begin");
            let refused = challenges.consume(&mut tx.conn(), &row, now, &outcome).await;
            assert!(matches!(refused, Err(sesame_server::Error::UnknownAccount)), "{refused:?}");
            drop(tx);
            assert_eq!(challenges.load(&issued.id).await.expect("held").status.as_str(), "pending");
            key_state("active").await.expect("give the key back");

            // The key is read, then rekeyed (PROTOCOL.md §13), then the
            // login signed with the old key is recorded.
            key_bytes(AccountKey::generate(&mut OsRng).public_key().to_bytes()).await.expect("rekey");
            let mut tx = state.db.begin_write().await.expect("begin");
            let refused = challenges.consume(&mut tx.conn(), &row, now, &outcome).await;
            assert!(matches!(refused, Err(sesame_server::Error::UnknownAccount)), "{refused:?}");
            drop(tx);
            assert_eq!(challenges.load(&issued.id).await.expect("held").status.as_str(), "pending");
            key_bytes(signed_with).await.expect("the old key back");

            // With the key as it was, the same challenge takes the login, once.
            let mut tx = state.db.begin_write().await.expect("begin");
            let consumed = challenges.consume(&mut tx.conn(), &row, now, &outcome).await.expect("consumed");
            consumed.commit(tx).await.expect("commit");
            let row = challenges.load(&issued.id).await.expect("held");
            assert_eq!((row.status.as_str(), row.account.as_deref()), ("completed", Some("alice")));
            let mut tx = state.db.begin_write().await.expect("begin");
            let again = challenges.consume(&mut tx.conn(), &row, now, &outcome).await;
            assert!(matches!(again, Err(sesame_server::Error::ChallengeFinished(_))), "{again:?}");
        }
        let used: Option<i64> = sqlx::query_scalar("SELECT last_used_at FROM account_key WHERE id = $1")
            .bind(key_id)
            .fetch_one(&app.sql)
            .await
            .expect("the key");
        assert_eq!(used, Some(crate::support::START as i64), "the trigger stamps the key's use");
    })
    .await;
}

/// Alice with one key, on a fresh PostgreSQL database, for racing her
/// logins against other writers to her key. SQLite has one writer at a
/// time, so there is nothing to race there.
struct KeyRace {
    app: TestApp,
    service: ServiceId,
    key_id: String,
    /// Alice's public key, which her logins are signed with.
    public_key: [u8; 32],
    pool: sqlx::AnyPool,
}

impl KeyRace {
    async fn start() -> Option<Self> {
        let app = crate::support::postgres_for_a_race().await?;
        let service = app.create_service("Example").await;
        let public_key = register(&app, &service, "alice").await.public_key().to_bytes();
        let pool = app.sql.clone();
        let key_id = sqlx::query_scalar("SELECT id FROM account_key WHERE account = 'alice'")
            .fetch_one(&pool)
            .await
            .expect("alice's key");
        Some(Self { app, service, key_id, public_key, pool })
    }

    /// The two ways a login is written: its pending challenge held in
    /// memory (one instance), or as a row (several).
    fn states(&self) -> [sesame_server::challenge::Challenges; 2] {
        let in_table = self.app.challenges.keeping_pending(sesame_server::challenge::pending::Pending::Table);
        [self.app.challenges.clone(), in_table]
    }

    /// Issues a challenge and starts Alice's login to it, committed if it
    /// is taken.
    async fn spawn_login(
        &self,
        challenges: &sesame_server::challenge::Challenges,
    ) -> (sesame_proto::ChallengeId, tokio::task::JoinHandle<sesame_server::error::Result<()>>) {
        use sesame_server::{
            challenge::{self, row::Final},
            http::extract::ClientInfo,
        };
        let client = ClientInfo { ip: "127.0.0.1".parse().expect("ip"), user_agent: USER_AGENT.to_owned() };
        let issued = challenge::issue(&self.app.state, challenges, &self.service.to_string(), &client)
            .await
            .expect("a challenge");
        let row = challenges.load(&issued.id).await.expect("held");
        let (state, challenges, key_id, public_key) =
            (self.app.state.clone(), challenges.clone(), self.key_id.clone(), self.public_key);
        let login = tokio::spawn(async move {
            let now = state.clock.now();
            let mut tx = state.db.begin_write().await.expect("begin");
            let outcome = Final::logged_in("alice".into(), key_id, public_key);
            let consumed = challenges.consume(&mut tx.conn(), &row, now, &outcome).await?;
            consumed.commit(tx).await
        });
        (issued.id, login)
    }

    /// Waits until `count` connections to this database wait on a lock.
    async fn until_waiting_on_locks(&self, count: i64) {
        crate::support::until_waiting_on_locks(&self.pool, count).await;
    }

    async fn finish(self) {
        self.app.cleanup_handle().run().await;
    }
}

/// On PostgreSQL, a login's write and a change to its key can run at the
/// same time. A change that commits while the login's statement runs must
/// be seen: the login waits for it and is refused, rather than recorded
/// for a key that is no longer active, or that a rekey replaced. Both ways
/// a login is written are raced.
#[tokio::test]
async fn a_login_racing_a_change_to_its_key_on_postgres_waits_for_it_and_is_refused() {
    let Some(race) = KeyRace::start().await else { return };
    let rekeyed = AccountKey::generate(&mut OsRng).public_key().to_bytes().to_vec();
    // Each change, and how to undo it.
    let changes = [
        ("state", "'pending'".to_owned(), "'active'".to_owned()),
        ("public_key", format!("'\\x{}'", hex::encode(&rekeyed)), format!("'\\x{}'", hex::encode(race.public_key))),
    ];
    for state in race.states() {
        for (column, changed, original) in &changes {
            // The key changes in a transaction that has not committed yet.
            let set = |value: &str| format!("UPDATE account_key SET {column} = {value} WHERE id = '{}'", race.key_id);
            let mut change = race.pool.begin().await.expect("begin");
            sqlx::query(&set(changed)).execute(&mut *change).await.expect("change the key");
            let (id, login) = race.spawn_login(&state).await;
            // Committed only once the login waits on a lock for it.
            race.until_waiting_on_locks(1).await;
            change.commit().await.expect("commit the change");
            let refused = login.await.expect("the login's task");
            assert!(matches!(refused, Err(sesame_server::Error::UnknownAccount)), "{column}: {refused:?}");
            let row = state.load(&id).await.expect("held");
            assert_eq!(row.status.as_str(), "pending", "{column}");
            let used: Option<i64> = sqlx::query_scalar("SELECT last_used_at FROM account_key WHERE id = $1")
                .bind(&race.key_id)
                .fetch_one(&race.pool)
                .await
                .expect("the key");
            assert_eq!(used, None, "a refused login stamped the key's use ({column})");

            sqlx::query(&set(original)).execute(&race.pool).await.expect("undo the change");
        }
    }
    race.finish().await;
}

/// On PostgreSQL, two logins with the same key (two tabs signed at once)
/// both lock the key's row and both stamp its use. They must queue, not
/// deadlock: here another transaction holds a share of the key while both
/// logins start, so that both reach the key before either goes on.
#[tokio::test]
async fn two_logins_with_one_key_on_postgres_queue_for_it_rather_than_deadlock() {
    let Some(race) = KeyRace::start().await else { return };
    for state in race.states() {
        let mut holder = race.pool.begin().await.expect("begin");
        sqlx::query("SELECT 1 FROM account_key WHERE id = $1 FOR SHARE")
            .bind(&race.key_id)
            .execute(&mut *holder)
            .await
            .expect("share the key");
        let (_, first) = race.spawn_login(&state).await;
        let (_, second) = race.spawn_login(&state).await;
        race.until_waiting_on_locks(2).await;
        holder.commit().await.expect("let the key go");
        for login in [first, second] {
            let signed_in = login.await.expect("the login's task");
            assert!(signed_in.is_ok(), "{signed_in:?}");
        }
    }
    race.finish().await;
}

/// A request cut off while its answer committed could leave the challenge's
/// row ended while memory still held it as pending. Any later answer must
/// then get `challenge_used`, not a server error, and the page must learn
/// the stored state.
#[tokio::test]
async fn an_answer_to_a_challenge_whose_row_already_ended_gets_challenge_used_and_memory_learns_it() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let key = register(&app, &service, "alice").await;
        let started = app.start(&service).await;
        let held = app.held(&started.id).await;
        sqlx::query(
            "INSERT INTO challenge (id, service_id, base_token, code_secret, binding_hash, ip, user_agent, \
             created_at, expires_at, status, hint, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'denied', 'user_denied', $8)",
        )
        .bind(started.id.clone())
        .bind(service.to_string())
        .bind(held.base_token)
        .bind(held.code_secret.as_bytes().to_vec())
        .bind(held.binding_hash)
        .bind(held.ip)
        .bind(held.user_agent)
        .bind(held.created_at)
        .bind(held.expires_at)
        .execute(&app.sql)
        .await
        .expect("the row a cut-off request committed");
        assert_eq!(app.stored(&started.id).await.0, "pending", "memory did not learn it");

        let token = app.verify(&started.token);
        app.post_json("/api/authenticator/login", &LoginRequest::sign(&token, &name("alice"), &key))
            .await
            .assert_error(StatusCode::CONFLICT, "challenge_used");
        assert_eq!(app.stored(&started.id).await.0, "denied", "memory took the stored state");
        let status = app.get(&format!("/api/challenges/{}", started.id), Some(&started.cookie)).await.json();
        assert_eq!(status["status"], "denied");
    })
    .await;
}

/// On PostgreSQL, deleting an account while one of its logins is being
/// written: the login holds its key and then updates the account (its
/// trigger), while a deletion's cascade takes the account and then the
/// keys. The deletion must wait for the login rather than deadlock with it
/// (PostgreSQL would end one of the two with an error).
#[tokio::test]
async fn deleting_an_account_while_it_logs_in_on_postgres_waits_for_the_login() {
    let Some(race) = KeyRace::start().await else { return };
    // A login, in flight: its key locked, its trigger's update still to come.
    let mut login = race.pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM account_key WHERE id = $1 FOR NO KEY UPDATE")
        .bind(&race.key_id)
        .execute(&mut *login)
        .await
        .expect("the login's lock on its key");
    let uri = format!("/admin/api/services/{}/accounts/alice", race.service);
    let mut delete = request(Method::DELETE, &uri, None, None);
    delete
        .headers_mut()
        .insert(axum::http::header::AUTHORIZATION, "Bearer test-admin-token-0123456789".parse().expect("header value"));
    let (deleted, ()) = tokio::join!(race.app.send(delete), async {
        race.until_waiting_on_locks(1).await;
        sqlx::query("UPDATE account SET last_login_at = 1 WHERE name = 'alice'")
            .execute(&mut *login)
            .await
            .expect("the login's trigger updates the account, without a deadlock");
        login.commit().await.expect("the login commits");
    });
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    assert_eq!(race.app.count("SELECT COUNT(*) FROM account").await, 0);
    race.finish().await;
}
