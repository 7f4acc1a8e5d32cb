//! Names that cannot be confused (names.rs): a service name, or an account
//! name of one service, that looks like one already there (Unicode's
//! confusable skeleton, case aside) is refused as a duplicate, with the
//! existing name in the message. Through the admin API and the
//! authenticator's register, after an upgrade from a database without the
//! keys, and in a race; on both databases.

use axum::http::{header, HeaderValue, Method, StatusCode};
use clap::Parser as _;
use rand::rngs::OsRng;
use serde_json::json;
use sesame_proto::{AccountKey, AccountName, RegisterRequest, ServiceId};
use sesame_server::{
    db::{Backend, Db},
    names::{self, Filled, Skeletons},
    App, Config,
};
use tower::ServiceExt as _;

use crate::{
    storage::{migrated_to, on_each_backend},
    support::{each_backend, postgres_for_a_race, request, until_waiting_on_locks, TestApp, TestResponse, START},
};

/// The token `support::TestApp` sets.
const TOKEN: &str = "test-admin-token-0123456789";

/// `POST /admin/api/services` with `name`, through `router`. Without
/// number matching, so that a registration needs no number.
async fn create_through(router: axum::Router, name: &str) -> TestResponse {
    let body = serde_json::to_vec(&json!({ "name": name, "number_matching": false })).expect("serialise");
    let mut call = request(Method::POST, "/admin/api/services", None, Some(body));
    call.headers_mut().insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer test-admin-token-0123456789"));
    let response = router.oneshot(call).await.expect("the router never fails");
    let status = response.status();
    let headers = response.headers().clone();
    let body = http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes().to_vec();
    TestResponse { status, headers, body }
}

async fn create(app: &TestApp, name: &str) -> TestResponse {
    create_through(app.router(), name).await
}

/// Creates the service `name` through the API, as an admin would.
async fn created(app: &TestApp, name: &str) -> ServiceId {
    let reply = create(app, name).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{name:?}: {}", reply.text());
    reply.json()["id"].as_str().expect("id").parse().expect("a service id")
}

/// The message of a refusal, which must name the existing name.
fn message(reply: &TestResponse) -> String {
    reply.json()["message"].as_str().expect("a message").to_owned()
}

/// Names that look like "Example Mail", and what makes them look alike.
const LOOK_ALIKES: [(&str, &str); 7] = [
    ("example mail", "case only"),
    ("EXAMPLE MAIL", "case only"),
    ("Ex\u{430}mple Mail", "a Cyrillic а"),
    ("\u{ff25}\u{ff58}\u{ff41}\u{ff4d}\u{ff50}\u{ff4c}\u{ff45} \u{ff2d}\u{ff41}\u{ff49}\u{ff4c}", "full-width letters"),
    ("Examp1e Mai1", "a digit one for an l"),
    ("ExampIe MaiI", "a capital I for an l"),
    ("Exarnple Mail", "rn for m"),
];

#[tokio::test]
async fn a_service_name_that_looks_like_another_is_refused_naming_it() {
    each_backend(|app| async move {
        created(&app, "Example Mail").await;
        for (name, why) in LOOK_ALIKES {
            let reply = create(&app, name).await;
            reply.assert_error(StatusCode::CONFLICT, "service_exists");
            assert_eq!(
                message(&reply),
                format!("the name \"{name}\" is too close to the existing service \"Example Mail\""),
                "{why}"
            );
        }
        let again = create(&app, "Example Mail").await;
        again.assert_error(StatusCode::CONFLICT, "service_exists");
        assert_eq!(message(&again), "a service named \"Example Mail\" already exists");
        assert_eq!(app.count("SELECT COUNT(*) FROM service").await, 1, "nothing was written");

        // Names that only share letters stay apart.
        for name in ["Example Mall", "Example Mails", "Sample Mail", "Mail"] {
            created(&app, name).await;
        }
    })
    .await;
}

#[tokio::test]
async fn the_demo_and_admin_services_are_not_taken_over_by_look_alikes() {
    each_backend(|app| async move {
        created(&app, "dem0").await;
        let config = Config::parse_from(["sesame-server", "--demo"]);
        let refused = sesame_server::admin::on_start(&app.state, &config).await.expect_err("a look-alike of Demo");
        assert!(
            refused.to_string().contains("the name \"Demo\" is too close to the existing service \"dem0\""),
            "{refused:#}"
        );
        // The built-in admin service holds its name, so an admin cannot
        // create one that looks like it.
        let reply = create(&app, "sesame admin").await;
        reply.assert_error(StatusCode::CONFLICT, "service_exists");
        assert_eq!(message(&reply), "the name \"sesame admin\" is too close to the existing service \"Sesame admin\"");
    })
    .await;
}

