//! Profiles in OpenID Connect: the `profile` scope releases the display name
//! as `name`, the `email` scope the address and `email_verified`, in the ID
//! token and at userinfo, each only when asked for and set; and the person
//! changing theirs on the account page, which leaves a changed address
//! unverified.

use super::*;

async fn admin(app: &TestApp, method: Method, uri: &str, body: Option<Value>) -> TestResponse {
    let headers = [("authorization", ADMIN), ("content-type", "application/json")];
    send(app, method, uri, &headers, body.map(|b| b.to_string())).await
}

async fn set_profile(app: &TestApp, rp: &Rp, account: &str, body: Value) {
    let uri = format!("/admin/api/services/{}/accounts/{account}/profile", rp.service);
    let set = admin(app, Method::PUT, &uri, Some(body)).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text());
}

async fn stored_profile(app: &TestApp, rp: &Rp, account: &str) -> Value {
    let uri = format!("/admin/api/services/{}/accounts/{account}/profile", rp.service);
    admin(app, Method::GET, &uri, None).await.json()
}

/// Signs in as `name` through the login page; returns the code's query and
/// the browser's session cookie at the service, as `name=value`.
async fn signed_in(app: &TestApp, rp: &Rp, name: &str) -> (HashMap<String, String>, String) {
    let (params, response) = code_for(app, rp, name).await;
    let cookie = format!("sesame_session_{}", rp.service);
    let session = format!("{cookie}={}", response.cookie(&cookie).expect("a session cookie"));
    (params, session)
}

/// A code for `scope`, for the browser with `session`: its sign-in is
/// reused, as single sign-on does.
async fn code_with(app: &TestApp, rp: &Rp, session: &str, scope: &str) -> String {
    let url = authorize_url(rp, "").replace("scope=openid%20profile", &format!("scope={}", urlencode(scope)));
    redirected(&app.get(&url, Some(session)).await)["code"].clone()
}

/// The token answer's scope, the ID token's claims and userinfo's answer
/// for `code`.
async fn claims(app: &TestApp, rp: &Rp, code: &str) -> (String, Value, Value) {
    let answer = exchange(app, rp, code, Some(VERIFIER)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let tokens = answer.json();
    let id_token = verify_id_token(app, rp, tokens["id_token"].as_str().expect("id_token")).await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().expect("access_token"));
    let info = send(app, Method::GET, "/oidc/userinfo", &[("authorization", &bearer)], None).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.text());
    (tokens["scope"].as_str().expect("scope").to_owned(), id_token, info.json())
}

/// The profile claims of a set of claims, `null` where absent.
fn released(claims: &Value) -> Value {
    json!({"name": claims.get("name"), "email": claims.get("email"), "email_verified": claims.get("email_verified")})
}

fn absent() -> Value {
    json!({"name": null, "email": null, "email_verified": null})
}

#[tokio::test]
async fn the_scopes_release_the_profile_claims_they_name_and_no_others() {
    each_backend(|app| async move {
        let doc = app.get("/.well-known/openid-configuration", None).await.json();
        let scopes = doc["scopes_supported"].as_array().expect("scopes");
        for scope in ["openid", "profile", "email"] {
            assert!(scopes.contains(&json!(scope)), "{doc}");
        }
        let claims_supported = doc["claims_supported"].as_array().expect("claims");
        for claim in ["preferred_username", "name", "email", "email_verified"] {
            assert!(claims_supported.contains(&json!(claim)), "{doc}");
        }

        let rp = client(&app, false).await;
        let (params, session) = signed_in(&app, &rp, "ada").await;
        set_profile(&app, &rp, "ada", json!({"display_name": "Ada Lovelace", "email": "ada@example.com"})).await;

        // The first code asked for `openid profile`: the name, no email. The
        // profile is read when the code is exchanged.
        let (scope, id_token, info) = claims(&app, &rp, &params["code"]).await;
        assert_eq!(scope, "openid profile");
        let name_only = json!({"name": "Ada Lovelace", "email": null, "email_verified": null});
        assert_eq!((released(&id_token), released(&info)), (name_only.clone(), name_only));
        assert_eq!((&id_token["preferred_username"], &info["preferred_username"]), (&json!("ada"), &json!("ada")));

        let everything = json!({"name": "Ada Lovelace", "email": "ada@example.com", "email_verified": true});
        let email_only = json!({"name": null, "email": "ada@example.com", "email_verified": true});
        for (asked, granted, expected) in [
            ("openid", "openid", absent()),
            ("openid email", "openid email", email_only),
            ("openid profile email", "openid profile email", everything.clone()),
            // Granted in one order whatever the order asked, and unknown
            // scopes left out.
            ("email phone profile openid", "openid profile email", everything),
        ] {
            let code = code_with(&app, &rp, &session, asked).await;
            let (scope, id_token, info) = claims(&app, &rp, &code).await;
            assert_eq!(scope, granted, "{asked}");
            assert_eq!(released(&id_token), expected, "{asked}: {id_token}");
            assert_eq!(released(&info), expected, "{asked}: {info}");
            assert_eq!(info["sub"], id_token["sub"], "{asked}");
        }

        // Nothing set, nothing released, whatever the scope.
        set_profile(&app, &rp, "ada", json!({"display_name": null, "email": null})).await;
        let code = code_with(&app, &rp, &session, "openid profile email").await;
        let (_, id_token, info) = claims(&app, &rp, &code).await;
        assert_eq!((released(&id_token), released(&info)), (absent(), absent()));
        assert_eq!(id_token["preferred_username"], "ada");
        let keys: Vec<&String> = info.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["preferred_username", "sub"], "{info}");
    })
    .await;
}

