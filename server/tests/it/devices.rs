//! An account's keys as their owner manages them on the account page: where
//! each signed in from, renaming, and removal through a page that asks
//! first. Each test names the property it guards; every one runs on SQLite,
//! and on PostgreSQL when `SESAME_TEST_POSTGRES_URL` is set.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header, Method, Request, StatusCode},
};
use rand::rngs::OsRng;
use serde_json::json;
use sesame_proto::{AccountKey, LoginRequest, ServiceId};

use crate::{
    enroll::{
        admin_api, confirm, enroll, enrollment_page, key_id_on, login, name, register, session, start_enrollment,
    },
    support::{each_backend, request, TestApp, TestResponse, ORIGIN, USER_AGENT},
};

/// A form as a browser sends it, from `origin` when given, with its fields
/// encoded as browsers encode them.
fn form(uri: &str, cookie: Option<&str>, origin: Option<&str>, fields: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().method(Method::POST).uri(uri).header(header::USER_AGENT, USER_AGENT);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    if let Some(origin) = origin {
        builder = builder.header(header::ORIGIN, origin);
    }
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(Body::from(body)).expect("request")
}

fn label_uri(service: &ServiceId, key_id: &str) -> String {
    format!("/services/{service}/account/keys/{key_id}/label")
}

fn remove_uri(service: &ServiceId, key_id: &str) -> String {
    format!("/services/{service}/account/keys/{key_id}/remove")
}

async fn rename(app: &TestApp, service: &ServiceId, cookie: &str, key_id: &str, label: &str) -> TestResponse {
    app.send(form(&label_uri(service, key_id), Some(cookie), Some(ORIGIN), &[("label", label)])).await
}

async fn remove(app: &TestApp, service: &ServiceId, cookie: &str, key_id: &str) -> TestResponse {
    app.send(form(&remove_uri(service, key_id), Some(cookie), Some(ORIGIN), &[])).await
}

async fn account_page(app: &TestApp, service: &ServiceId, cookie: &str) -> TestResponse {
    app.get(&format!("/services/{service}/account"), Some(cookie)).await
}

/// The ids and names of `account`'s keys at `service`, oldest first.
async fn keys_of(app: &TestApp, service: &ServiceId, account: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT id, label FROM account_key WHERE service_id = $1 AND account = $2 ORDER BY created_at, id")
        .bind(service.to_string())
        .bind(account)
        .fetch_all(&app.sql)
        .await
        .expect("keys")
}

/// The one key of a freshly registered account.
async fn only_key(app: &TestApp, service: &ServiceId, account: &str) -> String {
    let keys = keys_of(app, service, account).await;
    let [(id, _)] = keys.as_slice() else { panic!("one key: {keys:?}") };
    id.clone()
}

/// Adds a key to the account signed in by `session`, from its account page,
/// and confirms it; returns the key and its id.
async fn add_key(app: &TestApp, service: &ServiceId, session: &str, account: &str) -> (AccountKey, String) {
    let (key, id, waiting) = answer_enrollment(app, service, session, account).await;
    let done = confirm(app, service, &waiting, &id).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    (key, id)
}

