//! The browser and relying-party API: issuing challenges, the binding
//! cookie, status, cancel, sessions, and the SSE stream over a real socket.

use axum::http::StatusCode;
use rand::rngs::OsRng;
use serde_json::json;
use sesame_proto::{AccountKey, AccountName, LoginRequest, RegisterRequest};

use crate::support::{each_backend, Backend, SseReader, Started, TestApp, START};

fn alice() -> AccountName {
    AccountName::parse("alice").expect("valid name")
}

/// Answers `started` as a new authenticator registering alice would.
async fn register_alice(app: &TestApp, started: &Started) {
    let token = app.verify(&started.token);
    let request = RegisterRequest::sign(&token, &alice(), &AccountKey::generate(&mut OsRng));
    let answer = app.post_json("/api/authenticator/register", &request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test]
async fn issues_a_challenge_and_binds_it_to_the_browser() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let response = app.post(&format!("/api/services/{service}/challenges"), None).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
        let body = response.json();
        let cid = body["challenge_id"].as_str().expect("id");
        assert_eq!(body["status_url"], format!("http://sesame.test/api/challenges/{cid}"));
        assert_eq!(body["events_url"], format!("http://sesame.test/api/challenges/{cid}/events"));
        assert_eq!(body["expires_at"], START + 300);
        let token = app.verify(body["token"].as_str().expect("token"));
        assert_eq!(token.claims().challenge_id.to_string(), cid);
        assert_eq!(token.claims().service_id, service);

        let name = format!("sesame_browser_{cid}");
        let line = response.set_cookie(&name).expect("binding cookie");
        assert!(line.contains("HttpOnly") && line.contains("SameSite=Strict") && line.contains("Path=/"), "{line}");
        // It outlives the challenge (300 s) by the grace to read its result.
        assert!(line.contains("Max-Age=600"), "{line}");
        assert!(!line.contains("Secure"), "plain-HTTP origin: {line}");
        let binding = response.cookie(&name).expect("value");
        assert_eq!(binding.len(), 43);
        // Only the digest is stored, never the cookie itself.
        assert_eq!(app.held(cid).await.binding_hash, sesame_server::http::cookie::digest(&binding).to_vec());
    })
    .await;
}

#[tokio::test]
async fn never_adopts_a_binding_secret_the_browser_brings() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        // An attacker planted values under every name they could guess,
        // hoping the victim's next challenge would be bound to one of them.
        let planted = sesame_server::http::cookie::new_secret();
        let first = app.start(&service).await;
        let jar = format!("sesame_browser={planted}; sesame_browser_{}={planted}; {}", first.id, first.cookie);
        let second = app.start_with(&service, Some(&jar)).await;
        assert!(!second.cookie.contains(&planted), "{}", second.cookie);
        assert_ne!(second.cookie.split_once('=').map(|c| c.1), first.cookie.split_once('=').map(|c| c.1));
        assert_ne!(app.held(&second.id).await.binding_hash, sesame_server::http::cookie::digest(&planted).to_vec());

        // Two tabs of one browser each follow their own challenge, each with
        // its own cookie; neither cookie opens the other challenge.
        let both = format!("{}; {}", first.cookie, second.cookie);
        for started in [&first, &second] {
            let status = app.get(&format!("/api/challenges/{}", started.id), Some(&both)).await;
            assert_eq!(status.status, StatusCode::OK, "{}", status.text());
        }
        app.get(&format!("/api/challenges/{}", first.id), Some(&second.cookie_for(&first.id)))
            .await
            .assert_error(StatusCode::FORBIDDEN, "wrong_browser");
    })
    .await;
}

