//! Many applications of one service: the admin API that manages them, and
//! single sign-on across them.

use super::*;

/// The second application's callback: another relying party of the same
/// service.
const OTHER_REDIRECT: &str = "https://wiki.example/oidc/callback";

async fn admin(app: &TestApp, method: Method, uri: &str, body: Option<Value>) -> TestResponse {
    let headers = [("authorization", ADMIN), ("content-type", "application/json")];
    send(app, method, uri, &headers, body.map(|b| b.to_string())).await
}

/// Adds application `name` to `service`, a confidential client of
/// `redirect` and one of the service's own, which asks for no consent.
async fn add(app: &TestApp, service: &ServiceId, name: &str, redirect: &str) -> Rp {
    let body =
        json!({"name": name, "redirect_uris": [redirect], "post_logout_redirect_uris": [], "ask_consent": false});
    let made = admin(app, Method::POST, &format!("/admin/api/services/{service}/applications"), Some(body)).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let json = made.json();
    assert_eq!(json["name"], name);
    Rp {
        service: *service,
        client_id: json["client_id"].as_str().expect("client_id").to_owned(),
        secret: Some(json["client_secret"].as_str().expect("a confidential client's secret").to_owned()),
    }
}

fn authorize_at(rp: &Rp, redirect: &str) -> String {
    format!(
        "/oidc/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid&state=s-9&code_challenge={}&code_challenge_method=S256",
        rp.client_id,
        urlencode(redirect),
        challenge_of(VERIFIER)
    )
}

#[tokio::test]
async fn one_sign_in_to_a_service_signs_in_at_each_of_its_applications() {
    each_backend(|app| async move {
        let mail = client(&app, false).await;
        let wiki = add(&app, &mail.service, "Team wiki", OTHER_REDIRECT).await;

        // The login page says which application asks.
        let shown = app.get(&authorize_at(&wiki, OTHER_REDIRECT), None).await;
        assert!(shown.text().contains(r#"<strong id="application-name">Team wiki</strong>"#), "{}", shown.text());
        // And what it will learn: authorize_at asks for openid alone.
        let learns = r#"<span id="application-learns">that it is you each time you sign in, and your account name</span>"#;
        assert!(shown.text().contains(learns), "{}", shown.text());

        // One sign-in, at the first application.
        let (params, response) = code_for(&app, &mail, "nora").await;
        let name = format!("sesame_session_{}", mail.service);
        let session = format!("{name}={}", response.cookie(&name).expect("session cookie"));
        let mail_tokens = exchange(&app, &mail, &params["code"], Some(VERIFIER)).await.json();
        let mail_claims = verify_id_token(&app, &mail, mail_tokens["id_token"].as_str().expect("id_token")).await;

        // The second application gets a code at once, for the same person.
        app.clock.advance(30);
        let at_wiki = app.get(&authorize_at(&wiki, OTHER_REDIRECT), Some(&session)).await;
        assert_eq!(at_wiki.status, StatusCode::SEE_OTHER, "{}", at_wiki.text());
        let location = at_wiki.headers[header::LOCATION].to_str().expect("location").to_owned();
        assert!(location.starts_with(OTHER_REDIRECT), "{location}");
        let code = url::Url::parse(&location)
            .expect("url")
            .query_pairs()
            .find(|(k, _)| k == "code")
            .expect("a code")
            .1
            .into_owned();
        let form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}&client_id={}&client_secret={}",
            urlencode(&code),
            urlencode(OTHER_REDIRECT),
            wiki.client_id,
            urlencode(wiki.secret.as_deref().expect("secret"))
        );
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        let tokens = send(&app, Method::POST, "/oidc/token", &headers, Some(form)).await;
        assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
        let wiki_claims = verify_id_token(&app, &wiki, tokens.json()["id_token"].as_str().expect("id_token")).await;
        assert_eq!(wiki_claims["aud"], wiki.client_id.as_str());
        assert_eq!(wiki_claims["sub"], mail_claims["sub"], "one person, one subject, at every application");
        assert_eq!(wiki_claims["auth_time"], mail_claims["auth_time"], "the one sign-in's time");

        // Logout from the first application ends the session for both.
        let id_token = mail_tokens["id_token"].as_str().expect("id_token");
        let out = app
            .get(
                &format!(
                    "/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={}",
                    urlencode("https://app.example/bye")
                ),
                Some(&session),
            )
            .await;
        assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.text());
        let again = app.get(&authorize_at(&wiki, OTHER_REDIRECT), Some(&session)).await;
        assert_eq!(again.status, StatusCode::OK, "the wiki must ask for a new sign-in: {}", again.text());
        assert!(again.text().contains(r#"id="token""#));
    })
    .await;
}

#[tokio::test]
async fn an_application_takes_only_its_own_redirect_uris_and_codes() {
    each_backend(|app| async move {
        let mail = client(&app, false).await;
        let wiki = add(&app, &mail.service, "Team wiki", OTHER_REDIRECT).await;
        // The other application's callback, though of the same service, is
        // never followed.
        let refused = app.get(&authorize_at(&mail, OTHER_REDIRECT), None).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text());
        assert!(refused.headers.get(header::LOCATION).is_none());
        // A code issued to one application is refused to the other.
        let (params, _) = code_for(&app, &mail, "otto").await;
        let form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}&client_id={}&client_secret={}",
            urlencode(&params["code"]),
            urlencode(REDIRECT),
            wiki.client_id,
            urlencode(wiki.secret.as_deref().expect("secret"))
        );
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        oauth_error(
            &send(&app, Method::POST, "/oidc/token", &headers, Some(form)).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        );
    })
    .await;
}