/// A key enrolled from the account page a minute after what came before
/// (so that the page lists it after them), still waiting for its
/// confirmation.
async fn answer_enrollment(
    app: &TestApp,
    service: &ServiceId,
    session: &str,
    account: &str,
) -> (AccountKey, String, crate::enroll::Waiting) {
    app.clock.advance(60);
    let waiting = start_enrollment(app, service, session).await;
    let key = AccountKey::generate(&mut OsRng);
    let answer = enroll(app, &waiting.token, account, &key, Some("phone")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let page = enrollment_page(app, service, &waiting, Some(&waiting.cookie)).await;
    (key, key_id_on(&page), waiting)
}

/// A browser at `ip` signs in as `account` with `key`: its challenge, the
/// one the key answers, starts from that address.
async fn session_from(app: &TestApp, service: &ServiceId, account: &str, key: &AccountKey, ip: IpAddr) -> String {
    let mut start = request(Method::POST, &format!("/api/services/{service}/challenges"), None, None);
    start.extensions_mut().insert(ConnectInfo(SocketAddr::new(ip, 50_000)));
    let started = app.send(start).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text());
    let json = started.json();
    let id = json["challenge_id"].as_str().expect("an id");
    let binding = format!("sesame_browser_{id}");
    let binding = format!("{binding}={}", started.cookie(&binding).expect("a binding cookie"));
    let answer = LoginRequest::sign(&app.verify(json["token"].as_str().expect("a token")), &name(account), key);
    assert_eq!(app.post_json("/api/authenticator/login", &answer).await.status, StatusCode::OK);
    let redeemed = app.post(&format!("/api/challenges/{id}/session"), Some(&binding)).await;
    assert_eq!(redeemed.status, StatusCode::OK, "{}", redeemed.text());
    let cookie = format!("sesame_session_{service}");
    format!("{cookie}={}", redeemed.cookie(&cookie).expect("a session cookie"))
}

