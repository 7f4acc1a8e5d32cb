//! What an operator's tooling sees of a running server: readiness for the
//! load balancer while PostgreSQL and Redis come and go, and the audit log of what the
//! admin token did, with the address it came from.

use std::time::Duration;

use serde_json::Value;
use sesame_tests::{eventually, PgCluster, Redis, Result, Server, ServerOptions};

/// `/readyz` as a load balancer reads it: the status and the body.
async fn readyz(server: &Server) -> Result<(u16, Value)> {
    let res = reqwest::get(server.url("/readyz")).await?;
    Ok((res.status().as_u16(), res.json().await?))
}

#[tokio::test]
async fn readyz_follows_redis_down_and_back_while_healthz_stays_up() -> Result<()> {
    let mut redis = Redis::start()?;
    let options = ServerOptions { redis_url: Some(redis.url()), ..ServerOptions::default() };
    let server = Server::start_with(options).await?;
    assert_eq!(readyz(&server).await?, (200, serde_json::json!({"status": "ready"})));

    redis.stop();
    let (status, body) = readyz(&server).await?;
    assert_eq!((status, &body["error"], &body["down"]), (503, &"not_ready".into(), &serde_json::json!(["redis"])));
    assert_eq!(reqwest::get(server.url("/healthz")).await?.status(), 200);

    redis.restart()?;
    eventually(Duration::from_secs(15), || async { readyz(&server).await.ok().filter(|(status, _)| *status == 200) })
        .await?;
    Ok(())
}

#[tokio::test]
async fn readyz_follows_postgresql_down_and_back_while_healthz_stays_up() -> Result<()> {
    let postgres = PgCluster::start()?;
    let options = ServerOptions { database_url: Some(postgres.url()), ..ServerOptions::default() };
    let server = Server::start_with(options).await?;
    assert_eq!(readyz(&server).await?, (200, serde_json::json!({"status": "ready"})));

    postgres.stop()?;
    let (status, body) = readyz(&server).await?;
    assert_eq!((status, &body["error"], &body["down"]), (503, &"not_ready".into(), &serde_json::json!(["database"])));
    assert!(body["message"].as_str().is_some_and(|m| m.contains("database")), "{body}");
    assert_eq!(reqwest::get(server.url("/healthz")).await?.status(), 200);

    postgres.restart()?;
    eventually(Duration::from_secs(15), || async { readyz(&server).await.ok().filter(|(status, _)| *status == 200) })
        .await?;
    // Back in service: it writes again.
    server.create_service("After the outage").await?;
    Ok(())
}

#[tokio::test]
async fn the_audit_log_records_what_the_admin_token_did_and_from_where() -> Result<()> {
    let server = Server::start().await?;
    let service = server.create_service("Mail").await?;
    let res = server.admin().request(reqwest::Method::GET, "/admin/api/audit").send().await?;
    assert_eq!(res.status(), 200);
    let records: Vec<Value> = res.json().await?;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["actor"], "token");
    assert_eq!(record["action"], "service_created");
    assert_eq!(record["target"], service.id.as_str());
    assert_eq!(record["ip"], "127.0.0.1");
    assert!(server.log().contains("service_created"), "the record is also a log line:\n{}", server.log());
    Ok(())
}
