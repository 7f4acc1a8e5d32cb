//! Refresh tokens (RFC 6749 §6, rotated as RFC 9700 asks) and revocation
//! (RFC 7009), through the router.

use super::*;

/// An authorization URL asking for `scope`.
fn asking(rp: &Rp, scope: &str) -> String {
    authorize_url(rp, "").replace("scope=openid%20profile", &format!("scope={}", urlencode(scope)))
}

/// Signs in at `rp` as a new account `name`, asking for `scope`, and
/// exchanges the code: the token answer.
async fn tokens_for(app: &TestApp, rp: &Rp, name: &str, scope: &str) -> Value {
    let shown = page(&app.get(&asking(rp, scope), None).await);
    register(app, &shown, name).await;
    let params = redirected(&finish(app, &shown).await);
    let answer = exchange(app, rp, &params["code"], Some(VERIFIER)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer.json()
}

async fn token_form(app: &TestApp, rp: &Rp, form: &str) -> TestResponse {
    let mut form = form.to_owned();
    form.push_str(&format!("&client_id={}", rp.client_id));
    if let Some(secret) = &rp.secret {
        form.push_str(&format!("&client_secret={}", urlencode(secret)));
    }
    send(app, Method::POST, "/oidc/token", &[("content-type", "application/x-www-form-urlencoded")], Some(form)).await
}

async fn refresh(app: &TestApp, rp: &Rp, token: &str) -> TestResponse {
    token_form(app, rp, &format!("grant_type=refresh_token&refresh_token={}", urlencode(token))).await
}

async fn revoke(app: &TestApp, rp: &Rp, token: &str) -> TestResponse {
    let mut form = format!("token={}&client_id={}", urlencode(token), rp.client_id);
    if let Some(secret) = &rp.secret {
        form.push_str(&format!("&client_secret={}", urlencode(secret)));
    }
    send(app, Method::POST, "/oidc/revoke", &[("content-type", "application/x-www-form-urlencoded")], Some(form)).await
}

async fn userinfo(app: &TestApp, access: &str) -> StatusCode {
    let bearer = format!("Bearer {access}");
    send(app, Method::GET, "/oidc/userinfo", &[("authorization", &bearer)], None).await.status
}

/// A public client of another service.
async fn other_client(app: &TestApp) -> Rp {
    let service = app.create_service("Elsewhere").await;
    let made = configure(app, &service, json!({"redirect_uris": [REDIRECT], "public": true})).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.text());
    Rp { service, client_id: field(&made.json(), "client_id").to_owned(), secret: None }
}

fn field<'a>(json: &'a Value, name: &str) -> &'a str {
    json[name].as_str().unwrap_or_else(|| panic!("{name} in {json}"))
}

#[tokio::test]
async fn a_refresh_token_rotates_and_a_reused_one_revokes_its_whole_chain() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        let first = tokens_for(&app, &rp, "rita", "openid offline_access").await;
        assert_eq!(first["scope"], "openid offline_access");
        let claims = verify_id_token(&app, &rp, field(&first, "id_token")).await;

        app.clock.advance(600);
        let second = refresh(&app, &rp, field(&first, "refresh_token")).await;
        assert_eq!(second.status, StatusCode::OK, "{}", second.text());
        let second = second.json();
        assert_ne!(second["refresh_token"], first["refresh_token"], "rotated at every use");
        assert_eq!(userinfo(&app, field(&second, "access_token")).await, StatusCode::OK);
        let refreshed = verify_id_token(&app, &rp, field(&second, "id_token")).await;
        assert_eq!(
            (refreshed["sub"].clone(), refreshed["auth_time"].clone()),
            (claims["sub"].clone(), claims["auth_time"].clone())
        );
        assert!(refreshed.get("nonce").is_none(), "a refreshed ID token has no nonce: {refreshed}");

        // The spent token, used again: a copy. The whole chain goes, with
        // the tokens issued from it, and the live token stops working too.
        let reused = refresh(&app, &rp, field(&first, "refresh_token")).await;
        oauth_error(&reused, StatusCode::BAD_REQUEST, "invalid_grant");
        assert!(reused.json()["error_description"].as_str().unwrap().contains("already used"));
        oauth_error(
            &refresh(&app, &rp, field(&second, "refresh_token")).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        );
        assert_eq!(userinfo(&app, field(&second, "access_token")).await, StatusCode::UNAUTHORIZED);
        assert_eq!(userinfo(&app, field(&first, "access_token")).await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.count("SELECT COUNT(*) FROM oidc_refresh_token").await, 0);
    })
    .await;
}