/// The account page's row of one key.
fn row(page: &str, key_id: &str) -> String {
    let start = page.find(&format!(r#"<tr data-key-id="{key_id}">"#)).unwrap_or_else(|| panic!("no row {key_id}"));
    page[start..].split("</tr>").next().expect("a row").to_owned()
}

/// An HTML error page with this status, naming this error code.
fn assert_page_error(page: &TestResponse, status: StatusCode, code: &str) {
    assert_eq!(page.status, status, "{}", page.text());
    assert!(page.headers[header::CONTENT_TYPE].to_str().expect("ascii").starts_with("text/html"));
    assert!(page.text().contains(code), "{}", page.text());
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
}

fn location(response: &TestResponse) -> &str {
    response.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// The page went back to the login page: a browser with no session.
fn assert_to_login(response: &TestResponse, service: &ServiceId) {
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.text());
    assert_eq!(location(response), format!("/services/{service}"));
}

async fn audited(app: &TestApp, action: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_event WHERE action = $1")
        .bind(action)
        .fetch_one(&app.sql)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_sign_in_records_the_browsers_address_and_the_page_shows_it() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let first = session(&app, &service, "alice", &laptop).await;
        let laptop_id = only_key(&app, &service, "alice").await;
        let (_, phone_id, _) = answer_enrollment(&app, &service, &first, "alice").await;

        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        let cookie = session_from(&app, &service, "alice", &laptop, ip).await;
        let stored: String = sqlx::query_scalar("SELECT last_used_ip FROM account_key WHERE id = $1")
            .bind(&laptop_id)
            .fetch_one(&app.sql)
            .await
            .expect("the key");
        assert_eq!(stored, "203.0.113.7", "the address of the browser that started the sign-in");
        // The admin API lists it too.
        let uri = format!("/admin/api/services/{service}/accounts/alice/keys");
        let listed = admin_api(&app, Method::GET, &uri, None).await.json();
        let listed = listed.as_array().expect("a list");
        let ips: Vec<_> = listed.iter().map(|k| (k["id"].as_str(), k["last_used_ip"].as_str())).collect();
        assert_eq!(ips, [(Some(laptop_id.as_str()), Some("203.0.113.7")), (Some(phone_id.as_str()), Some(""))]);

        let page = account_page(&app, &service, &cookie).await.text();
        let laptop_row = row(&page, &laptop_id);
        let last_used = laptop_row.split(r#"<td class="last-used">"#).nth(1).expect("a last sign-in cell");
        assert!(last_used.contains("from 203.0.113.7"), "{laptop_row}");
        // Added: when, from where (a test's requests have no socket), and
        // the device's user agent, whole on hover.
        assert!(laptop_row.contains("<time>2026-01-01 00:00:00Z</time>"), "{laptop_row}");
        assert!(laptop_row.contains("from 0.0.0.0"), "{laptop_row}");
        assert!(laptop_row.contains(&format!(r#"title="{USER_AGENT}">{USER_AGENT}<"#)), "{laptop_row}");
        let phone_row = row(&page, &phone_id);
        assert!(phone_row.contains(r#"<td class="last-used">never</td>"#), "{phone_row}");
    })
    .await;
}

#[tokio::test]
async fn the_owner_names_any_key_and_an_empty_name_clears_it() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let cookie = session(&app, &service, "alice", &laptop).await;
        let laptop_id = only_key(&app, &service, "alice").await;
        let (_, pending_id, _) = answer_enrollment(&app, &service, &cookie, "alice").await;

        let done = rename(&app, &service, &cookie, &laptop_id, "  Work laptop ").await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text());
        assert_eq!(location(&done), format!("/services/{service}/account?done=key_renamed"));
        // A pending key is the owner's to name too.
        assert_eq!(rename(&app, &service, &cookie, &pending_id, "Spare").await.status, StatusCode::SEE_OTHER);
        let labels: Vec<String> = keys_of(&app, &service, "alice").await.into_iter().map(|(_, l)| l).collect();
        assert_eq!(labels, ["Work laptop", "Spare"]);
        let page = app.get(location(&done), Some(&cookie)).await.text();
        assert!(page.contains("The new name is saved."), "{page}");
        assert!(row(&page, &laptop_id).contains(r#"title="Work laptop">Work laptop<"#), "{page}");

        assert_eq!(rename(&app, &service, &cookie, &laptop_id, "").await.status, StatusCode::SEE_OTHER);
        assert_eq!(keys_of(&app, &service, "alice").await[0].1, "");
        assert!(row(&account_page(&app, &service, &cookie).await.text(), &laptop_id).contains("(no name)"));

        let audit = admin_api(&app, Method::GET, "/admin/api/audit?action=key_renamed", None).await.json();
        let details: Vec<&str> =
            audit.as_array().expect("a list").iter().map(|r| r["detail"].as_str().expect("detail")).collect();
        assert_eq!(
            details,
            [
                format!("service {service}, key {laptop_id}, name cleared"),
                format!("service {service}, key {pending_id}, named \"Spare\""),
                format!("service {service}, key {laptop_id}, named \"Work laptop\""),
            ]
        );
        assert_eq!(audit[0]["actor"], json!("account:alice"));
        assert_eq!(audit[0]["target"], json!("alice"));
    })
    .await;
}

#[tokio::test]
async fn a_refused_name_shows_the_page_again_next_to_its_key_and_writes_nothing() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let cookie = session(&app, &service, "alice", &laptop).await;
        let laptop_id = only_key(&app, &service, "alice").await;
        let (_, phone_id) = add_key(&app, &service, &cookie, "alice").await;
        assert_eq!(rename(&app, &service, &cookie, &laptop_id, "laptop").await.status, StatusCode::SEE_OTHER);

        let too_long = "x".repeat(65);
        let too_many_bytes = "é".repeat(33);
        for bad in ["evil\u{202e}txt.exe", "bell\u{7}", "nul\u{0}byte", "line\nbreak", "zero\u{200b}width"]
            .into_iter()
            .chain([too_long.as_str(), too_many_bytes.as_str()])
        {
            let refused = rename(&app, &service, &cookie, &laptop_id, bad).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad:?}: {}", refused.text());
            assert_eq!(refused.headers[header::CACHE_CONTROL], "no-store");
            let page = refused.text();
            let laptop_row = row(&page, &laptop_id);
            assert!(laptop_row.contains(r#"data-error="invalid_key_label""#), "{bad:?}: {laptop_row}");
            assert!(!row(&page, &phone_id).contains("data-error"), "only next to the key it was for");
        }
        let labels: Vec<String> = keys_of(&app, &service, "alice").await.into_iter().map(|(_, l)| l).collect();
        assert_eq!(labels, ["laptop", "phone"], "nothing was written");
        assert_eq!(audited(&app, "key_renamed").await, 1, "only the accepted name");

        // A form without its field is malformed, not a request to clear.
        let bare = app.send(form(&label_uri(&service, &laptop_id), Some(&cookie), Some(ORIGIN), &[])).await;
        assert_page_error(&bare, StatusCode::BAD_REQUEST, "invalid_form");
        assert_eq!(keys_of(&app, &service, "alice").await[0].1, "laptop");
    })
    .await;
}

#[tokio::test]
async fn a_name_with_markup_is_kept_as_text_and_escaped() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let cookie = session(&app, &service, "alice", &laptop).await;
        let laptop_id = only_key(&app, &service, "alice").await;
        let hostile = r#"<script>alert(1)</script>"'&"#;
        assert_eq!(rename(&app, &service, &cookie, &laptop_id, hostile).await.status, StatusCode::SEE_OTHER);
        assert_eq!(keys_of(&app, &service, "alice").await[0].1, hostile, "kept as sent");

        for page in [
            account_page(&app, &service, &cookie).await.text(),
            app.get(&remove_uri(&service, &laptop_id), Some(&cookie)).await.text(),
        ] {
            assert!(!page.contains("<script>alert"), "{page}");
            assert!(page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{page}");
        }
        // A refused name is shown back escaped too.
        let refused = rename(&app, &service, &cookie, &laptop_id, "<img src=x onerror=alert(1)>\u{202e}").await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(!refused.text().contains("<img src=x"), "{}", refused.text());
    })
    .await;
}

