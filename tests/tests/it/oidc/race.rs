//! One authorization code, redeemed many times at once through two
//! instances that share PostgreSQL and Redis: exactly one redemption wins,
//! and since every other one is a replay, what it won is revoked.

use anyhow::ensure;
use sesame_tests::{
    free_port,
    oidc::{userinfo, ClientAuth, Redemption},
    PgDatabase, Redis, Result, Server, ServerOptions,
};

use super::{Provider, REDIRECT_URI};

const RACERS: usize = 50;

#[tokio::test]
async fn fifty_redemptions_of_one_code_across_two_instances_have_one_winner() -> Result<()> {
    // Declared first, dropped last: the instances stop before their database.
    let db = PgDatabase::create()?;
    let redis = Redis::start()?;
    // Both instances serve one public origin, as behind a load balancer;
    // the test reaches each one directly.
    let port = free_port();
    let options = ServerOptions {
        public_url: Some(format!("http://127.0.0.1:{port}")),
        database_url: Some(db.url.clone()),
        redis_url: Some(redis.url()),
        ..ServerOptions::default()
    };
    let b = Server::start_with(options.clone()).await?;
    let provider = Provider::on(Server::start_with(ServerOptions { port: Some(port), ..options }).await?).await?;
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