#[tokio::test]
async fn only_offline_access_or_an_application_configured_for_it_gets_a_refresh_token() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        let plain = tokens_for(&app, &rp, "sam", "openid").await;
        assert!(plain.get("refresh_token").is_none(), "{plain}");
        let settings = json!({"redirect_uris": [REDIRECT], "refresh_tokens": true});
        assert_eq!(configure(&app, &rp.service, settings).await.status, StatusCode::OK);
        let configured = tokens_for(&app, &rp, "tess", "openid").await;
        assert!(configured["refresh_token"].as_str().is_some(), "{configured}");
        assert_eq!(configured["scope"], "openid");
    })
    .await;
}

#[tokio::test]
async fn a_refresh_token_is_good_only_for_its_client_and_may_only_narrow_its_scope() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        let other = other_client(&app).await;
        let tokens = tokens_for(&app, &rp, "uma", "openid profile offline_access").await;
        let token = field(&tokens, "refresh_token");
        // Another client cannot use it, and does not spend it.
        oauth_error(&refresh(&app, &other, token).await, StatusCode::BAD_REQUEST, "invalid_grant");
        // A scope the sign-in did not grant, or one without openid.
        for scope in ["openid email", "profile", "openid offline_access admin"] {
            let form =
                format!("grant_type=refresh_token&refresh_token={}&scope={}", urlencode(token), urlencode(scope));
            oauth_error(&token_form(&app, &rp, &form).await, StatusCode::BAD_REQUEST, "invalid_scope");
        }
        let form = format!("grant_type=refresh_token&refresh_token={}&scope=openid", urlencode(token));
        let narrowed = token_form(&app, &rp, &form).await;
        assert_eq!(narrowed.status, StatusCode::OK, "{}", narrowed.text());
        assert_eq!(narrowed.json()["scope"], "openid");
        // Malformed: no token, an unknown one, a client that is not who it says.
        oauth_error(
            &token_form(&app, &rp, "grant_type=refresh_token").await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
        oauth_error(&refresh(&app, &rp, "not-a-token").await, StatusCode::BAD_REQUEST, "invalid_grant");
        let wrong = Rp { secret: Some("wrong".to_owned()), ..rp.clone() };
        oauth_error(
            &refresh(&app, &wrong, field(&narrowed.json(), "refresh_token")).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
    })
    .await;
}

#[tokio::test]
async fn a_refresh_token_ends_when_unused_too_long_and_when_its_account_goes() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        let idle = tokens_for(&app, &rp, "vera", "openid offline_access").await;
        let gone = tokens_for(&app, &rp, "will", "openid offline_access").await;
        app.clock.advance(sesame_server::oidc::refresh::IDLE_SECS as u64);
        oauth_error(&refresh(&app, &rp, field(&idle, "refresh_token")).await, StatusCode::BAD_REQUEST, "invalid_grant");
        let delete = send(
            &app,
            Method::DELETE,
            &format!("/admin/api/services/{}/accounts/will", rp.service),
            &[("authorization", ADMIN)],
            None,
        )
        .await;
        assert_eq!(delete.status, StatusCode::NO_CONTENT, "{}", delete.text());
        oauth_error(&refresh(&app, &rp, field(&gone, "refresh_token")).await, StatusCode::BAD_REQUEST, "invalid_grant");
        assert_eq!(app.count("SELECT COUNT(*) FROM oidc_refresh_token WHERE account = 'will'").await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_chain_ends_ninety_days_after_its_sign_in_however_often_it_is_used() {
    let app = TestApp::new().await;
    let rp = client(&app, false).await;
    let mut tokens = tokens_for(&app, &rp, "xena", "openid offline_access").await;
    let step = sesame_server::oidc::refresh::IDLE_SECS as u64 - 60;
    let mut used = 0;
    loop {
        app.clock.advance(step);
        let next = refresh(&app, &rp, field(&tokens, "refresh_token")).await;
        if next.status != StatusCode::OK {
            oauth_error(&next, StatusCode::BAD_REQUEST, "invalid_grant");
            break;
        }
        tokens = next.json();
        used += 1;
        assert!(used < 10, "the chain never ended");
    }
    let lived = used * step;
    assert!(lived <= sesame_server::oidc::refresh::MAX_SECS as u64, "lived {lived} s");
}

#[tokio::test]
async fn revocation_ends_a_refresh_chain_or_an_access_token_and_keeps_others_tokens() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        let other = other_client(&app).await;
        let chain = tokens_for(&app, &rp, "yves", "openid offline_access").await;
        let single = tokens_for(&app, &rp, "zoe", "openid").await;

        // Another client's token is refused and stays good.
        oauth_error(
            &revoke(&app, &other, field(&single, "access_token")).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        );
        assert_eq!(userinfo(&app, field(&single, "access_token")).await, StatusCode::OK);

        let done = revoke(&app, &rp, field(&single, "access_token")).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text());
        assert_eq!(userinfo(&app, field(&single, "access_token")).await, StatusCode::UNAUTHORIZED);

        // A refresh token takes its chain and its access tokens with it.
        assert_eq!(revoke(&app, &rp, field(&chain, "refresh_token")).await.status, StatusCode::OK);
        assert_eq!(userinfo(&app, field(&chain, "access_token")).await, StatusCode::UNAUTHORIZED);
        oauth_error(
            &refresh(&app, &rp, field(&chain, "refresh_token")).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        );

        // Unknown and already revoked tokens are answered as revoked.
        assert_eq!(revoke(&app, &rp, "never-issued").await.status, StatusCode::OK);
        assert_eq!(revoke(&app, &rp, field(&chain, "refresh_token")).await.status, StatusCode::OK);
        // No token, or a client that does not prove itself.
        let form = format!("client_id={}&client_secret={}", rp.client_id, urlencode(rp.secret.as_deref().unwrap()));
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        oauth_error(
            &send(&app, Method::POST, "/oidc/revoke", &headers, Some(form)).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
        let wrong = Rp { secret: Some("wrong".to_owned()), ..rp.clone() };
        oauth_error(&revoke(&app, &wrong, "anything").await, StatusCode::UNAUTHORIZED, "invalid_client");
    })
    .await;
}