#[tokio::test]
async fn the_removal_page_counts_the_sessions_and_warns_only_for_the_last_active_key() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let cookie = session(&app, &service, "alice", &laptop).await;
        let _another = session(&app, &service, "alice", &laptop).await;
        let laptop_id = only_key(&app, &service, "alice").await;
        let (_, pending_id, waiting) = answer_enrollment(&app, &service, &cookie, "alice").await;

        // A pending key signs nobody in: the laptop's is the last active one.
        let page = app.get(&remove_uri(&service, &laptop_id), Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
        let text = page.text();
        assert!(text.contains(r#"<strong id="session-count">2</strong> sessions"#), "{text}");
        assert!(text.contains(r#"id="own-session""#), "{text}");
        assert!(text.contains(r#"id="last-key""#) && text.contains("until an administrator sends you a recovery link"));
        assert!(text.contains(&format!(r#"action="{}""#, remove_uri(&service, &laptop_id))), "{text}");

        let page = app.get(&remove_uri(&service, &pending_id), Some(&cookie)).await.text();
        assert!(page.contains("pending: waits for confirmation"), "{page}");
        assert!(page.contains("No session it opened is still open."), "{page}");
        assert!(!page.contains(r#"id="own-session""#) && !page.contains(r#"id="last-key""#), "{page}");

        // Once the second key is confirmed, neither is the last.
        assert_eq!(confirm(&app, &service, &waiting, &pending_id).await.status, StatusCode::OK);
        for key_id in [&laptop_id, &pending_id] {
            let page = app.get(&remove_uri(&service, key_id), Some(&cookie)).await.text();
            assert!(!page.contains(r#"id="last-key""#), "{page}");
        }
        // Nothing was removed by looking.
        assert_eq!(keys_of(&app, &service, "alice").await.len(), 2);
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 2);
    })
    .await;
}

#[tokio::test]
async fn removing_a_key_ends_its_sessions_and_no_others() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let on_laptop = session(&app, &service, "alice", &laptop).await;
        let (phone, phone_id) = add_key(&app, &service, &on_laptop, "alice").await;
        let on_phone = session(&app, &service, "alice", &phone).await;

        let removed = remove(&app, &service, &on_laptop, &phone_id).await;
        assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.text());
        assert_eq!(location(&removed), format!("/services/{service}/account?done=key_removed"));
        let page = app.get(location(&removed), Some(&on_laptop)).await;
        assert!(page.text().contains("The key is removed"), "{}", page.text());
        assert!(!page.text().contains(&phone_id), "no longer listed");

        assert_to_login(&account_page(&app, &service, &on_phone).await, &service);
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 1, "the laptop's session stays");
        login(&app, &service, "alice", &phone).await.assert_error(StatusCode::UNAUTHORIZED, "bad_signature");
        assert_eq!(login(&app, &service, "alice", &laptop).await.status, StatusCode::OK);
        let audit = admin_api(&app, Method::GET, "/admin/api/audit?action=key_removed", None).await.json();
        assert_eq!(audit[0]["actor"], json!("account:alice"));
        assert_eq!(audit[0]["detail"], json!(format!("service {service}, key {phone_id}")));
    })
    .await;
}

#[tokio::test]
async fn removing_the_key_of_this_browsers_session_signs_it_out() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let cookie = session(&app, &service, "alice", &laptop).await;
        let laptop_id = only_key(&app, &service, "alice").await;

        let removed = remove(&app, &service, &cookie, &laptop_id).await;
        assert_to_login(&removed, &service);
        let cleared = removed.set_cookie(&format!("sesame_session_{service}")).expect("the cookie is cleared");
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 0);
        assert_to_login(&account_page(&app, &service, &cookie).await, &service);
        // The account stays, with no key.
        assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 1);
        assert!(keys_of(&app, &service, "alice").await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_key_of_another_account_or_service_is_unknown_and_stays() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let elsewhere = app.create_service("Elsewhere").await;
        let laptop = register(&app, &service, "alice").await;
        register(&app, &service, "bob").await;
        register(&app, &elsewhere, "alice").await;
        let cookie = session(&app, &service, "alice", &laptop).await;
        let bobs = only_key(&app, &service, "bob").await;
        let alices_elsewhere = only_key(&app, &elsewhere, "alice").await;

        for key_id in [&bobs, &alices_elsewhere] {
            let page = app.get(&remove_uri(&service, key_id), Some(&cookie)).await;
            assert_page_error(&page, StatusCode::NOT_FOUND, "unknown_key");
            assert_page_error(&remove(&app, &service, &cookie, key_id).await, StatusCode::NOT_FOUND, "unknown_key");
            let renamed = rename(&app, &service, &cookie, key_id, "mine now").await;
            assert_page_error(&renamed, StatusCode::NOT_FOUND, "unknown_key");
            // Refused as unknown, not as a bad name it might be shown next to.
            let refused = rename(&app, &service, &cookie, key_id, "bad\u{202e}").await;
            assert_page_error(&refused, StatusCode::NOT_FOUND, "unknown_key");
        }
        assert_eq!(keys_of(&app, &service, "bob").await, [(bobs, String::new())]);
        assert_eq!(keys_of(&app, &elsewhere, "alice").await, [(alices_elsewhere, String::new())]);
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_event").await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_cross_site_form_changes_nothing() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let cookie = session(&app, &service, "alice", &laptop).await;
        let laptop_id = only_key(&app, &service, "alice").await;

        for origin in ["https://evil.example", "null", "http://sesame.test.evil.example"] {
            let removal = app.send(form(&remove_uri(&service, &laptop_id), Some(&cookie), Some(origin), &[])).await;
            assert_page_error(&removal, StatusCode::FORBIDDEN, "csrf_rejected");
            let fields = [("label", "owned")];
            let renamed = app.send(form(&label_uri(&service, &laptop_id), Some(&cookie), Some(origin), &fields)).await;
            assert_page_error(&renamed, StatusCode::FORBIDDEN, "csrf_rejected");
        }
        assert_eq!(keys_of(&app, &service, "alice").await, [(laptop_id, String::new())]);
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 1);
    })
    .await;
}

