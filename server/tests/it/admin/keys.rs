//! An account's keys through the admin API: listing them, and removing one,
//! which signs out the sessions it opened.

use sesame_proto::{AccountKey, AccountName, LoginRequest, RegisterRequest};

use super::*;

#[tokio::test]
async fn api_lists_an_accounts_keys_and_removing_one_ends_its_sessions() {
    support::each_backend(|app| async move {
        let h = Harness::serving(app.app(), app.sql.clone(), Box::new(()));
        let service = app.create_service("Example").await;
        let key = AccountKey::generate(&mut OsRng);
        let alice = AccountName::parse("alice").expect("name");

        // Register, then log in, each redeemed into a browser session.
        let started = app.start(&service).await;
        let register = RegisterRequest::sign(&app.verify(&started.token), &alice, &key);
        assert_eq!(app.post_json("/api/authenticator/register", &register).await.status, StatusCode::OK);
        app.clock.advance(5);
        let signed_in = app.start(&service).await;
        let login = LoginRequest::sign(&app.verify(&signed_in.token), &alice, &key);
        assert_eq!(app.post_json("/api/authenticator/login", &login).await.status, StatusCode::OK);
        for started in [&started, &signed_in] {
            let session = app.post(&format!("/api/challenges/{}/session", started.id), Some(&started.cookie)).await;
            assert_eq!(session.status, StatusCode::OK, "{}", session.text());
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 2);

        let uri = format!("/admin/api/services/{service}/accounts/alice/keys");
        let listed = h.api(Method::GET, &uri, None).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
        let keys = listed.json();
        let [only] = keys.as_array().expect("a list").as_slice() else { panic!("one key: {keys}") };
        assert_eq!(only["state"], "active");
        assert_eq!(only["fingerprint"], key.public_key().key_id().to_string());
        assert_eq!(only["created_at"], "2026-01-01T00:00:00Z");
        assert_eq!(only["last_used_at"], "2026-01-01T00:00:05Z");
        assert_eq!(only["device_user_agent"], support::USER_AGENT);
        let key_id = only["id"].as_str().expect("id").to_owned();

        // Unknown names and ids are told apart.
        let missing = format!("/admin/api/services/{service}/accounts/bob/keys");
        assert_eq!(h.api(Method::GET, &missing, None).await.error_code(), "unknown_account");
        let wrong = h.api(Method::DELETE, &format!("{uri}/{}", "0".repeat(32)), None).await;
        assert_eq!((wrong.status, wrong.error_code().as_str()), (StatusCode::NOT_FOUND, "unknown_key"));
        let unauthorised = h.api_with(Method::DELETE, &format!("{uri}/{key_id}"), None, None).await;
        assert_eq!(unauthorised.status, StatusCode::UNAUTHORIZED);

        let removed = h.api(Method::DELETE, &format!("{uri}/{key_id}"), None).await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 0, "its sessions end with the key");
        let audit = h.api(Method::GET, "/admin/api/audit?limit=1", None).await.json();
        assert_eq!((audit[0]["action"].as_str(), audit[0]["target"].as_str()), (Some("key_removed"), Some("alice")));
        // The account stays, keyless, and the removed key signs nobody in.
        assert_eq!(h.api(Method::GET, &uri, None).await.json(), json!([]));
        let again = app.start(&service).await;
        let login = LoginRequest::sign(&app.verify(&again.token), &alice, &key);
        app.post_json("/api/authenticator/login", &login).await.assert_error(StatusCode::NOT_FOUND, "unknown_account");
    })
    .await;
}

/// PostgreSQL's text cannot hold a NUL byte: looking such a name or key id
/// up failed there as a database error (500). No account or key can have
/// one, so they are unknown, on both databases.
#[tokio::test]
async fn names_and_key_ids_that_no_account_could_have_are_unknown_not_errors() {
    support::each_backend(|app| async move {
        let h = Harness::serving(app.app(), app.sql.clone(), Box::new(()));
        let service = app.create_service("Example").await;
        let key = AccountKey::generate(&mut OsRng);
        let started = app.start(&service).await;
        let alice = AccountName::parse("alice").expect("name");
        let register = RegisterRequest::sign(&app.verify(&started.token), &alice, &key);
        assert_eq!(app.post_json("/api/authenticator/register", &register).await.status, StatusCode::OK);
        let base = format!("/admin/api/services/{service}/accounts");
        let key_id = h.api(Method::GET, &format!("{base}/alice/keys"), None).await.json()[0]["id"]
            .as_str()
            .expect("a key id")
            .to_owned();

        let listed = h.api(Method::GET, &format!("{base}/al%00ice/keys"), None).await;
        assert_eq!((listed.status, listed.error_code().as_str()), (StatusCode::NOT_FOUND, "unknown_account"));
        for uri in [format!("{base}/alice/keys/{key_id}%00"), format!("{base}/al%00ice/keys/{key_id}")] {
            let removed = h.api(Method::DELETE, &uri, None).await;
            assert_eq!(
                (removed.status, removed.error_code().as_str()),
                (StatusCode::NOT_FOUND, "unknown_key"),
                "{uri}"
            );
        }
        // The real key is still there.
        assert_eq!(h.api(Method::GET, &format!("{base}/alice/keys"), None).await.json()[0]["id"], key_id.as_str());
    })
    .await;
}
