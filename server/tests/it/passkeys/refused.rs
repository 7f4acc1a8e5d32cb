//! Bad passkey answers: each is refused with the JSON error shape, and
//! none writes a session, moves a counter or leaves a ceremony to reuse.

use axum::http::{Method, StatusCode};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use serde_json::json;

use super::{finish, register, service, sign_in, start, SoftPasskey};
use crate::support::{each_backend, request, TestApp};

/// What must stay as it was after a refusal: sessions, the counter.
async fn unchanged(app: &TestApp, sessions: i64, count: i64) {
    assert_eq!(app.count("SELECT COUNT(*) FROM session").await, sessions);
    assert_eq!(app.count("SELECT sign_count FROM passkey").await, count);
}

#[tokio::test]
async fn answers_made_for_something_else_are_refused() {
    each_backend(|app| async move {
        let service = service(&app, "both").await;
        let mut passkey = SoftPasskey::new();
        register(&app, &service, "alice", &mut passkey).await;
        let refused = |response: crate::support::TestResponse| {
            response.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
        };

        // For another challenge: signed over the options of ceremony a,
        // sent to ceremony b.
        let a = start(&app, &service, "sign-in", None, &json!({})).await;
        let b = start(&app, &service, "sign-in", None, &json!({})).await;
        refused(finish(&app, &service, "sign-in", &b, &passkey.get(&a.options)).await);
        unchanged(&app, 1, 0).await;

        // Another origin, another relying party id.
        passkey.origin = "http://evil.test".to_owned();
        refused(super::sign_in(&app, &service, &mut passkey).await);
        passkey.origin = crate::support::ORIGIN.to_owned();
        passkey.rp_id = "evil.test".to_owned();
        refused(super::sign_in(&app, &service, &mut passkey).await);
        passkey.rp_id = "sesame.test".to_owned();
        unchanged(&app, 1, 0).await;

        // A replay: the same answer again, to its own ceremony (used up)
        // and to a new one (another challenge).
        let ceremony = start(&app, &service, "sign-in", None, &json!({})).await;
        let answer = passkey.get(&ceremony.options);
        assert_eq!(finish(&app, &service, "sign-in", &ceremony, &answer).await.status, StatusCode::OK);
        let count = passkey.counter as i64;
        finish(&app, &service, "sign-in", &ceremony, &answer)
            .await
            .assert_error(StatusCode::NOT_FOUND, "unknown_ceremony");
        let fresh = start(&app, &service, "sign-in", None, &json!({})).await;
        refused(finish(&app, &service, "sign-in", &fresh, &answer).await);
        unchanged(&app, 2, count).await;

        // A counter that goes backwards (a copied authenticator), and one
        // that stands still.
        passkey.counter = 0;
        refused(super::sign_in(&app, &service, &mut passkey).await);
        passkey.counter = count as u32 - 1;
        refused(super::sign_in(&app, &service, &mut passkey).await);
        unchanged(&app, 2, count).await;
        // Each is audited: the passkey may have been copied.
        let audited = "SELECT COUNT(*) FROM audit_event WHERE action = 'passkey_counter_refused' AND target = 'alice'";
        assert_eq!(app.count(audited).await, 2);
        passkey.counter = count as u32 + 5;
        assert_eq!(sign_in(&app, &service, &mut passkey).await.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn another_account_or_service_and_broken_data_are_refused() {
    each_backend(|app| async move {
        let service = service(&app, "both").await;
        let mut alice = SoftPasskey::new();
        register(&app, &service, "alice", &mut alice).await;
        let mut bob = SoftPasskey::new();
        register(&app, &service, "bob", &mut bob).await;

        // Alice's credential id, claiming Bob's user handle.
        alice.user_handle = bob.user_handle.clone();
        let response = sign_in(&app, &service, &mut alice).await;
        response.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
        assert!(response.json()["message"].as_str().unwrap_or_default().contains("another account"));
        // Bob's credential id with Alice's key: the signature fails.
        let mut forged = SoftPasskey::new();
        forged.credential_id = bob.credential_id.clone();
        forged.user_handle = bob.user_handle.clone();
        sign_in(&app, &service, &mut forged).await.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
        // A passkey of another service.
        let other = super::service(&app, "both").await;
        sign_in(&app, &other, &mut bob).await.assert_error(StatusCode::UNAUTHORIZED, "unknown_passkey");
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 2);

        // Malformed authenticator data, malformed client data.
        let ceremony = start(&app, &service, "sign-in", None, &json!({})).await;
        let mut answer = bob.get(&ceremony.options);
        answer["response"]["authenticatorData"] = json!(B64.encode([0xff, 0x00, 0x13]));
        finish(&app, &service, "sign-in", &ceremony, &answer)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
        let ceremony = start(&app, &service, "sign-in", None, &json!({})).await;
        let answer = bob.assertion(b"{\"type\": 12", bob.authenticator_data());
        finish(&app, &service, "sign-in", &ceremony, &answer)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
        // Malformed CBOR in a registration's attestation object.
        let ceremony = start(&app, &service, "register", None, &json!({"account": "carol"})).await;
        let mut created = SoftPasskey::new().create(&ceremony.options);
        created["response"]["attestationObject"] = json!(B64.encode([0xa3, 0x63, 0x66]));
        finish(&app, &service, "register", &ceremony, &created)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
        // Not a credential at all.
        let ceremony = start(&app, &service, "sign-in", None, &json!({})).await;
        finish(&app, &service, "sign-in", &ceremony, &json!({"id": 5}))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_credential");
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 2);
        assert_eq!(app.count("SELECT COUNT(*) FROM account WHERE name = 'carol'").await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_ceremony_belongs_to_its_browser_and_expires() {
    each_backend(|app| async move {
        let service = service(&app, "both").await;
        let mut passkey = SoftPasskey::new();
        register(&app, &service, "alice", &mut passkey).await;
        let ceremony = start(&app, &service, "sign-in", None, &json!({})).await;
        let answer = passkey.get(&ceremony.options);
        let uri = format!("/api/services/{service}/passkeys/sign-in/finish");
        let body = serde_json::to_vec(&json!({"ceremony": ceremony.id, "credential": answer})).expect("json");
        // No binding cookie; another browser's.
        app.send(request(Method::POST, &uri, None, Some(body.clone())))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "binding_required");
        let other = format!("sesame_passkey_{}=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ceremony.id);
        app.send(request(Method::POST, &uri, Some(&other), Some(body.clone())))
            .await
            .assert_error(StatusCode::NOT_FOUND, "unknown_ceremony");
        // Started for another purpose: a registration's ceremony answered
        // as a sign-in.
        let registration = start(&app, &service, "register", None, &json!({"account": "bob"})).await;
        finish(&app, &service, "sign-in", &registration, &passkey.get(&registration.options))
            .await
            .assert_error(StatusCode::NOT_FOUND, "unknown_ceremony");
        // Expired.
        app.clock.advance(5 * 60);
        app.send(request(Method::POST, &uri, Some(&ceremony.cookie), Some(body)))
            .await
            .assert_error(StatusCode::NOT_FOUND, "unknown_ceremony");
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 1);
        // The sweep removes it.
        let now = sesame_proto::UnixTime::from_secs(crate::support::START + 5 * 60);
        let swept = sesame_server::ops::sweep::sweep(&app.state.db, now, &Default::default()).await.expect("sweep");
        assert_eq!(swept.passkey_ceremonies, 2);
        assert_eq!(app.count("SELECT COUNT(*) FROM passkey_ceremony").await, 0);
    })
    .await;
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    each_backend(|app| async move {
        let service = service(&app, "both").await;
        let uri = format!("/api/services/{service}/passkeys/sign-in/finish");
        let big =
            serde_json::to_vec(&json!({"ceremony": "x", "credential": {"id": "A".repeat(64 * 1024)}})).expect("json");
        app.send(request(Method::POST, &uri, None, Some(big)))
            .await
            .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
        app.send(request(Method::POST, &uri, None, Some(b"{\"ceremony\":".to_vec())))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
        let register = format!("/api/services/{service}/passkeys/register/start");
        app.send(request(Method::POST, &register, None, Some(br#"{"account": " spaced "}"#.to_vec())))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_account_name");
        assert_eq!(app.count("SELECT COUNT(*) FROM passkey_ceremony").await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_name_taken_or_like_one_is_refused_at_the_start_and_again_at_the_finish() {
    each_backend(|app| async move {
        let service = service(&app, "both").await;
        register(&app, &service, "alice", &mut SoftPasskey::new()).await;
        let uri = format!("/api/services/{service}/passkeys/register/start");
        for (name, said) in [
            ("alice", "an account named \"alice\" already exists at this service"),
            ("Alice", "the name \"Alice\" is too close to the existing account \"alice\" at this service"),
            ("\u{430}lice", "the name \"\u{430}lice\" is too close to the existing account \"alice\" at this service"),
        ] {
            let body = serde_json::to_vec(&json!({"account": name})).expect("json");
            let response = app.send(request(Method::POST, &uri, None, Some(body))).await;
            response.assert_error(StatusCode::CONFLICT, "account_exists");
            assert_eq!(response.json()["message"], said);
        }
        // The start only reads: it wrote no ceremony, and no account.
        assert_eq!(app.count("SELECT COUNT(*) FROM passkey_ceremony").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 1);

        // Two registrations of look-alike names, both started while both
        // were free: the first to finish takes the name, and the insert
        // refuses the other.
        let (mut first, mut second) = (SoftPasskey::new(), SoftPasskey::new());
        let carol = start(&app, &service, "register", None, &json!({"account": "carol"})).await;
        let look_alike = start(&app, &service, "register", None, &json!({"account": "Carol"})).await;
        let response = finish(&app, &service, "register", &look_alike, &second.create(&look_alike.options)).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
        let response = finish(&app, &service, "register", &carol, &first.create(&carol.options)).await;
        response.assert_error(StatusCode::CONFLICT, "account_exists");
        assert_eq!(
            response.json()["message"],
            "the name \"carol\" is too close to the existing account \"Carol\" at this service"
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 2);
        assert_eq!(app.count("SELECT COUNT(*) FROM passkey").await, 2);
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 2);
    })
    .await;
}

#[tokio::test]
async fn an_addition_finished_after_another_account_signed_in_is_refused() {
    each_backend(|app| async move {
        let service = service(&app, "both").await;
        let alice = register(&app, &service, "alice", &mut SoftPasskey::new()).await;
        let bob = register(&app, &service, "bob", &mut SoftPasskey::new()).await;
        let mut added = start(&app, &service, "add", Some(&alice), &json!({})).await;
        let credential = SoftPasskey::new().create(&added.options);
        // The same browser, signed in as Bob by now.
        added.cookie = added.cookie.replace(&alice, &bob);
        finish(&app, &service, "add", &added, &credential).await.assert_error(StatusCode::FORBIDDEN, "wrong_account");
        // Signed out: no session to add to.
        added.cookie = added.cookie.replace(&format!("; {bob}"), "");
        finish(&app, &service, "add", &added, &credential)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "sign_in_required");
        assert_eq!(app.count("SELECT COUNT(*) FROM passkey").await, 2);
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_event WHERE action = 'key_enrolled'").await, 0);
    })
    .await;
}