#[tokio::test]
async fn without_a_session_every_page_and_form_goes_to_sign_in() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        register(&app, &service, "alice").await;
        let laptop_id = only_key(&app, &service, "alice").await;
        let forged = format!("sesame_session_{service}=forged");

        for cookie in [None, Some(forged.as_str())] {
            assert_to_login(&app.get(&remove_uri(&service, &laptop_id), cookie).await, &service);
            assert_to_login(
                &app.send(form(&remove_uri(&service, &laptop_id), cookie, Some(ORIGIN), &[])).await,
                &service,
            );
            let fields = [("label", "owned")];
            assert_to_login(
                &app.send(form(&label_uri(&service, &laptop_id), cookie, Some(ORIGIN), &fields)).await,
                &service,
            );
        }
        assert_eq!(keys_of(&app, &service, "alice").await, [(laptop_id, String::new())]);
    })
    .await;
}

#[tokio::test]
async fn a_malformed_key_or_service_id_is_unknown() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let cookie = session(&app, &service, "alice", &laptop).await;
        let laptop_id = only_key(&app, &service, "alice").await;

        let upper = laptop_id.to_uppercase();
        for key_id in ["nonsense", "%00", &laptop_id[..31], &format!("{laptop_id}0"), &upper, &"0".repeat(32)] {
            let page = app.get(&remove_uri(&service, key_id), Some(&cookie)).await;
            assert_page_error(&page, StatusCode::NOT_FOUND, "unknown_key");
            assert_page_error(&remove(&app, &service, &cookie, key_id).await, StatusCode::NOT_FOUND, "unknown_key");
            let renamed = rename(&app, &service, &cookie, key_id, "x").await;
            assert_page_error(&renamed, StatusCode::NOT_FOUND, "unknown_key");
        }
        let page = app.get(&format!("/services/nonsense/account/keys/{laptop_id}/remove"), Some(&cookie)).await;
        assert_page_error(&page, StatusCode::NOT_FOUND, "unknown_service");
        assert_eq!(keys_of(&app, &service, "alice").await, [(laptop_id, String::new())]);
    })
    .await;
}