#[tokio::test]
async fn refuses_unknown_services() {
    let app = TestApp::new().await;
    let unknown = sesame_proto::ServiceId::random(&mut OsRng);
    app.post(&format!("/api/services/{unknown}/challenges"), None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_service");
    app.post("/api/services/not-an-id/challenges", None).await.assert_error(StatusCode::NOT_FOUND, "unknown_service");
    assert!(app.every_challenge().await.is_empty());
}

#[tokio::test]
async fn status_and_events_need_the_binding_cookie() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    let other = app.start(&service).await;
    for path in [format!("/api/challenges/{}", started.id), format!("/api/challenges/{}/events", started.id)] {
        app.get(&path, None).await.assert_error(StatusCode::UNAUTHORIZED, "binding_required");
        app.get(&path, Some(&other.cookie)).await.assert_error(StatusCode::UNAUTHORIZED, "binding_required");
        app.get(&path, Some(&other.cookie_for(&started.id))).await.assert_error(StatusCode::FORBIDDEN, "wrong_browser");
    }
    // A challenge that does not exist has no binding cookie either; with a
    // forged one, it is unknown.
    let nowhere = "0".repeat(32);
    app.get(&format!("/api/challenges/{nowhere}"), Some(&started.cookie))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "binding_required");
    app.get(&format!("/api/challenges/{nowhere}"), Some(&started.cookie_for(&nowhere)))
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_challenge");
    let status = app.get(&format!("/api/challenges/{}", started.id), Some(&started.cookie)).await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(
        status.json(),
        json!({"status": "pending", "hint": "outstanding", "account": null, "purpose": null,
               "message": "Scan the QR code or paste the token into your Sesame authenticator."})
    );
}

#[tokio::test]
async fn status_expires_the_challenge_at_its_time() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let started = app.start(&service).await;
        app.clock.advance(299);
        assert_eq!(
            app.get(&format!("/api/challenges/{}", started.id), Some(&started.cookie)).await.json()["status"],
            "pending"
        );
        app.clock.advance(1);
        let status = app.get(&format!("/api/challenges/{}", started.id), Some(&started.cookie)).await.json();
        assert_eq!(status["status"], "expired");
        assert_eq!(status["hint"], "expired");
        assert_eq!(status["message"], "The request timed out. Start again.");
        assert_eq!(app.count("SELECT COUNT(*) FROM sign_in_event WHERE kind = 'expired'").await, 1);
        // Reading again changes nothing more.
        app.get(&format!("/api/challenges/{}", started.id), Some(&started.cookie)).await;
        assert_eq!(app.count("SELECT COUNT(*) FROM sign_in_event").await, 1);
    })
    .await;
}

#[tokio::test]
async fn browser_cancels_once() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    let other = app.start(&service).await;
    let cancel = format!("/api/challenges/{}/cancel", started.id);
    app.post(&cancel, Some(&other.cookie_for(&started.id))).await.assert_error(StatusCode::FORBIDDEN, "wrong_browser");
    let response = app.post(&cancel, Some(&started.cookie)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json()["status"], "cancelled");
    assert_eq!(response.json()["message"], "You cancelled the sign-in.");
    app.post(&cancel, Some(&started.cookie)).await.assert_error(StatusCode::CONFLICT, "challenge_used");
    // The authenticator is told the sign-in is over.
    let token = app.verify(&started.token);
    let request = RegisterRequest::sign(&token, &alice(), &AccountKey::generate(&mut OsRng));
    app.post_json("/api/authenticator/register", &request).await.assert_error(StatusCode::CONFLICT, "challenge_used");
}

#[tokio::test]
async fn session_goes_only_to_the_browser_that_started() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let started = app.start(&service).await;
        let session = format!("/api/challenges/{}/session", started.id);
        app.post(&session, Some(&started.cookie)).await.assert_error(StatusCode::CONFLICT, "not_completed");

        register_alice(&app, &started).await;

        // Whoever has only the token (and maybe their own cookie) gets nothing.
        let thief = app.start(&service).await;
        app.post(&session, None).await.assert_error(StatusCode::UNAUTHORIZED, "binding_required");
        app.post(&session, Some(&thief.cookie)).await.assert_error(StatusCode::UNAUTHORIZED, "binding_required");
        app.post(&session, Some(&thief.cookie_for(&started.id)))
            .await
            .assert_error(StatusCode::FORBIDDEN, "wrong_browser");
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 0);

        let response = app.post(&session, Some(&started.cookie)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(
            response.json(),
            json!({"account": "alice", "service_id": service.to_string(), "service_name": "Example"})
        );
        let line = response.set_cookie(&format!("sesame_session_{service}")).expect("session cookie");
        assert!(line.contains("HttpOnly") && line.contains("SameSite=Lax"), "{line}");
        assert!(line.contains("Path=/;") && line.contains("Max-Age=86400"), "{line}");
        // The spent binding cookie is dropped with the redemption.
        let cleared = response.set_cookie(&format!("sesame_browser_{}", started.id)).expect("binding cleared");
        assert!(cleared.contains("Max-Age=0"), "{cleared}");

        app.post(&session, Some(&started.cookie)).await.assert_error(StatusCode::CONFLICT, "already_redeemed");
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 1);
    })
    .await;
}