/// A form posted from the account page, as its browser sends it.
async fn post_profile(
    app: &TestApp,
    rp: &Rp,
    session: Option<&str>,
    origin: &str,
    fields: &[(&str, &str)],
) -> TestResponse {
    let body = fields.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect::<Vec<_>>().join("&");
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded"), ("origin", origin)];
    if let Some(session) = session {
        headers.push(("cookie", session));
    }
    send(app, Method::POST, &format!("/services/{}/account/profile", rp.service), &headers, Some(body)).await
}

#[tokio::test]
async fn the_person_changes_their_profile_on_the_account_page_and_a_changed_email_is_unverified() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        let (_, session) = signed_in(&app, &rp, "grace").await;
        let account_page = format!("/services/{}/account", rp.service);
        let page = app.get(&account_page, Some(&session)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert!(
            page.text().contains(&format!(r#"action="/services/{}/account/profile""#, rp.service)),
            "{}",
            page.text()
        );

        // The admin vouches for an address; the person sending the same one
        // again keeps it verified.
        set_profile(&app, &rp, "grace", json!({"display_name": null, "email": "grace@example.com"})).await;
        let fields = [("display_name", "Grace Hopper"), ("email", "grace@example.com")];
        let saved = post_profile(&app, &rp, Some(&session), ORIGIN, &fields).await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text());
        let back = saved.headers[header::LOCATION].to_str().expect("location").to_owned();
        assert_eq!(back, format!("/services/{}/account?done=profile_saved", rp.service));
        let expected = json!({"display_name": "Grace Hopper", "email": "grace@example.com", "email_verified": true});
        assert_eq!(stored_profile(&app, &rp, "grace").await, expected);

        // An address the person changes is not verified.
        let fields = [("display_name", "Grace Hopper"), ("email", "grace@navy.example")];
        assert_eq!(post_profile(&app, &rp, Some(&session), ORIGIN, &fields).await.status, StatusCode::SEE_OTHER);
        let expected = json!({"display_name": "Grace Hopper", "email": "grace@navy.example", "email_verified": false});
        assert_eq!(stored_profile(&app, &rp, "grace").await, expected);
        let shown = app.get(&back, Some(&session)).await;
        assert_eq!(shown.status, StatusCode::OK, "{}", shown.text());
        let text = shown.text();
        assert!(text.contains("Your profile is saved."), "{text}");
        assert!(text.contains(r#"value="Grace Hopper""#) && text.contains(r#"value="grace@navy.example""#), "{text}");
        assert!(text.contains(r#"<span id="email-state" class="muted">not verified</span>"#), "{text}");
        // Only fixed notices: a crafted link puts no words on the page.
        let crafted = app.get(&format!("{account_page}?done=Your%20account%20is%20locked"), Some(&session)).await;
        assert!(!crafted.text().contains("is locked") && !crafted.text().contains("Your profile is saved."));

        // Applications see it so.
        let code = code_with(&app, &rp, &session, "openid profile email").await;
        let (_, id_token, info) = claims(&app, &rp, &code).await;
        let released_now = json!({"name": "Grace Hopper", "email": "grace@navy.example", "email_verified": false});
        assert_eq!((released(&id_token), released(&info)), (released_now.clone(), released_now));

        // Refusals write nothing: a bad value shows the page again with what
        // was sent and why; another site, and no session, are turned away.
        let before = stored_profile(&app, &rp, "grace").await;
        let bad = post_profile(&app, &rp, Some(&session), ORIGIN, &[("display_name", "Grace"), ("email", "a@b")]).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
        assert!(
            bad.text().contains(r#"data-error="invalid_email""#) && bad.text().contains(r#"value="a@b""#),
            "{}",
            bad.text()
        );
        let long_name = "x".repeat(65);
        let bad = post_profile(&app, &rp, Some(&session), ORIGIN, &[("display_name", &long_name), ("email", "")]).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
        assert!(bad.text().contains(r#"data-error="invalid_display_name""#), "{}", bad.text());
        let cross =
            post_profile(&app, &rp, Some(&session), "https://evil.example", &[("email", "x@evil.example")]).await;
        assert_eq!(cross.status, StatusCode::FORBIDDEN, "{}", cross.text());
        let anonymous = post_profile(&app, &rp, None, ORIGIN, &[("email", "x@evil.example")]).await;
        assert_eq!(anonymous.status, StatusCode::SEE_OTHER, "{}", anonymous.text());
        assert_eq!(anonymous.headers[header::LOCATION], format!("/services/{}", rp.service).as_str());
        assert_eq!(stored_profile(&app, &rp, "grace").await, before);

        // Empty fields clear both.
        assert_eq!(
            post_profile(&app, &rp, Some(&session), ORIGIN, &[("display_name", " "), ("email", "")]).await.status,
            StatusCode::SEE_OTHER
        );
        let cleared = json!({"display_name": null, "email": null, "email_verified": false});
        assert_eq!(stored_profile(&app, &rp, "grace").await, cleared);
    })
    .await;
}
