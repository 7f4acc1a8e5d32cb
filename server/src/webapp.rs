//! The web authenticator: the app a phone's camera opens from a login
//! page's QR code (`{origin}/app#<token>`, docs/PROTOCOL.md §3.6).
//!
//! Its files are compiled into the server, so the app is exactly what this
//! build serves, and nothing is fetched from anywhere else at run time.
//! Whoever controls this server controls the app, and through it the keys
//! it holds; docs/PHONE.md says so to the people who use it.

use axum::{
    extract::Path,
    http::{header, HeaderName, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use crate::error::Error;

/// The app's policy, stricter than the pages': scripts, styles and images
/// only from the app's own files, no inline code and no `eval`, and it
/// talks only to this server. (The camera's stream is handed to the video
/// as an object, which no policy governs.)
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   media-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The app's files: its path under `/app/`, its type, and its bytes.
/// `every_app_file_is_served` keeps this list and the folder in step.
pub(crate) const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../app/index.html")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../app/app.css")),
    ("app.js", JS, include_bytes!("../app/app.js")),
    ("keystore.js", JS, include_bytes!("../app/keystore.js")),
    ("scanner.js", JS, include_bytes!("../app/scanner.js")),
    ("protocol.js", JS, include_bytes!("../app/protocol.js")),
    ("protocol-ed25519.js", JS, include_bytes!("../app/protocol-ed25519.js")),
    ("protocol-error.js", JS, include_bytes!("../app/protocol-error.js")),
    ("protocol-names.js", JS, include_bytes!("../app/protocol-names.js")),
    ("sw.js", JS, include_bytes!("../app/sw.js")),
    ("manifest.webmanifest", "application/manifest+json", include_bytes!("../app/manifest.webmanifest")),
    ("icon.svg", "image/svg+xml", include_bytes!("../app/icon.svg")),
    ("icon-192.png", "image/png", include_bytes!("../app/icon-192.png")),
    ("icon-512.png", "image/png", include_bytes!("../app/icon-512.png")),
    ("vendor/jsQR.js", JS, include_bytes!("../app/vendor/jsQR.js")),
];

const JS: &str = "text/javascript; charset=utf-8";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        // Browsers ask for it on every origin, whatever the pages name.
        .route("/favicon.ico", get(|| async { file("icon-192.png") }))
        .route("/app", get(|| async { file("index.html") }))
        .route("/app/", get(|| async { file("index.html") }))
        .route("/app/{*path}", get(|Path(path): Path<String>| async move { file(&path) }))
}

fn file(path: &str) -> Response {
    let Some((_, content_type, body)) = FILES.iter().find(|(name, _, _)| *name == path) else {
        return Error::NotFound.into_response();
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            // The token rides in the fragment, which no Referer carries; the
            // app sends no Referer at all, so nothing of it can leak.
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            // The service worker keeps the app for offline use and fetches it
            // again when online: every load asks this server first.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        *body,
    )
        .into_response();
    if path == "sw.js" {
        // The worker lives at /app/sw.js and looks after all of /app, which
        // the folder alone would not allow it.
        response
            .headers_mut()
            .insert(HeaderName::from_static("service-worker-allowed"), HeaderValue::from_static("/app"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to the app folder but not to [`FILES`] would be missing
    /// from every phone; the service worker's list must name them all too,
    /// or the app cannot open offline.
    #[test]
    fn every_app_file_is_served_and_kept_offline() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("app");
        let mut on_disk = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("the app folder") {
                let path = entry.expect("an entry").path();
                let name = path.strip_prefix(&root).expect("inside").to_string_lossy().replace('\\', "/");
                if path.is_dir() {
                    if name != "tests" {
                        folders.push(path);
                    }
                } else if !name.ends_with(".md") && !name.ends_with(".LICENSE") {
                    on_disk.push(name);
                }
            }
        }
        on_disk.sort();
        let mut served: Vec<String> = FILES.iter().map(|(name, _, _)| (*name).to_owned()).collect();
        served.sort();
        assert_eq!(served, on_disk);

        let worker = std::str::from_utf8(FILES.iter().find(|f| f.0 == "sw.js").expect("sw.js").2).expect("UTF-8");
        for (name, _, _) in FILES {
            let url = match *name {
                "sw.js" => continue,
                "index.html" => "/app".to_owned(),
                name => format!("/app/{name}"),
            };
            assert!(worker.contains(&format!("'{url}'")), "sw.js does not keep {url}");
        }
    }
}