/// Two instances of the server over one PostgreSQL database: a refresh
/// token spent on one is spent on the other, and a reuse there revokes the
/// chain for both.
#[tokio::test]
async fn rotation_and_reuse_detection_hold_across_two_instances_on_postgres() {
    let Some(one) = crate::support::postgres_for_a_race().await else { return };
    let url = one.database_url();
    let two = sesame_server::db::Db::connect(&url).await.expect("a second instance's connections");
    let two = one.sibling(two);
    let rp = client(&one, false).await;
    let first = tokens_for(&one, &rp, "ada", "openid offline_access").await;
    let second = refresh(&two, &rp, field(&first, "refresh_token")).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    let second = second.json();
    // The spent token, at the first instance: a reuse, seen there too.
    oauth_error(&refresh(&one, &rp, field(&first, "refresh_token")).await, StatusCode::BAD_REQUEST, "invalid_grant");
    oauth_error(&refresh(&two, &rp, field(&second, "refresh_token")).await, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(userinfo(&two, field(&second, "access_token")).await, StatusCode::UNAUTHORIZED);
    one.cleanup_handle().run().await;
}

#[tokio::test]
async fn a_refreshed_id_token_carries_the_profile_as_it_is_now() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        let first = tokens_for(&app, &rp, "rita", "openid profile email offline_access").await;
        let claims = verify_id_token(&app, &rp, field(&first, "id_token")).await;
        assert!(claims.get("name").is_none(), "no profile yet: {claims}");
        let set = send(
            &app,
            Method::PUT,
            &format!("/admin/api/services/{}/accounts/rita/profile", rp.service),
            &[("authorization", ADMIN), ("content-type", "application/json")],
            Some(json!({"display_name": "Rita Levi", "email": "rita@example.org"}).to_string()),
        )
        .await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.text());
        let next = refresh(&app, &rp, field(&first, "refresh_token")).await.json();
        let claims = verify_id_token(&app, &rp, field(&next, "id_token")).await;
        assert_eq!((claims["name"].as_str(), claims["email"].as_str()), (Some("Rita Levi"), Some("rita@example.org")));
        assert_eq!(claims["email_verified"], true, "set by the admin");
        // A narrowed scope releases less.
        let form =
            format!("grant_type=refresh_token&refresh_token={}&scope=openid", urlencode(field(&next, "refresh_token")));
        let narrowed = token_form(&app, &rp, &form).await.json();
        let claims = verify_id_token(&app, &rp, field(&narrowed, "id_token")).await;
        assert!(claims.get("name").is_none() && claims.get("email").is_none(), "{claims}");
    })
    .await;
}
