//! A service's applications on the admin page: the "Applications" card of
//! the service page, its forms to add, change and remove one and to give
//! one a new secret, and the page that shows a secret once.

use sha2::{Digest as _, Sha256};

use super::*;

/// The block of the service page that shows application `client_id`.
fn block<'a>(page: &'a Reply, client_id: &str) -> &'a str {
    let marker = format!(r#"data-client-id="{client_id}""#);
    let start = page.text.find(&marker).unwrap_or_else(|| panic!("no application {client_id} in {}", page.text));
    let rest = &page.text[start..];
    &rest[..rest.find("</section>").expect("the end of the application's block")]
}

/// The client ids of the applications the service page shows, in its order.
fn client_ids(page: &Reply) -> Vec<String> {
    let marker = r#"data-client-id=""#;
    page.text
        .match_indices(marker)
        .map(|(at, _)| page.text[at + marker.len()..].split('"').next().expect("closing quote").to_owned())
        .collect()
}

/// The text of the element with id `id` on a page.
fn element_text(page: &Reply, id: &str) -> Option<String> {
    let marker = format!(r#"id="{id}""#);
    let start = page.text.find(&marker)?;
    let rest = &page.text[start..];
    let open = rest.find('>')? + 1;
    Some(rest[open..rest.find("</")?].to_owned())
}

/// The client id and the secret that the secret page shows.
fn shown_secret(page: &Reply) -> (String, String) {
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("cannot show it again"), "{}", page.text);
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    let client_id = element_text(page, "client-id").unwrap_or_else(|| panic!("no client id in {}", page.text));
    let secret = element_text(page, "client-secret").unwrap_or_else(|| panic!("no secret in {}", page.text));
    (client_id, secret)
}

async fn stored_secret_hash(h: &Harness, client_id: &str) -> Option<Vec<u8>> {
    sqlx::query_scalar("SELECT secret_hash FROM oidc_application WHERE client_id = $1")
        .bind(client_id)
        .fetch_one(&h.sql)
        .await
        .expect("the application's row")
}

/// An application's form as the page posts it.
struct AppForm<'a> {
    name: &'a str,
    redirect_uris: &'a str,
    post_logout_redirect_uris: &'a str,
    public: bool,
    alg: &'a str,
    refresh_tokens: bool,
}

impl AppForm<'_> {
    fn fields<'a>(&'a self, csrf: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut fields = vec![
            ("csrf", csrf),
            ("name", self.name),
            ("redirect_uris", self.redirect_uris),
            ("post_logout_redirect_uris", self.post_logout_redirect_uris),
            ("alg", self.alg),
        ];
        if self.public {
            fields.push(("public", "1"));
        }
        if self.refresh_tokens {
            fields.push(("refresh_tokens", "1"));
        }
        fields
    }
}

const SHOP: AppForm = AppForm {
    name: "Web shop",
    redirect_uris: "https://shop.example/callback\r\n  https://shop.example/cb2  \r\n\r\n",
    post_logout_redirect_uris: "https://shop.example/",
    public: false,
    alg: "RS256",
    refresh_tokens: true,
};

const PHONE: AppForm = AppForm {
    name: "Mobile app",
    redirect_uris: "com.example.shop:/callback",
    post_logout_redirect_uris: "",
    public: true,
    alg: "EdDSA",
    refresh_tokens: false,
};