fn account(text: &str) -> AccountName {
    AccountName::parse(text).expect("valid name")
}

/// Answers a new challenge of `service` with a registration of `name`;
/// returns the challenge id, the token and the reply.
async fn register(app: &TestApp, service: &ServiceId, name: &str) -> (String, String, TestResponse) {
    let started = app.start(service).await;
    let token = app.verify(&started.token);
    let request = RegisterRequest::sign(&token, &account(name), &AccountKey::generate(&mut OsRng));
    let reply = app.post_json("/api/authenticator/register", &request).await;
    (started.id, started.token, reply)
}

#[tokio::test]
async fn an_account_name_that_looks_like_another_of_its_service_is_refused_and_nothing_is_written() {
    each_backend(|app| async move {
        let service = created(&app, "Example").await;
        let (_, _, first) = register(&app, &service, "example").await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text());
        for (name, why) in [
            ("Example", "case only"),
            ("ex\u{430}mple", "a Cyrillic а"),
            ("\u{ff45}\u{ff58}\u{ff41}\u{ff4d}\u{ff50}\u{ff4c}\u{ff45}", "full-width letters"),
            ("examp1e", "a digit one for an l"),
            ("exampIe", "a capital I for an l"),
        ] {
            let (id, _, reply) = register(&app, &service, name).await;
            reply.assert_error(StatusCode::CONFLICT, "account_exists");
            assert_eq!(
                message(&reply),
                format!("the name \"{name}\" is too close to the existing account \"example\" at this service"),
                "{why}"
            );
            // As for any refused register (PROTOCOL.md §6.3): the challenge
            // stays pending, so the person can pick another name.
            assert_eq!(app.stored(&id).await, ("pending".into(), "outstanding".into(), None), "{why}");
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM account").await, 1, "no account was written");
        assert_eq!(app.count("SELECT COUNT(*) FROM account_key").await, 1, "no key was written");

        // The same token, with a name that does not look like one taken.
        let (id, token, _) = register(&app, &service, "Example").await;
        let request =
            RegisterRequest::sign(&app.verify(&token), &account("examples"), &AccountKey::generate(&mut OsRng));
        let reply = app.post_json("/api/authenticator/register", &request).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(app.stored(&id).await.0, "completed");
    })
    .await;
}

#[tokio::test]
async fn accounts_of_different_services_may_look_alike() {
    each_backend(|app| async move {
        let (mail, chat) = (created(&app, "Mail").await, created(&app, "Chat").await);
        for (service, name) in [(&mail, "alice"), (&chat, "Alice"), (&chat, "\u{430}lice2")] {
            let (_, _, reply) = register(&app, service, name).await;
            assert_eq!(reply.status, StatusCode::OK, "{name:?}: {}", reply.text());
        }
        // Within one service they do not.
        let (_, _, reply) = register(&app, &mail, "\u{430}lice").await;
        reply.assert_error(StatusCode::CONFLICT, "account_exists");
    })
    .await;
}