#[tokio::test]
async fn a_new_application_asks_for_consent_and_a_change_that_leaves_a_policy_out_keeps_it() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let base = format!("/admin/api/services/{service}/applications");
        let policies = |json: &Value| (json["ask_consent"].as_bool(), json["refresh_tokens"].as_bool());
        let body = json!({"name": "Wiki", "redirect_uris": ["https://wiki.example/cb"]});
        let made = admin(&app, Method::POST, &base, Some(body)).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
        assert_eq!(policies(&made.json()), (Some(true), Some(false)), "a new application asks, unless told not to");
        let wiki = format!("{base}/{}", made.json()["client_id"].as_str().expect("client_id"));

        let on = json!({"redirect_uris": ["https://wiki.example/cb"], "refresh_tokens": true});
        assert_eq!(policies(&admin(&app, Method::PUT, &wiki, Some(on)).await.json()), (Some(true), Some(true)));
        // Only the URIs: both policies stay as they are.
        let uris = json!({"redirect_uris": ["https://wiki.example/callback"]});
        let kept = admin(&app, Method::PUT, &wiki, Some(uris.clone())).await;
        assert_eq!(kept.status, StatusCode::OK, "{}", kept.text());
        assert_eq!(policies(&kept.json()), (Some(true), Some(true)));
        // The older route changes the first application the same way.
        let old = format!("/admin/api/services/{service}/oidc");
        assert_eq!(policies(&admin(&app, Method::PUT, &old, Some(uris)).await.json()), (Some(true), Some(true)));
        let off = json!({"redirect_uris": ["https://wiki.example/cb"], "ask_consent": false, "refresh_tokens": false});
        assert_eq!(policies(&admin(&app, Method::PUT, &wiki, Some(off)).await.json()), (Some(false), Some(false)));

        // The older route makes a client that does not ask, as it always did.
        let other = app.create_service("Other").await;
        let body = json!({"redirect_uris": ["https://other.example/cb"]});
        let made = admin(&app, Method::PUT, &format!("/admin/api/services/{other}/oidc"), Some(body)).await;
        assert_eq!(policies(&made.json()), (Some(false), Some(false)), "{}", made.text());
    })
    .await;
}

