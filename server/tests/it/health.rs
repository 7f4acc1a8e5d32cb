//! `/healthz` and `/readyz`: liveness never looks at dependencies, readiness
//! asks the database and, when one is configured, Redis.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::{
    bus::RedisServer,
    support::{each_backend, Backend, TestApp, TestResponse},
};

/// Long enough for the bus to reconnect on a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(10);

fn assert_not_ready(response: &TestResponse, down: &[&str]) {
    response.assert_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready");
    assert_eq!(response.json()["down"], json!(down), "{}", response.text());
    assert!(response.json()["message"].as_str().is_some_and(|m| down.iter().all(|d| m.contains(d))));
}

#[tokio::test]
async fn readyz_answers_ready_when_the_database_answers() {
    each_backend(|app| async move {
        let response = app.get("/readyz", None).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(response.json(), json!({"status": "ready"}));
    })
    .await;
}

#[tokio::test]
async fn readyz_names_the_database_when_it_does_not_answer_while_healthz_stays_ok() {
    each_backend(|app| async move {
        // A closed pool hands out no connection, as with a database that
        // went away.
        app.state.db.close().await;
        assert_not_ready(&app.get("/readyz", None).await, &["database"]);
        let live = app.get("/healthz", None).await;
        assert_eq!((live.status, live.text()), (StatusCode::OK, "ok".to_owned()));
    })
    .await;
}

#[tokio::test]
async fn readyz_names_redis_while_it_is_down_and_recovers_when_it_is_back() {
    let mut redis = RedisServer::start();
    let app = TestApp::builder(Backend::Sqlite).redis(&redis.url()).build().await;
    assert_eq!(app.get("/readyz", None).await.status, StatusCode::OK);

    redis.kill();
    assert_not_ready(&app.get("/readyz", None).await, &["redis"]);
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);

    redis.restart();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = app.get("/readyz", None).await;
        if response.status == StatusCode::OK {
            assert_eq!(response.json(), json!({"status": "ready"}));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz never recovered: {}", response.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_names_both_when_neither_answers() {
    let mut redis = RedisServer::start();
    let app = TestApp::builder(Backend::Sqlite).redis(&redis.url()).build().await;
    redis.kill();
    app.state.db.close().await;
    assert_not_ready(&app.get("/readyz", None).await, &["database", "redis"]);
}
