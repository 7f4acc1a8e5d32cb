//! What is single-use stays single-use across two instances that share
//! PostgreSQL and Redis, as behind a load balancer:
//! - one authorization code, redeemed many times at once: exactly one
//!   redemption wins, and since every other one is a replay, what it won is
//!   revoked;
//! - one refresh token, spent many times at once: exactly one rotation
//!   wins, and since every other one is the reuse of a spent token, the
//!   whole chain ends, the winner's new tokens with it.

use anyhow::ensure;
use serde_json::json;
use sesame_tests::{
    free_port,
    oidc::{userinfo, Answer, ClientAuth, Redemption},
    PgDatabase, Redis, Result, Server, ServerOptions,
};

use super::{Provider, REDIRECT_URI};

const RACERS: usize = 50;

/// Two instances over one database and one Redis: the provider's, at the
/// public origin, and a second one. The database and Redis come first, so
/// that they are dropped last, after the instances stop.
async fn two_instances() -> Result<(PgDatabase, Redis, Provider, Server)> {
    let db = PgDatabase::create()?;
    let redis = Redis::start()?;
    // Both instances serve one public origin; the test reaches each directly.
    let port = free_port();
    let options = ServerOptions {
        public_url: Some(format!("http://127.0.0.1:{port}")),
        database_url: Some(db.url.clone()),
        redis_url: Some(redis.url()),
        ..ServerOptions::default()
    };
    let b = Server::start_with(options.clone()).await?;
    let provider = Provider::on(Server::start_with(ServerOptions { port: Some(port), ..options }).await?).await?;
    Ok((db, redis, provider, b))
}

#[tokio::test]
async fn fifty_redemptions_of_one_code_across_two_instances_have_one_winner() -> Result<()> {
    let (_db, _redis, provider, b) = two_instances().await?;
    let (code, _, pkce) = provider.code("alice").await?;

    let http = reqwest::Client::new();
    let auth = ClientAuth::basic(&provider.client)?;
    let redemption = Redemption { auth, code: &code, redirect_uri: REDIRECT_URI, code_verifier: Some(&pkce.verifier) };
    let sends = (0..RACERS).map(|n| {
        let base = if n % 2 == 0 { &provider.server.base } else { &b.base };
        redemption.send(&http, base)
    });
    let answers = futures_util::future::try_join_all(sends).await?;

    let winners: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    let [winner] = winners.as_slice() else {
        anyhow::bail!("{} redemptions succeeded: {answers:?}", winners.len());
    };
    for loser in answers.iter().filter(|a| a.status != 200) {
        assert_eq!((loser.status.as_u16(), loser.error()), (400, Some("invalid_grant")), "{}", loser.body);
    }
    // The replays revoked the winner's access token, on both instances.
    let access = winner.field("access_token")?;
    for base in [&provider.server.base, &b.base] {
        let answer = userinfo(base, access).await?;
        ensure!(answer.status == 401, "userinfo on {base} still takes the winner's token: {}", answer.body);
    }
    Ok(())
}

/// Spends `refresh_token` at the token endpoint of `base`.
async fn refresh(http: &reqwest::Client, base: &str, provider: &Provider, refresh_token: &str) -> Result<Answer> {
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    let req =
        http.post(format!("{base}/oidc/token")).basic_auth(&provider.client.client_id, Some(provider.client.secret()?));
    Answer::read_from(req.form(&form).send().await?).await
}

#[tokio::test]
async fn fifty_refreshes_of_one_token_across_two_instances_rotate_once_and_end_the_chain() -> Result<()> {
    let (_db, _redis, provider, b) = two_instances().await?;
    // The client gets a refresh token with every code.
    let settings = json!({ "redirect_uris": [REDIRECT_URI], "refresh_tokens": true });
    provider.server.admin().enable_oidc(&provider.service.id, &settings).await?;
    let (code, _, pkce) = provider.code("alice").await?;
    let first = provider.redeem(&code, &pkce).await?;
    ensure!(first.status == 200, "the code is redeemed: {}", first.body);
    let spent = first.field("refresh_token")?;

    let http = reqwest::Client::new();
    let sends = (0..RACERS).map(|n| {
        let base = if n % 2 == 0 { &provider.server.base } else { &b.base };
        refresh(&http, base, &provider, spent)
    });
    let answers = futures_util::future::try_join_all(sends).await?;
    let winners: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    let [winner] = winners.as_slice() else {
        anyhow::bail!("{} refreshes succeeded: {answers:?}", winners.len());
    };
    for loser in answers.iter().filter(|a| a.status != 200) {
        assert_eq!((loser.status.as_u16(), loser.error()), (400, Some("invalid_grant")), "{}", loser.body);
    }
    // Every other refresh was a reuse, which ended the chain: the winner's
    // new refresh token and both access tokens are refused on both instances.
    let rotated = winner.field("refresh_token")?;
    ensure!(rotated != spent, "the refresh token rotated");
    for base in [&provider.server.base, &b.base] {
        let again = refresh(&http, base, &provider, rotated).await?;
        assert_eq!((again.status.as_u16(), again.error()), (400, Some("invalid_grant")), "{base}: {}", again.body);
        for access in [first.field("access_token")?, winner.field("access_token")?] {
            let answer = userinfo(base, access).await?;
            ensure!(
                answer.status == 401,
                "userinfo on {base} still takes an access token of the chain: {}",
                answer.body
            );
        }
    }
    Ok(())
}