#[tokio::test]
async fn applications_are_made_listed_changed_and_removed_through_the_api() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let base = format!("/admin/api/services/{service}/applications");
        assert_eq!(admin(&app, Method::GET, &base, None).await.json(), json!([]));
        let first = add(&app, &service, "Grafana", "https://grafana.example/login/generic_oauth").await;
        app.clock.advance(1);
        let second = add(&app, &service, "Gitea", "https://git.example/user/oauth2/sesame/callback").await;

        let listed = admin(&app, Method::GET, &base, None).await.json();
        let names: Vec<&str> = listed.as_array().expect("a list").iter().map(|a| a["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Grafana", "Gitea"], "the first made first");
        assert!(listed[0].get("client_secret").is_none(), "a list never shows a secret");

        // The older route addresses the first application.
        let old = admin(&app, Method::GET, &format!("/admin/api/services/{service}/oidc"), None).await;
        assert_eq!(old.json()["client_id"], first.client_id.as_str());

        // A change keeps the client id and the secret, and shows none.
        let changed = admin(
            &app,
            Method::PUT,
            &format!("{base}/{}", second.client_id),
            Some(json!({"name": "Forgejo", "redirect_uris": ["https://git.example/cb"]})),
        )
        .await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.text());
        let json = changed.json();
        assert_eq!(
            (json["name"].as_str(), json["client_id"].as_str()),
            (Some("Forgejo"), Some(second.client_id.as_str()))
        );
        assert!(json.get("client_secret").is_none(), "{json}");

        // Refusals, each with its code, and nothing written.
        let taken = admin(
            &app,
            Method::POST,
            &base,
            Some(json!({"name": "Grafana", "redirect_uris": ["https://other.example/cb"]})),
        )
        .await;
        assert_eq!(
            (taken.status, taken.json()["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("application_name_taken"))
        );
        for name in ["", " padded", "line\nbreak", &"x".repeat(65), "bidi\u{202e}txt"] {
            let bad = admin(
                &app,
                Method::POST,
                &base,
                Some(json!({"name": name, "redirect_uris": ["https://a.example/cb"]})),
            )
            .await;
            assert_eq!(bad.json()["error"], "invalid_application_name", "{name:?}: {}", bad.text());
        }
        let renamed_onto = admin(
            &app,
            Method::PUT,
            &format!("{base}/{}", second.client_id),
            Some(json!({"name": "Grafana", "redirect_uris": ["https://git.example/cb"]})),
        )
        .await;
        assert_eq!(renamed_onto.json()["error"], "application_name_taken");
        assert_eq!(admin(&app, Method::GET, &base, None).await.json().as_array().map(Vec::len), Some(2));

        // Another service's application is unknown under this one.
        let elsewhere = app.create_service("Elsewhere").await;
        let foreign = add(&app, &elsewhere, "Grafana", "https://grafana.example/cb").await;
        for method in [Method::GET, Method::DELETE] {
            let answer = admin(&app, method, &format!("{base}/{}", foreign.client_id), None).await;
            assert_eq!(
                (answer.status, answer.json()["error"].as_str()),
                (StatusCode::NOT_FOUND, Some("unknown_application"))
            );
        }

        // A new secret ends the old one; removal leaves the other alone.
        let rotated = admin(&app, Method::POST, &format!("{base}/{}/secret", first.client_id), None).await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
        assert_ne!(rotated.json()["client_secret"].as_str(), first.secret.as_deref());
        let removed = admin(&app, Method::DELETE, &format!("{base}/{}", first.client_id), None).await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text());
        let gone = admin(&app, Method::GET, &format!("{base}/{}", first.client_id), None).await;
        assert_eq!(gone.json()["error"], "unknown_application");
        let left = admin(&app, Method::GET, &base, None).await.json();
        assert_eq!(left[0]["client_id"], second.client_id.as_str());
        assert_eq!(
            admin(&app, Method::GET, &format!("/admin/api/services/{elsewhere}/applications"), None)
                .await
                .json()
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        // Each change is in the audit log.
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_event WHERE action LIKE 'oidc_%'").await, 6);
    })
    .await;
}