#[tokio::test]
async fn a_removal_sent_twice_removes_once() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let cookie = session(&app, &service, "alice", &laptop).await;
        let (_, phone_id) = add_key(&app, &service, &cookie, "alice").await;

        assert_eq!(remove(&app, &service, &cookie, &phone_id).await.status, StatusCode::SEE_OTHER);
        let again = remove(&app, &service, &cookie, &phone_id).await;
        assert_page_error(&again, StatusCode::NOT_FOUND, "unknown_key");
        let page = app.get(&remove_uri(&service, &phone_id), Some(&cookie)).await;
        assert_page_error(&page, StatusCode::NOT_FOUND, "unknown_key");
        assert_eq!(keys_of(&app, &service, "alice").await.len(), 1);
        assert_eq!(audited(&app, "key_removed").await, 1);
    })
    .await;
}

#[tokio::test]
async fn changing_the_keys_needs_a_sign_in_of_the_last_ten_minutes() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let laptop = register(&app, &service, "alice").await;
        let stale = session(&app, &service, "alice", &laptop).await;
        let (_, phone_id) = add_key(&app, &service, &stale, "alice").await;
        app.clock.advance(601);

        // A browser left signed in shows the page, but asks for a new
        // sign-in where the button was, and removes nothing.
        let page = app.get(&remove_uri(&service, &phone_id), Some(&stale)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert!(page.text().contains(r#"id="sign-in-again""#), "{}", page.text());
        assert!(!page.text().contains(r#"id="remove-key-button""#), "{}", page.text());
        assert_page_error(&remove(&app, &service, &stale, &phone_id).await, StatusCode::FORBIDDEN, "sign_in_again");
        assert_eq!(keys_of(&app, &service, "alice").await.len(), 2);
        // Nor does it add an authenticator, or a passkey's start.
        let enroll = format!("/services/{service}/account/enroll");
        assert_page_error(
            &app.send(form(&enroll, Some(&stale), Some(ORIGIN), &[])).await,
            StatusCode::FORBIDDEN,
            "sign_in_again",
        );
        // Renaming is no change of who can sign in: it still works.
        assert_eq!(rename(&app, &service, &stale, &phone_id, "spare").await.status, StatusCode::SEE_OTHER);

        // Signed in again, the same browser removes the key.
        let fresh = session(&app, &service, "alice", &laptop).await;
        let page = app.get(&remove_uri(&service, &phone_id), Some(&fresh)).await;
        assert!(page.text().contains(r#"id="remove-key-button""#), "{}", page.text());
        assert_eq!(remove(&app, &service, &fresh, &phone_id).await.status, StatusCode::SEE_OTHER);
        assert_eq!(keys_of(&app, &service, "alice").await.len(), 1);
    })
    .await;
}
