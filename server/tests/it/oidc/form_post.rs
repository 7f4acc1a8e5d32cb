//! `response_mode=form_post` (OAuth 2.0 Form Post Response Mode): the
//! answer is a page whose form the browser posts to the redirect URI.

use super::*;

/// The fields of the form_post page in `response`, checking that the page
/// posts them to `REDIRECT`, may not be cached, and may send its form there.
fn posted(response: &TestResponse) -> HashMap<String, String> {
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert!(response.headers.get(header::LOCATION).is_none(), "a page, not a redirect");
    assert_eq!(response.headers[header::CACHE_CONTROL], "no-store");
    let csp = response.headers[header::CONTENT_SECURITY_POLICY].to_str().expect("csp");
    assert!(csp.contains("form-action 'self' https://app.example"), "{csp}");
    let html = response.text();
    assert!(html.contains(&format!(r#"<form id="form-post" method="post" action="{REDIRECT}">"#)), "{html}");
    assert!(html.contains(r#"<script src="/static/form_post.js" defer></script>"#), "{html}");
    hidden_fields(&html).into_iter().collect()
}

/// The hidden fields of the forms in `html`, in order, as the browser posts
/// them.
pub(super) fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for input in html.split(r#"<input type="hidden" name=""#).skip(1) {
        let (name, rest) = input.split_once(r#"" value=""#).expect("a value");
        let value = rest.split('"').next().expect("the value's end");
        fields.push((name.to_owned(), unescape(value)));
    }
    fields
}

/// An attribute value as the browser reads it.
fn unescape(value: &str) -> String {
    [("&#34;", "\""), ("&quot;", "\""), ("&#39;", "'"), ("&#60;", "<"), ("&lt;", "<"), ("&#62;", ">"), ("&gt;", ">")]
        .iter()
        .fold(value.to_owned(), |text, (entity, plain)| text.replace(entity, plain))
        .replace("&amp;", "&")
}

#[tokio::test]
async fn a_form_post_answer_is_a_page_that_posts_the_code_to_the_application() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        let shown = page(&app.get(&authorize_url(&rp, "&response_mode=form_post"), None).await);
        register(&app, &shown, "fiona").await;
        let finished = finish(&app, &shown).await;
        let fields = posted(&finished);
        assert_eq!((fields["state"].as_str(), fields["iss"].as_str()), ("st-123", ORIGIN));
        let tokens = exchange(&app, &rp, &fields["code"], Some(VERIFIER)).await;
        assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());

        // With a session, the code comes at once, posted too.
        let name = format!("sesame_session_{}", rp.service);
        let session = format!("{name}={}", finished.cookie(&name).expect("a session cookie"));
        let again = posted(&app.get(&authorize_url(&rp, "&response_mode=form_post"), Some(&session)).await);
        let tokens = exchange(&app, &rp, &again["code"], Some(VERIFIER)).await;
        assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
        // And errors: prompt=none without a session.
        let refused = posted(&app.get(&authorize_url(&rp, "&response_mode=form_post&prompt=none"), None).await);
        assert_eq!(refused["error"], "login_required", "{refused:?}");
    })
    .await;
}

#[tokio::test]
async fn form_post_fields_are_escaped_and_unknown_modes_are_refused_in_the_query() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let hostile = r#"x"><script>alert(1)</script>"#;
    let url = authorize_url(&rp, "&response_mode=form_post&prompt=none")
        .replace("state=st-123", &format!("state={}", urlencode(hostile)));
    let answer = app.get(&url, None).await;
    assert!(!answer.text().contains("<script>alert"), "{}", answer.text());
    assert_eq!(posted(&answer)["state"], hostile);

    let other = redirected(&app.get(&authorize_url(&rp, "&response_mode=fragment"), None).await);
    assert_eq!(other["error"], "invalid_request");
    assert!(other["error_description"].contains("response_mode"), "{other:?}");

    let script = app.get("/static/form_post.js", None).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.text().contains("form-post"));
}
