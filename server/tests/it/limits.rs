//! Limits that keep one client from exhausting the server: the header-read
//! timeout, the connection cap, the up-front body limit, the event-stream
//! caps, and rate limits shared through Redis. The socket tests run the
//! server's own accept loop on a real listener.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;
use sesame_server::{http::limit::StreamLimits, serve::ServeOptions};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::{
    bus::RedisServer,
    support::{Backend, SseReader, TestApp, USER_AGENT},
};

/// Far longer than any timeout under test: a socket that stays open this
/// long was not closed by the server.
const PATIENCE: Duration = Duration::from_secs(10);

fn options(header_read_timeout: Duration, max_connections: usize) -> ServeOptions {
    ServeOptions { header_read_timeout, max_connections, drain: Duration::from_secs(1) }
}

async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://")).await.expect("connect")
}

/// Reads until the server closes the connection; fails if it does not
/// within [`PATIENCE`]. Returns what it sent.
async fn read_until_closed(socket: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, socket.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&received).into_owned()
}

/// Splits a raw HTTP/1.1 response into its status line, head and body.
fn parse_response(raw: &str) -> (String, String, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn half_sent_request_is_closed_after_the_header_timeout() {
    let app = TestApp::new().await;
    let base = app.serve_with(options(Duration::from_secs(1), 0)).await;
    let mut socket = connect(&base).await;
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: sesame.test\r\n").await.expect("send half a head");
    assert_eq!(read_until_closed(&mut socket).await, "", "closed without an answer");
    // The server still serves complete requests.
    let reply = reqwest::get(format!("{base}/healthz")).await.expect("healthz");
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let app = TestApp::new().await;
    let base = app.serve_with(options(Duration::from_secs(1), 0)).await;
    let mut socket = connect(&base).await;
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: sesame.test\r\n\r\n").await.expect("send a request");
    let (status, _, body) = parse_response(&read_until_closed(&mut socket).await);
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
}

#[tokio::test]
async fn silent_connection_is_closed_after_the_header_timeout() {
    let app = TestApp::new().await;
    let base = app.serve_with(options(Duration::from_secs(1), 0)).await;
    let mut socket = connect(&base).await;
    // A few bytes of the HTTP/2 preface, which keeps the protocol undecided.
    socket.write_all(b"PRI * HT").await.expect("send a partial preface");
    assert_eq!(read_until_closed(&mut socket).await, "");
}

#[tokio::test]
async fn speaks_http2_with_prior_knowledge() {
    let app = TestApp::new().await;
    let base = app.serve().await;
    let mut socket = connect(&base).await;
    // The client preface, then an empty SETTINGS frame (RFC 9113 §3.4).
    socket.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("send the preface");
    socket.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.expect("send SETTINGS");
    let mut frame_head = [0u8; 9];
    tokio::time::timeout(PATIENCE, socket.read_exact(&mut frame_head))
        .await
        .expect("the server answers")
        .expect("a frame header");
    assert_eq!(frame_head[3], 4, "the server's preface is a SETTINGS frame: {frame_head:?}");
}

#[tokio::test]
async fn connections_over_the_limit_get_a_503_json_answer() {
    let app = TestApp::new().await;
    let base = app.serve_with(options(Duration::from_secs(30), 2)).await;
    // Two connections that hold their places (the second asks nothing yet).
    let first = reqwest::Client::new();
    assert_eq!(first.get(format!("{base}/healthz")).send().await.expect("first").status(), 200);
    let _second = connect(&base).await;
    let mut third = connect(&base).await;
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: sesame.test\r\n\r\n").await.expect("send");
    let (status, head, body) = parse_response(&read_until_closed(&mut third).await);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(head.contains("retry-after: 1"), "{head}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["error"], "too_many_connections");
}

#[tokio::test]
async fn declared_oversize_body_gets_413_json_before_it_is_sent() {
    let app = TestApp::new().await;
    let base = app.serve().await;
    let mut socket = connect(&base).await;
    // Only the head is sent: an answer proves the server did not wait for
    // the megabyte it was promised.
    socket
        .write_all(
            b"POST /api/authenticator/context HTTP/1.1\r\nHost: sesame.test\r\nContent-Type: application/json\r\n\
              Content-Length: 1000000\r\n\r\n",
        )
        .await
        .expect("send the head");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let raw = loop {
        let n = tokio::time::timeout(PATIENCE, socket.read(&mut buffer))
            .await
            .expect("an answer without the body")
            .expect("read");
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if n == 0 || text.ends_with('}') {
            break text;
        }
    };
    let (status, head, body) = parse_response(&raw);
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    assert!(head.contains("content-type: application/json"), "{head}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["error"], "body_too_large");
}

#[tokio::test]
async fn the_101st_stream_on_one_challenge_is_refused() {
    let app = TestApp::new().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    let base = app.serve().await;
    let url = format!("{base}/api/challenges/{}/events", started.id);
    let mut open = Vec::new();
    for _ in 0..100 {
        open.push(SseReader::open(&url, &started.cookie, None).await);
    }
    let refused = reqwest::Client::new()
        .get(&url)
        .header("cookie", &started.cookie)
        .header("user-agent", USER_AGENT)
        .send()
        .await
        .expect("connect");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: Value = refused.json().await.expect("a JSON body");
    assert_eq!(body["error"], "too_many_streams");
}

#[tokio::test]
async fn streams_refused_for_a_missing_binding_take_no_place() {
    let app = TestApp::builder(Backend::Sqlite).streams(StreamLimits::new(1, 100)).build().await;
    let service = app.create_service("Example").await;
    let started = app.start(&service).await;
    let base = app.serve().await;
    let url = format!("{base}/api/challenges/{}/events", started.id);
    let stranger = reqwest::get(&url).await.expect("connect");
    assert_eq!(stranger.status(), 401);
    let _browser = SseReader::open(&url, &started.cookie, None).await;
}

#[tokio::test]
async fn streams_from_one_address_are_capped_across_challenges() {
    let app = TestApp::builder(Backend::Sqlite).streams(StreamLimits::new(100, 2)).build().await;
    let service = app.create_service("Example").await;
    let base = app.serve().await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let started = app.start(&service).await;
        open.push(
            SseReader::open(&format!("{base}/api/challenges/{}/events", started.id), &started.cookie, None).await,
        );
    }
    let third = app.start(&service).await;
    let refused = reqwest::Client::new()
        .get(format!("{base}/api/challenges/{}/events", third.id))
        .header("cookie", &third.cookie)
        .send()
        .await
        .expect("connect");
    assert_eq!(refused.status(), 429);
}

#[tokio::test]
async fn instances_sharing_redis_share_one_rate_limit() {
    let redis = RedisServer::start();
    let a = TestApp::builder(Backend::Sqlite).rate_limit(5).redis(&redis.url()).build().await;
    let b = TestApp::builder(Backend::Sqlite).rate_limit(5).redis(&redis.url()).build().await;
    let (on_a, on_b) = (a.create_service("Example").await, b.create_service("Example").await);
    for _ in 0..3 {
        a.start(&on_a).await;
    }
    for _ in 0..2 {
        b.start(&on_b).await;
    }
    // Five a minute between them: the sixth is refused on either instance.
    for (app, service) in [(&a, &on_a), (&b, &on_b)] {
        let refused = app.post(&format!("/api/services/{service}/challenges"), None).await;
        refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        let retry_after: u64 = refused.headers["retry-after"].to_str().expect("text").parse().expect("seconds");
        assert!((1..=12).contains(&retry_after), "one request every 12 s, not {retry_after}");
    }
}

#[tokio::test]
async fn rate_limits_count_in_memory_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let app = TestApp::builder(Backend::Sqlite).rate_limit(2).redis(&redis.url()).build().await;
    let service = app.create_service("Example").await;
    redis.kill();
    // Neither open nor closed: the instance keeps counting on its own.
    for _ in 0..2 {
        app.start(&service).await;
    }
    app.post(&format!("/api/services/{service}/challenges"), None)
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}