/// A database from before migration 0016, with look-alike names in it, is
/// given its keys when the server starts: the older of two look-alikes
/// holds them, the newer is left without (and the start does not fail),
/// and from then on look-alikes of the kept names are refused.
async fn upgrade_fills_the_keys(url: String, backend: Backend) {
    let old = migrated_to(&url, backend, 15).await;
    let other = ServiceId::random(&mut OsRng).to_string();
    let at = START as i64;
    for (id, name, created_at) in [
        (ServiceId::random(&mut OsRng).to_string(), "Example Mail", at),
        (ServiceId::random(&mut OsRng).to_string(), "example mail", at + 1),
        (other.clone(), "Other", at + 2),
    ] {
        sqlx::query("INSERT INTO service (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(created_at)
            .execute(&old)
            .await
            .expect("service");
    }
    for (name, created_at) in [("alice", at), ("Alice", at + 1), ("bob", at + 2)] {
        sqlx::query("INSERT INTO account (service_id, name, subject, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&other)
            .bind(name)
            .bind(sesame_server::signin::keys::new_id())
            .bind(created_at)
            .execute(&old)
            .await
            .expect("account");
    }
    old.close().await;

    // The server's own start.
    let config = Config::parse_from(["sesame-server", "--database-url", &url, "--admin-token", TOKEN]);
    let (app, _) = App::from_config(&config, std::sync::Arc::new(sesame_server::clock::SystemClock))
        .await
        .expect("a database with look-alike names starts");
    let sql = crate::support::outside(&url).await;
    let keys = |table: &'static str, name: &'static str| {
        let sql = sql.clone();
        async move {
            let select = format!("SELECT skeleton_folded, skeleton_written FROM {table} WHERE name = $1");
            sqlx::query_as::<_, (Option<String>, Option<String>)>(&select)
                .bind(name)
                .fetch_one(&sql)
                .await
                .expect("row")
        }
    };
    for (table, name) in [("service", "Example Mail"), ("service", "Other"), ("account", "alice"), ("account", "bob")] {
        let expected = Skeletons::of(name);
        assert_eq!(keys(table, name).await, (Some(expected.folded), Some(expected.written)), "{name}");
    }
    // The newer look-alikes are left without the keys they share with the
    // older: "Alice" shares both with "alice"; "example mail" shares only
    // the folded one with "Example Mail" (as written, its small m is "rn").
    assert_eq!(keys("account", "Alice").await, (None, None));
    assert_eq!(keys("service", "example mail").await, (None, Some(Skeletons::of("example mail").written)));

    let db = app.state.db.clone();
    let router = sesame_server::app(app);
    let reply = create_through(router.clone(), "EXAMPLE MAIL").await;
    reply.assert_error(StatusCode::CONFLICT, "service_exists");
    assert_eq!(message(&reply), "the name \"EXAMPLE MAIL\" is too close to the existing service \"Example Mail\"");
    let reply = create_through(router.clone(), "0ther").await;
    reply.assert_error(StatusCode::CONFLICT, "service_exists");
    assert_eq!(create_through(router, "Another").await.status, StatusCode::CREATED);

    // Every start tries the left ones again: once the older look-alike is
    // gone, the newer one gets its keys.
    assert_eq!(names::fill(&db).await.expect("fill"), Filled { filled: 0, clashes: 2 });
    sqlx::query("DELETE FROM service WHERE name = 'Example Mail'").execute(&sql).await.expect("delete");
    assert_eq!(names::fill(&db).await.expect("fill"), Filled { filled: 1, clashes: 1 });
    let expected = Skeletons::of("example mail");
    assert_eq!(keys("service", "example mail").await, (Some(expected.folded), Some(expected.written)));
    sql.close().await;
    db.close().await;
}

#[tokio::test]
async fn an_upgrade_fills_the_keys_of_existing_names_and_keeps_look_alikes() {
    on_each_backend(upgrade_fills_the_keys).await;
}

/// Another instance's look-alike, inserted but not yet committed when the
/// API's insert runs: the unique index makes the API wait, and once the
/// other commits, it refuses and names what the other created.
#[tokio::test]
async fn a_look_alike_committed_meanwhile_by_another_instance_wins_and_is_named() {
    let Some(app) = postgres_for_a_race().await else { return };
    let keys = Skeletons::of("Example Mail");
    let mut other = app.sql.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO service (id, name, created_at, skeleton_folded, skeleton_written) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(ServiceId::random(&mut OsRng).to_string())
    .bind("Example Mail")
    .bind(START as i64)
    .bind(keys.folded)
    .bind(keys.written)
    .execute(&mut *other)
    .await
    .expect("the other instance's insert");
    let racing = tokio::spawn(create_through(app.router(), "example mail"));
    until_waiting_on_locks(&app.sql, 1).await;
    other.commit().await.expect("commit");
    let reply = racing.await.expect("the API call");
    reply.assert_error(StatusCode::CONFLICT, "service_exists");
    assert_eq!(message(&reply), "the name \"example mail\" is too close to the existing service \"Example Mail\"");
    assert_eq!(app.count("SELECT COUNT(*) FROM service").await, 1);
    app.cleanup_handle().run().await;
}

/// Two instances creating look-alike names at once: one wins.
#[tokio::test]
async fn two_instances_creating_look_alikes_at_once_create_one() {
    each_backend(|app| async move {
        let sibling = app.sibling(Db::connect(&app.database_url()).await.expect("a second instance"));
        let (a, b) = tokio::join!(create(&app, "Example Mail"), create(&sibling, "example mai1"));
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT], "{} / {}", a.text(), b.text());
        assert_eq!(app.count("SELECT COUNT(*) FROM service").await, 1);
    })
    .await;
}