/// Redemptions of one completed challenge at once, from its own browser:
/// exactly one gets a session. (On SQLite they meet in the writer's group
/// commits; on PostgreSQL on separate connections.)
#[tokio::test]
async fn racing_redemptions_give_exactly_one_session() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let started = app.start(&service).await;
        register_alice(&app, &started).await;

        let session = format!("/api/challenges/{}/session", started.id);
        let racing = (0..8).map(|_| app.post(&session, Some(&started.cookie)));
        let answers = futures_util::future::join_all(racing).await;
        let won = answers.iter().filter(|a| a.status == StatusCode::OK).count();
        assert_eq!(won, 1, "{:?}", answers.iter().map(|a| a.text()).collect::<Vec<_>>());
        for lost in answers.iter().filter(|a| a.status != StatusCode::OK) {
            lost.assert_error(StatusCode::CONFLICT, "already_redeemed");
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 1);
    })
    .await;
}

/// A key removed between the sign-in and the redemption signs nobody in:
/// no session is written, and the challenge is not spent.
#[tokio::test]
async fn a_key_removed_before_the_redemption_gets_no_session() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let started = app.start(&service).await;
        register_alice(&app, &started).await;
        sqlx::query("DELETE FROM account_key").execute(&app.sql).await.expect("remove the key");

        let session = format!("/api/challenges/{}/session", started.id);
        app.post(&session, Some(&started.cookie)).await.assert_error(StatusCode::NOT_FOUND, "unknown_account");
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM challenge WHERE redeemed_at IS NOT NULL").await, 0);
    })
    .await;
}

