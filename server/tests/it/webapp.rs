//! The web authenticator at /app: served whole from the binary with a
//! policy that lets it run nothing but its own files, and held to the same
//! test vectors as the Rust implementation.

use std::process::Command;

use axum::http::{header, StatusCode};

use crate::support::TestApp;

#[tokio::test]
async fn the_app_is_served_under_a_policy_that_runs_only_its_own_files() {
    let app = TestApp::new().await;
    for uri in ["/app", "/app/"] {
        let page = app.get(uri, None).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let csp = page.headers[header::CONTENT_SECURITY_POLICY].to_str().expect("ASCII");
        for rule in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(rule), "{csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(page.headers[header::REFERRER_POLICY], "no-referrer");
        assert!(page.text().contains("/app/app.js"));
    }
    let worker = app.get("/app/sw.js", None).await;
    assert_eq!(worker.status, StatusCode::OK);
    assert_eq!(worker.headers["service-worker-allowed"], "/app");
    let manifest = app.get("/app/manifest.webmanifest", None).await;
    assert_eq!(manifest.headers[header::CONTENT_TYPE], "application/manifest+json");
    assert_eq!(manifest.json()["start_url"], "/app");
    let vendored = app.get("/app/vendor/jsQR.js", None).await;
    assert_eq!(vendored.status, StatusCode::OK);
}

#[tokio::test]
async fn browsers_that_ask_for_a_favicon_get_the_apps_icon() {
    let app = TestApp::new().await;
    let icon = app.get("/favicon.ico", None).await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.headers[header::CONTENT_TYPE], "image/png");
    assert!(icon.body.starts_with(b"\x89PNG"));
    // Every page names the icon, so a browser need not guess.
    let page = app.get("/admin", None).await;
    assert!(page.text().contains(r#"<link rel="icon" href="/app/icon.svg""#), "{}", page.text());
}

#[tokio::test]
async fn paths_outside_the_app_are_not_found() {
    let app = TestApp::new().await;
    for uri in
        ["/app/missing.js", "/app/../Cargo.toml", "/app/%2e%2e/Cargo.toml", "/app/tests/vectors.mjs", "/app/vendor/"]
    {
        app.get(uri, None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

/// The app's own protocol code (server/app/protocol.js) passes every vector
/// of shared/vectors/, run under Node as a third implementation of
/// docs/PROTOCOL.md.
#[test]
fn the_apps_protocol_code_passes_every_vector_under_node() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/app/tests/vectors.mjs");
    let out = Command::new("node")
        .arg(script)
        .output()
        .expect("node runs (install it: apt-get install nodejs; scripts/test does)");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    let last = printed.lines().last().unwrap_or_default();
    let passed: usize = last.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    // Every vector file's entries, and the unit checks: hundreds, never none.
    assert!(passed > 400 && last.ends_with(" passed, 0 failed"), "{last}");
}
