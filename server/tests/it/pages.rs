//! The login page: what it shows, escaping, the signed-in view, sign-out,
//! and the static files it loads.

use axum::http::{header, Method, StatusCode};
use rand::rngs::OsRng;
use sesame_proto::{AccountKey, AccountName, RegisterRequest};

use crate::support::{each_backend, request, TestApp};

#[tokio::test]
async fn login_page_shows_token_qr_and_binds_the_browser() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let page = app.get(&format!("/services/{service}"), None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert!(page.headers[header::CONTENT_TYPE].to_str().expect("ascii").starts_with("text/html"));
        assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
        assert!(page.headers.contains_key(header::CONTENT_SECURITY_POLICY));
        let html = page.text();
        assert!(html.contains("Sign in to <span id=\"service-name\">Example</span>"), "{html}");
        // The page's script draws the QR code from the token: the server
        // draws none (docs/BENCHMARKS.md).
        assert!(html.contains("<div id=\"qr\"") && !html.contains("<svg"), "{html}");
        assert!(html.contains("Scan the QR code or paste the token into your Sesame authenticator."));
        assert!(html.contains("<script src=\"/static/login.js\""));
        assert!(!html.contains("<script>"), "no inline scripts");

        let challenges = app.every_challenge().await;
        assert_eq!(challenges.len(), 1);
        let cid = challenges[0].id.to_string();
        assert!(html.contains(&format!("data-events-url=\"/api/challenges/{cid}/events\"")), "{html}");
        let token = app.current_token(&cid).await;
        assert!(html.contains(&format!("<code id=\"token\" class=\"token\">{token}</code>")), "{html}");
        let name = format!("sesame_browser_{cid}");
        let started = format!("{name}={}", page.cookie(&name).expect("binding cookie"));
        assert_eq!(app.get(&format!("/api/challenges/{cid}"), Some(&started)).await.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn service_name_with_markup_is_escaped() {
    let app = TestApp::new().await;
    let service = app.create_service("<script>alert(1)</script>").await;
    let html = app.get(&format!("/services/{service}"), None).await.text();
    assert!(!html.contains("<script>alert(1)</script>"), "{html}");
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
}

#[tokio::test]
async fn unknown_service_page_is_a_404_page() {
    let app = TestApp::new().await;
    for path in [format!("/services/{}", "ab".repeat(16)), "/services/not-an-id".to_owned()] {
        let response = app.get(&path, None).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND);
        let page = response.text();
        assert!(page.contains("No such service") && page.contains("unknown_service"), "{page}");
    }
}

#[tokio::test]
async fn rate_limited_login_page_is_a_429_page() {
    let app = TestApp::builder(crate::support::Backend::Sqlite).rate_limit(5).build().await;
    let service = app.create_service("Example").await;
    let mut last = None;
    for _ in 0..10 {
        last = Some(app.get(&format!("/services/{service}"), None).await);
    }
    let last = last.expect("ten requests");
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(last.text().contains("Too many sign-in attempts"), "{}", last.text());
    // 5 a minute: one more every 12 s.
    assert_eq!(last.headers["retry-after"], "12");
}

#[tokio::test]
async fn signed_in_browser_sees_its_account_and_can_sign_out() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let started = app.start(&service).await;
        let token = app.verify(&started.token);
        let name = AccountName::parse("alice").expect("name");
        let answer = RegisterRequest::sign(&token, &name, &AccountKey::generate(&mut OsRng));
        assert_eq!(app.post_json("/api/authenticator/register", &answer).await.status, StatusCode::OK);
        let session = app.post(&format!("/api/challenges/{}/session", started.id), Some(&started.cookie)).await;
        let name = format!("sesame_session_{service}");
        let value = session.cookie(&name).expect("session cookie");
        let cookie = format!("{name}={value}");

        let page = app.get(&format!("/services/{service}"), Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text().contains("Signed in as <span id=\"account-name\">alice</span>"), "{}", page.text());
        // A session for one service means nothing at another, even under
        // the other's cookie name.
        let other = app.create_service("Other").await;
        let moved = format!("sesame_session_{other}={value}");
        assert!(!app.get(&format!("/services/{other}"), Some(&moved)).await.text().contains(">alice</span>"));

        let signout = format!("/services/{service}/signout");
        let mut cross_site = request(Method::POST, &signout, Some(&cookie), None);
        cross_site.headers_mut().insert(header::ORIGIN, "https://evil.example".parse().expect("header"));
        app.send(cross_site).await.assert_error(StatusCode::FORBIDDEN, "csrf_rejected");
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 1);

        let mut same_site = request(Method::POST, &signout, Some(&cookie), None);
        same_site.headers_mut().insert(header::ORIGIN, "http://sesame.test".parse().expect("header"));
        let response = app.send(same_site).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER);
        assert_eq!(response.headers[header::LOCATION], format!("/services/{service}"));
        assert!(response.set_cookie(&name).expect("cleared").contains("Max-Age=0"));
        assert_eq!(app.count("SELECT COUNT(*) FROM session").await, 0);
        let page = app.get(&format!("/services/{service}"), Some(&cookie)).await.text();
        assert!(page.contains("id=\"token\""), "signed out: a new challenge is shown");
    })
    .await;
}

#[tokio::test]
async fn static_files_have_types_and_caching() {
    let app = TestApp::new().await;
    for (path, kind, needle) in [
        ("/static/login.js", "text/javascript", "EventSource"),
        ("/static/qrcode.js", "text/javascript", "MIT license"),
        ("/static/sesame.css", "text/css", "--accent"),
    ] {
        let response = app.get(path, None).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        assert!(response.headers[header::CONTENT_TYPE].to_str().expect("ascii").starts_with(kind), "{path}");
        assert!(response.headers[header::CACHE_CONTROL].to_str().expect("ascii").contains("max-age"), "{path}");
        assert!(response.text().contains(needle), "{path}");
    }
}

/// A cross-site form is refused before its body is read, and the server
/// then closes the connection: the answer says so (`Connection: close`),
/// on a real connection that asked to be kept alive, while a refusal of a
/// request without a body keeps the connection.
#[tokio::test]
async fn a_form_refused_before_its_body_is_read_says_the_connection_closes() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let base = app.serve().await;
    let address = base.trim_start_matches("http://");
    let head_of = |request: String| async move {
        let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut read = Vec::new();
        let mut buffer = [0u8; 4096];
        while !read.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buffer).await.expect("read");
            assert!(n > 0, "the connection closed before an answer");
            read.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&read).to_lowercase()
    };
    let body = "csrf=not-read-at-all";
    let refused = head_of(format!(
        "POST /services/{service}/signout HTTP/1.1\r\nHost: {address}\r\nOrigin: https://evil.example\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
        body.len()
    ))
    .await;
    assert!(refused.starts_with("http/1.1 403"), "{refused}");
    assert!(refused.contains("\r\nconnection: close\r\n"), "{refused}");

    let unknown = head_of(format!("GET /nothing HTTP/1.1\r\nHost: {address}\r\n\r\n")).await;
    assert!(unknown.starts_with("http/1.1 404"), "{unknown}");
    assert!(!unknown.contains("connection: close"), "{unknown}");
}