/// One instance holds a bounded number of challenges in memory. Past it a
/// new challenge is refused with `503 unavailable`, as JSON, and nothing is
/// held for it; the challenges already held still sign in.
#[tokio::test]
async fn a_full_instance_refuses_new_challenges_and_the_ones_it_holds_still_work() {
    let app = TestApp::builder(Backend::Sqlite)
        .pending(sesame_server::challenge::pending::Pending::memory_holding(300, 2))
        .build()
        .await;
    let service = app.create_service("Example").await;
    let first = app.start(&service).await;
    app.start(&service).await;

    let refused = app.post(&format!("/api/services/{service}/challenges"), None).await;
    refused.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let cookies = refused.headers.get_all(axum::http::header::SET_COOKIE);
    assert!(cookies.iter().all(|c| !c.as_bytes().starts_with(b"sesame_browser_")), "a binding cookie for nothing");
    assert_eq!(app.every_challenge().await.len(), 2);

    register_alice(&app, &first).await;
    let session = format!("/api/challenges/{}/session", first.id);
    assert_eq!(app.post(&session, Some(&first.cookie)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn issuing_allows_the_whole_minute_at_once_then_says_when_to_retry() {
    let app = TestApp::builder(Backend::Sqlite).rate_limit(20).build().await;
    let service = app.create_service("Example").await;
    for _ in 0..20 {
        app.start(&service).await;
    }
    let refused = app.post(&format!("/api/services/{service}/challenges"), None).await;
    refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // 20 a minute: the next request is allowed in 3 s.
    assert_eq!(refused.headers["retry-after"], "3");
    assert_eq!(app.every_challenge().await.len(), 20);
}

#[tokio::test]
async fn events_deliver_the_live_result() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let key = AccountKey::generate(&mut OsRng);
    let started = app.start(&service).await;
    let token = app.verify(&started.token);
    let request = RegisterRequest::sign(&token, &alice(), &key);
    assert_eq!(app.post_json("/api/authenticator/register", &request).await.status, StatusCode::OK);

    let base = app.serve().await;
    let started = app.start(&service).await;
    let url = format!("{base}/api/challenges/{}/events", started.id);
    let mut events = SseReader::open(&url, &started.cookie, None).await;
    let first = events.next().await.expect("status");
    assert_eq!((first.event.as_str(), first.data["status"].as_str()), ("status", Some("pending")));
    let second = events.next().await.expect("token");
    assert_eq!(second.event, "token");
    assert_eq!(second.data["token"], started.token.as_str());
    assert_eq!(second.id, "token-0");

    // The authenticator opens the request, then logs in.
    let context = app.post_json("/api/authenticator/context", &json!({"token": started.token})).await;
    assert_eq!(context.status, StatusCode::OK);
    let opened = events.next().await.expect("opened");
    assert_eq!((opened.data["status"].as_str(), opened.data["hint"].as_str()), (Some("pending"), Some("opened")));
    let token = app.verify(&started.token);
    let request = LoginRequest::sign(&token, &alice(), &key);
    assert_eq!(app.post_json("/api/authenticator/login", &request).await.status, StatusCode::OK);
    let done = events.next().await.expect("completed");
    assert_eq!(done.event, "status");
    assert_eq!(done.data["status"], "completed");
    assert_eq!(done.data["account"], "alice");
    assert_eq!(done.data["message"], "Signed in as alice.");
    assert!(events.next().await.is_none(), "the stream ends after the final state");
}

#[tokio::test]
async fn events_after_the_result_and_on_reconnect_give_the_final_state() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    register_alice(&app, &started).await;

    let base = app.serve().await;
    let url = format!("{base}/api/challenges/{}/events", started.id);
    for last_event_id in [None, Some("token-0"), Some("status-pending-outstanding")] {
        let mut events = SseReader::open(&url, &started.cookie, last_event_id).await;
        let event = events.next().await.expect("final state");
        assert_eq!(event.event, "status");
        assert_eq!(event.data["status"], "completed");
        assert_eq!(event.data["account"], "alice");
        assert_eq!(event.id, "status-completed-register");
        assert!(events.next().await.is_none());
    }
}

#[tokio::test]
async fn events_report_expiry() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    let base = app.serve().await;
    let mut events =
        SseReader::open(&format!("{base}/api/challenges/{}/events", started.id), &started.cookie, None).await;
    assert_eq!(events.next().await.expect("status").event, "status");
    assert_eq!(events.next().await.expect("token").event, "token");
    // The stream sleeps until the expiry instant; the manual clock is
    // already past it when the stream wakes.
    app.clock.advance(300);
    let mut last = events.next().await.expect("event");
    while last.event == "token" {
        last = events.next().await.expect("event");
    }
    assert_eq!(last.data["status"], "expired");
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn events_rotate_the_token() {
    let app = TestApp::builder(Backend::Sqlite).rotation(1).system_clock().build().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    let base = app.serve().await;
    let mut events =
        SseReader::open(&format!("{base}/api/challenges/{}/events", started.id), &started.cookie, None).await;
    assert_eq!(events.next().await.expect("status").event, "status");
    let first = events.next().await.expect("token");
    assert_eq!(first.event, "token");
    let next = events.next().await.expect("rotated token");
    assert_eq!(next.event, "token");
    assert!(next.data["step"].as_u64() > first.data["step"].as_u64(), "{:?} then {:?}", first.data, next.data);
    let text = next.data["token"].as_str().expect("token text");
    assert_ne!(text, first.data["token"].as_str().expect("token text"));
    // The rotated token is one the authenticator API accepts.
    let token = app.verify(text);
    let request = RegisterRequest::sign(&token, &alice(), &AccountKey::generate(&mut OsRng));
    let response = app.post_json("/api/authenticator/register", &request).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
}

async fn start_forwarded(app: &TestApp, service: &sesame_proto::ServiceId) -> String {
    let request = axum::http::Request::post(format!("/api/services/{service}/challenges"))
        .header("x-forwarded-for", "198.51.100.7")
        .body(axum::body::Body::empty())
        .expect("request");
    let response = app.send(request).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let cid = response.json()["challenge_id"].as_str().expect("id").to_owned();
    app.held(&cid).await.ip
}

#[tokio::test]
async fn records_the_forwarded_client_address_only_behind_a_trusted_proxy() {
    let mut app = TestApp::new().await;
    let service = app.create_service("Example").await;

    // A direct client cannot claim another address.
    assert_eq!(start_forwarded(&app, &service).await, "0.0.0.0");

    // Behind a trusted proxy (requests in these tests come from 0.0.0.0), the
    // header names the client.
    let mut settings = (*app.state.settings).clone();
    settings.trusted_proxies = vec![std::net::Ipv4Addr::UNSPECIFIED.into()].into();
    app.state = app.state.with(|s| s.settings = std::sync::Arc::new(settings));
    assert_eq!(start_forwarded(&app, &service).await, "198.51.100.7");
}
