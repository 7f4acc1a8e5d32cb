//! What the provider answers a client that is wrong, hostile or late: each
//! case over real HTTP, following no redirect, with its exact error.
//! Errors before the client and its redirect URI are known good are a page,
//! never a redirect; later ones go back to the client (RFC 6749 §4.1.2.1),
//! always with `state` and `iss` (RFC 9207).

use anyhow::ensure;
use openidconnect::core::CoreJwsSigningAlgorithm;
use sesame_tests::oidc::{
    random_text, redirect_of, unverified_claims, userinfo, verify_id_token, Answer, AuthRequest, Callback, ClientAuth,
    Pkce, Redemption,
};

use super::{confidential, Provider, REDIRECT_URI};
use sesame_tests::{Result, Server, ServerOptions, Sesame};

/// Checks that `res` is the provider's own error page: 400, HTML, and no
/// redirect.
async fn assert_error_page(res: reqwest::Response, what: &str) -> Result<()> {
    let location = res.headers().get("location").cloned();
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(res.status(), 400, "{what}: {}", res.text().await?);
    ensure!(location.is_none(), "{what}: redirected to {location:?}");
    ensure!(content_type.starts_with("text/html"), "{what}: the error is a page, not {content_type:?}");
    Ok(())
}

/// Checks an error sent back to the client: to its redirect URI, with
/// `error`, the request's own `state`, and `iss`.
fn assert_sent_back(provider: &Provider, request: &AuthRequest, callback: &Callback, error: &str) {
    assert_eq!(callback.target(), request.redirect_uri.clone().unwrap_or_default(), "{}", callback.url);
    assert_eq!(callback.param("error"), Some(error), "{}", callback.url);
    assert_eq!(callback.param("state"), request.state.as_deref(), "{}", callback.url);
    assert_eq!(callback.param("iss"), Some(provider.server.origin.as_str()), "{}", callback.url);
    assert_eq!(callback.param("code"), None, "{}", callback.url);
}

/// Checks a token endpoint error: its status and RFC 6749 §5.2 `error`,
/// with a description, and never a token.
fn assert_token_error(answer: &Answer, status: u16, error: &str) {
    assert_eq!((answer.status.as_u16(), answer.error()), (status, Some(error)), "{}", answer.body);
    assert!(answer.body["error_description"].is_string(), "{}", answer.body);
    assert!(answer.body.get("access_token").is_none() && answer.body.get("id_token").is_none(), "{}", answer.body);
}

async fn send(provider: &Provider, redemption: Redemption<'_>) -> Result<Answer> {
    redemption.send(&reqwest::Client::new(), &provider.server.base).await
}

#[tokio::test]
async fn an_unknown_client_gets_an_error_page_and_no_redirect() -> Result<()> {
    let provider = Provider::start().await?;
    let browser = provider.browser();
    let mut request = AuthRequest::new(&provider.client, &Pkce::new());
    request.client_id = Some(random_text());
    assert_error_page(browser.get(&request.url(&provider.server.base)?).await?, "unknown client").await?;
    request.client_id = None;
    assert_error_page(browser.get(&request.url(&provider.server.base)?).await?, "no client_id").await?;

    // The token endpoint knows no such client either; Basic auth asks again.
    let auth = ClientAuth::Basic { id: "no-such-client", secret: "whatever" };
    let answer =
        send(&provider, Redemption { auth, code: "x", redirect_uri: REDIRECT_URI, code_verifier: None }).await?;
    assert_token_error(&answer, 401, "invalid_client");
    assert!(answer.header("www-authenticate").is_some_and(|h| h.starts_with("Basic")), "{:?}", answer.headers);
    Ok(())
}