/// Two applications made through the page, one changed, one given a new
/// secret (shown once), one removed after the page that asks first, and
/// the other stays as it was.
#[tokio::test]
async fn page_adds_changes_rotates_and_removes_applications() {
    support::each_backend(|app| async move {
        let clock = app.clock.clone();
        let h = Harness::over(app);
        let service = h.create("Shop").await["id"].as_str().expect("id").to_owned();
        let service_page = format!("/admin/services/{service}");
        let (cookie, csrf) = h.sign_in().await;

        let empty = h.page(&service_page, Some(&cookie)).await;
        assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
        assert!(empty.text.contains("<h2>Applications</h2>") && empty.text.contains("None yet."), "{}", empty.text);
        assert!(empty.text.contains(&format!(r#"action="/admin/services/{service}/applications""#)));
        assert!(client_ids(&empty).is_empty());

        // A confidential application: its secret is shown once, on a page
        // that names it.
        let add = format!("/admin/services/{service}/applications");
        let made = h.post_form(&add, Some(&cookie), &SHOP.fields(&csrf)).await;
        let (shop, first_secret) = shown_secret(&made);
        assert!(made.text.contains("Client secret of Web shop"), "{}", made.text);
        assert_eq!(element_text(&made, "application-name").as_deref(), Some("Web shop"));
        let digest = Sha256::digest(first_secret.as_bytes()).to_vec();
        assert_eq!(stored_secret_hash(&h, &shop).await, Some(digest));

        // A public one, a second later (applications made in the same second
        // are listed by client id): no secret, back to the service page.
        clock.advance(1);
        let made = h.post_form(&add, Some(&cookie), &PHONE.fields(&csrf)).await;
        assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.text);
        assert_eq!(made.location(), format!("{service_page}?done=application_created"));
        assert_eq!(h.count("SELECT COUNT(*) FROM oidc_application").await, 2);

        let page = h.page(&service_page, Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let listed = client_ids(&page);
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert_eq!(listed[0], shop, "the first made comes first");
        let phone = listed[1].clone();
        assert!(!page.text.contains(&first_secret), "the secret is shown once");
        assert!(!page.text.contains("None yet."), "{}", page.text);
        let shown = block(&page, &shop);
        for text in [
            r#"<h3 data-field="name">Web shop</h3>"#,
            &format!(r#"<code data-field="client-id">{shop}</code>"#),
            "confidential client",
            r#"<span data-field="alg">RS256</span>"#,
            r#"<span data-field="refresh-tokens">a refresh token with every code</span>"#,
            r#"name="refresh_tokens" value="1" checked>"#,
            "<li><code>https://shop.example/callback</code></li>",
            "<li><code>https://shop.example/cb2</code></li>",
            "<li><code>https://shop.example/</code></li>",
            &format!(r#"action="/admin/services/{service}/applications/{shop}""#),
            &format!(r#"action="/admin/services/{service}/applications/{shop}/secret""#),
            &format!(r#"action="/admin/services/{service}/applications/{shop}/delete""#),
            // The form holds the URIs one per line, trimmed.
            "https://shop.example/callback\nhttps://shop.example/cb2</textarea>",
        ] {
            assert!(shown.contains(text), "{text} not in {shown}");
        }
        let shown = block(&page, &phone);
        for text in [
            r#"<h3 data-field="name">Mobile app</h3>"#,
            "public client (PKCE)",
            r#"<span data-field="alg">EdDSA</span>"#,
            "<li><code>com.example.shop:/callback</code></li>",
            r#"<p class="muted" data-field="post-logout-uris">None.</p>"#,
            r#"value="EdDSA" selected"#,
            " checked>",
        ] {
            assert!(shown.contains(text), "{text} not in {shown}");
        }
        assert!(!shown.contains("/secret\""), "a public client has no secret to renew: {shown}");
        assert!(!shown.contains("refresh-tokens\">"), "no refresh tokens asked for: {shown}");
        // Each form's elements have ids of their own.
        assert!(page.text.contains(&format!(r#"id="redirect-uris-{shop}""#)));
        assert!(page.text.contains(&format!(r#"id="redirect-uris-{phone}""#)));
        assert!(page.text.contains(r#"id="redirect-uris-new""#));

        // Changing one leaves the other as it was.
        let audited = h.count("SELECT COUNT(*) FROM audit_event").await;
        let renamed = AppForm {
            name: "Phone app",
            redirect_uris: "com.example.shop:/callback\ncom.example.shop:/other",
            post_logout_redirect_uris: "com.example.shop:/bye",
            public: true,
            alg: "RS256",
            refresh_tokens: true,
        };
        let change = format!("/admin/services/{service}/applications/{phone}");
        let changed = h.post_form(&change, Some(&cookie), &renamed.fields(&csrf)).await;
        assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.text);
        assert_eq!(changed.location(), format!("{service_page}?done=application_saved"));
        let told = h.page(changed.location(), Some(&cookie)).await;
        assert!(told.text.contains("Application saved."), "the page says so: {}", told.text);
        assert_eq!(h.count("SELECT COUNT(*) FROM audit_event").await, audited + 1, "the change is audited");
        let page = h.page(&service_page, Some(&cookie)).await;
        assert_eq!(client_ids(&page), [shop.clone(), phone.clone()], "the client ids stay");
        let shown = block(&page, &phone);
        for text in [
            r#"<h3 data-field="name">Phone app</h3>"#,
            r#"<span data-field="alg">RS256</span>"#,
            "<li><code>com.example.shop:/other</code></li>",
            "<li><code>com.example.shop:/bye</code></li>",
            "public client (PKCE)",
            r#"<span data-field="refresh-tokens">a refresh token with every code</span>"#,
        ] {
            assert!(shown.contains(text), "{text} not in {shown}");
        }
        assert!(!page.text.contains("Mobile app"), "{}", page.text);
        let other = block(&page, &shop);
        assert!(other.contains(r#"<h3 data-field="name">Web shop</h3>"#) && other.contains("refresh-tokens\">"));
        assert_eq!(stored_secret_hash(&h, &phone).await, None, "still public");
        assert_eq!(
            stored_secret_hash(&h, &shop).await,
            Some(Sha256::digest(first_secret.as_bytes()).to_vec()),
            "the other keeps its secret"
        );

        // A new secret: asked first, then shown once; the old one is gone.
        let renew = format!("/admin/services/{service}/applications/{shop}/secret");
        let asked = h.post_form(&renew, Some(&cookie), &[("csrf", &csrf)]).await;
        assert_eq!(asked.status, StatusCode::OK, "{}", asked.text);
        for text in ["Make a new client secret?", "Web shop", "the current secret", &format!(r#"action="{renew}""#)] {
            assert!(asked.text.contains(text), "{text} not in {}", asked.text);
        }
        assert!(!asked.text.contains("client-secret"), "nothing made yet: {}", asked.text);
        assert_eq!(stored_secret_hash(&h, &shop).await, Some(Sha256::digest(first_secret.as_bytes()).to_vec()));
        let renewed = h.post_form(&renew, Some(&cookie), &[("csrf", &csrf), CONFIRMED]).await;
        let (renewed_id, second_secret) = shown_secret(&renewed);
        assert_eq!(renewed_id, shop);
        assert_ne!(second_secret, first_secret);
        assert!(renewed.text.contains("Client secret of Web shop"), "{}", renewed.text);
        assert_eq!(stored_secret_hash(&h, &shop).await, Some(Sha256::digest(second_secret.as_bytes()).to_vec()));
        let page = h.page(&service_page, Some(&cookie)).await;
        assert!(!page.text.contains(&second_secret), "the secret is shown once");
        // A public client has none to renew.
        let refused = h
            .post_form(
                &format!("/admin/services/{service}/applications/{phone}/secret"),
                Some(&cookie),
                &[("csrf", &csrf), CONFIRMED],
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
        assert!(refused.text.contains("a public client has no secret"), "{}", refused.text);

        // Removing one: asked first, naming it and what goes; then only it goes.
        let remove = format!("/admin/services/{service}/applications/{phone}/delete");
        let asked = h.post_form(&remove, Some(&cookie), &[("csrf", &csrf)]).await;
        assert_eq!(asked.status, StatusCode::OK, "{}", asked.text);
        for text in [
            "Remove this application?",
            "The application Phone app of Shop will be removed.",
            "The service keeps its accounts, its sessions and its other application.",
            "its client id:",
            "the codes, access tokens and refresh tokens issued to it",
            &format!(r#"action="{remove}""#),
        ] {
            assert!(asked.text.contains(text), "{text} not in {}", asked.text);
        }
        assert_eq!(h.count("SELECT COUNT(*) FROM oidc_application").await, 2, "nothing removed yet");
        let removed = h.post_form(&remove, Some(&cookie), &[("csrf", &csrf), CONFIRMED]).await;
        assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.text);
        assert_eq!(removed.location(), format!("{service_page}?done=application_removed"));
        let page = h.page(&service_page, Some(&cookie)).await;
        assert_eq!(client_ids(&page), vec![shop.clone()]);
        assert!(!page.text.contains(&phone) && !page.text.contains("Phone app"), "{}", page.text);
        assert!(block(&page, &shop).contains("<li><code>https://shop.example/cb2</code></li>"));
        assert_eq!(stored_secret_hash(&h, &shop).await, Some(Sha256::digest(second_secret.as_bytes()).to_vec()));
        // Gone, it cannot be removed or changed again.
        let again = h.post_form(&remove, Some(&cookie), &[("csrf", &csrf), CONFIRMED]).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);
        let again = h.post_form(&change, Some(&cookie), &renamed.fields(&csrf)).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);

        // The service's deletion counts what it still has.
        h.post_form(&add, Some(&cookie), &PHONE.fields(&csrf)).await;
        let asked = h.post_form(&format!("/admin/services/{service}/delete"), Some(&cookie), &[("csrf", &csrf)]).await;
        assert!(asked.text.contains("2 applications, with their client ids and secrets"), "{}", asked.text);
    })
    .await;
}

/// A form the rules refuse shows the admin error page with why, and
/// changes nothing; so do a forged form and an application of another
/// service.
#[tokio::test]
async fn page_refuses_bad_application_forms() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let service = h.create("Shop").await["id"].as_str().expect("id").to_owned();
        let other = h.create("Other").await["id"].as_str().expect("id").to_owned();
        let (cookie, csrf) = h.sign_in().await;
        let add = format!("/admin/services/{service}/applications");
        let made = h.post_form(&add, Some(&cookie), &SHOP.fields(&csrf)).await;
        let (shop, _) = shown_secret(&made);
        let made = h.post_form(&add, Some(&cookie), &PHONE.fields(&csrf)).await;
        assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.text);
        let audited = h.count("SELECT COUNT(*) FROM audit_event").await;

        let long = "n".repeat(65);
        let refusals: [(&str, AppForm, &str); 9] = [
            ("empty name", AppForm { name: "", ..SHOP }, "1 to 64 bytes of printable text"),
            ("long name", AppForm { name: &long, ..SHOP }, "1 to 64 bytes of printable text"),
            ("spaced name", AppForm { name: " Web", ..SHOP }, "1 to 64 bytes of printable text"),
            ("bidi name", AppForm { name: "shop\u{202e}exe.txt", ..SHOP }, "1 to 64 bytes of printable text"),
            ("taken name", AppForm { name: "Mobile app", ..SHOP }, "already has an application named"),
            ("no redirect URI", AppForm { redirect_uris: " \n ", ..SHOP }, "at least one URI"),
            ("plain HTTP", AppForm { redirect_uris: "http://shop.example/cb", ..SHOP }, "use https"),
            ("fragment", AppForm { post_logout_redirect_uris: "https://shop.example/#x", ..SHOP }, "fragment"),
            ("algorithm", AppForm { alg: "HS256", ..SHOP }, "RS256"),
        ];
        for (what, form, why) in &refusals {
            let refused = h.post_form(&add, Some(&cookie), &form.fields(&csrf)).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "adding, {what}: {}", refused.text);
            assert!(refused.text.contains(why), "adding, {what}: {}", refused.text);
            let refused = h
                .post_form(
                    &format!("/admin/services/{service}/applications/{shop}"),
                    Some(&cookie),
                    &form.fields(&csrf),
                )
                .await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "changing, {what}: {}", refused.text);
            assert!(refused.text.contains(why), "changing, {what}: {}", refused.text);
        }
        assert_eq!(h.count("SELECT COUNT(*) FROM oidc_application").await, 2);
        assert_eq!(h.count("SELECT COUNT(*) FROM audit_event").await, audited, "nothing was done");
        let page = h.page(&format!("/admin/services/{service}"), Some(&cookie)).await;
        assert!(block(&page, &shop).contains(r#"<h3 data-field="name">Web shop</h3>"#), "{}", page.text);

        // An application is found under its own service only.
        for uri in [
            format!("/admin/services/{other}/applications/{shop}"),
            format!("/admin/services/{other}/applications/{shop}/secret"),
            format!("/admin/services/{other}/applications/{shop}/delete"),
            format!("/admin/services/{service}/applications/{}", "0".repeat(32)),
            format!("/admin/services/{service}/applications/nul%00byte/delete"),
        ] {
            let refused = h.post_form(&uri, Some(&cookie), &SHOP.fields(&csrf)).await;
            assert_eq!(refused.status, StatusCode::NOT_FOUND, "{uri}: {}", refused.text);
        }

        // Without the session's CSRF token, or from another site, nothing.
        let wrong = "A".repeat(43);
        let forged = AppForm { name: "Forged", ..SHOP };
        let remove = format!("/admin/services/{service}/applications/{shop}/delete");
        for (token, origin) in [(wrong.as_str(), None), (csrf.as_str(), Some("https://evil.example"))] {
            let refused = h.post_form_from(&add, Some(&cookie), &forged.fields(token), origin).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{origin:?}: {}", refused.text);
            let refused = h.post_form_from(&remove, Some(&cookie), &[("csrf", token), CONFIRMED], origin).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{origin:?}: {}", refused.text);
        }
        assert_eq!(h.count("SELECT COUNT(*) FROM oidc_application").await, 2);
    })
    .await;
}

/// A name with markup is kept and shown as text on every page that names
/// it; one with bidirectional controls is refused.
#[tokio::test]
async fn page_escapes_a_hostile_application_name() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let service = h.create("Shop").await["id"].as_str().expect("id").to_owned();
        let (cookie, csrf) = h.sign_in().await;
        let hostile = r#"<script>alert(1)</script>"'&<b>"#;
        let escaped = "&#60;script&#62;alert(1)&#60;/script&#62;";
        let add = format!("/admin/services/{service}/applications");
        let made = h.post_form(&add, Some(&cookie), &AppForm { name: hostile, ..SHOP }.fields(&csrf)).await;
        let (client_id, _) = shown_secret(&made);
        assert!(!made.text.contains(hostile) && made.text.contains(escaped), "{}", made.text);
        let stored: String = sqlx::query_scalar("SELECT name FROM oidc_application WHERE client_id = $1")
            .bind(&client_id)
            .fetch_one(&h.sql)
            .await
            .expect("name");
        assert_eq!(stored, hostile, "kept as given");

        let page = h.page(&format!("/admin/services/{service}"), Some(&cookie)).await;
        assert!(!page.text.contains("<script>"), "{}", page.text);
        assert!(block(&page, &client_id).contains(escaped), "{}", page.text);
        // In an attribute too: the buttons' labels and the form's value.
        assert!(!page.text.contains(r#"value="<script>"#), "{}", page.text);
        for uri in [
            format!("/admin/services/{service}/applications/{client_id}/secret"),
            format!("/admin/services/{service}/applications/{client_id}/delete"),
        ] {
            let asked = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf)]).await;
            assert_eq!(asked.status, StatusCode::OK, "{uri}: {}", asked.text);
            assert!(!asked.text.contains(hostile) && asked.text.contains(escaped), "{uri}: {}", asked.text);
        }

        for name in ["shop\u{202e}txt.exe", "\u{2067}shop", "sh\u{200b}op", "line\nbreak"] {
            let refused = h.post_form(&add, Some(&cookie), &AppForm { name, ..SHOP }.fields(&csrf)).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{name:?}: {}", refused.text);
            assert!(refused.text.contains("1 to 64 bytes of printable text"), "{name:?}: {}", refused.text);
        }
        assert_eq!(h.count("SELECT COUNT(*) FROM oidc_application").await, 1);
    })
    .await;
}
