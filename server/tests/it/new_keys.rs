//! An authenticator hears at its next sign-in of every key that joined its
//! account since it last signed in (PROTOCOL.md §6.4), once, with the name,
//! time and address the account page shows; and of nothing else.

use axum::http::{Method, StatusCode};
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sesame_proto::{AccountKey, RekeyRequest, ServiceId};
use sesame_server::clock::Clock as _;

use crate::{
    enroll::{
        admin_api, confirm, enroll, enrollment_page, key_id_on, login, name, register, reject, session,
        start_enrollment,
    },
    support::{each_backend, TestApp},
};

/// Adds `label`'s key to alice from the account page of `session`, and
/// confirms it there; returns the key.
async fn add_key(app: &TestApp, service: &ServiceId, session: &str, label: &str) -> AccountKey {
    let waiting = start_enrollment(app, service, session).await;
    let key = AccountKey::generate(&mut OsRng);
    let answer = enroll(app, &waiting.token, "alice", &key, Some(label)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let page = enrollment_page(app, service, &waiting, Some(&waiting.cookie)).await;
    let done = confirm(app, service, &waiting, &key_id_on(&page)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    key
}

/// The `new_keys` of a login with `key`, `[]` when the member is absent.
async fn told(app: &TestApp, service: &ServiceId, key: &AccountKey) -> Value {
    let answer = login(app, service, "alice", key).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    assert_eq!((&body["status"], &body["account"]), (&json!("completed"), &json!("alice")), "{body}");
    body.get("new_keys").cloned().unwrap_or(json!([]))
}

/// alice's key labelled `label`, as the admin API lists it.
async fn listed(app: &TestApp, service: &ServiceId, label: &str) -> Value {
    let keys = admin_api(app, Method::GET, &format!("/admin/api/services/{service}/accounts/alice/keys"), None).await;
    let keys = keys.json();
    keys.as_array().expect("a list").iter().find(|k| k["label"] == label).cloned().unwrap_or_else(|| panic!("{keys}"))
}

#[tokio::test]
async fn each_authenticator_is_told_once_of_a_key_added_since_its_last_sign_in() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        app.clock.advance(10);
        let browser = session(&app, &service, "alice", &laptop).await;
        app.clock.advance(10);
        let phone = add_key(&app, &service, &browser, "phone").await;
        let added_at = app.clock.now().as_secs();

        // The phone is the newest key: nothing joined since it was added.
        app.clock.advance(10);
        assert_eq!(told(&app, &service, &phone).await, json!([]));

        // The laptop last signed in before the phone came: it is told, with
        // what the account page shows of the phone.
        let shown = listed(&app, &service, "phone").await;
        let from = shown["device_ip"].as_str().expect("an address").to_owned();
        assert!(!from.is_empty(), "{shown}");
        let expected = json!([{"kind": "sesame", "label": "phone", "added_at": added_at, "added_from": from}]);
        assert_eq!(told(&app, &service, &laptop).await, expected);
        // Once: its sign-in moved its last use past the phone's arrival.
        app.clock.advance(10);
        assert_eq!(told(&app, &service, &laptop).await, json!([]));
        assert_eq!(told(&app, &service, &phone).await, json!([]));
    })
    .await;
}

#[tokio::test]
async fn a_key_is_told_of_when_it_is_confirmed_and_not_while_it_waits_or_once_refused() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let browser = session(&app, &service, "alice", &laptop).await;
        app.clock.advance(10);

        let waiting = start_enrollment(&app, &service, &browser).await;
        let tablet = AccountKey::generate(&mut OsRng);
        assert_eq!(enroll(&app, &waiting.token, "alice", &tablet, Some("tablet")).await.status, StatusCode::OK);
        app.clock.advance(10);
        // Pending: it signs nobody in, and nobody is told of it yet.
        assert_eq!(told(&app, &service, &laptop).await, json!([]));
        assert_eq!(reject(&app, &service, &waiting).await.status, StatusCode::OK);
        app.clock.advance(10);
        assert_eq!(told(&app, &service, &laptop).await, json!([]));

        // A key made before a sign-in and confirmed after it joined the
        // account when it was confirmed: it is told of then, not lost.
        let waiting = start_enrollment(&app, &service, &browser).await;
        let spare = AccountKey::generate(&mut OsRng);
        assert_eq!(enroll(&app, &waiting.token, "alice", &spare, Some("spare")).await.status, StatusCode::OK);
        app.clock.advance(10);
        assert_eq!(told(&app, &service, &laptop).await, json!([]));
        app.clock.advance(10);
        let page = enrollment_page(&app, &service, &waiting, Some(&waiting.cookie)).await;
        assert_eq!(confirm(&app, &service, &waiting, &key_id_on(&page)).await.status, StatusCode::OK);
        let confirmed_at = app.clock.now().as_secs();
        app.clock.advance(10);
        let told = told(&app, &service, &laptop).await;
        assert_eq!((&told[0]["label"], &told[0]["added_at"]), (&json!("spare"), &json!(confirmed_at)), "{told}");
    })
    .await;
}

#[tokio::test]
async fn keys_are_told_newest_first_and_one_added_in_the_second_of_a_sign_in_is_not_lost() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let browser = session(&app, &service, "alice", &laptop).await;
        app.clock.advance(10);
        add_key(&app, &service, &browser, "phone").await;
        app.clock.advance(10);
        add_key(&app, &service, &browser, "spare").await;
        app.clock.advance(10);
        let labels = |told: Value| -> Vec<String> {
            told.as_array().expect("a list").iter().map(|k| k["label"].as_str().expect("a label").to_owned()).collect()
        };
        assert_eq!(labels(told(&app, &service, &laptop).await), ["spare", "phone"]);

        // A key added in the very second the laptop signed in: whether it
        // came before or after that sign-in cannot be told apart, so the
        // next sign-in tells of it again rather than never.
        add_key(&app, &service, &browser, "watch").await;
        assert_eq!(labels(told(&app, &service, &laptop).await), ["watch"]);
        app.clock.advance(1);
        assert_eq!(labels(told(&app, &service, &laptop).await), ["watch"]);
        app.clock.advance(1);
        assert_eq!(labels(told(&app, &service, &laptop).await), Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn a_rekey_is_a_sign_in_and_is_told_the_same() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let browser = session(&app, &service, "alice", &laptop).await;
        app.clock.advance(10);
        add_key(&app, &service, &browser, "phone").await;
        app.clock.advance(10);
        let started = app.start(&service).await;
        let request =
            RekeyRequest::sign(&app.verify(&started.token), &name("alice"), &laptop, &AccountKey::generate(&mut OsRng));
        let answer = app.post_json("/api/authenticator/rekey", &request).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(answer.json()["new_keys"][0]["label"], "phone", "{}", answer.text());
    })
    .await;
}