#[tokio::test]
async fn a_redirect_uri_that_is_not_registered_gets_an_error_page_even_one_slash_or_query_away() -> Result<()> {
    let provider = Provider::start().await?;
    let browser = provider.browser();
    for uri in [
        Some("https://app.example.test/callback/"),
        Some("https://app.example.test/callback?next=/admin"),
        Some("https://app.example.test/callback#top"),
        Some("https://app.example.test/Callback"),
        Some("https://app.example.test:443/callback"),
        Some("http://app.example.test/callback"),
        Some("https://app.example.test/callbackx"),
        Some("https://app.example.test.evil.test/callback"),
        Some("https://app.example.test/"),
        Some(""),
        None,
    ] {
        let mut request = AuthRequest::new(&provider.client, &Pkce::new());
        request.redirect_uri = uri.map(str::to_owned);
        let res = browser.get(&request.url(&provider.server.base)?).await?;
        assert_error_page(res, &format!("redirect_uri {uri:?}")).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_bad_authorization_request_goes_back_to_the_client_with_its_error_state_and_iss() -> Result<()> {
    let provider = Provider::start().await?;
    let public = {
        let service = provider.server.create_service("Mobile app").await?;
        let mut settings = confidential(&[REDIRECT_URI]);
        settings["public"] = true.into();
        provider.server.admin().enable_oidc(&service.id, &settings).await?
    };
    let pkce = Pkce::new();
    let cases: Vec<(&str, AuthRequest)> = vec![
        (
            "unsupported_response_type",
            AuthRequest { response_type: Some("token".into()), ..AuthRequest::new(&provider.client, &pkce) },
        ),
        (
            "unsupported_response_type",
            AuthRequest { response_type: Some("code id_token".into()), ..AuthRequest::new(&provider.client, &pkce) },
        ),
        ("invalid_request", AuthRequest { response_type: None, ..AuthRequest::new(&provider.client, &pkce) }),
        (
            "invalid_scope",
            AuthRequest { scope: Some("profile email".into()), ..AuthRequest::new(&provider.client, &pkce) },
        ),
        ("invalid_scope", AuthRequest { scope: None, ..AuthRequest::new(&provider.client, &pkce) }),
        (
            "invalid_request",
            AuthRequest { code_challenge_method: Some("plain".into()), ..AuthRequest::new(&provider.client, &pkce) },
        ),
        (
            "invalid_request",
            AuthRequest { code_challenge: Some("short".into()), ..AuthRequest::new(&provider.client, &pkce) },
        ),
        // A public client has only PKCE to prove the code is its own.
        (
            "invalid_request",
            AuthRequest { code_challenge: None, code_challenge_method: None, ..AuthRequest::new(&public, &pkce) },
        ),
        (
            "login_required",
            AuthRequest { extra: vec![("prompt".into(), "none".into())], ..AuthRequest::new(&provider.client, &pkce) },
        ),
    ];
    for (error, request) in cases {
        let res = provider.browser().get(&request.url(&provider.server.base)?).await?;
        let callback = redirect_of(res).await?;
        assert_sent_back(&provider, &request, &callback, error);
    }
    Ok(())
}

#[tokio::test]
async fn a_code_without_its_pkce_verifier_or_with_another_is_refused() -> Result<()> {
    let provider = Provider::start().await?;
    let auth = ClientAuth::basic(&provider.client)?;

    let (code, _, _) = provider.code("alice").await?;
    let missing = Redemption { auth, code: &code, redirect_uri: REDIRECT_URI, code_verifier: None };
    assert_token_error(&send(&provider, missing).await?, 400, "invalid_grant");

    let (code, _, _) = provider.code("bob").await?;
    let other = Pkce::new();
    let wrong = Redemption { auth, code: &code, redirect_uri: REDIRECT_URI, code_verifier: Some(&other.verifier) };
    assert_token_error(&send(&provider, wrong).await?, 400, "invalid_grant");
    Ok(())
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_the_tokens_of_its_first_redemption() -> Result<()> {
    let provider = Provider::start().await?;
    let (code, _, pkce) = provider.code("alice").await?;
    let first = provider.redeem(&code, &pkce).await?;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["token_type"].as_str().map(str::to_ascii_lowercase).as_deref(), Some("bearer"));
    let access = first.field("access_token")?.to_owned();
    assert_eq!(userinfo(&provider.server.base, &access).await?.status, 200, "the token works before the replay");

    assert_token_error(&provider.redeem(&code, &pkce).await?, 400, "invalid_grant");

    let after = userinfo(&provider.server.base, &access).await?;
    assert_eq!(after.status, 401, "{}", after.body);
    let challenge = after.header("www-authenticate").unwrap_or_default();
    ensure!(challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#), "{challenge:?}");
    Ok(())
}

#[tokio::test]
async fn an_expired_code_is_refused() -> Result<()> {
    // Codes live 60 s at most; this server gives them one second, so that
    // the test waits a little for one to expire rather than a minute.
    let options = ServerOptions { extra_args: vec!["--oidc-code-ttl".into(), "1".into()], ..ServerOptions::default() };
    let provider = Provider::on(Server::start_with(options).await?).await?;
    let (code, _, pkce) = provider.code("alice").await?;
    // Whole seconds on the server's clock: past the second after the next.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_token_error(&provider.redeem(&code, &pkce).await?, 400, "invalid_grant");
    Ok(())
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_in_basic_auth_and_in_the_form() -> Result<()> {
    let provider = Provider::start().await?;
    let id = provider.client.client_id.as_str();
    let (code, _, pkce) = provider.code("alice").await?;
    let redemption =
        |auth| Redemption { auth, code: &code, redirect_uri: REDIRECT_URI, code_verifier: Some(&pkce.verifier) };

    let basic = send(&provider, redemption(ClientAuth::Basic { id, secret: "wrong" })).await?;
    assert_token_error(&basic, 401, "invalid_client");
    assert!(basic.header("www-authenticate").is_some_and(|h| h.starts_with("Basic")), "{:?}", basic.headers);
    let post = send(&provider, redemption(ClientAuth::Post { id, secret: "wrong" })).await?;
    assert_token_error(&post, 401, "invalid_client");
    // Without a secret, a confidential client is not a public one.
    assert_token_error(&send(&provider, redemption(ClientAuth::Public { id })).await?, 401, "invalid_client");

    // The right secret in the form still redeems the code: failed client
    // authentication did not spend it.
    let right = send(&provider, redemption(ClientAuth::post(&provider.client)?)).await?;
    assert_eq!(right.status, 200, "{}", right.body);
    Ok(())
}

#[tokio::test]
async fn a_rotated_secret_replaces_the_old_one_at_once() -> Result<()> {
    let provider = Provider::start().await?;
    let old = provider.client.secret()?.to_owned();
    let rotated = provider.server.admin().rotate_oidc_secret(&provider.service.id).await?;
    let new = rotated.secret()?.to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated.client_id, provider.client.client_id, "the client keeps its id");

    let (code, _, pkce) = provider.code("alice").await?;
    let id = provider.client.client_id.as_str();
    let redemption = |secret| Redemption {
        auth: ClientAuth::Basic { id, secret },
        code: &code,
        redirect_uri: REDIRECT_URI,
        code_verifier: Some(&pkce.verifier),
    };
    assert_token_error(&send(&provider, redemption(&old)).await?, 401, "invalid_client");
    assert_eq!(send(&provider, redemption(&new)).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn a_code_is_refused_to_another_client_and_for_another_redirect_uri() -> Result<()> {
    let provider = Provider::start().await?;
    let other_service = provider.server.create_service("Bakery").await?;
    let other = provider.server.admin().enable_oidc(&other_service.id, &confidential(&[REDIRECT_URI])).await?;
    let (code, _, pkce) = provider.code("alice").await?;

    let stolen = Redemption {
        auth: ClientAuth::basic(&other)?,
        code: &code,
        redirect_uri: REDIRECT_URI,
        code_verifier: Some(&pkce.verifier),
    };
    assert_token_error(&send(&provider, stolen).await?, 400, "invalid_grant");

    let (code, _, pkce) = provider.code("bob").await?;
    let moved = Redemption {
        auth: ClientAuth::basic(&provider.client)?,
        code: &code,
        redirect_uri: "https://app.example.test/callback/",
        code_verifier: Some(&pkce.verifier),
    };
    assert_token_error(&send(&provider, moved).await?, 400, "invalid_grant");
    Ok(())
}

#[tokio::test]
async fn state_and_nonce_come_back_unchanged_and_the_answer_names_its_issuer() -> Result<()> {
    let provider = Provider::start().await?;
    let pkce = Pkce::new();
    // Characters that a careless encoder would change on the way.
    let state = "ä ö/?&=+%20#x~._-";
    let nonce = "n-0S6_WzA2Mj +/=&ü";
    let request = AuthRequest {
        state: Some(state.into()),
        nonce: Some(nonce.into()),
        ..AuthRequest::new(&provider.client, &pkce)
    };
    let callback = provider.register(&request, "alice").await?;
    assert_eq!(callback.target(), REDIRECT_URI);
    assert_eq!(callback.param("state"), Some(state));
    assert_eq!(callback.param("iss"), Some(provider.server.origin.as_str()));

    let answer = provider.redeem(callback.code()?, &pkce).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("cache-control"), Some("no-store"), "RFC 6749 §5.1");
    let id_token = answer.field("id_token")?;
    let claims = verify_id_token(
        &provider.server.origin,
        &provider.client.client_id,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        id_token,
        nonce,
    )
    .await?;
    assert_eq!(claims["nonce"], nonce);
    assert_eq!(claims["iss"], provider.server.origin);
    let aud = &claims["aud"];
    ensure!(aud == &provider.client.client_id || aud == &serde_json::json!([provider.client.client_id]), "aud {aud}");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["amr"], serde_json::json!(["swk"]));
    let raw = unverified_claims(id_token)?;
    let (iat, exp, auth_time) = (raw["iat"].as_i64(), raw["exp"].as_i64(), raw["auth_time"].as_i64());
    ensure!(matches!((iat, exp, auth_time), (Some(i), Some(e), Some(a)) if i < e && a <= i), "{raw}");
    Ok(())
}

#[tokio::test]
async fn a_sign_in_denied_in_the_authenticator_comes_back_as_access_denied() -> Result<()> {
    let provider = Provider::start().await?;
    let request = AuthRequest::new(&provider.client, &Pkce::new());
    let callback = provider.browser().sign_in(&request, &Sesame::new(), &["deny"]).await?;
    assert_sent_back(&provider, &request, &callback, "access_denied");
    Ok(())
}

#[tokio::test]
async fn a_sign_in_cancelled_in_the_browser_comes_back_as_access_denied() -> Result<()> {
    let provider = Provider::start().await?;
    let request = AuthRequest::new(&provider.client, &Pkce::new());
    let browser = provider.browser();
    let page = browser.open(&request.url(&provider.server.base)?).await?;
    browser.cancel(&page).await?;
    let callback = browser.finish(&page).await?;
    assert_sent_back(&provider, &request, &callback, "access_denied");
    // The token of a cancelled sign-in signs nobody in.
    let out = provider.sesame.run(&["register", &page.token, "--name", "alice", "--yes"]);
    assert!(!out.status.success(), "a cancelled challenge took a registration");
    Ok(())
}

#[tokio::test]
async fn the_token_endpoint_answers_malformed_requests_with_oauth_errors() -> Result<()> {
    let provider = Provider::start().await?;
    let http = reqwest::Client::new();
    let url = format!("{}/oidc/token", provider.server.base);
    let (id, secret) = (provider.client.client_id.as_str(), provider.client.secret()?);
    let post =
        |form: Vec<(&'static str, &'static str)>| http.post(&url).basic_auth(id, Some(secret)).form(&form).send();
    let cases = [
        (vec![], 400, "invalid_request"),
        (vec![("grant_type", "password"), ("username", "alice"), ("password", "x")], 400, "unsupported_grant_type"),
        (vec![("grant_type", "authorization_code"), ("redirect_uri", REDIRECT_URI)], 400, "invalid_request"),
        (
            vec![("grant_type", "authorization_code"), ("code", "not-a-code"), ("redirect_uri", REDIRECT_URI)],
            400,
            "invalid_grant",
        ),
    ];
    for (form, status, error) in cases {
        let answer = Answer::read_from(post(form.clone()).await?).await?;
        assert_eq!((answer.status.as_u16(), answer.error()), (status, Some(error)), "{form:?}: {}", answer.body);
    }
    // A JSON body is not the form the endpoint takes.
    let res = http.post(&url).basic_auth(id, Some(secret)).json(&serde_json::json!({"grant_type": "x"})).send().await?;
    let answer = Answer::read_from(res).await?;
    assert_eq!((answer.status.as_u16(), answer.error()), (400, Some("invalid_request")), "{}", answer.body);
    // Far more than any token request: refused whole.
    let huge = "a".repeat(64 * 1024);
    let res = http.post(&url).basic_auth(id, Some(secret)).form(&[("grant_type", huge.as_str())]).send().await?;
    assert_eq!(res.status(), 413);

    // Userinfo without a token that it issued.
    for token in ["", "garbage", &"x".repeat(5000)] {
        let answer = userinfo(&provider.server.base, token).await?;
        assert_eq!(answer.status, 401, "{token:?}: {}", answer.body);
        ensure!(answer.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")), "{:?}", answer.headers);
    }
    Ok(())
}
